"""The article warehouse: Parquet datasets on disk + a DuckDB database of views over them.

Layout of a warehouse folder (the one place that knows it is ``WarehouseLayout``)::

    DIR/
      articles/file_key=<key>/part-*.parquet        one partition per source file (Spark writes these)
      deletions/file_key=<key>/part-*.parquet
      ingest_errors/file_key=<key>/part-*.parquet
      ingest_ledger/ingest_ledger.parquet           one row per source file, rewritten atomically
      raw/entrez/...                                E-utilities responses landed before parsing
      warehouse.duckdb                              views only; rebuilt by ``refresh_duckdb``

Why every dataset is partitioned by a *file key* derived from the source file name: re-ingesting a
file must replace exactly its rows.  Spark's dynamic partition overwrite replaces just the partitions a
job writes, through its commit protocol (task output is staged and only committed attempts are moved in,
so task retries never duplicate rows).  The key is the source name made filesystem-safe plus a hash of
the exact name, so names that Spark would escape (``/``, ``:``, ``=``) never reach a path and the
``source_file`` column inside the files stays byte-exact.

Why the DuckDB database holds *views* and not tables: the Parquet datasets are the single source of
truth; views cost nothing to rebuild (refresh takes milliseconds, whatever the warehouse size), never go
stale against the files, and the database file stays tiny, so rebuilding it into a temp file and renaming
it over the old one (atomic on POSIX) is cheap.  A reader that opened the old file keeps its snapshot.
The price: views hold absolute paths, so a moved warehouse needs a refresh (``rexdrug ingest`` does one).

This module also holds the pure per-file stage of the ingest job (``parse_file_envelope`` and
``envelope_batches``): it parses one XML file with ``etl.pubmed.parser.parse_to_tables`` and emits its
articles, deletions, errors and one summary row in a single envelope schema, which is what the Spark job
feeds to ``mapInArrow``.  It never raises for bad input: an unreadable file becomes an error row.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.articles import ARTICLES, DELETIONS, INGEST_ERRORS, INGEST_LEDGER

DUCKDB_FILE = "warehouse.duckdb"
PARTITION_COLUMN = "file_key"
# Files of a partitioned dataset, one level below it.  Deliberately not ``**``: Spark's leftovers of a
# killed job (``.spark-staging-*/file_key=*/…``, ``_temporary/…``) sit deeper and must never be read.
PARTITIONED_GLOB = f"{PARTITION_COLUMN}=*/*.parquet"
FLAT_GLOB = "*.parquet"


# ----------------------------------------------------------------------------------------------------
# Layout and table specs
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


class WarehouseLayout:
    """Paths of everything in a warehouse folder."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()

    def dataset(self, spec: TableSpec) -> Path:
        return self.root / spec.subdir

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
        return self.root / ".ingest.lock"

    def partition(self, spec: TableSpec, source_file: str) -> Path:
        return self.dataset(spec) / f"{PARTITION_COLUMN}={file_key(source_file)}"


def file_key(source_file: str) -> str:
    """Filesystem-safe, collision-free partition value for a source file name (readable prefix + hash)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", source_file).strip("._-")[-80:] or "file"
    digest = hashlib.sha256(source_file.encode("utf-8")).hexdigest()[:12]
    return f"{readable}-{digest}"


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


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def table_view_sql(root: Path, spec: TableSpec) -> str:
    """``SELECT`` for one dataset, pinned to the spec's schema; an empty relation when no files exist."""
    pattern = str(root / spec.subdir / spec.glob)
    if not globlib.glob(pattern):
        columns = ", ".join(f"CAST(NULL AS {duckdb_type(f.type)}) AS {_quote(f.name)}" for f in spec.schema)
        return f"SELECT {columns} WHERE false"
    present = _parquet_columns(pattern)
    columns = ", ".join(
        f"CAST({_quote(f.name) if f.name in present else 'NULL'} AS {duckdb_type(f.type)}) AS {_quote(f.name)}"
        for f in spec.schema
    )
    source = f"read_parquet({_sql_string(pattern)}, union_by_name = true, hive_partitioning = false)"
    return f"SELECT {columns} FROM {source}"


