"""The drug-combination knowledge base: one row per drug set, built with SQL over the warehouse.

Input is any DuckDB connection that has the ``current_combinations`` and ``current_articles``
relations (the warehouse database, or test tables registered on an in-memory connection).  Only
current articles count: a deleted or superseded article's combinations drop out of the KB, while the
history tables keep them.

Confidence: a combination row counts only when it passes the minimum confidence
(``min_confidence_sql``, the one filter; ``SweepConfig.min_confidence`` is its default).  0 keeps
every row, including rows without a confidence (engines that report none); above 0 a row needs a
known confidence at least that high.  ``max_confidence``/``mean_confidence`` summarise the kept rows.

Ranking by evidence (``evidence_rank``, 1 = best supported; also the table's row order): more
independent papers first, then more distinct sentences, then higher mean confidence (rows without
one last), then higher label agreement (``consensus_share``), then the drug-set key so the order
is deterministic.  Papers lead because a drug set several groups report is the strongest evidence
a curator has; confidence then orders sets with the same support.

The interactions section (``build_interaction_kb``, the ``interaction_kb`` table): one row per drug pair
of ``current_interactions`` (the sweep's ``interactions`` task), with the same filters, the same minimum
confidence, the same example order and the same ranking (majority share in place of label agreement).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pyarrow as pa

from schemas.kb import COMBINATION_KB, INTERACTION_KB, INTERACTION_TYPE_COUNTS

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("parquet", "csv", "jsonl")


def validate_min_confidence(value: float) -> float:
    """A minimum confidence is a number in [0, 1] (configuration error otherwise)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(f"min_confidence must be a number in [0, 1], got {value!r}")
    return float(value)


def min_confidence_sql(column: str = "confidence") -> str:
    """The minimum-confidence filter over combination rows, as a SQL condition on ``$min_confidence``.

    The one place the threshold's meaning lives: 0 keeps everything (rows without a confidence too),
    a threshold above 0 keeps rows whose known confidence reaches it.
    """
    return f"({column} >= $min_confidence OR ($min_confidence <= 0 AND {column} IS NULL))"


def _kept_rows_sql(view: str, alias: str) -> str:
    """The rows of a current relation view that count (model, prompt version and minimum-confidence
    filters), with their article's year: what both KB sections aggregate."""
    return f"""
    SELECT {alias}.*, a.pub_year
    FROM {view} {alias}
    LEFT JOIN current_articles a USING (pmid, pmid_version)
    WHERE ($model_id IS NULL OR {alias}.model_id = $model_id)
      AND ($prompt_version IS NULL OR {alias}.prompt_version = $prompt_version)
      AND {min_confidence_sql(f"{alias}.confidence")}
"""


def _evidence_sql(label: str) -> str:
    """The aggregates both KB sections keep per entry (``label``: the rows' label column): papers,
    sentences, rows, confidences, years, examples in a total order, models."""
    return f"""
           count(DISTINCT pmid) AS n_papers,
           count(DISTINCT pmid || '#' || sentence_index) AS n_sentences,
           count(*) AS n_mentions,
           max(confidence) AS max_confidence,
           -- Kahan-summed: avg()'s plain sum depends on the order rows arrive in (cluster vs local runs)
           CASE WHEN count(confidence) > 0 THEN fsum(confidence) / count(confidence) END AS mean_confidence,
           list(DISTINCT pmid ORDER BY pmid) AS pmids,
           min(pub_year)::INTEGER AS first_year,
           max(pub_year)::INTEGER AS last_year,
           list({{'pmid': pmid, 'label': {label}, 'sentence': sentence_text}}
                ORDER BY pub_year DESC NULLS LAST, pmid, sentence_index, {label}, sentence_text)[1:$n_examples]
                AS example_sentences,
           list(DISTINCT model_id ORDER BY model_id) AS model_ids"""


