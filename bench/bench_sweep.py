"""Sweep benchmark: ETL overhead without the model, and sentences/s with the embedded model.

    .venv/bin/python bench/bench_sweep.py [--articles 20000] [--files 8] [--model-sentences 16]

1. ETL overhead: the whole sweep (ingest -> sentences -> candidates -> extract -> combinations ->
   commit -> DuckDB refresh) with the trivial ``rule_no_comb`` engine (a fixed answer), over N
   articles made by replicating real NLM records (the bundled 2020 baseline sample) under new PMIDs.
   Spark is started and warmed first; abstracts/s is measured once Spark is up (target >= 1,000/s on
   2 cores), with the share of time per stage.
2. With the embedded default model (rexdrug-smol): candidate sentences/s through the same sweep.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAMPLE = ("pubmed", "pmparser", "tests", "testthat", "data", "baseline", "pubmed20n1015.xml.gz")


def replicate(n_articles: int, n_files: int, out_dir: Path) -> list[Path]:
    """Write ``n_files`` baseline-style files holding ``n_articles`` copies of real records, new PMIDs."""
    from etl.paths import data_path

    with gzip.open(data_path(*SAMPLE)) as fh:
        records = [etree.tostring(el) for el in etree.parse(fh).getroot().iter("PubmedArticle")]
    per_file = -(-n_articles // n_files)
    paths, pmid = [], 90_000_000
    for f in range(n_files):
        path = out_dir / "baseline" / f"pubmed99n{f + 1:04d}.xml.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wb", compresslevel=1) as out:
            out.write(b'<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>\n')
            for i in range(min(per_file, n_articles - f * per_file)):
                el = etree.fromstring(records[(f * per_file + i) % len(records)])
                pmid += 1
                el.find("MedlineCitation/PMID").text = str(pmid)
                out.write(etree.tostring(el) + b"\n")
            out.write(b"</PubmedArticleSet>\n")
        paths.append(path)
    return paths


def run(spark, warehouse: Path, inputs: list[Path], engine: str, max_candidates: int | None = None):
    from etl.config import load_config
    from jobs.sweep import SweepConfig, run_sweep

    overrides = [
        f"warehouse={warehouse}",
        "source=files",
        f"inputs={[str(p) for p in inputs]}",
        f"engine.kind={engine}",
    ]
    if max_candidates is not None:
        overrides.append(f"max_candidates={max_candidates}")
    start = time.perf_counter()
    summary = run_sweep(load_config(SweepConfig, None, overrides), spark=spark)
    return summary, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--model-sentences", type=int, default=16, help="0 skips the embedded-model part")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from jobs.spark import get_spark

    tmp = Path(tempfile.mkdtemp(prefix="rexdrug-bench-sweep-"))
    try:
        inputs = replicate(args.articles, args.files, tmp / "input")
        spark = get_spark("rexdrug-bench")
        # Warm-up: Spark's JVM, Python workers, the drug KB and the DuckDB views on a small run.
        run(spark, tmp / "warmup", replicate(200, 2, tmp / "warm-input"), "rule_no_comb")

        summary, seconds = run(spark, tmp / "etl", inputs, "rule_no_comb")
        rate = args.articles / seconds
        print(f"ETL overhead (rule_no_comb engine), {args.articles} articles in {args.files} files, 2 cores")
        print(
            f"  whole sweep: {seconds:.1f}s = {rate:,.0f} abstracts/s (target >= 1,000/s: "
            f"{'met' if rate >= 1000 else 'NOT met'}), ratio to target {rate / 1000:.2f}x"
        )
        print(
            f"  {summary.n_articles} articles with abstract, {summary.n_sentences} sentences, "
            f"{summary.n_candidates} candidates ({summary.n_candidates / max(summary.n_sentences, 1):.1%} of sentences)"
        )
        total = sum(summary.stage_seconds.values())
        for stage, sec in summary.stage_seconds.items():
            print(f"  {stage:<13} {sec:7.1f}s  {sec / total:6.1%}")

        if args.model_sentences:
            summary, seconds = run(spark, tmp / "model", inputs[:1], "transformers", args.model_sentences)
            extract = summary.stage_seconds.get("extract", seconds)
            print(
                f"Embedded default model (rexdrug-smol, CPU): {summary.n_extracted} sentences, extract stage {extract:.1f}s "
                f"= {summary.n_extracted / extract:.2f} sentences/s; whole sweep {seconds:.1f}s"
            )
        spark.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