def _parquet_columns(pattern: str) -> set[str]:
    """Column names present in any file of the dataset (a column added later reads NULL in old files)."""
    names: set[str] = set()
    for path in globlib.glob(pattern):
        names.update(pq.read_schema(path).names)
    return names


def refresh_duckdb(
    warehouse_dir: str | os.PathLike[str],
    tables: Sequence[TableSpec] = ARTICLE_TABLES,
    views: Sequence[ViewSpec] = ARTICLE_VIEWS,
) -> Path:
    """(Re)create ``warehouse.duckdb`` with one view per dataset in ``tables`` plus ``views``.

    The database holds exactly the given tables and views (callers that add datasets pass
    ``ARTICLE_TABLES + their own``).  It is built in a temp file and renamed over the old one, so a
    reader never sees a half-built database.  Returns the database path.
    """
    import duckdb

    layout = WarehouseLayout(warehouse_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    names = [t.name for t in tables] + [v.name for v in views]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate table/view names for the warehouse: {', '.join(duplicates)}")
    tmp = layout.root / f".{DUCKDB_FILE}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        con = duckdb.connect(str(tmp))
        try:
            for spec in tables:
                con.execute(f"CREATE VIEW {_quote(spec.name)} AS {table_view_sql(layout.root, spec)}")
            for view in views:
                con.execute(f"CREATE VIEW {_quote(view.name)} AS {view.sql}")
        finally:
            con.close()
        os.replace(tmp, layout.duckdb)
    finally:
        for leftover in (tmp, Path(f"{tmp}.wal")):
            leftover.unlink(missing_ok=True)
    return layout.duckdb


def connect_readonly(warehouse_dir: str | os.PathLike[str]):
    """A read-only DuckDB connection to a warehouse, with a clear error when there is none."""
    import duckdb

    path = WarehouseLayout(warehouse_dir).duckdb
    if not path.exists():
        raise ValueError(
            f"no warehouse database at {path} (run `rexdrug ingest --warehouse {warehouse_dir}` first)"
        )
    return duckdb.connect(str(path), read_only=True)


# ----------------------------------------------------------------------------------------------------
# Atomic Parquet files and the ingest ledger
# ----------------------------------------------------------------------------------------------------


@contextmanager
def exclusive_lock(path: Path, busy_message: str) -> Iterator[None]:
    """An flock held for the block; a second holder fails fast with ``ValueError(busy_message)``.

    The lock dies with its process, so a kill -9 never leaves it held.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(busy_message) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write to a temp file beside ``path``, fsync, rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_ledger(layout: WarehouseLayout) -> pa.Table:
    if not layout.ledger.exists():
        return INGEST_LEDGER.empty_table()
    return pq.read_table(layout.ledger).cast(INGEST_LEDGER)


def ledger_without(ledger: pa.Table, source_files: Iterable[str]) -> pa.Table:
    import pyarrow.compute as pc

    drop = pa.array(sorted(set(source_files)), pa.string())
    return ledger.filter(pc.invert(pc.is_in(ledger["source_file"], value_set=drop)))


def ledger_upsert(ledger: pa.Table, rows: pa.Table) -> pa.Table:
    """Replace the ledger rows of ``rows``' source files by ``rows``; sorted by source file."""
    kept = ledger_without(ledger, rows["source_file"].to_pylist())
    merged = pa.concat_tables([kept, rows.cast(INGEST_LEDGER)])
    return merged.sort_by([("source_file", "ascending")])


def write_file_partitions(layout: WarehouseLayout, source_file: str, tables: dict[str, pa.Table]) -> None:
    """Single-process writer of one file's rows into the partition layout the Spark job produces.

    For tests and small tools; production loads go through ``jobs.ingest`` (Spark's commit protocol).
    ``tables`` as returned by ``envelope_tables`` (keys ``articles``, ``deletions``, ``errors``).
    """
    import shutil

    for spec, name in (
        (ARTICLES_TABLE, "articles"),
        (DELETIONS_TABLE, "deletions"),
        (ERRORS_TABLE, "errors"),
    ):
        partition = layout.partition(spec, source_file)
        shutil.rmtree(partition, ignore_errors=True)
        if tables[name].num_rows:
            write_parquet_atomic(tables[name].cast(spec.schema), partition / "part-00000.parquet")


# ----------------------------------------------------------------------------------------------------
# The per-file ingest stage (pure; runs inside Spark's mapInArrow, testable without Spark)
# ----------------------------------------------------------------------------------------------------


def _relaxed(dtype: pa.DataType) -> pa.DataType:
    """The same type with every nested field nullable (an envelope row carries only one kind)."""
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _relaxed(f.type), nullable=True) for f in dtype])
    if pa.types.is_list(dtype):
        return pa.list_(pa.field(dtype.value_field.name, _relaxed(dtype.value_type), nullable=True))
    return dtype


