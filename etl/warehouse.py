"""The warehouse: Parquet datasets on disk + a DuckDB database of views over them.

Layout of a warehouse folder (the one place that knows it is ``WarehouseLayout``)::

    DIR/
      articles/file_key=<key>/part-*.parquet        one partition per source file (Spark writes these)
      deletions/file_key=<key>/part-*.parquet
      ingest_errors/file_key=<key>/part-*.parquet
      ingest_ledger/ingest_ledger.parquet           one row per source file, rewritten atomically
      raw/entrez/...                                E-utilities responses landed before parsing
      sentences/run_id=<run>/part-*.parquet         the sweep's tables, one folder per committed run
      extractions/ combinations/ combination_drugs/ interactions/ extraction_errors/   (same layout)
      sweep_runs/run-<run>.parquet                  the sweep's run ledger
      combination_kb/kb.parquet                     the knowledge base (``rexdrug kb build``)
      interaction_kb/kb.parquet                     its interactions section (drug pairs)
      _staging/<run>/                               a sweep's work before its commit
      _staging/_checkpoints/extractions/<config>/   finished extract partitions of an interrupted sweep
      warehouse.duckdb                              views only; rebuilt by ``refresh``
      .writer.lock                                  held by the one command writing (``writer_lock``)

One catalog (``CATALOG_TABLES`` + ``CATALOG_VIEWS``) names every table and view of every writer, and
``refresh(layout)`` always builds all of it: an ingest never drops the sweep's views.  A view over a
dataset without files yet is an empty relation with the declared columns.

Why every article dataset is partitioned by a *file key*: re-ingesting a file must replace exactly its
rows.  Spark's dynamic partition overwrite replaces just the partitions a job writes, through its commit
protocol (task output is staged and only committed attempts are moved in, so task retries never
duplicate rows).  The key is derived from the file's *identity* (see ``jobs.ingest.source_identity``:
NLM's own file names, or the name plus the content digest for other files), made filesystem-safe plus a
hash, so names that Spark would escape (``/``, ``:``, ``=``) never reach a path and the ``source_file``
column inside the files stays byte-exact.

Why the DuckDB database holds *views* and not tables: the Parquet datasets are the single source of
truth; views cost little to rebuild, never go stale against the files, and the database file stays
tiny, so rebuilding it into a temp file, verifying it and renaming it over the old one (atomic on POSIX)
is cheap.  A reader that opened the old file keeps its snapshot.

Why the views hold *relative* paths (``articles/file_key=*/*.parquet``): a copied or moved warehouse
must read its own files.  Every connection is opened with DuckDB's ``file_search_path`` set to the
warehouse folder (``connect_readonly``), and the folder's own name never enters a glob pattern, so
``[``, ``*``, ``?`` or ``'`` in it are plain characters.  (The duckdb CLI started inside the warehouse
folder resolves the same paths.)  A folder whose path contains ``,`` is refused: ``file_search_path``
is a comma-separated list.

The pure per-file stage of the ingest job (one XML file -> its rows in one envelope schema) is
``etl.pubmed.envelope``; its schemas are in ``schemas.articles``.
"""

from __future__ import annotations

import errno
import glob as globlib
import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.answer import RETRYABLE_STATUSES
from schemas.articles import ARTICLES, DELETIONS, INGEST_ERRORS, INGEST_LEDGER, PARTITION_COLUMN
from schemas.extraction import (
    COMBINATION_DRUGS,
    COMBINATIONS,
    EXTRACTION_ERRORS,
    EXTRACTIONS,
    INTERACTIONS,
    SWEEP_RUNS,
    SWEEP_SENTENCES,
)
from schemas.kb import COMBINATION_KB, INTERACTION_KB

log = logging.getLogger(__name__)

DUCKDB_FILE = "warehouse.duckdb"
WRITER_LOCK_FILE = ".writer.lock"
# Files of a partitioned dataset, one level below it.  Deliberately not ``**``: Spark's leftovers of a
# killed job (``.spark-staging-*/file_key=*/…``, ``_temporary/…``) sit deeper and must never be read.
PARTITIONED_GLOB = f"{PARTITION_COLUMN}=*/*.parquet"
FLAT_GLOB = "*.parquet"
# One folder per committed sweep run; one level deep only, so Spark leftovers (_temporary) are never read.
RUN_GLOB = "run_id=*/*.parquet"
STAGING = "_staging"
# Beside the run folders in staging, outliving a run that died before its commit (etl/checkpoints.py);
# a run id never starts with "_".
CHECKPOINTS = "_checkpoints"


