"""Scale-out benchmark: the sweep on a Spark standalone cluster, 1 vs 2 executors, and per-stage cost
per 1,000 abstracts on real NLM records (the numbers behind the README's capacity plan).

    .venv/bin/python bench/bench_scale.py [--articles 6000] [--files 8] [--repeats 2] [--model-sentences 6]

One cluster (``jobs.standalone``: a master and two 1-core, 1g workers on 127.0.0.1), one driver process:

1. Real records: the bundled NLM files that may be used (the pubmed20n1015 baseline excerpt and the
   2021-2026 sample files; never the hold-out pubmed20n1016 / medline16n0902) swept once with the
   ``rule_no_comb`` engine on 2 executors: seconds per stage per 1,000 abstracts, candidate sentences
   per 1,000 abstracts and per 1,000 records, warehouse bytes per 1,000 abstracts (per table).
2. Throughput, 1 vs 2 executors (``spark.cores.max`` 1 or 2 on the same cluster, alternated
   ``--repeats`` times, Spark and the Python workers warmed first in each session): ingest +
   sentences + candidates abstracts/s over ``--articles`` abstracts made by replicating the real
   records of pubmed20n1015 under new PMIDs in ``--files`` files, and the ratio 2 : 1.
3. ``--model-sentences`` M > 0: the embedded model (rexdrug-smol) on M candidates on 2 executors:
   candidate sentences/s of the extract stage (model load included) and stored bytes per extraction.

Timings depend on the machine's load (this one: 2 cores shared with other jobs): compare ratios
measured in the same run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# Real NLM files allowed for measurements (data/pubmed/README.md); hold-out files are not listed.
REAL_FILES = [
    ("pmparser", "tests", "testthat", "data", "baseline", "pubmed20n1015.xml.gz"),
    ("pubmedparser", "data", "pubmed21n0001.xml.gz"),
    ("pubmedparser", "data", "pubmed21n1000.xml.gz"),
    ("pubmedparser", "data", "pubmed21n1001.xml.gz"),
    ("pmparser", "tests", "testthat", "pubmed_sample", "updatefiles", "pubmed22n1115.xml.gz"),
    ("pmparser", "tests", "testthat", "pubmed_sample", "baseline", "pubmed23n1166.xml.gz"),
    ("pmparser", "tests", "testthat", "pubmed_sample", "updatefiles", "pubmed24n1220.xml.gz"),
    ("pmparser", "tests", "testthat", "pubmed_sample", "updatefiles", "pubmed25n1275.xml.gz"),
    ("pmparser", "tests", "testthat", "pubmed_sample", "baseline", "pubmed26n1334.xml.gz"),
    ("pmparser", "tests", "testthat", "pubmed_sample", "updatefiles", "pubmed26n1335.xml.gz"),
]
ETL_STAGES = ("ingest", "sentences", "candidates")


def real_inputs(out: Path) -> list[Path]:
    """The real files under NLM folder names (baseline/ or updatefiles/), so their kinds are NLM's."""
    from etl.paths import data_path

    paths = []
    for parts in REAL_FILES:
        source = data_path("pubmed", *parts)
        target = out / ("updatefiles" if "updatefiles" in parts else "baseline") / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        paths.append(target)
    return paths


def sweep(spark, warehouse: Path, inputs: list[Path], engine: str, *extra: str):
    from etl.config import load_config
    from jobs.sweep import SweepConfig, run_sweep

    overrides = [
        f"warehouse={warehouse}",
        "source=files",
        f"inputs={[str(p) for p in inputs]}",
        f"engine.kind={engine}",
        "build_kb=false",
        *extra,
    ]
    started = time.perf_counter()
    summary = run_sweep(load_config(SweepConfig, None, overrides), spark=spark)
    return summary, time.perf_counter() - started


def n_records(warehouse: Path) -> tuple[int, int]:
    """(current records, current records with an abstract)."""
    from etl.warehouse import connect_readonly

    with connect_readonly(warehouse) as con:
        return con.execute("""SELECT count(*), count(*) FILTER (WHERE abstract IS NOT NULL
                                                              AND length(trim(abstract)) > 0)
                              FROM current_articles""").fetchone()


