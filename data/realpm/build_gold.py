"""Build ``gold.jsonl`` from ``pool.jsonl`` and the annotators' files, and report their agreement.

  PYTHONPATH=$PWD .venv/bin/python data/realpm/build_gold.py

* Every ``annotations_*.jsonl`` here is one annotator's work (the suffix names the annotator); an item
  is annotated once, or twice when it belongs to the doubly-annotated overlap subset.
* Agreement on the items annotated twice is computed with the project's own sentence scorer
  (``model.evaluation.sentences``), one annotator taken as reference: drug mentions (overlap, one to
  one), combinations (exact drug set; partial; typed), plus Cohen's kappa of "the sentence holds a
  combination".  Written to ``agreement.json``.
* Gold for a doubly-annotated item: the two annotations when they agree (same mentions, same sets and
  labels), else the adjudicated decision in ``adjudication.jsonl`` (``{"id", "take": "A"|"B"|...,
  "why"}``) — an item that disagrees and has no adjudication stops the build, so nothing is decided
  silently.  Items marked ``unusable`` are left out (counted).
* ``gold.jsonl`` rows follow DrugComb's row format (``doc_id``, ``sentence``, ``spans``, ``rels``,
  ``paragraph``) plus ``pmid``, ``source``, ``year``, ``split``, ``pool``, ``sentence_start`` and
  ``annotators``; ``doc_id`` is the item id (one sentence each).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from model.evaluation.sentences import mention_counts, score_sentences


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def annotator_files(folder: Path) -> dict[str, dict[str, dict]]:
    """annotator name -> item id -> annotation."""
    out = {}
    for path in sorted(folder.glob("annotations_*.jsonl")):
        name = path.stem.removeprefix("annotations_")
        out[name] = {row["id"]: row for row in read_jsonl(path)}
    return out


def gold_row(item: dict, ann: dict, annotators: list[str]) -> dict:
    """One pool item with one annotation, in DrugComb's row format."""
    sentence = item["sentence"]
    spans = []
    for k, d in enumerate(ann["drugs"]):
        if sentence[d["start"] : d["end"]] != d["text"]:
            raise ValueError(f"{item['id']}: drug {d} does not match the sentence at its offsets")
        spans.append({"span_id": k, "text": d["text"], "start": d["start"], "end": d["end"]})
    rels = [
        {
            "class": r["class"],
            "spans": sorted(r["drugs"]),
            "is_context_needed": bool(r.get("is_context_needed")),
        }
        for r in ann["rels"]
    ]
    return {
        "doc_id": item["id"],
        "pmid": item.get("pmid"),
        "source": item["source"],
        "year": item.get("year"),
        "split": item["split"],
        "pool": item["pool"],
        "sentence": sentence,
        "paragraph": item["paragraph"],
        "sentence_start": item["sentence_start"],
        "spans": spans,
        "rels": rels,
        "annotators": annotators,
    }


def same_decision(a: dict, b: dict, item: dict) -> bool:
    """Two annotations agree: same mention offsets, same sets (as mention texts) with the same labels."""

    def sets(ann):
        text = [d["text"].casefold() for d in ann["drugs"]]
        return sorted((r["class"], sorted({text[i] for i in r["drugs"]})) for r in ann["rels"])

    spans = lambda ann: sorted((d["start"], d["end"]) for d in ann["drugs"])
    return bool(a.get("unusable")) == bool(b.get("unusable")) and spans(a) == spans(b) and sets(a) == sets(b)


