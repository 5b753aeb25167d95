"""GRPO with trl ``GRPOTrainer`` and the reward registry (``training.rewards``), LoRA, optional vLLM.

RexDrug's settings are the defaults: 8 generations per prompt, temperature 0.7, top_p 0.9, KL beta 0.04,
reward weights format 0.05 / think 0.05 / coverage 0.10 / accuracy 0.80.  On CPU this is only a short
run on top of SFT (``model.adapter`` = the SFT adapter, merged into the base before a fresh LoRA).
With ``vllm.enabled`` (and the ``vllm`` package present) generation runs in vLLM, ``colocate`` (same
GPUs as training) or ``server`` (a separate ``trl vllm-serve`` process).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.common import (
    RecipeConfig,
    TrainerSettings,
    device_summary,
    finish_run,
    load_model,
    precision,
    set_threads,
    train_and_save,
    trainer_arguments,
)
from training.data import build_grpo_rows, hints_function, load_splits, to_dataset
from training.rewards import DEFAULT_WEIGHTS, resolve_rewards

log = logging.getLogger(__name__)


@dataclass
class GRPOSettings(TrainerSettings):
    SECTION = "grpo"

    output_dir: str = "runs/grpo"
    learning_rate: float = 1e-6
    batch_size: int = 8  # completions per device per step (prompts x generations must divide evenly)
    grad_accum: int = 1
    logging_steps: int = 1
    save_steps: int = 100
    num_generations: int = 8
    temperature: float = 0.7
    top_p: float = 0.9
    beta: float = 0.04
    max_completion_length: int = 512
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    log_completions: bool = False

    def validate(self) -> None:
        super().validate()
        if self.num_generations < 2:
            raise ValueError("grpo.num_generations must be >= 2 (advantages are relative within a group)")
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(
                f"grpo.batch_size x grpo.grad_accum ({self.batch_size} x {self.grad_accum}) must be a multiple "
                f"of grpo.num_generations ({self.num_generations})"
            )
        if not 0 < self.top_p <= 1 or self.temperature <= 0:
            raise ValueError("grpo.temperature must be > 0 and grpo.top_p in (0, 1]")


@dataclass
class VLLMSettings:
    enabled: bool = False
    mode: str = "colocate"  # colocate | server
    gpu_memory_utilization: float = 0.3
    tensor_parallel_size: int = 1
    server_base_url: str | None = None  # server mode, e.g. http://127.0.0.1:8000

    def validate(self) -> None:
        if self.mode not in ("colocate", "server"):
            raise ValueError(f"vllm.mode must be colocate or server, got {self.mode!r}")


@dataclass
class GRPOConfigFile(RecipeConfig):
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    rewards: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    vllm: VLLMSettings = field(default_factory=VLLMSettings)

    def validate(self) -> None:
        resolve_rewards(self.rewards)  # unknown names / negative weights are configuration errors


def trl_grpo_config(
    s: GRPOSettings, reward_weights: list[float], vllm: VLLMSettings, *, use_cpu: bool, bf16: bool
):
    from trl import GRPOConfig

    kwargs: dict[str, Any] = {}
    if vllm.enabled:
        if importlib.util.find_spec("vllm") is None:
            raise ValueError(
                "vllm.enabled=true but the vllm package is not installed (pip install '.[vllm]')"
            )
        kwargs.update(
            use_vllm=True,
            vllm_mode=vllm.mode,
            vllm_gpu_memory_utilization=vllm.gpu_memory_utilization,
            vllm_tensor_parallel_size=vllm.tensor_parallel_size,
        )
        if vllm.server_base_url:
            kwargs["vllm_server_base_url"] = vllm.server_base_url
    return GRPOConfig(
        **trainer_arguments(s, use_cpu=use_cpu, bf16=bf16),
        num_generations=s.num_generations,
        temperature=s.temperature,
        top_p=s.top_p,
        beta=s.beta,
        max_completion_length=s.max_completion_length,
        loss_type=s.loss_type,
        scale_rewards=s.scale_rewards,
        reward_weights=reward_weights,
        log_completions=s.log_completions,
        remove_unused_columns=False,  # the rewards read gold / sentence / task
        **kwargs,
    )


def run_grpo(config: GRPOConfigFile, *, train_rows: list[dict] | None = None) -> dict[str, Any]:
    """Train with the reward registry, save the adapter (+ merged weights); returns the run summary."""
    from trl import GRPOTrainer

    set_threads(config.grpo.threads)
    out = Path(config.grpo.output_dir)
    data_stats: dict[str, Any] = {}
    if train_rows is None:
        splits = load_splits(config.data)
        train_rows = build_grpo_rows(splits.train, config.data, hints_function(config.data))
        data_stats = splits.stats
    dataset = to_dataset(train_rows)
    funcs, weights = resolve_rewards(config.rewards)
    model, tokenizer = load_model(config.model)
    tokenizer.padding_side = "left"  # generation pads on the left
    use_cpu, bf16 = precision(model)
    log.info(
        "GRPO: %d prompts, rewards %s, %s",
        len(dataset),
        dict(zip([f.__name__ for f in funcs], weights)),
        device_summary(),
    )
    trainer, result, timing = train_and_save(
        GRPOTrainer,
        out,
        model=model,
        tokenizer=tokenizer,
        dataset=dataset,
        lora=config.lora,
        args=trl_grpo_config(config.grpo, weights, config.vllm, use_cpu=use_cpu, bf16=bf16),
        reward_funcs=funcs,
    )
    rewards_logged = [h for h in trainer.state.log_history if "reward" in h]
    summary: dict[str, Any] = {
        "train_prompts": len(dataset),
        "data": data_stats,
        "global_steps": result.global_step,
        "timing": timing.summary(),
        "reward_history": [
            {k: v for k, v in h.items() if k.startswith(("reward", "rewards/", "step"))}
            for h in rewards_logged
        ],
        "device": device_summary(),
    }
    return finish_run(
        out, kind="grpo", config=config, trained=trainer.model, tokenizer=tokenizer, summary=summary
    )
