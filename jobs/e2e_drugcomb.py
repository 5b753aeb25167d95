"""End-to-end quality check: the whole sweep over the DrugComb test abstracts, scored against gold.

    python -m jobs.e2e_drugcomb --warehouse /tmp/e2e [--limit N] [--engine KIND] [key=value ...]

Turns the DrugComb test records into PubMed XML (``etl.drugcomb_xml``), runs ``rexdrug sweep`` over
it, maps each gold sentence to the sweep's sentences that overlap it in the abstract, turns their
extracted relations into official-format predictions (drug names resolved to gold span ids by offset,
else by name — the scorer's own ``prediction_rows``) and scores them with the official scorer.  The
same engine is also run model-only on the gold sentences (``rexdrug eval``'s path) so both numbers
stand side by side, with the share of gold relations lost before the model (sentence split, drug
matcher, candidate selection).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class GoldLocation:
    """Where a gold sentence sits in the warehouse abstract, and the sweep sentences covering it."""

    start: int | None
    end: int | None
    sentences: list[dict[str, Any]] = field(default_factory=list)


def locate(sentence: str, abstract: str | None) -> tuple[int | None, int | None]:
    if not abstract:
        return None, None
    pos = abstract.find(sentence)
    return (pos, pos + len(sentence)) if pos >= 0 else (None, None)


def covering_sentences(loc_start: int, loc_end: int, sentences: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in sentences if s["start"] < loc_end and loc_start < s["end"]]


def relations_in_gold_frame(
    sentence_row: dict[str, Any], relations: list[dict[str, Any]], gold_start: int, gold_len: int
) -> list[dict[str, Any]]:
    """Re-express drug offsets (relative to a sweep sentence) relative to the gold sentence."""
    out = []
    for rel in relations or []:
        drugs = []
        for d in rel.get("drugs") or []:
            start = end = None
            if d.get("start") is not None and d.get("end") is not None:
                start = sentence_row["start"] + d["start"] - gold_start
                end = sentence_row["start"] + d["end"] - gold_start
                if start < 0 or end > gold_len:
                    start = end = None  # outside the gold sentence: resolve by name instead
            drugs.append({"name": d.get("name"), "start": start, "end": end})
        out.append({"label": rel.get("label"), "drugs": drugs})
    return out


def loss_before_model(record: dict[str, Any], loc: GoldLocation) -> str | None:
    """Why a gold relation of this record could not reach the model, or None if it could."""
    if loc.start is None:
        return "sentence_not_found"
    if not loc.sentences:
        return "sentence_not_split"
    if not any(s["is_candidate"] for s in loc.sentences):
        # our splitter cut the gold sentence and no part holds two drugs on its own
        return "sentence_split" if len(loc.sentences) > 1 else "not_candidate"
    found = set()
    for s in loc.sentences:
        for m in s["mentions"] or []:
            a, b = s["start"] + m["start"] - loc.start, s["start"] + m["end"] - loc.start
            found.update(sp["span_id"] for sp in record["spans"] if sp["start"] < b and a < sp["end"])
    needed = {i for rel in record.get("rels", []) for i in rel["spans"]}
    if not needed <= found:
        return "drug_not_matched"
    return None


def score_warehouse(
    warehouse: Path, records: list[dict[str, Any]], model_id: str, prompt_version: str
) -> dict[str, Any]:
    """Official scores of the sweep's combinations for the given DrugComb records."""
    from etl.drugcomb_xml import pmid_of
    from etl.warehouse import connect_readonly
    from model.evaluation.drugcomb import (
        gold_relations,
        prediction_rows,
        relations_from_official,
        score_official,
    )

    pmids = sorted({pmid_of(r) for r in records})
    with connect_readonly(warehouse) as con:
        abstracts = dict(
            con.execute(
                "SELECT pmid, abstract FROM current_articles WHERE pmid IN (SELECT unnest($p))", {"p": pmids}
            ).fetchall()
        )
        sentence_rows = (
            con.sql(
                """SELECT s.pmid, s.start, s."end", s.text, s.text_hash, s.is_candidate, s.mentions, e.relations
               FROM current_sentences s
               LEFT JOIN current_extractions e
                 ON e.pmid = s.pmid AND e.pmid_version = s.pmid_version AND e.text_hash = s.text_hash
                AND e.model_id = $m AND e.prompt_version = $p
               WHERE s.pmid IN (SELECT unnest($pmids)) ORDER BY s.pmid, s.start""",
                params={"m": model_id, "p": prompt_version, "pmids": pmids},
            )
            .to_arrow_table()
            .to_pylist()
        )
    by_pmid: dict[str, list[dict[str, Any]]] = {}
    for row in sentence_rows:
        by_pmid.setdefault(row["pmid"], []).append(row)

    gold, pred_rows, losses, problems = [], [], {}, []
    n_gold = 0
    for record in records:
        pmid = pmid_of(record)
        start, end = locate(record["sentence"], abstracts.get(pmid))
        loc = GoldLocation(
            start, end, covering_sentences(start, end, by_pmid.get(pmid, [])) if start is not None else []
        )
        rels = gold_relations(record)
        gold.extend(rels)
        n_gold += len(rels)
        reason = loss_before_model(record, loc)
        if reason and rels:
            losses[reason] = losses.get(reason, 0) + len(rels)
        relations = [
            r
            for s in loc.sentences
            for r in relations_in_gold_frame(s, s["relations"], loc.start, len(record["sentence"]))
        ]
        rows, probs = prediction_rows(record, relations)
        pred_rows.extend(rows)
        problems.extend(probs)
    scores = score_official(gold, relations_from_official(pred_rows, source="pipeline"))
    lost = sum(losses.values())
    return {
        "official": scores,
        "n_records": len(records),
        "n_gold_relations": n_gold,
        "gold_relations_lost_before_model": lost,
        "share_lost_before_model": lost / n_gold if n_gold else 0.0,
        "loss_reasons": losses,
        "n_prediction_problems": len(problems),
    }


