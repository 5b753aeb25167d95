"""The DuckDB side of the warehouse and the pure per-file ingest stage (no Spark here)."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.pubmed.envelope import envelope_tables, parse_file_envelope
from etl.warehouse import (
    ARTICLE_TABLES,
    ARTICLE_VIEWS,
    FLAT_GLOB,
    TableSpec,
    ViewSpec,
    WarehouseLayout,
    connect_readonly,
    file_key,
    ledger_upsert,
    ledger_without,
    read_ledger,
    refresh_duckdb,
    write_file_partitions,
    write_parquet_atomic,
)
from schemas.articles import ARTICLES, DELETIONS, INGEST_ERRORS, INGEST_LEDGER

DATA = Path(__file__).resolve().parent / "data" / "warehouse"
NLM_FILES = [  # hand-made NLM series, in load order (see data/warehouse/README.md)
    (DATA / "nlm" / "baseline" / "pubmed99n0001.xml", 1),
    (DATA / "nlm" / "updatefiles" / "pubmed99n0002.xml", 2),
    (DATA / "nlm" / "updatefiles" / "pubmed99n0003.xml", 3),
]
T0 = 1_700_000_000_000_000  # an ingest time, microseconds


def parse(path: Path, file_order: int = 1) -> dict[str, pa.Table]:
    return envelope_tables(parse_file_envelope(str(path), path.name, file_order, T0))


def load_without_spark(root: Path, files: list[tuple[Path, int]]) -> WarehouseLayout:
    """Write each file's rows where the Spark job puts them (one partition per source file)."""
    layout = WarehouseLayout(root)
    for path, order in files:
        write_file_partitions(layout, path.name, parse(path, order))
    refresh_duckdb(root)
    return layout


def query(root: Path, sql: str) -> list[tuple]:
    with connect_readonly(root) as con:
        return con.sql(sql).fetchall()


# --- the per-file stage --------------------------------------------------------------------------------


def test_envelope_fills_load_fields_and_summary():
    tables = parse(DATA / "real" / "updatefiles" / "pubmed20n1016.xml", file_order=7)
    assert tables["articles"].schema == ARTICLES
    assert tables["deletions"].schema == DELETIONS
    assert (tables["articles"].num_rows, tables["deletions"].num_rows, tables["errors"].num_rows) == (
        10,
        218,
        0,
    )
    assert set(tables["articles"]["file_order"].to_pylist()) == {7}
    assert set(tables["deletions"]["file_order"].to_pylist()) == {7}
    assert {t.timestamp() for t in tables["articles"]["ingested_at"].to_pylist()} == {T0 / 1e6}
    assert tables["files"].to_pylist() == [
        {
            "source_file": "pubmed20n1016.xml",
            "n_articles": 10,
            "n_deletions": 218,
            "n_errors": 0,
            "complete": True,
        }
    ]


def test_envelope_batches_report_the_tasks_records_over_its_files():
    import pyarrow as pa

    from etl.pubmed.envelope import envelope_batches
    from schemas.articles import INGEST_INPUT

    files = [DATA / "real" / "pubmed1.xml", DATA / "bad" / "malformed.xml"]  # 2 records; 2 records + 1 error
    batch = pa.RecordBatch.from_pylist(
        [
            {
                "path": str(p),
                "source_file": p.name,
                "file_order": i,
                "ingested_at_us": T0,
                "file_key": file_key(p.name),
            }
            for i, p in enumerate(files)
        ],
        schema=INGEST_INPUT,
    )
    seen: list[tuple[int, int]] = []
    list(envelope_batches([batch], on_progress=lambda n, errors: seen.append((n, errors))))
    assert seen == [(2, 0), (5, 1)]  # the second file's counts come on top of the first's


def test_every_envelope_kind_has_its_struct_column_and_its_table():
    from schemas.articles import ENVELOPE, ENVELOPE_KINDS

    # a row of kind K carries its payload in the struct column named K; the split returns one table per kind
    assert ENVELOPE.names == ["kind", "file_key", *ENVELOPE_KINDS]
    tables = envelope_tables(parse_file_envelope("/nonexistent/pubmed.xml", "pubmed.xml", 1, T0))
    assert sorted(tables) == ["articles", "deletions", "errors", "files"]


