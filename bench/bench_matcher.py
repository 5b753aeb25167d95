"""Drug matcher benchmark: quality on DrugComb (train and test) and PubMed samples, speed, KB load time.

    .venv/bin/python bench/bench_matcher.py [--misses N] [--split train|test|both]

Quality (gold spans of DrugComb, which were annotated with a 2,410-name dictionary):
  * span recall: a gold span counts as found when a mention overlaps it (also reported: exact match);
  * drug-kind span recall in context: the same, with endogenous entries read as the sweep reads them
    (``etl.candidates.read_in_context``);
  * drug-kind span recall: found by a mention whose KB kind counts as a drug (``schemas.drugs.DRUG_KINDS``:
    what the candidate rule counts), and with classes too; ``--misses`` lists the spans the kinds lose;
  * precision: mentions in the gold sentence that overlap a gold span / all mentions (a lower bound:
    the gold misses drugs outside its dictionary, e.g. "brivudin");
  * relation coverage: gold relations all of whose drug spans are found;
  (each sentence is matched with the abbreviations its paragraph defines, as ``etl.candidates`` does);
  * candidate rate on real PubMed abstracts (data/pubmed/pmparser baseline file): the share of
    sentences the selection keeps (the LLM's cost).
Speed: mentions/s over the DrugComb paragraphs; the baseline in the same process is the bare
tokenizer pass (what any token-level matcher must pay), so the ratio shows the matcher's overhead.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etl.paths import data_path


def load_drugcomb(split: str) -> list[dict]:
    path = data_path("drugcomb", f"final_{split}_set.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def quality(
    records: list[dict],
    matcher,
    misses: Counter | None = None,
    fps: Counter | None = None,
    kind_losses: Counter | None = None,
) -> dict:
    n_gold = n_found = n_exact = n_mentions = n_mentions_ok = 0
    n_found_drug = n_found_drug_or_class = n_found_drug_read = 0
    from etl.candidates import read_in_context
    from schemas.drugs import DRUG_KINDS

    n_rels = n_rels_ok = 0
    for rec in records:
        sent = rec["sentence"]
        # as etl.candidates does: short forms the abstract defines ("buspirone (BU)") hold in each sentence
        defs = matcher.abbreviations(rec["paragraph"]) if rec.get("paragraph") else None
        mentions = matcher.find(sent, abbreviations=defs)
        n_mentions += len(mentions)
        read = read_in_context(mentions, sent, matcher)  # endogenous entries as the sweep reads them here
        found_ids = set()
        for span in rec["spans"]:
            n_gold += 1
            hit = [m for m in mentions if m.start < span["end"] and span["start"] < m.end]
            if hit:
                n_found += 1
                found_ids.add(span["span_id"])
                n_exact += any(m.start == span["start"] and m.end == span["end"] for m in hit)
                drug = any(m.is_drug for m in hit)
                n_found_drug += drug
                n_found_drug_or_class += drug or any(m.kind == "class" for m in hit)
                n_found_drug_read += any(
                    m.kind in DRUG_KINDS and m.start < span["end"] and span["start"] < m.end for m in read
                )
                if not drug and kind_losses is not None:
                    kind_losses[f"{span['text']} -> {hit[0].preferred_name} [{hit[0].kind}]"] += 1
            elif misses is not None:
                misses[span["text"]] += 1
        for m in mentions:
            ok = any(m.start < s["end"] and s["start"] < m.end for s in rec["spans"])
            n_mentions_ok += ok
            if not ok and fps is not None:
                fps[m.surface] += 1
        for rel in rec["rels"]:
            n_rels += 1
            n_rels_ok += all(s in found_ids for s in rel["spans"])
    return {
        "gold_spans": n_gold,
        "span_recall": round(n_found / max(n_gold, 1), 4),
        "span_recall_exact": round(n_exact / max(n_gold, 1), 4),
        "span_recall_drug_kind": round(n_found_drug / max(n_gold, 1), 4),
        "span_recall_drug_or_class_kind": round(n_found_drug_or_class / max(n_gold, 1), 4),
        # drug kind as read in the sentence (``etl.candidates.read_in_context``: an endogenous entry counts
        # only where the sentence speaks of giving it): what the candidate rule and the sweep count
        "span_recall_drug_kind_in_context": round(n_found_drug_read / max(n_gold, 1), 4),
        "precision_vs_gold": round(n_mentions_ok / max(n_mentions, 1), 4),
        "relations": n_rels,
        "relation_coverage": round(n_rels_ok / max(n_rels, 1), 4),
    }


def pubmed_abstracts(limit: int | None = None) -> list[tuple[str, str, list]]:
    """(pmid, abstract, chemicals) from the bundled NLM baseline sample, parsed with lxml."""
    from lxml import etree

    path = data_path("pubmed", "pmparser", "tests", "testthat", "data", "baseline", "pubmed20n1015.xml.gz")
    out = []
    with gzip.open(path, "rb") as fh:
        for _, art in etree.iterparse(fh, tag="PubmedArticle"):
            pmid = art.findtext(".//MedlineCitation/PMID") or ""
            parts = ["".join(a.itertext()).strip() for a in art.iterfind(".//Abstract/AbstractText")]
            chems = [
                {"ui": c.get("UI"), "name": c.text}
                for c in art.iterfind(".//ChemicalList/Chemical/NameOfSubstance")
            ]
            if parts:
                out.append((pmid, "\n".join(p for p in parts if p), chems))
            art.clear()
            if limit and len(out) >= limit:
                break
    return out


def candidate_rate(matcher, limit: int | None) -> dict:
    import pyarrow as pa

    from etl.candidates import sentence_table

    abstracts = pubmed_abstracts(limit)
    table = pa.table(
        {
            "pmid": [a[0] for a in abstracts],
            "pmid_version": pa.array([1] * len(abstracts), pa.int32()),
            "abstract": [a[1] for a in abstracts],
            "chemicals": [a[2] for a in abstracts],
        }
    )
    t0 = time.perf_counter()
    sents = sentence_table(table, matcher=matcher)
    dt = time.perf_counter() - t0
    cand = sum(sents.column("is_candidate").to_pylist())
    with_drug = sum(1 for n in sents.column("n_distinct_drugs").to_pylist() if n >= 1)
    return {
        "abstracts": len(abstracts),
        "sentences": sents.num_rows,
        "candidates": cand,
        "candidate_share": round(cand / max(sents.num_rows, 1), 4),
        "sentences_with_a_drug_share": round(with_drug / max(sents.num_rows, 1), 4),
        "abstracts_with_a_candidate": len(
            {
                p
                for p, c in zip(sents.column("pmid").to_pylist(), sents.column("is_candidate").to_pylist())
                if c
            }
        ),
        "sentence_table_seconds": round(dt, 2),
    }


def speed(matcher, paragraphs: list[str], repeat: int = 3) -> dict:
    from etl.drugs.text import token_arrays as tokenize

    t0 = time.perf_counter()
    for _ in range(repeat):
        for p in paragraphs:
            tokenize(p)
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    for _ in range(repeat):
        for p in paragraphs:
            n += len(matcher.find(p))
    dt = time.perf_counter() - t0
    chars = sum(len(p) for p in paragraphs) * repeat
    return {
        "paragraphs": len(paragraphs) * repeat,
        "mentions": n,
        "seconds": round(dt, 3),
        "mentions_per_s": round(n / dt),
        "chars_per_s": round(chars / dt),
        "tokenize_only_seconds": round(base, 3),
        "matcher_over_tokenizer": round(dt / base, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["train", "test", "both"], default="both")
    ap.add_argument(
        "--misses", type=int, default=0, help="print the N most frequent missed gold spans and FPs (TRAIN)"
    )
    ap.add_argument("--kb", default=None, help="KB artifact folder (default: the committed etl/drugs/kb/)")
    ap.add_argument("--pubmed-limit", type=int, default=None, help="abstracts of the PubMed sample to use")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    from etl.drugs import DrugKB, DrugMatcher

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    kb = DrugKB.load(args.kb)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    matcher = DrugMatcher(kb)
    t_index = time.perf_counter() - t0
    report = {
        "import_seconds": round(t_import, 3),
        "kb_load_seconds": round(t_load, 3),
        "matcher_index_seconds": round(t_index, 3),
        "kb_entities": len(kb.entries),
        "kb_aliases": len(kb.alias_row),
    }
    splits = ["train", "test"] if args.split == "both" else [args.split]
    paragraphs = []
    for split in splits:
        recs = load_drugcomb(split)
        misses, fps, losses = Counter(), Counter(), Counter()
        report[f"drugcomb_{split}"] = quality(recs, matcher, misses, fps, losses)
        paragraphs += [r["paragraph"] for r in recs]
        if args.misses and split == "train":
            print("missed (train):", misses.most_common(args.misses), file=sys.stderr)
            print("not in gold (train):", fps.most_common(args.misses), file=sys.stderr)
            print("found, but not a drug kind (train):", losses.most_common(args.misses), file=sys.stderr)
    report["speed"] = speed(matcher, paragraphs)
    report["pubmed_candidates"] = candidate_rate(matcher, args.pubmed_limit)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