class WarehouseError(RuntimeError):
    """A warehouse operation failed in a way the user must see (full disk, failed verification)."""


class WarehouseBusy(ValueError):
    """Another command holds the warehouse's writer lock."""


# ----------------------------------------------------------------------------------------------------
# The catalog: every table and view of the warehouse
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableSpec:
    """A Parquet dataset exposed as a DuckDB view named ``name``.

    ``subdir`` is relative to the warehouse folder; ``glob`` selects the dataset's files inside it.
    The view always has exactly ``schema``'s columns and types (missing columns read as NULL), also
    when the dataset has no files yet.
    """

    name: str
    subdir: str
    schema: pa.Schema
    glob: str = PARTITIONED_GLOB


@dataclass(frozen=True)
class ViewSpec:
    """A SQL view over table views (and earlier views); created in the order given."""

    name: str
    sql: str


ARTICLES_TABLE = TableSpec("articles", "articles", ARTICLES)
DELETIONS_TABLE = TableSpec("deletions", "deletions", DELETIONS)
ERRORS_TABLE = TableSpec("ingest_errors", "ingest_errors", INGEST_ERRORS)
LEDGER_TABLE = TableSpec("ingest_ledger", "ingest_ledger", INGEST_LEDGER, glob=FLAT_GLOB)
LEDGER_FILE = "ingest_ledger.parquet"

ARTICLE_TABLES: tuple[TableSpec, ...] = (ARTICLES_TABLE, DELETIONS_TABLE, ERRORS_TABLE, LEDGER_TABLE)

# NLM's rules.  Load order is (file_order, record_position): baseline files before update files,
# update files in number order, records in file order.
# 1. PMID versions are distinct records: the latest record per (pmid, pmid_version) wins.
# 2. A DeleteCitation removes the record if it comes later in load order than that record; a record
#    that comes after the deletion (a re-add) wins.  A deletion naming a version removes that version
#    only; a deletion without a version removes every version of the PMID.
_CURRENT_ARTICLES_SQL = f"""
WITH ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY pmid, pmid_version
        ORDER BY file_order DESC NULLS LAST, record_position DESC, source_file DESC
    ) AS _rank
    FROM {ARTICLES_TABLE.name}
)
SELECT * EXCLUDE (_rank) FROM ranked AS a
WHERE _rank = 1
  AND NOT EXISTS (
    SELECT 1 FROM {DELETIONS_TABLE.name} AS d
    WHERE d.pmid = a.pmid
      AND (d.pmid_version IS NULL OR d.pmid_version = a.pmid_version)
      AND (d.file_order > a.file_order
           OR (d.file_order = a.file_order AND d.record_position > a.record_position))
  )
"""

# 3. ``current_articles``: one row per PMID, its highest live version (NLM: a new version supersedes
#    the old one for readers; the old version stays in ``current_article_versions`` and in history).
_LATEST_VERSION_SQL = """
SELECT * EXCLUDE (_rank) FROM (
    SELECT *, row_number() OVER (PARTITION BY pmid ORDER BY pmid_version DESC) AS _rank
    FROM current_article_versions
) WHERE _rank = 1
"""

ARTICLE_VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec("current_article_versions", _CURRENT_ARTICLES_SQL),
    ViewSpec("current_articles", _LATEST_VERSION_SQL),
)

# The sweep's tables (jobs/sweep.py writes them): name -> schema; <warehouse>/<name>/run_id=<run>/…
SWEEP_TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "extractions": EXTRACTIONS,
    "combinations": COMBINATIONS,
    "combination_drugs": COMBINATION_DRUGS,
    "interactions": INTERACTIONS,  # the interactions task (SweepConfig.tasks)
    "extraction_errors": EXTRACTION_ERRORS,
}
SENTENCES_TABLE = "sentences"
RUNS_TABLE = "sweep_runs"
KB_TABLE = "combination_kb"  # written by jobs/kb.py
INTERACTION_KB_TABLE = "interaction_kb"  # the KB's interactions section, written with it
KB_FILE = "kb.parquet"