# Label precedence only breaks exact ties deterministically; a tie between POS and NEG is "MIXED".
_KB_SQL = (
    """
WITH combos AS ("""
    + _kept_rows_sql("current_combinations", "c")
    + """),
members AS (
    SELECT drug_set_key,
           d.canonical_id AS member_id,
           min(coalesce(d.preferred_name, d.surface)) AS member_name,
           bool_or(coalesce(d.is_class, false)) AS is_class
    FROM combos, UNNEST(drugs) AS t(d)
    GROUP BY drug_set_key, d.canonical_id
),
member_lists AS (
    SELECT drug_set_key,
           list(member_id ORDER BY member_id) AS member_ids,
           list(member_name ORDER BY member_id) AS member_names,
           bool_or(is_class) AS has_class_member
    FROM members GROUP BY drug_set_key
),
stats AS (
    SELECT drug_set_key,
           count(*) FILTER (WHERE label = 'POS') AS n_pos,
           count(*) FILTER (WHERE label = 'COMB') AS n_comb,
           count(*) FILTER (WHERE label = 'NEG') AS n_neg,"""
    + _evidence_sql("label")
    + """
    FROM combos GROUP BY drug_set_key
)
SELECT *, row_number() OVER (ORDER BY n_papers DESC, n_sentences DESC, mean_confidence DESC NULLS LAST,
                              consensus_share DESC, drug_set_key) AS evidence_rank
FROM (
SELECT s.drug_set_key,
       m.member_ids, m.member_names,
       len(m.member_ids)::INTEGER AS n_members,
       m.has_class_member,
       s.n_pos, s.n_comb, s.n_neg,
       CASE
         WHEN s.n_pos > s.n_comb AND s.n_pos > s.n_neg THEN 'POS'
         WHEN s.n_neg > s.n_pos AND s.n_neg > s.n_comb THEN 'NEG'
         WHEN s.n_comb > s.n_pos AND s.n_comb > s.n_neg THEN 'COMB'
         WHEN s.n_pos = s.n_neg AND s.n_pos > 0 THEN 'MIXED'
         WHEN s.n_pos >= s.n_comb AND s.n_pos > 0 THEN 'POS'
         ELSE 'NEG'
       END AS consensus_label,
       greatest(s.n_pos, s.n_comb, s.n_neg) / s.n_mentions::DOUBLE AS consensus_share,
       s.n_papers, s.n_sentences, s.n_mentions, s.pmids, s.first_year, s.last_year,
       s.example_sentences, s.model_ids, s.max_confidence, s.mean_confidence
FROM stats s JOIN member_lists m USING (drug_set_key)
)
ORDER BY evidence_rank
"""
)


def build_kb(
    con,
    *,
    model_id: str | None = None,
    prompt_version: str | None = None,
    n_examples: int = 3,
    min_confidence: float = 0.0,
) -> pa.Table:
    """Compute the KB table from ``current_combinations`` x ``current_articles`` on ``con``, counting
    only combination rows that pass ``min_confidence`` (``min_confidence_sql``), ranked by evidence."""
    params = _params(model_id, prompt_version, n_examples, min_confidence)
    result = con.sql(_KB_SQL, params=params).to_arrow_table()
    return pa.Table.from_pylist(result.to_pylist(), schema=COMBINATION_KB)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _majority_type_sql() -> str:
    """CASE picking the most frequent DDI type; a tie goes to the type first in ``DDI_LABELS``."""
    counts = list(INTERACTION_TYPE_COUNTS.items())
    whens = []
    for i, (label, column) in enumerate(counts):
        later = [c for _, c in counts[i + 1 :]]
        condition = " AND ".join(f"s.{column} >= s.{c}" for c in later) or "true"
        whens.append(f"WHEN {condition} THEN {_sql_text(label)}")
    return "CASE " + " ".join(whens) + " END"


