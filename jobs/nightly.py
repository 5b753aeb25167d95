"""Nightly E-utilities windows from the run ledger: each night continues where the last good one ended.

``rexdrug sweep --source entrez`` without ``--since`` fetches from the day after the latest window of a
committed Entrez sweep in ``sweep_runs`` (``window_until``) to the default until (yesterday).  A night
that failed (no ledger row: it crashed; or status "failed": every extraction failed) does not move the
start, so the next night's window covers its days again; the same night run twice finds its window
empty and does nothing ("up_to_date").  ``--since``/``--until`` still override.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

COMMITTED = "committed"


def last_window_end(warehouse: Path) -> date | None:
    """The last day covered by a committed Entrez sweep of ``warehouse`` (None: no such run yet)."""
    from etl.warehouse import WarehouseLayout, connect_readonly

    if not WarehouseLayout(warehouse).duckdb.exists():
        return None
    with connect_readonly(warehouse) as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "sweep_runs" not in names:
            return None
        row = con.execute(
            """SELECT max(window_until) FROM sweep_runs
               WHERE source = 'entrez' AND status = $status AND window_until IS NOT NULL""",
            {"status": COMMITTED},
        ).fetchall()
    return row[0][0] if row else None


def resolve_window(since: str | None, until: str | None, warehouse: Path) -> tuple[date, date] | None:
    """The window of tonight's Entrez sweep; None when it is empty (an earlier run covered up to ``until``).

    ``ValueError`` (a configuration error) when there is no ``since`` and no earlier committed Entrez
    sweep to continue from.
    """
    from etl.pubmed.entrez import default_until, parse_day

    last_day = parse_day(until, "until") if until else default_until()
    if since:
        first_day = parse_day(since, "since")
        if last_day < first_day:
            raise ValueError(f"until ({last_day}) is before since ({first_day})")
        return first_day, last_day
    previous = last_window_end(warehouse)
    if previous is None:
        raise ValueError(
            f"no committed E-utilities sweep in {warehouse}'s sweep_runs to continue from: give --since for "
            "the first night (later nights start where the last one ended)"
        )
    first_day = previous + timedelta(days=1)
    if first_day > last_day:
        return None
    return first_day, last_day