SWEEP_TABLES: tuple[TableSpec, ...] = (
    *(TableSpec(name, name, schema, RUN_GLOB) for name, schema in SWEEP_TABLE_SCHEMAS.items()),
    TableSpec(SENTENCES_TABLE, SENTENCES_TABLE, SWEEP_SENTENCES, RUN_GLOB),
    TableSpec(RUNS_TABLE, RUNS_TABLE, SWEEP_RUNS, FLAT_GLOB),
)
KB_TABLES: tuple[TableSpec, ...] = (
    TableSpec(KB_TABLE, KB_TABLE, COMBINATION_KB, FLAT_GLOB),
    TableSpec(INTERACTION_KB_TABLE, INTERACTION_KB_TABLE, INTERACTION_KB, FLAT_GLOB),
)


# Current views: an article that was deleted or superseded by a newer version drops out of these,
# never out of the history tables.
def final_extraction_sql(alias: str) -> str:
    """SQL: the extraction row ``alias`` is final (the model answered); retryable statuses are not."""
    # the statuses are constants declared in schemas.extraction, never user input
    statuses = ", ".join("'" + s.replace("'", "''") + "'" for s in sorted(RETRYABLE_STATUSES))
    return f"({alias}.parse_status IS NOT NULL AND {alias}.parse_status NOT IN ({statuses}))"


SWEEP_VIEWS: tuple[ViewSpec, ...] = (
    # Sentences of the current text of current articles (a revised abstract under the same PMID
    # version gets new sentences; the old ones stay in history).
    ViewSpec(
        "current_sentences",
        """SELECT s.* FROM sentences s
           SEMI JOIN current_articles a
             ON s.pmid = a.pmid AND s.pmid_version = a.pmid_version AND s.abstract_hash = md5(a.abstract)""",
    ),
    # One row per extraction key of a current sentence: the final row when there is one, else the
    # latest failure (a sentence whose retry succeeded shows the success, not the old error).
    ViewSpec(
        "current_extractions",
        f"""SELECT * EXCLUDE (_rank) FROM (
                SELECT t.*, row_number() OVER (
                    PARTITION BY t.extraction_key
                    ORDER BY {final_extraction_sql("t")} DESC, t.extracted_at DESC NULLS LAST, t.run_id DESC
                ) AS _rank
                FROM extractions t
                SEMI JOIN current_sentences s
                  ON t.pmid = s.pmid AND t.pmid_version = s.pmid_version AND t.text_hash = s.text_hash
            ) WHERE _rank = 1""",
    ),
    *(
        ViewSpec(
            f"current_{table}",
            f"""SELECT t.* FROM {table} t
                SEMI JOIN current_extractions x ON t.extraction_key = x.extraction_key AND t.run_id = x.run_id""",
        )
        for table in ("combinations", "interactions", "extraction_errors")
    ),
    ViewSpec(
        "current_combination_drugs",
        "SELECT d.* FROM combination_drugs d SEMI JOIN current_combinations c USING (combination_id)",
    ),
)

# Everything the warehouse database holds, whichever command refreshed it last.
CATALOG_TABLES: tuple[TableSpec, ...] = (*ARTICLE_TABLES, *SWEEP_TABLES, *KB_TABLES)
CATALOG_VIEWS: tuple[ViewSpec, ...] = (*ARTICLE_VIEWS, *SWEEP_VIEWS)