def test_envelope_of_a_missing_file_is_one_error_row_not_an_exception():
    tables = envelope_tables(parse_file_envelope("/nonexistent/pubmed.xml", "pubmed.xml", 1, T0))
    assert tables["articles"].num_rows == 0
    (error,) = tables["errors"].to_pylist()
    assert (
        error["source_file"] == "pubmed.xml" and error["stage"] == "read" and error["record_position"] is None
    )
    assert tables["errors"].schema == INGEST_ERRORS
    assert tables["files"]["complete"].to_pylist() == [False]


def test_truncated_gzip_keeps_the_records_before_the_fault():
    full = parse(DATA / "real" / "updatefiles" / "pubmed20n1016.xml")["articles"]
    cut = parse(DATA / "bad" / "pubmed20n1016_truncated.xml.gz")
    kept = cut["articles"]
    assert 0 < kept.num_rows < full.num_rows
    columns = ["pmid", "pmid_version", "title", "abstract", "record_position"]
    assert kept.select(columns).to_pylist() == full.slice(0, kept.num_rows).select(columns).to_pylist()
    (error,) = cut["errors"].to_pylist()
    assert error["stage"] == "read" and error["records_before_fault"] == kept.num_rows
    assert cut["files"]["complete"].to_pylist() == [False]


def test_file_key_is_safe_and_distinct():
    names = [
        "pubmed20n1016.xml",
        "entrez/2024-01-01/edat: a=b.xml",
        "entrez/2024-01-01/edat_ a_b.xml",
        "é/ü.xml",
    ]
    keys = [file_key(n) for n in names]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert key.isascii() and "/" not in key and "=" not in key and ":" not in key and " " not in key
    assert keys[0].startswith("pubmed20n1016.xml-")


# --- DuckDB views --------------------------------------------------------------------------------------


def test_current_articles_applies_nlm_rules(tmp_path):
    load_without_spark(tmp_path, NLM_FILES)
    current = query(
        tmp_path, "SELECT pmid, pmid_version, title, source_file FROM current_article_versions ORDER BY ALL"
    )
    assert current == [
        ("100001", 1, "Alpha revised", "pubmed99n0002.xml"),  # a later record replaces the baseline one
        ("100002", 1, "Beta v1", "pubmed99n0001.xml"),  # versions are distinct records
        ("100002", 2, "Beta v2", "pubmed99n0002.xml"),
        ("100003", 1, "Gamma re-added", "pubmed99n0003.xml"),  # re-added after its deletion: back
        ("100006", 1, "Zeta added after the deletion block", "pubmed99n0003.xml"),
        # 100004 deleted in 0002; 100005 (two copies in 0002, the second would win) deleted in 0003
    ]
    latest = query(tmp_path, "SELECT pmid, pmid_version FROM current_articles ORDER BY ALL")
    assert latest == [("100001", 1), ("100002", 2), ("100003", 1), ("100006", 1)]
    # history is kept: every record of every file stays in `articles`
    assert query(tmp_path, "SELECT count(*) FROM articles") == [(10,)]


def test_later_duplicate_in_the_same_file_wins(tmp_path):
    load_without_spark(tmp_path, NLM_FILES[:2])  # before 0003 deletes 100005
    rows = query(tmp_path, "SELECT title FROM current_articles WHERE pmid = '100005'")
    assert rows == [("Epsilon second",)]
    assert query(tmp_path, "SELECT pmid FROM current_articles WHERE pmid IN ('100003', '100004')") == []


def test_load_order_not_file_name_decides(tmp_path):
    # The same files with the order of the two updates swapped: now 0002 comes last, so its deletion
    # of 100003 follows the re-add, and its 100005 copy follows the deletion in 0003.
    files = [NLM_FILES[0], (NLM_FILES[1][0], 3), (NLM_FILES[2][0], 2)]
    load_without_spark(tmp_path, files)
    pmids = [r[0] for r in query(tmp_path, "SELECT DISTINCT pmid FROM current_articles ORDER BY 1")]
    assert pmids == ["100001", "100002", "100005", "100006"]


