"""Inference engines behind one interface: ``Engine.generate(batch_of_messages, SamplingConfig) -> [EngineResult]``

``create_engine(config)`` builds one: ``transformers`` (default, CPU/GPU), ``ctranslate2`` (CPU, int8
kernels, the merged model converted once into the cache), ``vllm`` (offline LLM on
GPUs; the optional ``[vllm]`` extra), ``openai`` (any OpenAI-compatible HTTP server) and the rule
baselines ``rule_all_drugs``, ``rule_no_comb``, ``rule_cue`` (DrugComb) and ``rule_ddi_all_pairs``
(DDI13).  Heavy libraries are imported only when the engine is created.
"""

from __future__ import annotations

from model.engines.base import (
    ENGINE_KINDS,
    Engine,
    EngineConfig,
    EngineResult,
    SamplingConfig,
    engine_model_id,
    wrap_answer,
)

__all__ = [
    "ENGINE_KINDS",
    "Engine",
    "EngineConfig",
    "EngineResult",
    "SamplingConfig",
    "create_engine",
    "engine_model_id",
    "wrap_answer",
]


def create_engine(config: EngineConfig, *, matcher=None) -> Engine:
    """The engine for ``config.kind`` (``matcher`` is used by the rule baselines only)."""
    config.validate()
    if config.kind == "transformers":
        from model.engines.transformers_engine import TransformersEngine

        return TransformersEngine(config)
    if config.kind == "ctranslate2":
        from model.engines.ctranslate2_engine import CTranslate2Engine

        return CTranslate2Engine(config)
    if config.kind == "vllm":
        from model.engines.vllm_engine import VLLMEngine

        return VLLMEngine(config)
    if config.kind == "openai":
        from model.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(config)
    from model.engines.rules import RULES

    return RULES[config.kind](matcher=matcher)
