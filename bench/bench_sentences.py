"""Sentence splitter benchmark: linear scaling on long text, and the same splits as before issue 11.

    .venv/bin/python bench/bench_sentences.py [--size 200000] [--factor 5] [--no-reference]

1. Equality: every abstract of the bundled PubMed files (``data/pubmed/**/*.xml*``, parsed with
   ``etl.pubmed.parser``) and every DrugComb paragraph and sentence (``data/drugcomb``) is split by
   ``etl.sentences.split_sentences`` and by the quadratic splitter it replaced
   (``tests/sentences_reference.py``); the splits must be identical (exit 1 otherwise).
2. Scaling: for each input shape (real prose built from the bundled abstracts, and the pathological
   shapes that were quadratic: a run of dots, runs of '!' and closers, long words before a dot, initials,
   a long whitespace run), the time to split ``--size`` characters and ``--factor`` times as many, in
   this one process (CPU time, best of 5 batches of at least 50 ms).  Linear work gives ratio ~= factor;
   the old splitter gave ~factor^2.
   Exit 1 if a ratio exceeds 1.6 x factor.
3. Reference (unless ``--no-reference``): the old splitter on prose at 20 KB and 5x that, for its ratio
   and the speed-up at the larger size.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from etl.pubmed.parser import iter_records
from etl.sentences import split_sentences
from tests.sentences_reference import reference_split


def bundled_texts() -> tuple[list[str], list[str]]:
    """(PubMed abstracts, DrugComb paragraphs and sentences) of the bundled data."""
    abstracts = []
    for path in sorted(glob.glob(str(REPO / "data" / "pubmed" / "**" / "*.xml*"), recursive=True)):
        for record in iter_records(path, Path(path).name):
            text = record.row.get("abstract") if record.kind == "article" else None
            if text:
                abstracts.append(text)
    drugcomb = set()
    for name in ("final_train_set.jsonl", "final_test_set.jsonl"):
        for line in (REPO / "data" / "drugcomb" / name).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            drugcomb.update(t for t in (record.get("paragraph"), record.get("sentence")) if t)
    return abstracts, sorted(drugcomb)


def check_equality(abstracts: list[str], drugcomb: list[str]) -> dict:
    differing = [t[:80] for t in abstracts + drugcomb if split_sentences(t) != reference_split(t)]
    return {
        "pubmed_abstracts": len(abstracts),
        "drugcomb_texts": len(drugcomb),
        "sentences": sum(len(split_sentences(t)) for t in abstracts + drugcomb),
        "differing": len(differing),
        "first_differing": differing[:3],
    }


def _repeat(piece: str, size: int) -> str:
    return (piece * (size // len(piece) + 1))[:size]


def shapes(prose_source: str) -> dict:
    """name -> (size -> text)."""
    return {
        "prose (bundled abstracts)": lambda n: _repeat(prose_source, n),
        "dot run": lambda n: "Result" + "." * n + " Next",
        "'!' and closer runs": lambda n: _repeat("!" * 500 + ")" * 500 + " x", n),
        "long words before a dot": lambda n: "x" * (n // 2) + " " + "y" * (n // 2) + ". Next",
        "initials": lambda n: _repeat("A. ", n) + "Next",
        "whitespace run": lambda n: "Done." + " " * n + "Next.",
    }


def best_time(fn, text: str, repeats: int = 5, min_batch_s: float = 0.05) -> float:
    """CPU seconds of this process per call (other processes on a shared machine do not count): the best
    of ``repeats`` batches of calls, each batch at least ``min_batch_s`` long (short calls are repeated)."""
    loops, elapsed = 1, 0.0
    while True:
        t0 = time.process_time()
        for _ in range(loops):
            fn(text)
        elapsed = time.process_time() - t0
        if elapsed >= min_batch_s:
            break
        loops *= 2
    best = elapsed / loops
    for _ in range(repeats - 1):
        t0 = time.process_time()
        for _ in range(loops):
            fn(text)
        best = min(best, (time.process_time() - t0) / loops)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=200_000, help="characters of the 1x text (default 200000)")
    ap.add_argument("--factor", type=int, default=5, help="size ratio of the large text (default 5)")
    ap.add_argument("--no-reference", action="store_true", help="skip timing the old quadratic splitter")
    args = ap.parse_args(argv)

    abstracts, drugcomb = bundled_texts()
    equality = check_equality(abstracts, drugcomb)
    print(f"equality: {json.dumps(equality)}")
    ok = equality["differing"] == 0

    prose_source = " ".join(abstracts)
    small, large = args.size, args.size * args.factor
    print(f"scaling: split {small:,} and {large:,} characters (ratio {args.factor}x), best of 5")
    for name, make in shapes(prose_source).items():
        t_small = best_time(split_sentences, make(small))
        t_large = best_time(split_sentences, make(large))
        ratio = t_large / t_small
        verdict = "ok" if ratio <= 1.6 * args.factor else "NOT LINEAR"
        ok &= verdict == "ok"
        print(
            f"  {name:28s} {t_small * 1e3:9.1f} ms {t_large * 1e3:9.1f} ms  ratio {ratio:5.2f}  "
            f"{large / t_large / 1e6:6.1f} M chars/s  {verdict}"
        )

    if not args.no_reference:
        ref_small, ref_large = 20_000, 20_000 * args.factor
        t_ref_small = best_time(reference_split, _repeat(prose_source, ref_small), repeats=1, min_batch_s=0)
        t_ref_large = best_time(reference_split, _repeat(prose_source, ref_large), repeats=1, min_batch_s=0)
        t_new_large = best_time(split_sentences, _repeat(prose_source, ref_large))
        print(
            f"reference (the splitter before issue 11) on prose: {ref_small:,} chars {t_ref_small:.2f} s, "
            f"{ref_large:,} chars {t_ref_large:.2f} s, ratio {t_ref_large / t_ref_small:.1f}; "
            f"now {t_new_large * 1e3:.1f} ms at {ref_large:,} chars "
            f"({t_ref_large / t_new_large:,.0f}x faster)"
        )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