def test_empty_warehouse_gives_empty_views_with_the_schema_columns(tmp_path):
    refresh_duckdb(tmp_path)
    with connect_readonly(tmp_path) as con:
        for spec in ARTICLE_TABLES:
            described = con.sql(f"DESCRIBE {spec.name}").fetchall()
            assert [row[0] for row in described] == spec.schema.names
            assert con.execute(f"SELECT count(*) FROM {spec.name}").fetchall() == [(0,)]
        for view in ARTICLE_VIEWS:
            assert con.execute(f"SELECT count(*) FROM {view.name}").fetchall() == [(0,)]
        types = dict(con.sql("SELECT column_name, column_type FROM (DESCRIBE articles)").fetchall())
    assert types["pmid_version"] == "INTEGER"
    assert types["ingested_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["languages"] == "VARCHAR[]"
    assert types["abstract_sections"] == 'STRUCT("label" VARCHAR, nlm_category VARCHAR, "text" VARCHAR)[]'


def test_views_have_the_declared_types_once_data_exists(tmp_path):
    load_without_spark(tmp_path, NLM_FILES[:1])
    with connect_readonly(tmp_path) as con:
        table = con.sql("SELECT * FROM articles").to_arrow_table()
    assert table.schema.names == ARTICLES.names
    for field in ARTICLES:
        got = table.schema.field(field.name).type
        if pa.types.is_timestamp(field.type):  # DuckDB names the zone as the machine does (UTC, Etc/UTC)
            assert pa.types.is_timestamp(got) and got.unit == field.type.unit and got.tz, field.name
        else:
            assert got == field.type, field.name


def test_spark_leftovers_and_temp_files_are_never_read(tmp_path):
    layout = load_without_spark(tmp_path, NLM_FILES[:1])
    stray = parse(NLM_FILES[1][0])["articles"]
    staging = layout.articles / ".spark-staging-0" / f"file_key={file_key('x.xml')}" / "part-0.parquet"
    temporary = layout.articles / "_temporary" / "0" / f"file_key={file_key('y.xml')}" / "part-0.parquet"
    for path in (staging, temporary):
        path.parent.mkdir(parents=True)
        pq.write_table(stray, path)
    refresh_duckdb(tmp_path)
    assert query(tmp_path, "SELECT count(*) FROM articles") == [(4,)]


def test_refresh_is_atomic_and_a_failed_refresh_keeps_the_old_database(tmp_path):
    load_without_spark(tmp_path, NLM_FILES[:1])
    layout = WarehouseLayout(tmp_path)
    before = layout.duckdb.read_bytes()
    reader = connect_readonly(tmp_path)  # a reader holding the old database open
    with pytest.raises(duckdb.Error):
        refresh_duckdb(
            tmp_path, ARTICLE_TABLES, (*ARTICLE_VIEWS, ViewSpec("broken", "SELECT nope FROM articles"))
        )
    assert layout.duckdb.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left behind
    refresh_duckdb(tmp_path)  # renamed over the file the reader has open
    assert reader.execute("SELECT count(*) FROM current_articles").fetchall() == [(4,)]
    reader.close()


def test_refresh_is_general_for_other_datasets(tmp_path):
    """What the sweep does: its own flat or partitioned datasets and views, beside the article ones."""
    schema = pa.schema([pa.field("pmid", pa.string()), pa.field("drugs", pa.list_(pa.string()))])
    spec = TableSpec("combinations", "combinations", schema, glob=FLAT_GLOB)
    (tmp_path / "combinations").mkdir()
    pq.write_table(
        pa.table({"pmid": ["100001"], "drugs": [["cisplatin", "paclitaxel"]], "extra": [1]}),
        tmp_path / "combinations" / "a.parquet",
    )
    load_without_spark(tmp_path, NLM_FILES)
    view = ViewSpec(
        "current_combinations",
        "SELECT c.* FROM combinations c JOIN current_articles a USING (pmid)",
    )
    refresh_duckdb(tmp_path, (*ARTICLE_TABLES, spec), (*ARTICLE_VIEWS, view))
    assert query(tmp_path, "SELECT * FROM current_combinations") == [("100001", ["cisplatin", "paclitaxel"])]
    with pytest.raises(ValueError, match="duplicate"):
        refresh_duckdb(tmp_path, (*ARTICLE_TABLES, spec, spec), ARTICLE_VIEWS)


def test_ledger_upsert_replaces_rows_of_the_same_file(tmp_path):
    layout = WarehouseLayout(tmp_path)
    assert read_ledger(layout).num_rows == 0

    def row(name, sha, n):
        return {
            "source_file": name,
            "source_kind": "update",
            "file_order": 1,
            "content_sha256": sha,
            "n_articles": n,
            "n_deletions": 0,
            "n_errors": 0,
            "complete": True,
            "run_id": "r",
            "ingested_at": None,
        }

    first = pa.Table.from_pylist([row("b.xml", "1", 1), row("a.xml", "1", 2)], schema=INGEST_LEDGER)
    write_parquet_atomic(ledger_upsert(read_ledger(layout), first), layout.ledger)
    second = pa.Table.from_pylist([row("b.xml", "2", 5)], schema=INGEST_LEDGER)
    write_parquet_atomic(ledger_upsert(read_ledger(layout), second), layout.ledger)
    ledger = read_ledger(layout)
    assert ledger.select(["source_file", "content_sha256", "n_articles"]).to_pylist() == [
        {"source_file": "a.xml", "content_sha256": "1", "n_articles": 2},
        {"source_file": "b.xml", "content_sha256": "2", "n_articles": 5},
    ]
    assert ledger_without(ledger, ["a.xml"])["source_file"].to_pylist() == ["b.xml"]


def test_exclusive_lock_refuses_a_second_holder_and_is_released(tmp_path):
    from etl.warehouse import exclusive_lock

    lock = tmp_path / "wh" / ".lock"
    with exclusive_lock(lock, "busy"), pytest.raises(ValueError, match="busy"), exclusive_lock(lock, "busy"):
        pass
    with exclusive_lock(lock, "busy"):  # released after the block
        pass


def test_a_busy_lock_names_its_holder_even_before_the_holder_wrote_its_line(tmp_path):
    """The race the concurrent `kb build` test hit once: the second process read the lock file between
    the holder's flock and its write of the holder line, and reported a busy lock without its holder."""
    import fcntl
    import threading

    from etl.warehouse import WarehouseBusy, exclusive_lock

    lock = tmp_path / "wh" / ".lock"
    lock.parent.mkdir()
    handle = open(lock, "a+")  # noqa: SIM115 - held across the thread below
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken, holder line not written yet

    def write_holder():
        handle.write("held by `rexdrug kb build`, pid 1\n")
        handle.flush()

    timer = threading.Timer(0.2, write_holder)
    timer.start()
    try:
        with (
            pytest.raises(WarehouseBusy, match=r"busy \(held by `rexdrug kb build`, pid 1\)"),
            exclusive_lock(lock, "busy"),
        ):
            pass
    finally:
        timer.join()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def test_a_lock_released_while_its_holder_line_is_read_is_taken(tmp_path):
    import fcntl
    import threading

    from etl.warehouse import exclusive_lock

    lock = tmp_path / "wh" / ".lock"
    lock.parent.mkdir()
    handle = open(lock, "a+")  # noqa: SIM115
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    timer = threading.Timer(0.2, lambda: fcntl.flock(handle.fileno(), fcntl.LOCK_UN))
    timer.start()
    try:
        with exclusive_lock(lock, "busy", holder="me"):
            assert lock.read_text() == "me\n"
    finally:
        timer.join()
        handle.close()


# --- refresh safety: full disk, short writes (issue 11, class 3) ------------------------------------------


class _ShortWriteConnection:
    """A DuckDB connection whose file ends up cut to ``keep`` bytes when it is closed: what a full disk
    leaves when the last pages never reach it."""

    def __init__(self, con, path: str, keep: int):
        self._con, self._path, self._keep = con, path, keep

    def __getattr__(self, name):
        return getattr(self._con, name)

    def close(self):
        self._con.close()
        with open(self._path, "r+b") as handle:
            handle.truncate(self._keep)


def _temp_database_writes(monkeypatch, wrap):
    """Route every writable connection to a warehouse temp database through ``wrap(con, path)``."""
    real_connect = duckdb.connect

    def connect(database=":memory:", read_only=False, **kwargs):
        con = real_connect(database, read_only=read_only, **kwargs)
        if not read_only and ".tmp-" in str(database):
            return wrap(con, str(database))
        return con

    monkeypatch.setattr(duckdb, "connect", connect)


@pytest.mark.parametrize("keep", [0, 4096])  # nothing written; the header page only
def test_a_short_database_write_fails_verification_and_keeps_the_old_database(tmp_path, monkeypatch, keep):
    layout = load_without_spark(tmp_path, NLM_FILES)
    before = layout.duckdb.read_bytes()
    _temp_database_writes(monkeypatch, lambda con, path: _ShortWriteConnection(con, path, keep))
    with pytest.raises(RuntimeError, match="previous database .* is kept"):
        refresh_duckdb(tmp_path)
    monkeypatch.undo()
    assert layout.duckdb.read_bytes() == before
    assert query(tmp_path, "SELECT count(*) FROM current_articles") == [(4,)]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


class _FullDiskConnection:
    def __init__(self, con):
        self._con = con

    def __getattr__(self, name):
        return getattr(self._con, name)

    def execute(self, sql, *args):
        if sql.startswith("CREATE VIEW") and "current_articles" in sql.split(" AS ")[0]:  # disk full half-way
            raise duckdb.IOException('Could not write file ".warehouse.duckdb.tmp": No space left on device')
        return self._con.execute(sql, *args)


def test_no_space_left_is_said_plainly_and_keeps_the_old_database(tmp_path, monkeypatch, caplog):
    from jobs.cli import main

    layout = load_without_spark(tmp_path, NLM_FILES)
    before = layout.duckdb.read_bytes()
    _temp_database_writes(monkeypatch, lambda con, path: _FullDiskConnection(con))
    with pytest.raises(RuntimeError, match="no space left on device .* the previous database is kept"):
        refresh_duckdb(tmp_path)
    # through a command: exit 1, the reason on stderr, no traceback
    assert main(["kb", "build", "--warehouse", str(tmp_path)]) == 1
    assert "no space left on device" in caplog.text and "previous database is kept" in caplog.text
    monkeypatch.undo()
    assert layout.duckdb.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and ".tmp" in p.name] == []


