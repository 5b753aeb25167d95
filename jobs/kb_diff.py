"""`rexdrug kb diff`: what changed in the knowledge base since a run (the curator's "what's new tonight").

The KB is a function of the warehouse's history tables (``etl.kb.build_kb`` over the current views,
which are SQL over the history), so the KB *as of* a run needs no snapshot table: it is the same SQL
over the history as it stood when that run finished.  ``kb_as_of`` shadows each history table with a
TEMP view of its rows at that point (extraction tables: the rows of that run and the runs before it in
the ``sweep_runs`` ledger; ``articles`` and ``deletions``: rows ingested before the run finished).  DuckDB
resolves a view's table names when it is queried, temp objects first, so every ``current_*`` view of
the warehouse reads the shadowed history and the KB SQL is reused unchanged.

Limits: ingestion replaces a re-ingested file's rows (``ingest --force``), so those articles look as if
they had arrived at the re-ingest; rows that no ledgered run wrote are not in any past state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import pyarrow as pa

# History tables of the sweep whose rows carry their run_id.  ``sentences`` needs no filter: the
# current views only read the sentences of an abstract (by its md5) of the articles as they stood, and
# an abstract is split once, by the run that first saw it, before its sentences are extracted.
RUN_TABLES = ("extractions", "combinations", "combination_drugs", "extraction_errors")
# Article history, filtered by when the rows were ingested.
INGESTED_TABLES = ("articles", "deletions")


@dataclass(frozen=True)
class Baseline:
    """The state a diff compares with: the KB as it stood when ``run_id`` finished (None: empty)."""

    run_id: str | None
    finished_at: datetime | None
    runs: tuple[str, ...] = field(default_factory=tuple)  # this run and every run before it

    def describe(self) -> str:
        if self.run_id is None:
            return "an empty warehouse (before the first run)"
        return f"run {self.run_id} (finished {self.finished_at:%Y-%m-%d %H:%M:%S} UTC)"


def _ledger(con) -> list[tuple[str, datetime, datetime]]:
    return con.execute(
        "SELECT run_id, started_at, finished_at FROM sweep_runs ORDER BY started_at, run_id"
    ).fetchall()


def resolve_baseline(con, since: str | None) -> Baseline:
    """``since``: a run id of ``sweep_runs``, a day (YYYY-MM-DD or YYYY/MM/DD: the state before that day's
    runs, UTC), or None (the run before the latest: what the latest run changed)."""
    from etl.pubmed.entrez import parse_day

    runs = _ledger(con)
    ids = [r[0] for r in runs]
    if since is None:
        index = len(runs) - 2  # -1 when there are fewer than two runs: everything is new
    elif since in ids:
        index = ids.index(since)
    else:
        try:
            day = parse_day(since, "--since")
        except ValueError:
            raise ValueError(
                f"--since {since!r} is neither a run id in sweep_runs nor a day (YYYY-MM-DD or YYYY/MM/DD); "
                f"runs: {', '.join(ids[-5:]) or 'none yet'}"
            ) from None
        index = _last_run_before(runs, day)
    if index < 0:
        return Baseline(None, None, ())
    return Baseline(runs[index][0], runs[index][2], tuple(ids[: index + 1]))


def _last_run_before(runs: list[tuple[str, datetime, datetime]], day: date) -> int:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    index = -1
    for i, (_, started, _) in enumerate(runs):
        if started is not None and started < start:
            index = i
    return index


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def kb_as_of(con, baseline: Baseline, **kb_options: Any) -> pa.Table:
    """The KB as it stood at ``baseline`` (``etl.kb.build_kb`` over shadowed history; ``con`` is left as found)."""
    from etl.kb import build_kb

    database = con.execute("SELECT current_database()").fetchall()[0][0]
    runs = ", ".join(_sql_string(r) for r in baseline.runs)
    run_filter = f"run_id IN ({runs})" if runs else "false"
    # the cutoff comes from our own ledger (a timestamp), never from the user
    time_filter = (
        f"ingested_at <= TIMESTAMPTZ '{baseline.finished_at.isoformat()}'"
        if baseline.finished_at
        else "false"
    )
    shadows = [(name, run_filter) for name in RUN_TABLES] + [(name, time_filter) for name in INGESTED_TABLES]
    try:
        for name, condition in shadows:
            con.execute(
                f'CREATE OR REPLACE TEMP VIEW "{name}" AS '
                f'SELECT * FROM "{database}".main."{name}" WHERE {condition}'
            )
        return build_kb(con, **kb_options)
    finally:
        for name, _ in shadows:
            con.execute(f'DROP VIEW IF EXISTS temp.main."{name}"')


# The fields a curator compares; the rest of a KB row rides along.
def diff_kb(before: pa.Table | list[dict], after: pa.Table | list[dict]) -> list[dict[str, Any]]:
    """Drug sets new in ``after``, gone from it, or whose consensus label or evidence changed.

    Evidence is the papers and sentences behind a set (``pmids``, ``n_mentions``); a set whose label
    counts moved without changing the consensus is listed when its evidence changed.  Ordered: new,
    changed, removed; within each by papers (most first), then key.
    """
    old = {r["drug_set_key"]: r for r in _rows(before)}
    new = {r["drug_set_key"]: r for r in _rows(after)}
    changes: list[dict[str, Any]] = []
    for key in new.keys() - old.keys():
        changes.append(_change("new", None, new[key]))
    for key in old.keys() - new.keys():
        changes.append(_change("removed", old[key], None))
    for key in new.keys() & old.keys():
        a, b = old[key], new[key]
        label_changed = a["consensus_label"] != b["consensus_label"]
        evidence_changed = (list(a["pmids"] or []), a["n_mentions"]) != (
            list(b["pmids"] or []),
            b["n_mentions"],
        )
        if label_changed or evidence_changed:
            change = _change("changed", a, b)
            change["label_changed"], change["evidence_changed"] = label_changed, evidence_changed
            changes.append(change)
    order = {"new": 0, "changed": 1, "removed": 2}
    changes.sort(
        key=lambda c: (order[c["change"]], -(c["n_papers"] or c["previous_n_papers"] or 0), c["drug_set_key"])
    )
    return changes


def _rows(table: pa.Table | list[dict]) -> list[dict]:
    return table.to_pylist() if isinstance(table, pa.Table) else list(table)


def _change(kind: str, before: dict | None, after: dict | None) -> dict[str, Any]:
    row = after or before
    old_pmids = set((before or {}).get("pmids") or [])
    new_pmids = set((after or {}).get("pmids") or [])
    return {
        "change": kind,
        "drug_set_key": row["drug_set_key"],
        "member_names": row.get("member_names"),
        "consensus_label": after["consensus_label"] if after else None,
        "previous_label": before["consensus_label"] if before else None,
        "n_papers": after["n_papers"] if after else 0,
        "previous_n_papers": before["n_papers"] if before else 0,
        "n_mentions": after["n_mentions"] if after else 0,
        "previous_n_mentions": before["n_mentions"] if before else 0,
        "added_pmids": sorted(new_pmids - old_pmids),
        "removed_pmids": sorted(old_pmids - new_pmids),
        "label_changed": None,  # set for "changed" rows only
        "evidence_changed": None,
    }


def kb_diff(warehouse, since: str | None = None, **kb_options: Any) -> tuple[Baseline, list[dict[str, Any]]]:
    """The baseline chosen for ``since`` and the changes from it to now, read-only on ``warehouse``."""
    from etl.kb import build_kb
    from etl.warehouse import connect_readonly

    with connect_readonly(warehouse) as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        # the catalog always holds the sweep's views (empty before the first sweep): the ledger says
        if (
            not {"sweep_runs", "current_combinations"} <= names
            or not con.execute("SELECT count(*) FROM sweep_runs").fetchone()[0]
        ):
            raise ValueError(
                f"no sweep has run on {warehouse} yet (run `rexdrug sweep --warehouse {warehouse}`)"
            )
        baseline = resolve_baseline(con, since)
        now = build_kb(con, **kb_options)
        then = kb_as_of(con, baseline, **kb_options)
    return baseline, diff_kb(then, now)