class WarehouseLayout:
    """Paths of everything in a warehouse folder."""

    def __init__(self, root: str | os.PathLike[str] | WarehouseLayout):
        if isinstance(root, WarehouseLayout):
            root = root.root
        self.root = Path(root).expanduser().resolve()

    def dataset(self, spec: TableSpec) -> Path:
        return self.root / spec.subdir

    def table_dir(self, name: str) -> Path:
        return self.root / name

    @property
    def articles(self) -> Path:
        return self.dataset(ARTICLES_TABLE)

    @property
    def deletions(self) -> Path:
        return self.dataset(DELETIONS_TABLE)

    @property
    def errors(self) -> Path:
        return self.dataset(ERRORS_TABLE)

    @property
    def ledger(self) -> Path:
        return self.dataset(LEDGER_TABLE) / LEDGER_FILE

    @property
    def kb(self) -> Path:
        return self.table_dir(KB_TABLE) / KB_FILE

    @property
    def interaction_kb(self) -> Path:
        return self.table_dir(INTERACTION_KB_TABLE) / KB_FILE

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def entrez_raw(self) -> Path:
        return self.raw / "entrez"

    @property
    def duckdb(self) -> Path:
        return self.root / DUCKDB_FILE

    @property
    def lock(self) -> Path:
        """The writer lock of every writing command (ingest, sweep, kb build)."""
        return self.root / WRITER_LOCK_FILE

    def staging(self, run_id: str) -> Path:
        return self.root / STAGING / run_id

    def staged(self, run_id: str, name: str) -> Path:
        return self.staging(run_id) / name

    def progress(self, name: str) -> Path:
        """Status files of a running Spark stage (``jobs.progress``), shared by driver and executors."""
        return self.root / STAGING / "_progress" / name

    @property
    def checkpoints(self) -> Path:
        """Checkpoints of the sweep's stages (removed by the next commit)."""
        return self.root / STAGING / CHECKPOINTS

    def extract_checkpoints(self, config_digest: str) -> Path:
        """The finished extract partitions under one configuration (``etl.checkpoints``)."""
        return self.checkpoints / "extractions" / config_digest

    def partition(self, spec: TableSpec, source_file: str) -> Path:
        """The partition of a file identity (see ``file_key``)."""
        return self.partition_of_key(spec, file_key(source_file))

    def partition_of_key(self, spec: TableSpec, key: str) -> Path:
        return self.dataset(spec) / f"{PARTITION_COLUMN}={key}"


def file_key(source_file: str, content_sha256: str | None = None) -> str:
    """Filesystem-safe, collision-free partition value for a source file name (readable prefix + hash).

    With ``content_sha256`` the key names that content of the file (files that are not identified by
    their name alone: two different files of the same name get two keys, the same file one key).
    """
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", source_file).strip("._-")[-80:] or "file"
    digest = hashlib.sha256(source_file.encode("utf-8")).hexdigest()[:12]
    key = f"{readable}-{digest}"
    return f"{key}-sha256_{content_sha256[:16]}" if content_sha256 else key


# ----------------------------------------------------------------------------------------------------
# One writer at a time
# ----------------------------------------------------------------------------------------------------