# The labels are constants of schemas.answer, written into the SQL once here.
_INTERACTION_KB_SQL = (
    """
WITH pairs AS ("""
    + _kept_rows_sql("current_interactions", "i")
    + """),
stats AS (
    SELECT pair_key,
           min(drug_a.canonical_id) AS drug_a_id,
           min(coalesce(drug_a.preferred_name, drug_a.surface)) AS drug_a_name,
           min(drug_b.canonical_id) AS drug_b_id,
           min(coalesce(drug_b.preferred_name, drug_b.surface)) AS drug_b_name,
           bool_or(coalesce(drug_a.is_class, false) OR coalesce(drug_b.is_class, false)) AS has_class_member,
           """
    + ", ".join(
        f"count(*) FILTER (WHERE interaction_type = {_sql_text(label)}) AS {column}"
        for label, column in INTERACTION_TYPE_COUNTS.items()
    )
    + ","
    + _evidence_sql("interaction_type")
    + """
    FROM pairs GROUP BY pair_key
)
SELECT *, row_number() OVER (ORDER BY n_papers DESC, n_sentences DESC, mean_confidence DESC NULLS LAST,
                              majority_share DESC, pair_key) AS evidence_rank
FROM (
SELECT s.pair_key, s.drug_a_id, s.drug_a_name, s.drug_b_id, s.drug_b_name, s.has_class_member,
       """
    + ", ".join(f"s.{column}" for column in INTERACTION_TYPE_COUNTS.values())
    + """,
       """
    + _majority_type_sql()
    + """ AS majority_type,
       greatest("""
    + ", ".join(f"s.{column}" for column in INTERACTION_TYPE_COUNTS.values())
    + """) / s.n_mentions::DOUBLE AS majority_share,
       s.n_papers, s.n_sentences, s.n_mentions, s.pmids, s.first_year, s.last_year,
       s.example_sentences, s.model_ids, s.max_confidence, s.mean_confidence
FROM stats s
)
ORDER BY evidence_rank
"""
)


def _params(model_id, prompt_version, n_examples: int, min_confidence: float) -> dict:
    if n_examples < 1:
        raise ValueError("n_examples must be >= 1")
    return {
        "model_id": model_id,
        "prompt_version": prompt_version,
        "n_examples": n_examples,
        "min_confidence": validate_min_confidence(min_confidence),
    }


def build_interaction_kb(
    con,
    *,
    model_id: str | None = None,
    prompt_version: str | None = None,
    n_examples: int = 3,
    min_confidence: float = 0.0,
) -> pa.Table:
    """The KB's interactions section from ``current_interactions`` x ``current_articles`` on ``con``: one
    row per drug pair, counting only interaction rows that pass ``min_confidence``, ranked by evidence."""
    params = _params(model_id, prompt_version, n_examples, min_confidence)
    result = con.sql(_INTERACTION_KB_SQL, params=params).to_arrow_table()
    return pa.Table.from_pylist(result.to_pylist(), schema=INTERACTION_KB)


def interactions_export_path(path: Path) -> Path:
    """Where an export of the KB to ``path`` writes its interactions section: ``kb.csv`` ->
    ``kb.interactions.csv`` (one table per file, whatever the format)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.interactions{path.suffix}")


def export_kb(table: pa.Table, path: Path, fmt: str) -> Path:
    """Write the KB as Parquet, CSV (lists as JSON text) or JSON lines; atomic (temp + fsync + rename)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    from etl.warehouse import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:  # a unique temp name: concurrent exports never share one
        _write_kb(table, tmp, fmt)
    log.info("wrote %d rows to %s", table.num_rows, path)
    return path


def _write_kb(table: pa.Table, tmp: Path, fmt: str) -> None:
    import json

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        pq.write_table(table, tmp)
    elif fmt == "jsonl":
        with tmp.open("w", encoding="utf-8") as fh:
            for row in table.to_pylist():
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        flat = {
            name: (
                [json.dumps(v, ensure_ascii=False) for v in table.column(name).to_pylist()]
                if pa.types.is_list(table.schema.field(name).type)
                else table.column(name)
            )
            for name in table.column_names
        }
        pacsv.write_csv(pa.table(flat), tmp)
