"""The warehouse report: one self-contained HTML page that a curator opens in a browser.

``collect_report(con)`` reads the documented views of a warehouse (``sweep_runs``,
``current_articles``, ``current_combinations``, ``current_combination_drugs``, ``combination_kb``,
``current_extractions``, ``current_extraction_errors``, ``ingest_errors``) through any DuckDB
connection and returns plain data; ``render_html(data)`` turns it into one HTML string.  The page
needs nothing at view time: CSS is inline, plots are matplotlib figures inlined as SVG, there is no
script, and the only URLs are PMID links a reader may follow.  Every text that came from PubMed or a
model (sentences, drug names, error reasons) is HTML-escaped.

Tolerant of what a warehouse does not have yet: an ingest-only warehouse (no sweep views), a sweep
without a KB (``--no-kb``: the KB is computed on the fly from the current combinations), rows
without a ``confidence`` column.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.answer import COMB, NEG, NO_COMB, POS, RETRYABLE_STATUSES
from schemas.answer import COMBINATION_LABELS as LABELS

LABEL_COLORS = {POS: "#2e7d32", COMB: "#1565c0", NEG: "#c62828", NO_COMB: "#9e9e9e", "MIXED": "#6a1b9a"}
_PMID = re.compile(r"^[0-9]{1,10}$")
PUBMED_URL = "https://pubmed.ncbi.nlm.nih.gov/{pmid}/"


@dataclass
class ReportData:
    warehouse: str
    generated_at: str
    totals: dict[str, int] = field(default_factory=dict)  # the headline numbers (data-key attributes)
    runs: list[dict[str, Any]] = field(default_factory=list)  # sweep_runs, oldest first
    labels: dict[str, int] = field(default_factory=dict)  # current combinations per label (+ NO_COMB)
    years: list[tuple[int | None, str, int]] = field(default_factory=list)  # (pub_year, label, n)
    top_sets: list[dict[str, Any]] = field(default_factory=list)
    kb_source: str = "combination_kb"  # or "computed" when the stored KB is empty
    has_confidence: bool = False
    partners: list[dict[str, Any]] = field(default_factory=list)
    error_reasons: list[tuple[str, str, int]] = field(default_factory=list)  # (stage, reason, n)
    # KB changes since a baseline (rows of jobs.kb_diff.diff_kb), filled by the caller; None: not computed
    changes: list[dict[str, Any]] | None = None
    changes_since: str = ""
    ingest_errors: list[tuple[str, int]] = field(default_factory=list)  # (stage, n)

    @property
    def empty(self) -> bool:
        return not self.runs and not self.totals.get("combinations")


# --------------------------------------------------------------------------------------------------
# collecting


def _relations(con) -> set[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    return {r[0] for r in rows}


def _columns(con, relation: str) -> set[str]:
    return {r[0] for r in con.execute(f'DESCRIBE "{relation}"').fetchall()}


def _retryable_list() -> str:
    # constants, never user input
    return ", ".join("'" + s.replace("'", "''") + "'" for s in sorted(RETRYABLE_STATUSES))


def _rows(con, sql: str, params: dict | None = None) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _scalar(con, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0] or 0)


def collect_report(
    con, *, warehouse: str = "", top_n: int = 20, n_examples: int = 3, n_partners: int = 20
) -> ReportData:
    """Everything the page shows, read from the warehouse views on ``con`` (read-only SQL)."""
    if top_n < 1 or n_examples < 1 or n_partners < 1:
        raise ValueError("top_n, n_examples and n_partners must be >= 1")
    have = _relations(con)
    data = ReportData(warehouse=warehouse, generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    if "current_articles" in have:
        data.totals["articles"] = _scalar(con, "SELECT count(*) FROM current_articles")
    if "ingest_errors" in have:
        data.ingest_errors = [
            (r["stage"], r["n"])
            for r in _rows(
                con, "SELECT stage, count(*) AS n FROM ingest_errors GROUP BY stage ORDER BY n DESC, stage"
            )
        ]
        data.totals["ingest_errors"] = sum(n for _, n in data.ingest_errors)
    if "sweep_runs" in have:
        data.runs = _runs(con)
        data.totals["runs"] = len(data.runs)
    if "current_combinations" not in have:
        return data
    data.totals["combinations"] = _scalar(con, "SELECT count(*) FROM current_combinations")
    data.labels = {
        r["label"]: r["n"]
        for r in _rows(con, "SELECT label, count(*) AS n FROM current_combinations GROUP BY label")
    }
    if "current_extractions" in have:
        # a final answer with no relation: the model read the sentence and found no combination
        data.labels[NO_COMB] = _scalar(
            con,
            f"""SELECT count(*) FROM current_extractions x
                WHERE x.parse_status IS NOT NULL AND x.parse_status NOT IN ({_retryable_list()})
                  AND coalesce(x.n_relations, 0) = 0""",
        )
    for label in data.labels:
        data.totals[f"label:{label}"] = data.labels[label]
    year_sql = """SELECT a.pub_year, c.label, count(*) AS n
                  FROM current_combinations c LEFT JOIN current_articles a USING (pmid, pmid_version)
                  GROUP BY ALL ORDER BY a.pub_year NULLS LAST, c.label"""
    if "current_articles" in have:
        data.years = [(r["pub_year"], r["label"], r["n"]) for r in _rows(con, year_sql)]
    data.top_sets, data.kb_source, data.has_confidence, n_sets = _top_sets(con, have, top_n, n_examples)
    data.totals["drug_sets"] = n_sets
    if "current_combination_drugs" in have:
        data.partners = _partners(con, n_partners)
    if "current_extraction_errors" in have:
        data.error_reasons = [
            (r["stage"], r["reason"], r["n"])
            for r in _rows(
                con,
                """SELECT stage, reason, count(*) AS n FROM current_extraction_errors
                   GROUP BY ALL ORDER BY n DESC, stage, reason LIMIT 50""",
            )
        ]
        data.totals["extraction_errors"] = _scalar(con, "SELECT count(*) FROM current_extraction_errors")
    return data


def _runs(con) -> list[dict[str, Any]]:
    runs = _rows(con, "SELECT * FROM sweep_runs ORDER BY started_at NULLS FIRST, run_id")
    for run in runs:
        run["stage_seconds"] = {s["stage"]: s["seconds"] for s in (run.get("stage_seconds") or [])}
    return runs


def _top_sets(con, have: set[str], top_n: int, n_examples: int) -> tuple[list[dict], str, bool, int]:
    """The drug sets with the most papers: stored KB rows, else the KB computed from the combinations."""
    source = "combination_kb"
    kb_rows: list[dict] = []
    n_sets = 0
    if "combination_kb" in have:
        n_sets = _scalar(con, "SELECT count(*) FROM combination_kb")
    if n_sets:
        kb_cols = _columns(con, "combination_kb")
        kb_rows = _rows(
            con,
            "SELECT * FROM combination_kb ORDER BY n_papers DESC, n_mentions DESC, drug_set_key LIMIT $n",
            {"n": top_n},
        )
    else:
        from etl.kb import build_kb

        kb = build_kb(con).to_pylist()
        n_sets, source = len(kb), "computed"
        kb_rows = kb[:top_n]
        kb_cols = set(kb[0]) if kb else set()
    combo_cols = _columns(con, "current_combinations")
    # a confidence column whose values are all null (rule-less engines, older rows) is no confidence
    has_conf = (
        "max_confidence" in kb_cols and any(r.get("max_confidence") is not None for r in kb_rows)
    ) or (
        "confidence" in combo_cols
        and bool(_scalar(con, "SELECT count(confidence) FROM current_combinations"))
    )
    if not kb_rows:
        return [], source, has_conf, n_sets
    keys = [r["drug_set_key"] for r in kb_rows]
    conf_expr = "c.confidence" if "confidence" in combo_cols else "NULL::DOUBLE"
    year_expr = "a.pub_year" if "current_articles" in have else "NULL::INTEGER"
    title_join = (
        "LEFT JOIN current_articles a USING (pmid, pmid_version)" if "current_articles" in have else ""
    )
    title_expr = "a.title" if "current_articles" in have else "NULL::VARCHAR"
    examples = _rows(
        con,
        f"""SELECT * FROM (
                SELECT c.drug_set_key, c.pmid, c.label, c.sentence_text, c.drugs, {conf_expr} AS confidence,
                       row_number() OVER (PARTITION BY c.drug_set_key
                                          ORDER BY {year_expr} DESC NULLS LAST, c.pmid, c.sentence_index,
                                                   c.relation_index) AS _rank
                FROM current_combinations c {title_join}
                WHERE list_contains($keys, c.drug_set_key)
            ) WHERE _rank <= $n ORDER BY drug_set_key, _rank""",
        {"keys": keys, "n": n_examples},
    )
    papers = _rows(
        con,
        f"""SELECT c.drug_set_key, c.pmid, any_value({title_expr}) AS title, any_value({year_expr}) AS pub_year,
                   list(DISTINCT c.label ORDER BY c.label) AS labels, avg({conf_expr}) AS confidence
            FROM current_combinations c {title_join}
            WHERE list_contains($keys, c.drug_set_key)
            GROUP BY c.drug_set_key, c.pmid ORDER BY c.drug_set_key, pub_year DESC NULLS LAST, c.pmid""",
        {"keys": keys},
    )
    set_conf = {}
    if "confidence" in combo_cols and "confidence" not in kb_cols:
        set_conf = {
            r["drug_set_key"]: r["confidence"]
            for r in _rows(
                con,
                """SELECT drug_set_key, avg(confidence) AS confidence FROM current_combinations
                   WHERE list_contains($keys, drug_set_key) GROUP BY drug_set_key""",
                {"keys": keys},
            )
        }
    out = []
    for row in kb_rows:
        key = row["drug_set_key"]
        out.append(
            {
                "drug_set_key": key,
                "member_names": row.get("member_names") or [],
                "member_ids": row.get("member_ids") or [],
                "consensus_label": row.get("consensus_label"),
                "consensus_share": row.get("consensus_share"),
                "confidence": row.get("confidence", set_conf.get(key)),
                "n_pos": row.get("n_pos"),
                "n_comb": row.get("n_comb"),
                "n_neg": row.get("n_neg"),
                "n_papers": row.get("n_papers"),
                "n_mentions": row.get("n_mentions"),
                "first_year": row.get("first_year"),
                "last_year": row.get("last_year"),
                "papers": [p for p in papers if p["drug_set_key"] == key],
                "examples": [e for e in examples if e["drug_set_key"] == key],
            }
        )
    return out, source, has_conf, n_sets


def _partners(con, limit: int) -> list[dict[str, Any]]:
    """Drugs with the most distinct combination partners (drugs they share a current drug set with)."""
    return _rows(
        con,
        """WITH m AS (
               SELECT DISTINCT drug_set_key, canonical_id, coalesce(preferred_name, surface) AS name
               FROM current_combination_drugs WHERE canonical_id IS NOT NULL AND drug_set_key IS NOT NULL
           )
           SELECT a.canonical_id, min(a.name) AS name, count(DISTINCT b.canonical_id) AS n_partners,
                  count(DISTINCT a.drug_set_key) AS n_sets,
                  list(DISTINCT b.name ORDER BY b.name)[1:8] AS some_partners
           FROM m a JOIN m b ON a.drug_set_key = b.drug_set_key AND a.canonical_id <> b.canonical_id
           GROUP BY a.canonical_id
           ORDER BY n_partners DESC, n_sets DESC, a.canonical_id LIMIT $n""",
        {"n": limit},
    )


# --------------------------------------------------------------------------------------------------
# plots (matplotlib -> inline SVG)


def _svg(fig) -> str:
    """A matplotlib figure as an inline ``<svg>`` element (no XML prolog, text kept as text)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "rexdrug-report"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def plot_stage_seconds(runs: list[dict[str, Any]]) -> str | None:
    if not runs:
        return None
    stages = []
    for run in runs:
        stages += [s for s in run["stage_seconds"] if s not in stages]
    fig, ax = _figure(8, 0.6 + 0.35 * len(runs))
    names = [_run_label(r) for r in runs]
    left = [0.0] * len(runs)
    cmap = __import__("matplotlib").colormaps["tab10"]
    for i, stage in enumerate(stages):
        values = [r["stage_seconds"].get(stage, 0.0) for r in runs]
        ax.barh(names, values, left=left, label=stage, color=cmap(i % 10))
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _svg(fig)