def table_bytes(warehouse: Path) -> dict[str, int]:
    """Bytes on disk per top-level folder / file of the warehouse."""
    sizes = {}
    for entry in sorted(warehouse.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        sizes[entry.name] = sum(p.stat().st_size for p in files)
    return sizes


def session(cluster, executors: int):
    from jobs.spark import get_spark

    return get_spark(
        f"rexdrug-bench-scale-{executors}",
        master=cluster.master_url,
        conf={"spark.cores.max": str(executors), "spark.executor.memory": "1g"},
    )


def wait_for_executors(spark, n: int, timeout_s: float = 120) -> None:
    """Until ``n`` executors have registered (the driver counts itself in the status tracker)."""
    deadline = time.monotonic() + timeout_s
    while spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1 < n:
        if time.monotonic() > deadline:
            raise SystemExit(
                f"only {spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1} "
                f"of {n} executors registered"
            )
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--articles", type=int, default=6000, help="replicated abstracts for 1 vs 2 executors"
    )
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="alternated 1- and 2-executor runs")
    parser.add_argument("--model-sentences", type=int, default=6, help="0 skips the embedded-model part")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from bench_sweep import replicate

    from jobs.standalone import StandaloneCluster

    tmp = Path(tempfile.mkdtemp(prefix="rexdrug-bench-scale-"))
    try:
        with StandaloneCluster(tmp / "cluster", workers=2, cores=1, memory="1g") as cluster:
            warm_inputs = replicate(200, 2, tmp / "warm-input")
            big_inputs = replicate(args.articles, args.files, tmp / "input")

            # 1. real records, 2 executors
            spark = session(cluster, 2)
            wait_for_executors(spark, 2)
            sweep(spark, tmp / "warm-real", warm_inputs, "rule_no_comb")
            real_wh = tmp / "real"
            summary, _ = sweep(spark, real_wh, real_inputs(tmp / "real-input"), "rule_no_comb")
            records, abstracts = n_records(real_wh)
            print(
                f"Real NLM records ({len(REAL_FILES)} files: pubmed20n1015 excerpt + 2021-2026 samples), "
                f"2 executors x 1 core, rule_no_comb engine; the machine's 2 cores are shared with other jobs"
            )
            print(
                f"  {records} current records, {abstracts} with an abstract, {summary.n_sentences} sentences, "
                f"{summary.n_candidates} candidate sentences"
            )
            print(
                f"  candidates per 1,000 abstracts: {1000 * summary.n_candidates / abstracts:.1f}; "
                f"per 1,000 records: {1000 * summary.n_candidates / records:.1f}; "
                f"sentences per abstract: {summary.n_sentences / abstracts:.2f}"
            )
            print("  stage seconds per 1,000 abstracts (wall, 2 executors):")
            for stage, seconds in summary.stage_seconds.items():
                print(f"    {stage:<13} {1000 * seconds / abstracts:8.2f} s")
            sizes = table_bytes(real_wh)
            print(
                f"  warehouse bytes per 1,000 abstracts: {1000 * sum(sizes.values()) / abstracts / 1e6:.2f} MB total"
            )
            for name, size in sizes.items():
                if size:
                    print(f"    {name:<22} {1000 * size / abstracts / 1e6:8.3f} MB")

            # 2. 1 vs 2 executors, alternated, each session warmed
            rates: dict[int, list[float]] = {1: [], 2: []}
            stage_rates: dict[int, dict[str, list[float]]] = {1: {}, 2: {}}
            for repeat in range(args.repeats):
                for executors in (1, 2):
                    if not (repeat == 0 and executors == 2):  # the real-records session is the first 2
                        spark.stop()
                        spark = session(cluster, executors)
                        wait_for_executors(spark, executors)
                        sweep(spark, tmp / f"warm-{repeat}-{executors}", warm_inputs, "rule_no_comb")
                    summary, _ = sweep(spark, tmp / f"scale-{repeat}-{executors}", big_inputs, "rule_no_comb")
                    etl_s = sum(summary.stage_seconds[s] for s in ETL_STAGES)
                    rates[executors].append(summary.n_articles / etl_s)
                    for s in ETL_STAGES:
                        stage_rates[executors].setdefault(s, []).append(
                            summary.n_articles / summary.stage_seconds[s]
                        )
            print(
                f"Throughput, {args.articles} replicated real records ({summary.n_articles} with an abstract) in "
                f"{args.files} files, ingest + sentences + candidates, abstracts/s, median of {args.repeats} "
                "alternated runs (shared 2-core machine):"
            )
            for executors in (1, 2):
                per_stage = ", ".join(
                    f"{s} {statistics.median(v):,.0f}/s" for s, v in stage_rates[executors].items()
                )
                print(
                    f"  {executors} executor(s): {statistics.median(rates[executors]):8,.0f} abstracts/s "
                    f"({per_stage})"
                )
            ratio = statistics.median(rates[2]) / statistics.median(rates[1])
            print(f"  ratio 2 : 1 executors = {ratio:.2f}x (ideal 2.00x)")
            for s in ETL_STAGES:
                r = statistics.median(stage_rates[2][s]) / statistics.median(stage_rates[1][s])
                print(f"    {s:<11} {r:.2f}x")

            # 3. the embedded model on the cluster
            if args.model_sentences:
                if spark.sparkContext.getConf().get("spark.cores.max") != "2":
                    spark.stop()
                    spark = session(cluster, 2)
                    wait_for_executors(spark, 2)
                model_wh = tmp / "model"
                summary, _ = sweep(
                    spark,
                    model_wh,
                    real_inputs(tmp / "model-input")[:1],
                    "transformers",
                    f"max_candidates={args.model_sentences}",
                )
                extract = summary.stage_seconds["extract"]
                size = table_bytes(model_wh).get("extractions", 0)
                print(
                    f"Embedded model (rexdrug-smol) on 2 executors x 1 core: {summary.n_extracted} candidates, "
                    f"extract stage {extract:.1f}s (model load included) = {summary.n_extracted / extract:.2f} "
                    f"sentences/s; extractions table {size / max(summary.n_extracted, 1) / 1e3:.1f} kB per candidate"
                )
            spark.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