def _struct_of(schema: pa.Schema) -> pa.StructType:
    return _relaxed(pa.struct(list(schema)))


FILE_SUMMARY = pa.struct(
    [
        pa.field("source_file", pa.string()),
        pa.field("n_articles", pa.int64()),
        pa.field("n_deletions", pa.int64()),
        pa.field("n_errors", pa.int64()),
        pa.field("complete", pa.bool_()),
    ]
)

# Input of the job: one row per source file (one Spark partition per row).
INGEST_INPUT = pa.schema(
    [
        pa.field("path", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("file_order", pa.int64()),
        pa.field("ingested_at_us", pa.int64()),  # microseconds since the epoch, UTC (one value per run)
    ]
)

# Output of the per-file stage: each row is one article, deletion, error or file summary.
ENVELOPE_KINDS = ("article", "deletion", "error", "file")
ENVELOPE = pa.schema(
    [
        pa.field("kind", pa.string()),
        pa.field(PARTITION_COLUMN, pa.string()),
        pa.field("article", _struct_of(ARTICLES)),
        pa.field("deletion", _struct_of(DELETIONS)),
        pa.field("error", _struct_of(INGEST_ERRORS)),
        pa.field("file", FILE_SUMMARY),
    ]
)
ENVELOPE_BATCH_ROWS = 1000
# Error stages that describe a single bad record; any other stage means the file itself is damaged.
RECORD_LEVEL_STAGES = frozenset({"record"})


def _read_error_table(source_file: str, exc: BaseException) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "source_file": source_file,
                "record_position": None,
                "pmid": None,
                "stage": "read",
                "reason": f"{type(exc).__name__}: {exc}",
                "records_before_fault": 0,
                "ingested_at": None,
            }
        ],
        schema=INGEST_ERRORS,
    )


def parse_source_file(path: str, source_file: str) -> dict[str, pa.Table]:
    """``parse_to_tables`` that never raises: an unreadable file becomes one error row."""
    try:
        from etl.pubmed.parser import parse_to_tables

        tables = parse_to_tables(path, source_file)
        return {
            "articles": tables["articles"].cast(ARTICLES),
            "deletions": tables["deletions"].cast(DELETIONS),
            "errors": tables["errors"].cast(INGEST_ERRORS),
        }
    except Exception as exc:  # noqa: BLE001 -- a crash on one file must not stop the job; recorded with its reason
        return {
            "articles": ARTICLES.empty_table(),
            "deletions": DELETIONS.empty_table(),
            "errors": _read_error_table(source_file, exc),
        }