def plot_labels(labels: dict[str, int]) -> str | None:
    if not any(labels.values()):
        return None
    order = [lab for lab in (*LABELS, NO_COMB) if lab in labels] + sorted(set(labels) - {*LABELS, NO_COMB})
    fig, ax = _figure(4.5, 2.2)
    values = [labels[lab] for lab in order]
    bars = ax.bar(order, values, color=[LABEL_COLORS.get(lab, "#607d8b") for lab in order])
    ax.bar_label(bars, fontsize=8)
    ax.set_ylabel("count")
    return _svg(fig)


def plot_years(years: list[tuple[int | None, str, int]]) -> str | None:
    known = [(y, lab, n) for y, lab, n in years if y is not None]
    if not known:
        return None
    xs = sorted({y for y, _, _ in known})
    fig, ax = _figure(8, 2.8)
    bottom = dict.fromkeys(xs, 0)
    for label in [*LABELS, *sorted({lab for _, lab, _ in known} - set(LABELS))]:
        counts = {y: n for y, lab, n in known if lab == label}
        if not counts:
            continue
        values = [counts.get(x, 0) for x in xs]
        ax.bar(
            xs, values, bottom=[bottom[x] for x in xs], label=label, color=LABEL_COLORS.get(label, "#607d8b")
        )
        for x, v in zip(xs, values):
            bottom[x] += v
    ax.set_ylabel("combinations")
    ax.set_xlabel("publication year")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def _run_label(run: dict[str, Any]) -> str:
    started = run.get("started_at")
    when = started.strftime("%Y-%m-%d %H:%M") if hasattr(started, "strftime") else str(run.get("run_id"))
    return f"{when} ({run.get('status')})"