def agreement(pool: dict[str, dict], ref_name: str, ref: dict, other_name: str, other: dict) -> dict:
    """Agreement of two annotators on the items both annotated (``ref`` taken as the reference)."""
    ids = sorted(set(ref) & set(other))
    ids = [i for i in ids if not ref[i].get("unusable") and not other[i].get("unusable")]
    ref_rows = [gold_row(pool[i], ref[i], [ref_name]) for i in ids]
    other_rows = {i: gold_row(pool[i], other[i], [other_name]) for i in ids}
    relations = {}
    for i, row in other_rows.items():
        relations[i] = [
            {
                "label": r["class"],
                "drugs": [
                    {
                        "name": row["spans"][k]["text"],
                        "start": row["spans"][k]["start"],
                        "end": row["spans"][k]["end"],
                    }
                    for k in r["spans"]
                ],
            }
            for r in row["rels"]
        ]
    scores = score_sentences(ref_rows, relations)
    tp = n_other = n_ref = 0
    for row in ref_rows:
        a, b, c = mention_counts(row["spans"], other_rows[row["doc_id"]]["spans"])
        tp, n_other, n_ref = tp + a, n_other + b, n_ref + c
    has_ref = [bool(r["rels"]) for r in ref_rows]
    has_other = [bool(other_rows[r["doc_id"]]["rels"]) for r in ref_rows]
    return {
        "reference": ref_name,
        "other": other_name,
        "items": len(ids),
        "identical_decisions": sum(same_decision(ref[i], other[i], pool[i]) for i in ids),
        "drug_mentions_f1": round(2 * tp / (n_other + n_ref), 4) if n_other + n_ref else None,
        "drug_mentions": {"matched": tp, ref_name: n_ref, other_name: n_other},
        "combinations_exact_f1": scores["combinations"]["any_exact"]["f1"],
        "combinations_partial_f1": scores["combinations"]["any_partial"]["f1"],
        "combinations_typed_f1": scores["combinations"]["typed_exact"]["f1"],
        "combinations": {ref_name: scores["gold_combinations"], other_name: scores["predicted_combinations"]},
        "labels_on_matched_sets": scores["labels"],
        "has_combination_kappa": cohen_kappa(has_ref, has_other),
        "has_combination": {ref_name: sum(has_ref), other_name: sum(has_other)},
    }


def cohen_kappa(a: list[bool], b: list[bool]) -> float | None:
    """Cohen's kappa of two binary judgements of the same items (None when chance agreement is 1)."""
    n = len(a)
    if not n:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    return None if expected == 1 else round((observed - expected) / (1 - expected), 4)


def build(folder: Path = HERE) -> dict:
    pool = {row["id"]: row for row in read_jsonl(folder / "pool.jsonl")}
    anns = annotator_files(folder)
    adjudication_path = folder / "adjudication.jsonl"
    adjudicated = {r["id"]: r for r in read_jsonl(adjudication_path)} if adjudication_path.is_file() else {}
    by_item: dict[str, dict[str, dict]] = {}
    for name, rows in anns.items():
        for item_id, row in rows.items():
            if item_id not in pool:
                raise ValueError(f"annotations_{name}.jsonl: {item_id} is not in pool.jsonl")
            by_item.setdefault(item_id, {})[name] = row
    gold, unusable, undecided, disagreements = [], [], [], 0
    for item_id in sorted(by_item):
        versions = by_item[item_id]
        names = sorted(versions)
        chosen = versions[names[0]]
        if len(names) > 1 and not all(same_decision(chosen, versions[n], pool[item_id]) for n in names[1:]):
            disagreements += 1
            decision = adjudicated.get(item_id)
            if decision is None:
                undecided.append(item_id)
                continue
            chosen = decision["annotation"] if "annotation" in decision else versions[decision["take"]]
        if chosen.get("unusable"):
            unusable.append(item_id)
            continue
        gold.append(gold_row(pool[item_id], chosen, names))
    pairs = [
        (a, b)
        for i, a in enumerate(sorted(anns))
        for b in sorted(anns)[i + 1 :]
        if set(anns[a]) & set(anns[b])
    ]
    agreements = [agreement(pool, a, anns[a], b, anns[b]) for a, b in pairs]
    if undecided:
        print(json.dumps(agreements, indent=2), file=sys.stderr)
        raise SystemExit(
            f"{len(undecided)} doubly-annotated items disagree and have no adjudication: "
            f"{', '.join(undecided)}"
        )
    report = {
        "items_annotated": len(by_item),
        "gold_items": len(gold),
        "unusable": unusable,
        "doubly_annotated": sum(len(v) > 1 for v in by_item.values()),
        "disagreements_adjudicated": disagreements,
        "per_split": {s: sum(g["split"] == s for g in gold) for s in ("dev", "train")},
        "with_combination": {
            s: sum(bool(g["rels"]) for g in gold if g["split"] == s) for s in ("dev", "train")
        },
        "combinations": {s: sum(len(g["rels"]) for g in gold if g["split"] == s) for s in ("dev", "train")},
        "agreement": agreements,
    }
    with (folder / "gold.jsonl").open("w", encoding="utf-8") as fh:
        for row in gold:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (folder / "agreement.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


if __name__ == "__main__":
    print(json.dumps(build(), indent=2, ensure_ascii=False))
