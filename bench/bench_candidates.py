"""Candidate selection on real and gold data: how many sentences go to the model, and what they are.

    .venv/bin/python bench/bench_candidates.py [--list] [--json]

  * demo: the two bundled 2026 NLM sample files the `make demo` sweep reads (latest version of each
    record, deleted records dropped): sentences, candidates, and with ``--list`` every candidate sentence
    with its drug-kind mentions (what the model would be asked about);
  * DrugComb train/test: the share of gold sentences holding a combination (POS/COMB/NEG) that are still
    candidates when the gold sentence is read in its paragraph as the sweep reads it (abbreviations the
    paragraph defines hold in the sentence).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402

from etl.paths import data_path  # noqa: E402

DEMO_FILES = (
    ("pubmed", "pmparser", "tests", "testthat", "pubmed_sample", "baseline", "pubmed26n1334.xml.gz"),
    ("pubmed", "pmparser", "tests", "testthat", "pubmed_sample", "updatefiles", "pubmed26n1335.xml.gz"),
)


def demo_articles() -> pa.Table:
    """The articles the demo sweep holds as current: latest version per pmid, deletions applied."""
    from etl.pubmed.parser import parse_to_tables

    latest: dict[str, dict] = {}
    for parts in DEMO_FILES:
        path = data_path(*parts)
        tables = parse_to_tables(str(path), path.name)
        for row in tables["articles"].select(["pmid", "pmid_version", "abstract", "chemicals"]).to_pylist():
            latest[row["pmid"]] = row
        for row in tables["deletions"].to_pylist():
            latest.pop(row["pmid"], None)
    rows = [latest[p] for p in sorted(latest)]
    return pa.Table.from_pylist(rows).cast(pa.schema([
        ("pmid", pa.string()), ("pmid_version", pa.int32()), ("abstract", pa.string()),
        ("chemicals", pa.Table.from_pylist(rows).schema.field("chemicals").type)]))


def demo(matcher, listing: bool) -> dict:
    from etl.candidates import sentence_table

    arts = demo_articles()
    sents = sentence_table(arts, matcher=matcher).to_pylist()
    cands = [s for s in sents if s["is_candidate"]]
    out = {"articles": arts.num_rows, "sentences": len(sents), "candidates": len(cands),
           "articles_with_a_candidate": len({s["pmid"] for s in cands})}
    if listing:
        out["candidate_sentences"] = [
            {"pmid": s["pmid"], "sentence_index": s["sentence_index"],
             "mentions": [f"{m['surface']} -> {m['preferred_name']} [{m.get('kind', '?')}]" for m in s["mentions"]],
             "text": s["text"][:200]}
            for s in cands
        ]
    return out


def drugcomb_gold_recall(matcher, split: str) -> dict:
    """Share of gold combination sentences (a POS/COMB/NEG relation) that are candidates, and share of
    all gold sentences that are (the model's load on the pre-selected set)."""
    from etl.candidates import candidate_decision

    path = data_path("drugcomb", f"final_{split}_set.jsonl")
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    n_comb = n_comb_kept = n_kept = 0
    for rec in recs:
        para, sent = rec["paragraph"], rec["sentence"]
        defs = matcher.abbreviations(para) if para else {}
        foreign = matcher.foreign_short_forms(para) - defs.keys() if para else set()
        mentions = matcher.find(sent, abbreviations=defs, foreign=foreign)
        cand = candidate_decision(mentions, matcher).is_candidate
        n_kept += cand
        if rec["rels"]:
            n_comb += 1
            n_comb_kept += cand
    return {"sentences": len(recs), "candidate_share": round(n_kept / max(len(recs), 1), 4),
            "combination_sentences": n_comb, "combination_sentences_kept": n_comb_kept,
            "combination_recall": round(n_comb_kept / max(n_comb, 1), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the demo's candidate sentences")
    ap.add_argument("--kb", default=None, help="KB artifact folder (default: the committed etl/drugs/kb/)")
    args = ap.parse_args(argv)
    from etl.drugs import DrugKB, DrugMatcher

    matcher = DrugMatcher(DrugKB.load(args.kb))
    report = {"demo": demo(matcher, args.list)}
    for split in ("train", "test"):
        report[f"drugcomb_{split}"] = drugcomb_gold_recall(matcher, split)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
