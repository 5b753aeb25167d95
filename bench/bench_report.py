"""Report benchmark: `rexdrug report`'s collect + render time and page size as the warehouse grows.

    .venv/bin/python bench/bench_report.py [--sizes 1000 10000 100000]

Synthetic current combinations (random drug pairs/triples out of 500 drugs, 2,000 articles per 10k
combinations, labels POS/COMB/NEG, years 1990-2026) registered on an in-memory DuckDB with the views
the report reads; the KB built by etl.kb.build_kb.  Prints seconds and bytes per size, and the ratio
of each to the smallest size measured in the same run (the page holds the top 20 sets, so its size
should stay flat; time should grow well below linearly at these sizes).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic(con, n: int, seed: int = 7) -> None:
    import pyarrow as pa

    from etl.kb import build_kb
    from schemas.articles import ARTICLES
    from schemas.extraction import COMBINATION_DRUGS, COMBINATIONS

    rng = random.Random(seed)
    n_articles = max(10, n // 5)
    combos, drugs = [], []
    for i in range(n):
        pmid = str(1_000_000 + rng.randrange(n_articles))
        ids = sorted(rng.sample([f"DB{d:05d}" for d in range(500)], rng.choice((2, 2, 3))))
        label = rng.choice(("POS", "POS", "COMB", "NEG"))
        text = f"Treatment with {' plus '.join(ids)} was studied in patients <{i}> & more."
        combo = {
            "combination_id": f"c{i}",
            "extraction_key": f"k{i}",
            "pmid": pmid,
            "pmid_version": 1,
            "sentence_index": i % 7,
            "sentence_text": text,
            "relation_index": 0,
            "label": label,
            "drugs": [
                {
                    "surface": d,
                    "start": text.index(d),
                    "end": text.index(d) + len(d),
                    "canonical_id": d,
                    "preferred_name": d.lower(),
                }
                for d in ids
            ],
            "drug_set_key": " + ".join(ids),
            "drug_set_ids": ids,
            "n_drugs": len(ids),
            "model_id": "m",
            "prompt_version": "p",
            "run_id": "r",
        }
        combos.append(combo)
        drugs += [
            {
                "combination_id": f"c{i}",
                "pmid": pmid,
                "pmid_version": 1,
                "drug_set_key": combo["drug_set_key"],
                "canonical_id": d,
                "preferred_name": d.lower(),
                "model_id": "m",
                "prompt_version": "p",
                "run_id": "r",
            }
            for d in ids
        ]
    articles = [
        {
            "pmid": str(1_000_000 + a),
            "pmid_version": 1,
            "record_type": "article",
            "title": f"Title {a}",
            "pub_year": 1990 + a % 37,
            "source_file": "f",
            "record_position": a,
        }
        for a in range(n_articles)
    ]
    con.register("current_combinations", pa.Table.from_pylist(combos, schema=COMBINATIONS))
    con.register("current_combination_drugs", pa.Table.from_pylist(drugs, schema=COMBINATION_DRUGS))
    con.register("current_articles", pa.Table.from_pylist(articles, schema=ARTICLES))
    con.register("combination_kb", build_kb(con))


def main() -> int:
    import duckdb

    from etl.report import collect_report, render_html

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    args = parser.parse_args()
    warm = duckdb.connect()
    synthetic(warm, 200)
    render_html(collect_report(warm))  # imports, matplotlib's font cache: outside the timings
    base = None
    for n in args.sizes:
        con = duckdb.connect()
        synthetic(con, n)
        start = time.perf_counter()
        page = render_html(collect_report(con, warehouse="bench"))
        seconds, size = time.perf_counter() - start, len(page.encode())
        base = base or (seconds, size)
        print(
            f"{n:>8} combinations: {seconds:6.2f} s, {size / 1024:7.1f} KiB "
            f"(x{seconds / base[0]:.1f} time, x{size / base[1]:.2f} size vs {args.sizes[0]})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
