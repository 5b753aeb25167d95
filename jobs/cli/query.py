"""`rexdrug query`: run SQL on the warehouse's DuckDB database (read-only).

Formats: ``table`` (for humans: DuckDB's box rendering, ``--max-rows`` shown), ``csv`` (header row;
nested values as JSON), ``json`` (JSON Lines: one object per row), ``parquet`` (needs ``--output``).
Results are streamed in Arrow batches, so large results never sit in memory whole.  A SQL error is
reported on stderr with exit code 1.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

log = logging.getLogger(__name__)

FORMATS = ("table", "csv", "json", "parquet")
BATCH_ROWS = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", help='SQL to run, e.g. "SELECT count(*) FROM current_articles"')
    parser.add_argument("--warehouse", required=True, type=Path, metavar="DIR", help="warehouse folder")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument("--max-rows", type=int, default=40, help="rows shown by --format table (default 40)")


def run(args: argparse.Namespace) -> int:
    import duckdb

    from etl.warehouse import connect_readonly

    if args.format == "parquet" and args.output is None:
        raise ValueError("--format parquet needs --output FILE (Parquet is not written to a terminal)")
    con = connect_readonly(args.warehouse)
    try:
        try:
            relation = con.sql(args.sql)
            if relation is None:  # a statement without a result
                return 0
            if args.format == "table":
                with _text_output(args.output) as out:
                    out.write(_render_table(relation, args.max_rows))
                return 0
            reader = relation.to_arrow_reader(BATCH_ROWS)
            if args.format == "parquet":
                write_parquet(reader, args.output)
            else:
                with _text_output(args.output) as out:
                    (write_csv if args.format == "csv" else write_jsonl)(reader, out)
        except duckdb.Error as exc:
            log.error("SQL error: %s", exc)
            return 1
    finally:
        con.close()
    return 0


@contextmanager
def _text_output(path: Path | None):
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        yield handle


def _render_table(relation, max_rows: int) -> str:
    """DuckDB's own box rendering (type row, elided middle rows, row count)."""
    import io

    buffer = io.StringIO()
    real_stdout, sys.stdout = sys.stdout, buffer  # show() prints through Python's sys.stdout
    try:
        relation.show(max_rows=max_rows)
    finally:
        sys.stdout = real_stdout
    return buffer.getvalue()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _is_nested(dtype: pa.DataType) -> bool:
    return pa.types.is_nested(dtype)


def write_jsonl(reader: pa.RecordBatchReader, out: IO[str]) -> None:
    for batch in reader:
        for row in batch.to_pylist():
            out.write(json.dumps(_jsonable(row), ensure_ascii=False))
            out.write("\n")


def write_csv(reader: pa.RecordBatchReader, out: IO[str]) -> None:
    """CSV with a header; NULL -> empty field; lists/structs -> JSON text; timestamps -> ISO 8601."""
    writer = csv.writer(out)
    writer.writerow(reader.schema.names)
    nested = [_is_nested(f.type) for f in reader.schema]
    for batch in reader:
        for row in batch.to_pylist():
            writer.writerow(
                [
                    ""
                    if value is None
                    else json.dumps(_jsonable(value), ensure_ascii=False)
                    if is_nested
                    else _jsonable(value)
                    for value, is_nested in zip(row.values(), nested)
                ]
            )


def write_parquet(reader: pa.RecordBatchReader, path: Path) -> None:
    """Stream batches into a temp file beside ``path``, then rename (no half-written result file)."""
    import os

    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with pq.ParquetWriter(tmp, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