# --------------------------------------------------------------------------------------------------
# HTML


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def pmid_link(pmid: Any) -> str:
    text = "" if pmid is None else str(pmid)
    if not _PMID.match(text):
        return esc(text)  # not a PMID: shown, never made into a URL
    return f'<a href="{PUBMED_URL.format(pmid=text)}" rel="noopener noreferrer">PMID {text}</a>'


def highlight(text: str | None, drugs: list[dict[str, Any]] | None) -> str:
    """The sentence HTML-escaped, with each drug's span in ``<mark>`` (offsets, else the first whole-word match)."""
    text = text or ""
    spans: list[tuple[int, int]] = []
    for drug in drugs or []:
        start, end = drug.get("start"), drug.get("end")
        surface = drug.get("surface") or ""
        if start is not None and end is not None and 0 <= start < end <= len(text):
            spans.append((start, end))
        elif surface:  # not grounded: the first whole-word match ("c" is not the c of "script")
            found = re.search(rf"(?<!\w){re.escape(surface)}(?!\w)", text, flags=re.IGNORECASE)
            if found:
                spans.append(found.span())
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, pos = [], 0
    for start, end in merged:
        out.append(esc(text[pos:start]))
        out.append(f"<mark>{esc(text[start:end])}</mark>")
        pos = end
    out.append(esc(text[pos:]))
    return "".join(out)


