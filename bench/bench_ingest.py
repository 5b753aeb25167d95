"""Ingest throughput: the Spark job against the bare single-process parse of the same files.

Copies a real NLM sample (pmparser's 756-record excerpt of baseline file pubmed20n1015) under N NLM
names into a temp folder, then measures in one process:

* baseline: ``etl.pubmed.parser.parse_to_tables`` over every file, one after the other (no Spark,
  no writes) -- what one core does;
* the ingest job (``jobs.ingest.run_ingest``): parse + three Parquet datasets + ledger + DuckDB
  refresh, on local[*] Spark (session start excluded; the first, cold run and a warm --force run);
* the skip path: the same run again (every file already in the ledger).

Prints articles/s and the ratios to the baseline.  Usage:
    .venv/bin/python bench/bench_ingest.py [--files 8] [--master local[*]]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = (
    REPO
    / "data"
    / "pubmed"
    / "pmparser"
    / "tests"
    / "testthat"
    / "data"
    / "baseline"
    / "pubmed20n1015.xml.gz"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--files", type=int, default=8, help="number of copies of the sample (756 articles each)"
    )
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args()

    from etl.pubmed.parser import parse_to_tables
    from jobs.ingest import run_ingest
    from jobs.spark import get_spark

    work = Path(tempfile.mkdtemp(prefix="rexdrug-bench-ingest-"))
    try:
        inputs = work / "in" / "baseline"
        inputs.mkdir(parents=True)
        for i in range(args.files):
            shutil.copy(SAMPLE, inputs / f"pubmed90n{i + 1:04d}.xml.gz")
        files = sorted(inputs.iterdir())

        started = time.perf_counter()
        articles = sum(parse_to_tables(str(f), f.name)["articles"].num_rows for f in files)
        baseline_s = time.perf_counter() - started

        spark = get_spark("rexdrug-bench-ingest", master=args.master)
        warehouse = work / "wh"
        cold = run_ingest(spark, [inputs], warehouse, show_progress=False)
        warm = run_ingest(spark, [inputs], warehouse, force=True, show_progress=False)
        skip = run_ingest(spark, [inputs], warehouse, show_progress=False)
        if cold.articles != articles or warm.articles != articles or skip.skipped != len(files):
            raise SystemExit(f"unexpected counts: {cold} / {warm} / {skip} (baseline {articles} articles)")

        def rate(seconds: float) -> float:
            return articles / seconds

        print(f"files: {len(files)}  articles: {articles}  master: {spark.sparkContext.master}")
        print(
            f"baseline parse_to_tables, 1 process : {baseline_s:7.2f} s  {rate(baseline_s):8.0f} articles/s"
        )
        for name, run in (("ingest job, cold", cold), ("ingest job, warm (--force)", warm)):
            print(
                f"{name:<36}: {run.seconds:7.2f} s  {rate(run.seconds):8.0f} articles/s"
                f"  ratio to baseline {baseline_s / run.seconds:5.2f}x"
            )
        print(f"{'re-run, all skipped (hash + ledger)':<36}: {skip.seconds:7.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
