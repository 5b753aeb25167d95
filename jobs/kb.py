"""Build the combination knowledge base from the warehouse and store it as a warehouse table."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)


def build_and_store_kb(
    warehouse: Path,
    *,
    model_id: str | None = None,
    prompt_version: str | None = None,
    n_examples: int = 3,
    min_confidence: float | None = None,
    store: bool = True,
    refresh_database: bool = True,
) -> pa.Table:
    """KB from the current views, written to ``<warehouse>/combination_kb/kb.parquet``, DuckDB refreshed.

    Under the warehouse's writer lock (a second KB build, an ingest or a sweep meanwhile fails fast; the
    sweep, which holds the lock already, calls this inside its run).  The current views are read from
    an in-memory catalog over the files as they are now, so the database file is rebuilt once, at the
    end (``refresh_database=False``: the caller refreshes).  ``min_confidence`` None means the sweep
    config's default (``SweepConfig.min_confidence``); ``store=False`` only builds (an export with its
    own threshold leaves the stored KB alone, writes nothing and so takes no lock).
    """
    from etl.kb import build_kb, export_kb
    from etl.warehouse import WarehouseLayout, connect_views, refresh, writer_lock
    from jobs.sweep import SweepConfig

    if min_confidence is None:
        min_confidence = SweepConfig().min_confidence
    layout = WarehouseLayout(warehouse)

    def build() -> pa.Table:
        with connect_views(layout) as con:
            return build_kb(
                con,
                model_id=model_id,
                prompt_version=prompt_version,
                n_examples=n_examples,
                min_confidence=min_confidence,
            )

    if not store:
        return build()
    with writer_lock(layout, "kb build"):
        table = build()
        export_kb(table, layout.kb, "parquet")
        if refresh_database:
            refresh(layout)
    return table