def _with_load_fields(table: pa.Table, file_order: int | None, ingested_at_us: int) -> pa.Table:
    n = table.num_rows
    if "file_order" in table.column_names:
        i = table.schema.get_field_index("file_order")
        table = table.set_column(i, table.schema.field(i), pa.array([file_order] * n, pa.int64()))
    i = table.schema.get_field_index("ingested_at")
    ts_type = table.schema.field(i).type
    return table.set_column(
        i, table.schema.field(i), pa.array([ingested_at_us] * n, pa.int64()).cast(ts_type)
    )


def _envelope(kind: str, key: str, payload: pa.Table | None, n: int) -> pa.RecordBatch:
    columns = {"kind": pa.array([kind] * n, pa.string()), PARTITION_COLUMN: pa.array([key] * n, pa.string())}
    slot = {"article": "article", "deletion": "deletion", "error": "error", "file": "file"}[kind]
    for field in ENVELOPE:
        if field.name in columns:
            continue
        if field.name == slot and payload is not None:
            arrays = [c.combine_chunks() if c.num_chunks else pa.array([], c.type) for c in payload.columns]
            arrays = [a.cast(f.type) for a, f in zip(arrays, field.type)]
            columns[field.name] = pa.StructArray.from_arrays(arrays, fields=list(field.type))
        else:
            columns[field.name] = pa.nulls(n, field.type)
    return pa.RecordBatch.from_arrays([columns[f.name] for f in ENVELOPE], schema=ENVELOPE)


def parse_file_envelope(
    path: str, source_file: str, file_order: int | None, ingested_at_us: int
) -> Iterator[pa.RecordBatch]:
    """Parse one file; yield its rows in the ``ENVELOPE`` schema, the file's summary row last."""
    key = file_key(source_file)
    tables = parse_source_file(path, source_file)
    articles = _with_load_fields(tables["articles"], file_order, ingested_at_us)
    deletions = _with_load_fields(tables["deletions"], file_order, ingested_at_us)
    errors = _with_load_fields(tables["errors"], None, ingested_at_us)
    for kind, table in (("article", articles), ("deletion", deletions), ("error", errors)):
        for start in range(0, table.num_rows, ENVELOPE_BATCH_ROWS):
            chunk = table.slice(start, ENVELOPE_BATCH_ROWS)
            yield _envelope(kind, key, chunk, chunk.num_rows)
    complete = all(stage in RECORD_LEVEL_STAGES for stage in errors["stage"].to_pylist())
    summary = pa.Table.from_pylist(
        [
            {
                "source_file": source_file,
                "n_articles": articles.num_rows,
                "n_deletions": deletions.num_rows,
                "n_errors": errors.num_rows,
                "complete": complete,
            }
        ],
        schema=pa.schema(list(FILE_SUMMARY)),
    )
    yield _envelope("file", key, summary, 1)


def envelope_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` function: ``INGEST_INPUT`` batches in, ``ENVELOPE`` batches out."""
    for batch in batches:
        for row in batch.to_pylist():
            yield from parse_file_envelope(
                row["path"], row["source_file"], row["file_order"], row["ingested_at_us"]
            )


def envelope_tables(batches: Iterable[pa.RecordBatch]) -> dict[str, pa.Table]:
    """Split envelope batches back into the warehouse tables (the Spark job does this with selects;
    this is the same split for tests and single-process use)."""
    import pyarrow.compute as pc

    envelope = pa.Table.from_batches(list(batches), schema=ENVELOPE)
    out = {}
    for kind, name, schema in (
        ("article", "articles", ARTICLES),
        ("deletion", "deletions", DELETIONS),
        ("error", "errors", INGEST_ERRORS),
        ("file", "files", pa.schema(list(FILE_SUMMARY))),
    ):
        rows = envelope.filter(pc.equal(envelope["kind"], kind)).column(kind).combine_chunks()
        flat = pa.Table.from_arrays(rows.flatten(), names=[f.name for f in rows.type]) if len(rows) else None
        out[name] = schema.empty_table() if flat is None else flat.cast(schema)
    return out