def model_only_scores(records: list[dict[str, Any]], engine_cfg, prompt_cfg) -> dict[str, Any]:
    """The same engine and prompt on the gold sentences directly (what ``rexdrug eval`` reports)."""
    from etl.drugs import default_matcher
    from model.engines import create_engine
    from model.evaluation.run import evaluate_drugcomb
    from model.extraction import ExtractionRunner

    matcher = default_matcher()
    engine = create_engine(engine_cfg, matcher=matcher)
    try:
        runner = ExtractionRunner(engine, prompt_cfg, matcher=matcher, sampling=engine_cfg.sampling)
        summary = evaluate_drugcomb(records, runner, progress=False).summary
    finally:
        engine.close()
    return {"official": summary["official_detail"], "parse_failure_rate": summary["parse_failure_rate"]}


def run_e2e(
    records: list[dict[str, Any]],
    warehouse: Path,
    overrides: list[str],
    *,
    model_only: bool = False,
    spark=None,
) -> dict[str, Any]:
    """Sweep the records' abstracts into ``warehouse`` and score the combinations against gold."""
    from etl.config import load_config
    from etl.drugcomb_xml import write_pubmed_xml
    from jobs.sweep import SweepConfig, resolve_model_identity, run_sweep

    xml = Path(warehouse) / "input" / "drugcomb_test.xml.gz"
    write_pubmed_xml(records, xml)
    config = load_config(
        SweepConfig,
        None,
        [
            f"warehouse={warehouse}",
            "source=files",
            f"inputs=[{json.dumps(str(xml))}]",
            "build_kb=false",
            *overrides,
        ],
    )
    summary = run_sweep(config, spark=spark)
    model_id, prompt_ver = resolve_model_identity(config.engine, config.prompt)
    result = {
        "pipeline": score_warehouse(Path(warehouse), records, model_id, prompt_ver),
        "sweep": summary.as_dict(),
    }
    if model_only:
        result["model_only"] = model_only_scores(records, config.engine, config.prompt)
    return result


def main(argv: list[str] | None = None) -> int:
    from etl.paths import data_path
    from jobs.cli import configure_logging
    from model.evaluation.drugcomb import read_jsonl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="first N test records only")
    parser.add_argument("--engine", default="transformers", help="engine kind (see rexdrug eval)")
    parser.add_argument("--model-only", action="store_true", help="also run the model-only evaluation")
    parser.add_argument("overrides", nargs="*", help="SweepConfig overrides key=value")
    args = parser.parse_args(argv)
    configure_logging(0)
    records = read_jsonl(data_path("drugcomb", "final_test_set.jsonl"))[: args.limit]
    result = run_e2e(
        records, args.warehouse, [f"engine.kind={args.engine}", *args.overrides], model_only=args.model_only
    )
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
