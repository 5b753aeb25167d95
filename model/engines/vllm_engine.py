"""vLLM offline engine (GPUs; the optional ``[vllm]`` extra).  One engine per process.

``LLM.chat`` takes the whole batch at once (vLLM schedules it continuously, so large chunks are
best).  Constrained decoding uses ``SamplingParams(structured_outputs=StructuredOutputsParams(json=
schema))``: the old ``guided_*`` fields are silently ignored by current vLLM.  The constrained output
is bare JSON and is returned inside ``<answer>`` tags like every other engine's.
"""

from __future__ import annotations

import logging
import os

from model.engines.base import (
    Engine,
    EngineConfig,
    EngineResult,
    SamplingConfig,
    engine_model_id,
    wrap_answer,
)

log = logging.getLogger(__name__)

_ACTIVE: list[VLLMEngine] = []  # one LLM per process: a second one would fight for the GPU memory


class VLLMEngine(Engine):
    def __init__(self, config: EngineConfig):
        super().__init__()
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise ValueError("engine.kind=vllm needs the vllm package: pip install 'rexdrug[vllm]' (GPU)") from exc
        if _ACTIVE:
            raise ValueError("a vLLM engine already exists in this process; reuse it (one engine per process)")
        from vllm import LLM

        from model.embedded import resolve_model_and_adapter, resolve_model_path

        self.config = config
        base, adapter_path = resolve_model_and_adapter(config.model, config.adapter_path)
        from model.embedded import bundled_decision

        if config.label_bias is None and bundled_decision(config.model).get("label_bias"):
            # the calibrated priors bias logits mid-generation, which only the transformers engine does
            log.warning("%s ships calibrated label priors that the vllm engine cannot apply; its outputs will "
                        "differ from the transformers engine's (scores in its model card are with them)", config.model)
        path, _local = resolve_model_path(base, allow_network=config.allow_download)
        kwargs = dict(
            model=path,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            dtype=config.dtype,
            seed=config.sampling.seed or 0,
        )
        if config.max_model_len:
            kwargs["max_model_len"] = config.max_model_len
        self._lora = None
        if adapter_path:
            from vllm.lora.request import LoRARequest

            if not os.path.isdir(adapter_path):
                raise ValueError(f"adapter folder not found: {adapter_path}")
            kwargs["enable_lora"] = True
            self._lora = LoRARequest("rexdrug-adapter", 1, adapter_path)
        self.llm = LLM(**kwargs)
        self.model_id = engine_model_id(config)
        _ACTIVE.append(self)

    def sampling_params(self, sampling: SamplingConfig):
        from vllm import SamplingParams

        kwargs = dict(
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
        )
        if sampling.constrained:
            from vllm.sampling_params import StructuredOutputsParams

            from model.answer_schema import answer_json_schema

            kwargs["structured_outputs"] = StructuredOutputsParams(json=answer_json_schema())
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
        self.llm = None