def test_an_out_of_space_fsync_keeps_the_old_database(tmp_path, monkeypatch):
    import errno
    import os

    layout = load_without_spark(tmp_path, NLM_FILES)
    before = layout.duckdb.read_bytes()

    def fsync(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(RuntimeError, match="no space left on device"):
        refresh_duckdb(tmp_path)
    monkeypatch.undo()
    assert layout.duckdb.read_bytes() == before


# --- odd, copied and moved warehouse paths (issue 11, classes 4 and 5) ------------------------------------


def _article_answers(root: Path) -> dict[str, list[tuple]]:
    return {
        "current": query(root, "SELECT pmid, pmid_version, title FROM current_article_versions ORDER BY ALL"),
        "history": query(root, "SELECT count(*), count(DISTINCT source_file) FROM articles"),
        "deletions": query(root, "SELECT count(*) FROM deletions"),
    }


@pytest.mark.parametrize("name", ["wh[1]", "wh*", "o'brien", "with space"])
def test_glob_and_quote_characters_in_the_warehouse_path_are_plain_characters(tmp_path, name):
    expected = _article_answers(load_without_spark(tmp_path / "plain", NLM_FILES).root)
    # siblings that a glob would mix in: "wh1" matches wh[1], "wh2" matches wh*
    load_without_spark(tmp_path / "wh1", NLM_FILES[:1])
    load_without_spark(tmp_path / "wh2", NLM_FILES[:1])
    root = load_without_spark(tmp_path / name, NLM_FILES).root
    assert _article_answers(root) == expected


@pytest.mark.parametrize("name, char", [("a,b", ","), ("wh?", "?")])
def test_a_warehouse_path_duckdb_cannot_hold_is_refused_clearly(tmp_path, name, char):
    """',' splits DuckDB's file_search_path; '?' starts options in a DuckDB database path."""
    with pytest.raises(ValueError, match=f"contains '[{char}]'"):
        refresh_duckdb(tmp_path / name)
    with pytest.raises(ValueError, match=f"contains '[{char}]'"):
        connect_readonly(tmp_path / name)


def test_a_copied_or_moved_warehouse_reads_its_own_files(tmp_path, capsys):
    from jobs.cli import main

    original = load_without_spark(tmp_path / "original", NLM_FILES).root
    expected = _article_answers(original)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    moved = tmp_path / "moved"
    original.rename(moved)  # the copy's views must not read the original's files (now gone)
    for root in (copy, moved):
        assert _article_answers(root) == expected
        sql = "SELECT count(*) AS n FROM current_articles"
        assert main(["query", "--warehouse", str(root), sql, "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"n": 4}
    # the copy and the original are independent: a file added to the copy shows only there
    write_file_partitions(WarehouseLayout(copy), "extra.xml", parse(DATA / "real" / "pubmed1.xml", 9))
    refresh_duckdb(copy)
    assert _article_answers(moved) == expected
    assert _article_answers(copy) != expected


# --- one writer lock, one atomic writer (issue 11, classes 6 and 7) ---------------------------------------


def test_the_writer_lock_names_its_holder_and_is_reentrant_in_one_process(tmp_path):
    from etl.warehouse import WarehouseBusy, writer_lock

    layout = WarehouseLayout(tmp_path)
    with writer_lock(layout, "sweep"):
        with writer_lock(layout, "kb build"):  # the sweep's own KB step: same process, no deadlock
            pass
        holder = subprocess_try_lock(tmp_path, "ingest")
        assert holder.returncode == 3 and "rexdrug sweep" in holder.stdout and "pid" in holder.stdout
    assert subprocess_try_lock(tmp_path, "ingest").returncode == 0  # released
    with (
        pytest.raises(WarehouseBusy, match="kb build"),
        hold_writer_lock(tmp_path, "kb build"),
        writer_lock(layout, "ingest"),
    ):
        pass


def subprocess_try_lock(root: Path, command: str):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from etl.warehouse import WarehouseBusy, WarehouseLayout, writer_lock\n"
        "try:\n"
        f"    with writer_lock(WarehouseLayout({str(root)!r}), {command!r}):\n"
        "        pass\n"
        "except WarehouseBusy as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])  # fmt: skip


@contextmanager
def hold_writer_lock(root: Path, command: str):
    """A real second process holding the warehouse's writer lock for the block."""
    import subprocess
    import sys
    import time

    marker = root / "held.marker"
    code = (
        "import sys, time, pathlib\n"
        "from etl.warehouse import WarehouseLayout, writer_lock\n"
        f"with writer_lock(WarehouseLayout({str(root)!r}), {command!r}):\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the lock holder did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait()
        marker.unlink(missing_ok=True)


def test_concurrent_atomic_writes_never_share_a_temp_file(tmp_path):
    """Two writers of the same file interleaved: each finishes, the file is one of the two, whole."""
    import threading

    from etl.kb import export_kb

    first_written, second_done = threading.Event(), threading.Event()
    target = tmp_path / "kb.parquet"
    small, large = pa.table({"x": [1]}), pa.table({"x": list(range(1000))})
    errors = []
    real_write = pq.write_table

    def slow_first_write(table, where, *args, **kwargs):
        real_write(table, where, *args, **kwargs)
        if table is small:  # the first writer stops after writing its temp file ...
            first_written.set()
            second_done.wait(30)  # ... until the second writer has written and renamed its own

    def export(table, done=None):
        try:
            export_kb(table, target, "parquet")
        except Exception as exc:  # noqa: BLE001 -- collected for the assertion
            errors.append(exc)
        finally:
            if done is not None:
                done.set()

    pq.write_table = slow_first_write
    try:
        first = threading.Thread(target=export, args=(small,))
        first.start()
        assert first_written.wait(30)
        export(large, second_done)
        first.join(30)
    finally:
        pq.write_table = real_write
    assert errors == []
    assert pq.read_table(target).equals(small)  # the last rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["kb.parquet"]
