"""Spark schemas derived from the Arrow schemas (declared once, in this package)."""

from __future__ import annotations

import pyarrow as pa


def to_spark(schema: pa.Schema):
    """Arrow schema -> ``pyspark.sql.types.StructType`` (imported lazily: Spark is optional for pure code)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select/cast ``table`` to exactly ``schema`` (column order, types); missing nullable columns -> nulls."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"column {field.name!r} is required by the schema but missing")
    return pa.Table.from_arrays(columns, schema=schema)
