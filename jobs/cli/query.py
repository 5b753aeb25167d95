"""`rexdrug query`: run SQL on the warehouse's DuckDB database (read-only).

Formats: ``table`` (for humans: DuckDB's box rendering, ``--max-rows`` shown), ``csv`` (header row;
nested values as JSON), ``json`` (JSON Lines: one object per row), ``parquet`` (needs ``--output``).
Results are streamed in Arrow batches, so large results never sit in memory whole.  A SQL error is
reported on stderr with exit code 1.

User SQL is untrusted (it may come from a shared notebook or a web form): it runs read-only and
sandboxed (``sandbox_connection``).  Only ``SELECT``-like statements run (``SHOW``, ``DESCRIBE``,
``SUMMARIZE``, ``WITH``, ``VALUES``, ``EXPLAIN`` of a ``SELECT``); DuckDB's external access is off except
for the warehouse's own folder (the views read its Parquet), extensions are neither installed nor
loaded, and the configuration is locked so SQL cannot switch any of it back.  A refused statement is
reported on stderr with exit code 1; ``--format parquet`` output is written by this module, not by SQL.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import json
import logging
import os
import re
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
    from etl.warehouse import connect_readonly

    if args.format == "parquet" and args.output is None:
        raise ValueError("--format parquet needs --output FILE (Parquet is not written to a terminal)")
    output = args.output.absolute() if args.output is not None else None  # before the chdir below
    con = connect_readonly(args.warehouse)
    try:
        with sandboxed(con, args.warehouse):
            return _run_sql(con, args, output)
    finally:
        con.close()


def _run_sql(con, args: argparse.Namespace, output: Path | None) -> int:
    import duckdb

    try:
        refusal = refused_statement(con, args.sql)
        if refusal:
            log.error("refused: %s", refusal)
            return 1
        relation = con.sql(args.sql)
        if relation is None:  # a statement without a result
            return 0
        if args.format == "table":
            with _text_output(output) as out:
                out.write(_render_table(relation, args.max_rows))
            return 0
        reader = relation.to_arrow_reader(BATCH_ROWS)
        if args.format == "parquet":
            write_parquet(reader, output)
        else:
            with _text_output(output) as out:
                (write_csv if args.format == "csv" else write_jsonl)(reader, out)
    except duckdb.PermissionException as exc:
        log.error("refused: %s (rexdrug query reads only the warehouse's own files)", exc)
        return 1
    except duckdb.Error as exc:
        log.error("SQL error: %s", exc)
        return 1
    return 0


# Settings applied, in this order, before any user SQL runs.  ``allowed_directories`` must be set while
# external access is still on; ``lock_configuration`` last, so no later SET/RESET/PRAGMA can undo them.
_SANDBOX_SETTINGS = (
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("allow_community_extensions", "false"),
    ("allow_persistent_secrets", "false"),
    ("enable_external_access", "false"),
    ("lock_configuration", "true"),
)

# Statement kinds user SQL may run: reads.  (SHOW/DESCRIBE/SUMMARIZE/VALUES/WITH/TABLE parse as SELECT.)
# EXPLAIN is checked separately: EXPLAIN ANALYZE executes its statement, e.g. a COPY.
_EXPLAIN = re.compile(
    r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*explain\s+(?:analy[sz]e\s+)?(?P<inner>.*)$",
    re.IGNORECASE | re.DOTALL,
)


def sandbox_connection(con, warehouse_dir: str | os.PathLike[str]) -> None:
    """Confine a connection to reading the warehouse's own files; lock it so SQL cannot undo that.

    The settings are global to the DuckDB instance, which this process opens for the one query.
    The warehouse folder is allowed as given and with symlinks resolved (the views name one of them).
    """
    roots = sorted({os.path.abspath(warehouse_dir), os.path.realpath(warehouse_dir)})
    allowed = ", ".join("'" + (root.rstrip(os.sep) + os.sep).replace("'", "''") + "'" for root in roots)
    con.execute(f"SET allowed_directories = [{allowed}]")
    for name, value in _SANDBOX_SETTINGS:
        con.execute(f"SET {name} = {value}")


@contextmanager
def sandboxed(con, warehouse_dir: str | os.PathLike[str]):
    """``sandbox_connection``, with the warehouse folder as working directory for the block.

    DuckDB checks a relative path against the process's working directory, before ``file_search_path``
    would find it in the warehouse: views with paths relative to the warehouse (a copied or moved
    warehouse reads its own files) are only readable, under the sandbox, from inside the folder.
    """
    root = os.path.realpath(warehouse_dir)
    sandbox_connection(con, warehouse_dir)
    previous = os.getcwd()
    os.chdir(root)
    try:
        yield con
    finally:
        os.chdir(previous)


def refused_statement(con, sql: str) -> str | None:
    """Why ``sql`` may not run (a write, ATTACH, INSTALL, SET, ...), or None when every statement reads."""
    import duckdb

    for statement in con.extract_statements(sql):
        kind = statement.type
        if kind == duckdb.StatementType.SELECT:
            continue
        if kind == duckdb.StatementType.EXPLAIN:
            match = _EXPLAIN.match(statement.query)
            inner = con.extract_statements(match.group("inner")) if match else []
            if len(inner) == 1 and inner[0].type == duckdb.StatementType.SELECT:
                continue
        return (
            f"rexdrug query runs read-only SELECT statements only, not {kind.name} "
            f"({statement.query.strip()[:80]!r}); write results with --output/--format"
        )
    return None


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