@contextmanager
def exclusive_lock(path: Path, busy_message: str, holder: str | None = None) -> Iterator[None]:
    """An flock held for the block; a second holder fails fast with ``WarehouseBusy(busy_message)``.

    ``holder`` (who holds it: command, pid, since) is written into the lock file and quoted to the
    process that finds the lock busy.  The lock dies with its process, so a kill -9 never leaves it held.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        _acquire_or_raise(handle, busy_message)
        try:
            if holder is not None:
                handle.seek(0)
                handle.truncate()
                handle.write(holder + "\n")
                handle.flush()
            yield
        finally:
            if holder is not None:
                handle.truncate(0)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# How long a process that finds the lock taken waits for the holder's name: the holder writes it right
# after taking the lock, so an empty file means it is between the two steps (or just released the lock).
_HOLDER_WAIT_S = 1.0


def _acquire_or_raise(handle, busy_message: str) -> None:
    """Take the flock of ``handle`` now, or raise ``WarehouseBusy`` quoting the holder's line.  An empty
    holder line is read again for up to ``_HOLDER_WAIT_S`` (and the lock tried again: it may have been
    released meanwhile), so the message names who holds it instead of racing its write."""
    import fcntl
    import time

    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            handle.seek(0)
            held_by = handle.read().strip()
            if held_by or time.monotonic() >= deadline:
                raise WarehouseBusy(f"{busy_message} ({held_by})" if held_by else busy_message) from None
            time.sleep(0.02)


_HELD_WRITER_LOCKS: dict[Path, int] = {}


@contextmanager
def writer_lock(layout: WarehouseLayout, command: str) -> Iterator[None]:
    """The one writer lock of a warehouse, for every writing command (ingest, sweep, kb build).

    A second writer *fails fast* with ``WarehouseBusy`` naming the holder (a nightly scheduler retries;
    a person sees at once why), instead of waiting behind a sweep that may take hours.  Re-entrant in
    one process: the sweep holds it and calls the ingest and the KB build, which take it again.
    """
    layout.root.mkdir(parents=True, exist_ok=True)
    if _HELD_WRITER_LOCKS.get(layout.root):
        _HELD_WRITER_LOCKS[layout.root] += 1
        try:
            yield
        finally:
            _HELD_WRITER_LOCKS[layout.root] -= 1
        return
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    holder = f"held by `rexdrug {command}`, pid {os.getpid()}, since {since}"
    busy = f"warehouse {layout.root} is being written by another command; `rexdrug {command}` did not start"
    with exclusive_lock(layout.lock, busy, holder):
        _HELD_WRITER_LOCKS[layout.root] = 1
        try:
            yield
        finally:
            _HELD_WRITER_LOCKS.pop(layout.root, None)


# ----------------------------------------------------------------------------------------------------
# The one atomic writer
# ----------------------------------------------------------------------------------------------------


def fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A unique temp path beside ``path`` to write; on success it is fsynced and renamed over ``path``.

    Readers see the old file or the new one, never a half-written one; concurrent writers never share a
    temp file (pid + random suffix); a failure leaves the old file and no temp file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent, directory=True)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write to a temp file beside ``path``, fsync, rename: readers see the old file or the new one."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


# ----------------------------------------------------------------------------------------------------
# DuckDB
# ----------------------------------------------------------------------------------------------------


def duckdb_type(dtype: pa.DataType) -> str:
    """Arrow type -> DuckDB type name (for the CASTs that pin each view's columns)."""
    t = pa.types
    if t.is_string(dtype) or t.is_large_string(dtype):
        return "VARCHAR"
    if t.is_boolean(dtype):
        return "BOOLEAN"
    simple = {
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.uint8(): "UTINYINT",
        pa.uint16(): "USMALLINT",
        pa.uint32(): "UINTEGER",
        pa.uint64(): "UBIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.date32(): "DATE",
    }
    if dtype in simple:
        return simple[dtype]
    if t.is_binary(dtype) or t.is_large_binary(dtype):
        return "BLOB"
    if t.is_timestamp(dtype):
        return "TIMESTAMPTZ" if dtype.tz else "TIMESTAMP"
    if t.is_list(dtype) or t.is_large_list(dtype):
        return f"{duckdb_type(dtype.value_type)}[]"
    if t.is_struct(dtype):
        members = ", ".join(f"{_quote(f.name)} {duckdb_type(f.type)}" for f in dtype)
        return f"STRUCT({members})"
    raise ValueError(f"no DuckDB type for Arrow type {dtype}")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def sql_string(value: str | os.PathLike[str]) -> str:
    """A SQL string literal (for the few places DuckDB takes no bound parameter, like ``COPY … TO``)."""
    return "'" + str(value).replace("'", "''") + "'"


_sql_string = sql_string


def _dataset_files(root: Path, spec: TableSpec) -> list[str]:
    """The dataset's files, found with the warehouse folder's name escaped (``[``, ``*`` are literal)."""
    return sorted(globlib.glob(os.path.join(globlib.escape(str(root / spec.subdir)), spec.glob)))


def table_view_sql(root: Path, spec: TableSpec) -> str:
    """``SELECT`` for one dataset, pinned to the spec's schema; an empty relation when no files exist.

    The pattern is relative to the warehouse folder (resolved through ``file_search_path``).
    """
    files = _dataset_files(root, spec)
    if not files:
        columns = ", ".join(f"CAST(NULL AS {duckdb_type(f.type)}) AS {_quote(f.name)}" for f in spec.schema)
        return f"SELECT {columns} WHERE false"
    present = _parquet_columns(files)
    columns = ", ".join(
        f"CAST({_quote(f.name) if f.name in present else 'NULL'} AS {duckdb_type(f.type)}) AS {_quote(f.name)}"
        for f in spec.schema
    )
    pattern = f"{spec.subdir}/{spec.glob}"
    source = f"read_parquet({sql_string(pattern)}, union_by_name = true, hive_partitioning = false)"
    return f"SELECT {columns} FROM {source}"


def _parquet_columns(files: Sequence[str]) -> set[str]:
    """Column names present in any file of the dataset (a column added later reads NULL in old files)."""
    names: set[str] = set()
    for path in files:
        names.update(pq.read_schema(path).names)
    return names


def _search_path(root: Path) -> str:
    if "," in str(root):
        raise ValueError(
            f"warehouse path {root} contains ',': DuckDB's file_search_path (how the views find the "
            "warehouse's files) is a comma-separated list; use a folder without ','"
        )
    if "?" in str(root):
        raise ValueError(
            f"warehouse path {root} contains '?': DuckDB reads what follows '?' in a database path as "
            "connection options; use a folder without '?'"
        )
    return str(root)


def _connect(path: str, root: Path, read_only: bool = False):
    import duckdb

    return duckdb.connect(path, read_only=read_only, config={"file_search_path": _search_path(root)})


def _no_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return "no space left on device" in str(exc).lower()


def _create_catalog(con, root: Path, tables: Sequence[TableSpec], views: Sequence[ViewSpec]) -> None:
    for spec in tables:
        con.execute(f"CREATE VIEW {_quote(spec.name)} AS {table_view_sql(root, spec)}")
    for view in views:
        con.execute(f"CREATE VIEW {_quote(view.name)} AS {view.sql}")


def _build_database(path: Path, root: Path, tables: Sequence[TableSpec], views: Sequence[ViewSpec]) -> None:
    con = _connect(str(path), root)
    try:
        _create_catalog(con, root, tables, views)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _verify_database(path: Path, root: Path, names: Sequence[str]) -> None:
    """Open the rebuilt database as a reader would and bind every view; raise if any is missing."""
    if not path.exists() or path.stat().st_size == 0:
        raise WarehouseError(f"the rebuilt database {path.name} is empty")
    import duckdb

    try:
        con = _connect(str(path), root, read_only=True)
    except duckdb.Error as exc:
        if _no_space(exc):
            raise
        raise WarehouseError(f"the rebuilt database {path.name} does not open: {exc}") from exc
    try:
        found = {
            r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        }
        missing = [n for n in names if n not in found]
        if missing:
            raise WarehouseError(f"the rebuilt database lacks {', '.join(missing)}")
        for name in names:
            try:
                con.execute(f"SELECT * FROM {_quote(name)} LIMIT 0").fetchall()
            except duckdb.Error as exc:
                if _no_space(exc):
                    raise
                raise WarehouseError(f"view {name} of the rebuilt database does not answer: {exc}") from exc
    finally:
        con.close()


def refresh_duckdb(
    warehouse_dir: str | os.PathLike[str],
    tables: Sequence[TableSpec] = CATALOG_TABLES,
    views: Sequence[ViewSpec] = CATALOG_VIEWS,
) -> Path:
    """(Re)create ``warehouse.duckdb`` with one view per dataset in ``tables`` plus ``views``.

    Commands call ``refresh(layout)`` (the whole catalog); the table arguments are for tests and tools.
    The database is built in a unique temp file, checkpointed, opened again and verified (every view
    exists and binds), fsynced and only then renamed over the old one: a reader never sees a half-built
    database, and a failed or short write (a full disk) keeps the old one.  Returns the database path.
    """
    import duckdb

    layout = WarehouseLayout(warehouse_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    names = [t.name for t in tables] + [v.name for v in views]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate table/view names for the warehouse: {', '.join(duplicates)}")
    _search_path(layout.root)
    tmp_path: Path | None = None
    try:
        with atomic_path(layout.duckdb) as tmp:
            tmp_path = tmp
            _build_database(tmp, layout.root, tables, views)
            _verify_database(tmp, layout.root, names)
    except (OSError, duckdb.Error) as exc:
        if _no_space(exc):
            raise WarehouseError(
                f"no space left on device while rebuilding {layout.duckdb}; the previous database is kept "
                f"(free some space and run the command again): {exc}"
            ) from exc
        raise
    except WarehouseError as exc:
        raise WarehouseError(f"{exc}; the previous database {layout.duckdb} is kept") from exc
    finally:
        if tmp_path is not None:
            Path(f"{tmp_path}.wal").unlink(missing_ok=True)
    return layout.duckdb


def refresh(layout: WarehouseLayout | str | os.PathLike[str]) -> Path:
    """Rebuild the warehouse database with the whole catalog (what every writing command calls)."""
    return refresh_duckdb(WarehouseLayout(layout).root, CATALOG_TABLES, CATALOG_VIEWS)


def connect_readonly(warehouse_dir: str | os.PathLike[str]):
    """A read-only DuckDB connection to a warehouse, with a clear error when there is none.

    The views' relative paths resolve against this warehouse's folder, wherever it was built.
    """
    layout = WarehouseLayout(warehouse_dir)
    _search_path(layout.root)
    if not layout.duckdb.exists():
        raise ValueError(
            f"no warehouse database at {layout.duckdb} (run `rexdrug ingest --warehouse {warehouse_dir}` first)"
        )
    return _connect(str(layout.duckdb), layout.root, read_only=True)


def connect_views(warehouse_dir: str | os.PathLike[str]):
    """An in-memory DuckDB connection with the whole catalog over the files as they are now.

    For a writer that needs current views in the middle of its work (the KB build) without writing the
    database file: the one refresh comes at the end of the command.
    """
    layout = WarehouseLayout(warehouse_dir)
    con = _connect(":memory:", layout.root)
    try:
        _create_catalog(con, layout.root, CATALOG_TABLES, CATALOG_VIEWS)
    except BaseException:
        con.close()
        raise
    return con


# ----------------------------------------------------------------------------------------------------
# The ingest ledger (one row per file identity)
# ----------------------------------------------------------------------------------------------------


def _with_keys(table: pa.Table) -> pa.Table:
    """``table`` in the ledger schema, a missing file key (a ledger from before file identities, where
    the name was the identity) filled with the key of the source file name."""
    names = table["source_file"].to_pylist()
    given = (
        table[PARTITION_COLUMN].to_pylist() if PARTITION_COLUMN in table.column_names else [None] * len(names)
    )
    keys = pa.array([k or file_key(n) for k, n in zip(given, names)], pa.string())
    if PARTITION_COLUMN in table.column_names:
        table = table.drop_columns([PARTITION_COLUMN])
    return table.append_column(PARTITION_COLUMN, keys).select(INGEST_LEDGER.names).cast(INGEST_LEDGER)


def read_ledger(layout: WarehouseLayout) -> pa.Table:
    if not layout.ledger.exists():
        return INGEST_LEDGER.empty_table()
    return _with_keys(pq.read_table(layout.ledger))


def ledger_without(
    ledger: pa.Table, source_files: Iterable[str] = (), *, keys: Iterable[str] = ()
) -> pa.Table:
    """The ledger without the rows of these source file names and of these file keys."""
    import pyarrow.compute as pc

    by_name = pc.is_in(ledger["source_file"], value_set=pa.array(sorted(set(source_files)), pa.string()))
    by_key = pc.is_in(ledger[PARTITION_COLUMN], value_set=pa.array(sorted(set(keys)), pa.string()))
    return ledger.filter(pc.invert(pc.or_(by_name, by_key)))


def ledger_upsert(ledger: pa.Table, rows: pa.Table) -> pa.Table:
    """Replace the ledger rows of ``rows``' file keys by ``rows``; sorted by source file, then key."""
    rows = _with_keys(rows)
    kept = ledger_without(ledger, keys=rows[PARTITION_COLUMN].to_pylist())
    merged = pa.concat_tables([kept, rows])
    return merged.sort_by([("source_file", "ascending"), (PARTITION_COLUMN, "ascending")])


def write_file_partitions(
    layout: WarehouseLayout, source_file: str, tables: dict[str, pa.Table], key: str | None = None
) -> None:
    """Single-process writer of one file's rows into the partition layout the Spark job produces.

    For tests and small tools; production loads go through ``jobs.ingest`` (Spark's commit protocol).
    ``tables`` as returned by ``etl.pubmed.envelope.envelope_tables`` (keys ``articles``, ``deletions``,
    ``errors``).
    """
    import shutil

    key = key or file_key(source_file)
    for spec, name in (
        (ARTICLES_TABLE, "articles"),
        (DELETIONS_TABLE, "deletions"),
        (ERRORS_TABLE, "errors"),
    ):
        partition = layout.partition_of_key(spec, key)
        shutil.rmtree(partition, ignore_errors=True)
        if tables[name].num_rows:
            write_parquet_atomic(tables[name].cast(spec.schema), partition / "part-00000.parquet")
