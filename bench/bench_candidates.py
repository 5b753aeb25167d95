"""Candidate selection on real and gold data: how many sentences go to the model, and what they are.

  .venv/bin/python bench/bench_candidates.py [--list] [--json]

* demo: the two bundled 2026 NLM sample files the `make demo` sweep reads (latest version of each
  record, deleted records dropped): sentences, candidates, and with ``--list`` every candidate sentence
  with its drug-kind mentions (what the model would be asked about);
* DrugComb train/test: the share of gold sentences holding a combination (POS/COMB/NEG) that are still
  candidates when the gold sentence is read in its paragraph as the sweep reads it (abbreviations the
  paragraph defines hold in the sentence).
* ``--realpm DIR``: the hand-annotated real-PubMed set (``pool.jsonl`` + ``annotations_*.jsonl``, first
  annotation of an id wins) on ``--split`` (dev): how many sentences are candidates, how many of the
  gold combination sentences stay candidates, drug-mention precision/recall of the drug-kind mentions
  (and of all mentions, kinds ignored), and the all-drugs rule's exact-set combination precision/recall
  (the candidate's distinct drug-kind mentions as one set).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa

from etl.paths import data_path

DEMO_FILES = (
    ("pubmed", "pmparser", "tests", "testthat", "pubmed_sample", "baseline", "pubmed26n1334.xml.gz"),
    ("pubmed", "pmparser", "tests", "testthat", "pubmed_sample", "updatefiles", "pubmed26n1335.xml.gz"),
)


def demo_articles() -> pa.Table:
    """The articles the demo sweep holds as current: latest version per pmid, deletions applied."""
    from etl.pubmed.parser import parse_to_tables

    cols = ["pmid", "pmid_version", "abstract", "chemicals", "mesh_headings"]
    latest: dict[str, int] = {}
    tables = []
    for parts in DEMO_FILES:
        path = data_path(*parts)
        parsed = parse_to_tables(str(path), path.name)
        tables.append(parsed["articles"].select(cols))
        for row in parsed["articles"].select(["pmid"]).to_pylist():
            latest[row["pmid"]] = len(tables) - 1
        for row in parsed["deletions"].to_pylist():
            latest.pop(row["pmid"], None)
    rows = {
        r["pmid"]: r
        for t_index, t in enumerate(tables)
        for r in t.to_pylist()
        if latest.get(r["pmid"]) == t_index
    }
    return pa.Table.from_pylist([rows[p] for p in sorted(rows)], schema=tables[0].schema)


def demo(matcher, listing: bool, selector=None) -> dict:
    from etl.candidates import sentence_table

    arts = demo_articles()
    kw = {"selector": selector} if selector is not None else {}
    sents = sentence_table(arts, matcher=matcher, **kw).to_pylist()
    cands = [s for s in sents if s["is_candidate"]]
    out = {
        "articles": arts.num_rows,
        "sentences": len(sents),
        "candidates": len(cands),
        "articles_with_a_candidate": len({s["pmid"] for s in cands}),
    }
    if listing:
        out["candidate_sentences"] = [
            {
                "pmid": s["pmid"],
                "sentence_index": s["sentence_index"],
                "mentions": [
                    f"{m['surface']} -> {m['preferred_name']} [{m.get('kind', '?')}]" for m in s["mentions"]
                ],
                "text": s["text"][:200],
            }
            for s in cands
        ]
    return out


def _evidence(sentence: str, paragraph: str | None) -> bool:
    from etl.candidates import article_combination_context, has_combination_evidence

    return has_combination_evidence(sentence, article_combination_context(paragraph))


def drugcomb_gold_recall(matcher, split: str, selector=None) -> dict:
    """Share of gold combination sentences (a POS/COMB/NEG relation) that are candidates, and share of
    all gold sentences that are (the model's load on the pre-selected set)."""
    path = data_path("drugcomb", f"final_{split}_set.jsonl")
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    n_comb = n_comb_kept = n_kept = 0
    for rec in recs:
        para, sent = rec["paragraph"], rec["sentence"]
        defs = matcher.abbreviations(para) if para else {}
        mentions = matcher.find(sent, abbreviations=defs, **_foreign_kw(matcher, para, defs))
        cand = _decide(mentions, matcher, sent, para, selector)
        n_kept += cand
        if rec["rels"]:
            n_comb += 1
            n_comb_kept += cand
    return {
        "sentences": len(recs),
        "candidate_share": round(n_kept / max(len(recs), 1), 4),
        "combination_sentences": n_comb,
        "combination_sentences_kept": n_comb_kept,
        "combination_recall": round(n_comb_kept / max(n_comb, 1), 4),
    }


SELECTORS = {  # name -> SelectorConfig fields ("drugs" is the default configuration)
    "drugs": {"kind": "drugs", "endogenous_needs_cue": True},
    "drugs-no_endogenous_cue": {"kind": "drugs", "endogenous_needs_cue": False},
    "evidence": {"kind": "evidence", "endogenous_needs_cue": True},
}


def _selector(name: str):
    from etl.candidates import SelectorConfig

    return SelectorConfig(**SELECTORS[name])


def _has_selector() -> bool:
    try:
        from etl.candidates import SelectorConfig  # noqa: F401
    except ImportError:  # the code before selectors
        return False
    return True


def _decide(mentions, matcher, sentence: str = "", paragraph: str | None = None, selector=None) -> bool:
    """The candidate decision as ``etl.candidates.sentence_rows`` makes it for one sentence."""
    try:
        from etl.candidates import candidate_decision
    except ImportError:  # the code before entry kinds (for before/after runs on an old checkout)
        from etl import candidates

        return candidates._count_distinct(mentions, matcher)[0] >= candidates.MIN_DISTINCT_DRUGS
    cue = bool(selector and selector.endogenous_needs_cue)
    if not candidate_decision(mentions, matcher, sentence, endogenous_needs_cue=cue).is_candidate:
        return False
    return selector is None or selector.kind == "drugs" or _evidence(sentence, paragraph)


def _foreign_kw(matcher, para: str | None, defs) -> dict:
    """``find``'s foreign short forms of the paragraph, as ``etl.candidates`` reads an abstract (none on
    the code before they existed)."""
    if not para or not hasattr(matcher, "foreign_short_forms"):
        return {}
    return {"foreign": matcher.foreign_short_forms(para) - defs.keys()}


def _is_drug(m) -> bool:
    return getattr(m, "is_drug", not m.is_class)


def realpm(matcher, folder: Path, split: str, selector=None) -> dict:
    """Candidate selection and drug kinds against the hand annotations (module doc)."""
    pool = {
        r["id"]: r for r in map(json.loads, (folder / "pool.jsonl").read_text(encoding="utf-8").splitlines())
    }
    ann: dict[str, dict] = {}
    for path in sorted(folder.glob("annotations_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                ann.setdefault(rec["id"], rec)
    n = n_cand = n_gold_sent = n_gold_kept = 0
    mention_counts = {"drug_kind": [0, 0, 0], "all": [0, 0, 0]}  # predicted, predicted ok, gold found
    n_gold_drugs = n_pred = n_pred_ok = n_gold_rels = n_gold_rels_found = 0
    for item_id, a in sorted(ann.items()):
        item = pool.get(item_id)
        if item is None or item["split"] != split or a.get("unusable"):
            continue
        n += 1
        sent, para = item["sentence"], item.get("paragraph") or item["sentence"]
        defs = matcher.abbreviations(para)
        mentions = matcher.find(sent, abbreviations=defs, **_foreign_kw(matcher, para, defs))
        cand = _decide(mentions, matcher, sent, para, selector)
        gold = a["drugs"]
        has_comb = bool(a["rels"])
        n_cand += cand
        n_gold_sent += has_comb
        n_gold_kept += has_comb and cand
        n_gold_drugs += len(gold)

        def overlaps(m, g):
            return m.start < g["end"] and g["start"] < m.end

        for name, ms in (("drug_kind", [m for m in mentions if _is_drug(m)]), ("all", mentions)):
            c = mention_counts[name]
            c[0] += len(ms)
            c[1] += sum(any(overlaps(m, g) for g in gold) for m in ms)
            c[2] += sum(any(overlaps(m, g) for m in ms) for g in gold)
        gold_sets = [frozenset(gold[i]["text"].lower() for i in r["drugs"]) for r in a["rels"]]
        n_gold_rels += len(gold_sets)
        if cand:  # the all-drugs rule: the sentence's distinct drug-kind mentions are one combination
            names = set()
            for m in mentions:
                if _is_drug(m):
                    hit = next((g for g in gold if overlaps(m, g)), None)
                    names.add(hit["text"].lower() if hit else "\0" + m.surface.lower())
            n_pred += 1
            ok = frozenset(names) in gold_sets
            n_pred_ok += ok
            n_gold_rels_found += ok

    def ratio(a, b):
        return round(a / b, 4) if b else None

    return {
        "split": split,
        "annotated_sentences": n,
        "candidates": n_cand,
        "gold_combination_sentences": n_gold_sent,
        "gold_combination_sentences_kept": n_gold_kept,
        "combination_sentence_recall": ratio(n_gold_kept, n_gold_sent),
        "candidates_with_a_gold_combination": ratio(n_gold_kept, n_cand),
        **{f"mention_precision_{k}": ratio(v[1], v[0]) for k, v in mention_counts.items()},
        **{f"mention_recall_{k}": ratio(v[2], n_gold_drugs) for k, v in mention_counts.items()},
        "all_drugs_rule_exact": {
            "predicted": n_pred,
            "correct": n_pred_ok,
            "precision": ratio(n_pred_ok, n_pred),
            "gold_relations": n_gold_rels,
            "recall": ratio(n_gold_rels_found, n_gold_rels),
        },
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the demo's candidate sentences")
    ap.add_argument("--kb", default=None, help="KB artifact folder (default: the committed etl/drugs/kb/)")
    ap.add_argument("--realpm", type=Path, default=None, help="folder of the real-PubMed annotated set")
    ap.add_argument("--split", default="dev", help="split of --realpm to measure (dev)")
    ap.add_argument(
        "--selector",
        choices=[*SELECTORS, "all"],
        default="drugs",
        help="candidate selector(s) to measure (etl.candidates.SelectorConfig)",
    )
    args = ap.parse_args(argv)
    from etl.drugs import DrugKB, DrugMatcher

    matcher = DrugMatcher(DrugKB.load(args.kb))
    report = {}
    for sel in list(SELECTORS) if args.selector == "all" else [args.selector]:
        out = report.setdefault(sel, {})
        selector = _selector(sel) if _has_selector() else None
        out["demo"] = demo(matcher, args.list, selector)
        if args.realpm is not None:
            out["realpm"] = realpm(matcher, args.realpm, args.split, selector)
        for split in ("train", "test"):
            out[f"drugcomb_{split}"] = drugcomb_gold_recall(matcher, split, selector)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
