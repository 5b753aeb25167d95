"""Build the combination knowledge base from the warehouse and store it as a warehouse table."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)


def build_and_store_kb(
    warehouse: Path, *, model_id: str | None = None, prompt_version: str | None = None, n_examples: int = 3,
    min_confidence: float | None = None, store: bool = True,
) -> pa.Table:
    """KB from the current views, written to ``<warehouse>/combination_kb/kb.parquet``, DuckDB refreshed.

    ``min_confidence`` None means the sweep config's default (``SweepConfig.min_confidence``);
    ``store=False`` only builds (an export with its own threshold leaves the stored KB alone).
    """
    from etl.kb import build_kb, export_kb
    from etl.warehouse import connect_readonly
    from jobs.sweep import KB_TABLE, SweepConfig, refresh_all

    if min_confidence is None:
        min_confidence = SweepConfig().min_confidence
    refresh_all(Path(warehouse))
    with connect_readonly(warehouse) as con:
        table = build_kb(con, model_id=model_id, prompt_version=prompt_version, n_examples=n_examples,
                         min_confidence=min_confidence)
    if store:
        export_kb(table, Path(warehouse) / KB_TABLE / "kb.parquet", "parquet")
        refresh_all(Path(warehouse))
    return table
