"""Build the knowledge base (combinations and its interactions section) from the warehouse and store it
as warehouse tables."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)


def build_and_store_kbs(
    warehouse: Path,
    *,
    model_id: str | None = None,
    prompt_version: str | None = None,
    n_examples: int = 3,
    min_confidence: float | None = None,
    store: bool = True,
    refresh_database: bool = True,
) -> tuple[pa.Table, pa.Table]:
    """(combination KB, interaction KB) from the current views, written to
    ``<warehouse>/combination_kb/kb.parquet`` and ``<warehouse>/interaction_kb/kb.parquet``, DuckDB
    refreshed.

    Under the warehouse's writer lock (a second KB build, an ingest or a sweep meanwhile fails fast; the
    sweep, which holds the lock already, calls this inside its run).  The current views are read from
    an in-memory catalog over the files as they are now, so the database file is rebuilt once, at the
    end (``refresh_database=False``: the caller refreshes).  ``min_confidence`` None means the sweep
    config's default (``SweepConfig.min_confidence``), for both sections; ``store=False`` only builds (an
    export with its own threshold leaves the stored KB alone, writes nothing and so takes no lock).  The
    interactions section is written once it has rows (or had them): a warehouse that never extracted
    interactions gets no file.
    """
    from etl.kb import build_interaction_kb, build_kb, export_kb
    from etl.warehouse import WarehouseLayout, connect_views, refresh, writer_lock
    from jobs.sweep import SweepConfig

    if min_confidence is None:
        min_confidence = SweepConfig().min_confidence
    layout = WarehouseLayout(warehouse)
    options = {
        "model_id": model_id,
        "prompt_version": prompt_version,
        "n_examples": n_examples,
        "min_confidence": min_confidence,
    }

    def build() -> tuple[pa.Table, pa.Table]:
        with connect_views(layout) as con:
            return build_kb(con, **options), build_interaction_kb(con, **options)

    if not store:
        return build()
    with writer_lock(layout, "kb build"):
        combinations, interactions = build()
        export_kb(combinations, layout.kb, "parquet")
        if interactions.num_rows or layout.interaction_kb.exists():
            export_kb(interactions, layout.interaction_kb, "parquet")
        if refresh_database:
            refresh(layout)
    return combinations, interactions


def build_and_store_kb(warehouse: Path, **options) -> pa.Table:
    """``build_and_store_kbs``, returning the combination KB (its interactions section is stored too)."""
    return build_and_store_kbs(warehouse, **options)[0]