def _num(key: str, value: Any) -> str:
    return f'<span class="num" data-key="{esc(key)}">{esc(value)}</span>'


def _fmt_float(value: Any, digits: int = 2) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


def _label_badge(label: Any) -> str:
    color = LABEL_COLORS.get(str(label), "#607d8b")
    return f'<span class="badge" style="background:{color}">{esc(label)}</span>'


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#263238;color:#fff;padding:16px 28px}header h1{margin:0;font-size:1.4em}
header p{margin:4px 0 0;color:#cfd8dc;font-size:.9em}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:12px 18px;margin:16px 0}
h2{font-size:1.15em;margin:4px 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:10px 16px;min-width:120px}
.card .num{font-size:1.6em;font-weight:600;display:block}.card small{color:#616161}
table{border-collapse:collapse;width:100%;font-size:.88em}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
mark{background:#fff59d;padding:0 1px;border-radius:2px}
.badge{color:#fff;border-radius:3px;padding:1px 6px;font-size:.8em;font-weight:600}
.set{border-top:1px solid #eee;padding:10px 0}.set h3{margin:0 0 4px;font-size:1em}
.meta{color:#555;font-size:.85em}.empty{color:#616161;font-style:italic}
ul.examples li{margin:4px 0}ul.papers{columns:2;font-size:.85em}
svg{max-width:100%;height:auto}.scroll{overflow-x:auto}
code{background:#f1f1f1;padding:0 3px;border-radius:3px}
"""


def render_html(data: ReportData) -> str:
    """The whole page as one string (UTF-8, no external resources, no script)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # nothing may load from anywhere: the page is complete as it is
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        f"<title>rexdrug report: {esc(data.warehouse)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>rexdrug warehouse report</h1><p>{esc(data.warehouse)} &middot; generated {esc(data.generated_at)}</p></header>",
        "<main>",
        _cards(data),
    ]
    if data.empty:
        parts.append(
            '<section id="empty"><h2>Nothing extracted yet</h2><p class="empty">This warehouse has no sweep runs '
            "and no drug combinations yet. Run <code>rexdrug sweep --warehouse "
            f"{esc(data.warehouse or 'W')} ...</code> and render the report again.</p></section>"
        )
    else:
        parts += [
            _runs_section(data),
            _changes_section(data),
            _labels_section(data),
            _years_section(data),
            _top_sets_section(data),
            _partners_section(data),
            _errors_section(data),
        ]
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _cards(data: ReportData) -> str:
    shown = [
        ("runs", "sweep runs"),
        ("articles", "current articles"),
        ("combinations", "current combinations"),
        ("drug_sets", "drug sets"),
        ("extraction_errors", "extraction errors"),
        ("ingest_errors", "ingest errors"),
    ]
    cards = [
        f'<div class="card">{_num(key, data.totals[key])}<small>{esc(title)}</small></div>'
        for key, title in shown
        if key in data.totals
    ]
    return f'<section id="totals"><h2>At a glance</h2><div class="cards">{"".join(cards)}</div></section>'


def _runs_section(data: ReportData) -> str:
    if not data.runs:
        return '<section id="runs"><h2>Run history</h2><p class="empty">No sweep runs recorded.</p></section>'
    stages = []
    for run in data.runs:
        stages += [s for s in run["stage_seconds"] if s not in stages]
    head = "".join(
        f"<th>{esc(h)}</th>"
        for h in (
            "run",
            "started (UTC)",
            "status",
            "source",
            "window",
            "model",
            "articles",
            "filtered out",
            "candidates",
            "extracted",
            "combinations",
            "errors",
            "failed",
        )
    )
    head += "".join(f"<th>{esc(s)} s</th>" for s in stages)
    rows = []
    for run in data.runs:
        started = run.get("started_at")
        cells = [
            f"<td><code>{esc(run.get('run_id'))}</code></td>",
            f"<td>{esc(started.strftime('%Y-%m-%d %H:%M:%S') if hasattr(started, 'strftime') else started)}</td>",
            f"<td>{esc(run.get('status'))}</td>",
            f"<td>{esc(run.get('source'))}</td>",
            f"<td>{_window(run)}</td>",
            f"<td>{esc(run.get('model_id'))}</td>",
            *(
                f'<td class="n" data-run="{esc(run.get("run_id"))}" data-col="{col}">{esc(run.get(col))}</td>'
                for col in (
                    "n_articles",
                    "n_filtered",
                    "n_candidates",
                    "n_extracted",
                    "n_combinations",
                    "n_errors",
                    "n_failed",
                )
            ),
            *(f'<td class="n">{_fmt_float(run["stage_seconds"].get(s), 1)}</td>' for s in stages),
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    plot = plot_stage_seconds(data.runs) or ""
    return (
        f'<section id="runs"><h2>Run history</h2><div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div><h3>Seconds per stage</h3>{plot}</section>"
    )


def _window(run: dict[str, Any]) -> str:
    """The E-utilities window of a run (older ledgers have no such columns)."""
    since, until = run.get("window_since"), run.get("window_until")
    return f"{esc(since)} &ndash; {esc(until)}" if since or until else ""


def _changes_section(data: ReportData, limit: int = 40) -> str:
    if data.changes is None:
        return ""
    counts = {kind: sum(c["change"] == kind for c in data.changes) for kind in ("new", "changed", "removed")}
    summary = ", ".join(f"{_num('changes:' + kind, n)} {kind}" for kind, n in counts.items())
    head = f'<section id="changes"><h2>What changed</h2><p class="meta">Since {esc(data.changes_since)}: {summary} drug set(s).</p>'
    if not data.changes:
        return head + '<p class="empty">No drug set is new, changed or gone.</p></section>'
    rows = []
    for c in data.changes[:limit]:
        names = " + ".join(esc(n) for n in c.get("member_names") or []) or esc(c["drug_set_key"])
        label = _label_badge(c["consensus_label"]) if c["consensus_label"] else ""
        if c["change"] == "changed" and c.get("label_changed"):
            label = f"{_label_badge(c['previous_label'])} &rarr; {label}"
        elif c["change"] == "removed":
            label = _label_badge(c["previous_label"])
        papers = " ".join(pmid_link(p) for p in c.get("added_pmids") or [])
        gone = " ".join(esc(p) for p in c.get("removed_pmids") or [])
        rows.append(
            f"<tr><td>{esc(c['change'])}</td><td>{names}</td><td>{label}</td>"
            f'<td class="n">{esc(c["previous_n_papers"])} &rarr; {esc(c["n_papers"])}</td>'
            f"<td>{papers}{' removed: ' + gone if gone else ''}</td></tr>"
        )
    more = (
        f'<p class="meta">and {len(data.changes) - limit} more (rexdrug kb diff).</p>'
        if len(data.changes) > limit
        else ""
    )
    return (
        head + "<table><thead><tr><th>change</th><th>drug set</th><th>consensus</th><th>papers</th>"
        f"<th>new papers</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{more}</section>"
    )


def _labels_section(data: ReportData) -> str:
    rows = "".join(
        f'<tr><td>{_label_badge(lab)}</td><td class="n">{_num("label:" + lab, n)}</td></tr>'
        for lab, n in sorted(data.labels.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    note = (
        '<p class="meta">POS, COMB, NEG: current combinations by label. NO_COMB: sentences the model read '
        "and found no combination in.</p>"
    )
    return (
        f'<section id="labels"><h2>Label distribution</h2>{note}<table><tbody>{rows}</tbody></table>'
        f"{plot_labels(data.labels) or ''}</section>"
    )


def _years_section(data: ReportData) -> str:
    unknown = sum(n for y, _, n in data.years if y is None)
    plot = plot_years(data.years)
    body = plot or '<p class="empty">No combination comes from an article with a publication year.</p>'
    note = (
        f'<p class="meta">{_num("year:unknown", unknown)} combination(s) from articles without a publication year.</p>'
        if unknown
        else ""
    )
    return f'<section id="years"><h2>Combinations per publication year</h2>{body}{note}</section>'


def _top_sets_section(data: ReportData) -> str:
    if not data.top_sets:
        return '<section id="top-sets"><h2>Top drug sets by evidence</h2><p class="empty">No drug sets.</p></section>'
    source = (
        ""
        if data.kb_source == "combination_kb"
        else '<p class="meta">The stored knowledge base is empty (sweep run with --no-kb?); these sets are '
        "computed from the current combinations.</p>"
    )
    blocks = []
    for rank, s in enumerate(data.top_sets, 1):
        names = " + ".join(esc(n) for n in s["member_names"]) or esc(s["drug_set_key"])
        conf = (
            f' &middot; confidence <span data-key="confidence">{_fmt_float(s["confidence"])}</span>'
            if data.has_confidence and s.get("confidence") is not None
            else ""
        )
        years = ""
        if s.get("first_year") is not None:
            years = f" &middot; {esc(s['first_year'])}&ndash;{esc(s['last_year'])}"
        papers = "".join(
            f"<li>{pmid_link(p['pmid'])} {esc(p.get('pub_year') or '')} {esc(p.get('title') or '')} "
            f"{' '.join(_label_badge(lab) for lab in p.get('labels') or [])}</li>"
            for p in s["papers"]
        )
        examples = "".join(
            f"<li>{_label_badge(e['label'])} {highlight(e['sentence_text'], e.get('drugs'))} "
            f'<span class="meta">({pmid_link(e["pmid"])})</span></li>'
            for e in s["examples"]
        )
        blocks.append(
            f'<div class="set" data-set="{esc(s["drug_set_key"])}"><h3>{rank}. {names} {_label_badge(s["consensus_label"])}</h3>'
            f'<div class="meta">{_num("set_papers", s["n_papers"])} paper(s), {esc(s["n_mentions"])} mention(s) '
            f"(POS {esc(s['n_pos'])}, COMB {esc(s['n_comb'])}, NEG {esc(s['n_neg'])}) &middot; consensus share "
            f"{_fmt_float(s['consensus_share'])}{conf}{years} &middot; <code>{esc(s['drug_set_key'])}</code></div>"
            f'<ul class="examples">{examples}</ul><ul class="papers">{papers}</ul></div>'
        )
    return f'<section id="top-sets"><h2>Top drug sets by evidence</h2>{source}{"".join(blocks)}</section>'


def _partners_section(data: ReportData) -> str:
    if not data.partners:
        return '<section id="partners"><h2>Drugs with the most combination partners</h2><p class="empty">None.</p></section>'
    rows = "".join(
        f"<tr><td>{esc(p['name'])}</td><td><code>{esc(p['canonical_id'])}</code></td>"
        f'<td class="n">{esc(p["n_partners"])}</td><td class="n">{esc(p["n_sets"])}</td>'
        f"<td>{esc(', '.join(p['some_partners'] or []))}</td></tr>"
        for p in data.partners
    )
    head = "<tr><th>drug</th><th>id</th><th>partners</th><th>drug sets</th><th>some partners</th></tr>"
    return (
        f'<section id="partners"><h2>Drugs with the most combination partners</h2>'
        f"<table><thead>{head}</thead><tbody>{rows}</tbody></table></section>"
    )


def _errors_section(data: ReportData) -> str:
    if data.error_reasons:
        rows = "".join(
            f'<tr><td>{esc(stage)}</td><td>{esc(reason)}</td><td class="n">{esc(n)}</td></tr>'
            for stage, reason, n in data.error_reasons
        )
        body = f"<table><thead><tr><th>stage</th><th>reason</th><th>count</th></tr></thead><tbody>{rows}</tbody></table>"
    else:
        body = '<p class="empty">No extraction errors in the current rows.</p>'
    ingest = ""
    if data.ingest_errors:
        ingest = (
            '<p class="meta">Ingest errors by stage: '
            + ", ".join(f"{esc(stage)} {esc(n)}" for stage, n in data.ingest_errors)
            + "</p>"
        )
    return f'<section id="errors"><h2>Extraction error reasons</h2>{body}{ingest}</section>'
