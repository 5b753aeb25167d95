"""The ingest job's pure per-file stage: one PubMed XML file -> its rows in one envelope schema.

``parse_file_envelope`` parses one file with ``etl.pubmed.parser.parse_to_tables`` and emits its
articles, deletions, errors and one summary row as ``schemas.articles.ENVELOPE`` batches (``kind`` says
which); ``envelope_batches`` is the function the Spark job (``jobs/ingest.py``) feeds to ``mapInArrow``,
one ``INGEST_INPUT`` row per file.  It never raises for bad input: an unreadable file becomes an error
row.  ``envelope_tables`` splits envelope batches back into the tables (tests, single-process tools).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa

from etl.warehouse import file_key
from schemas.articles import (
    ARTICLES,
    DELETIONS,
    ENVELOPE,
    ENVELOPE_KINDS,
    FILE_SUMMARY,
    INGEST_ERRORS,
    PARTITION_COLUMN,
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


ProgressCallback = Callable[[int, int], None]  # (records parsed so far, errors so far) of the file


def parse_source_file(
    path: str, source_file: str, on_progress: ProgressCallback | None = None
) -> dict[str, pa.Table]:
    """``parse_to_tables`` that never raises: an unreadable file becomes one error row."""
    try:
        from etl.pubmed.parser import parse_to_tables

        tables = parse_to_tables(path, source_file, on_progress)
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
    if kind not in ENVELOPE_KINDS:
        raise ValueError(f"envelope kind must be one of {', '.join(ENVELOPE_KINDS)}, not {kind!r}")
    columns = {"kind": pa.array([kind] * n, pa.string()), PARTITION_COLUMN: pa.array([key] * n, pa.string())}
    for field in ENVELOPE:
        if field.name in columns:
            continue
        if field.name == kind and payload is not None:  # the struct column named after the kind
            arrays = [c.combine_chunks() if c.num_chunks else pa.array([], c.type) for c in payload.columns]
            arrays = [a.cast(f.type) for a, f in zip(arrays, field.type)]
            columns[field.name] = pa.StructArray.from_arrays(arrays, fields=list(field.type))
        else:
            columns[field.name] = pa.nulls(n, field.type)
    return pa.RecordBatch.from_arrays([columns[f.name] for f in ENVELOPE], schema=ENVELOPE)


def parse_file_envelope(
    path: str,
    source_file: str,
    file_order: int | None,
    ingested_at_us: int,
    key: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> Iterator[pa.RecordBatch]:
    """Parse one file; yield its rows in the ``ENVELOPE`` schema, the file's summary row last.

    ``key``: the partition of the file's identity (default: ``file_key(source_file)``); ``on_progress``:
    see ``etl.pubmed.parser.parse_to_tables``."""
    key = key or file_key(source_file)
    tables = parse_source_file(path, source_file, on_progress)
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


def envelope_batches(
    batches: Iterable[pa.RecordBatch], on_progress: ProgressCallback | None = None
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` function: ``INGEST_INPUT`` batches in, ``ENVELOPE`` batches out.

    ``on_progress`` (bound with ``functools.partial``) gets this task's counts so far, over its files."""
    progress = _TaskProgress(on_progress) if on_progress is not None else None
    for batch in batches:
        for row in batch.to_pylist():
            yield from parse_file_envelope(
                row["path"],
                row["source_file"],
                row["file_order"],
                row["ingested_at_us"],
                row.get(PARTITION_COLUMN),
                progress.file if progress is not None else None,
            )
            if progress is not None:
                progress.file_done()


class _TaskProgress:
    """One file's counts -> the task's counts over all its files so far."""

    def __init__(self, report: ProgressCallback):
        self.report = report
        self.before = (0, 0)  # records, errors of the files finished
        self.current = (0, 0)

    def file(self, records: int, errors: int) -> None:
        self.current = (records, errors)
        self.report(self.before[0] + records, self.before[1] + errors)

    def file_done(self) -> None:
        self.before = (self.before[0] + self.current[0], self.before[1] + self.current[1])
        self.current = (0, 0)


def envelope_tables(batches: Iterable[pa.RecordBatch]) -> dict[str, pa.Table]:
    """Split envelope batches back into the warehouse tables (the Spark job does this with selects;
    this is the same split for tests and single-process use)."""
    import pyarrow.compute as pc

    envelope = pa.Table.from_batches(list(batches), schema=ENVELOPE)
    out = {}
    tables = {
        "article": ("articles", ARTICLES),
        "deletion": ("deletions", DELETIONS),
        "error": ("errors", INGEST_ERRORS),
        "file": ("files", pa.schema(list(FILE_SUMMARY))),
    }
    for kind in ENVELOPE_KINDS:
        name, schema = tables[kind]
        rows = envelope.filter(pc.equal(envelope["kind"], kind)).column(kind).combine_chunks()
        flat = pa.Table.from_arrays(rows.flatten(), names=[f.name for f in rows.type]) if len(rows) else None
        out[name] = schema.empty_table() if flat is None else flat.cast(schema)
    return out
