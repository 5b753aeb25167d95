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
    ExportSettings,
    LoraSettings,
    ModelSettings,
    Timing,
    device_summary,
    load_model,
    peft_config,
    timing_callback,
    write_run_card,
)
from training.data import DataConfig, build_grpo_rows, hints_function, load_splits, to_dataset
from training.rewards import DEFAULT_WEIGHTS, resolve_rewards

log = logging.getLogger(__name__)


@dataclass
class GRPOSettings:
    output_dir: str = "runs/grpo"
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 1e-6
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    batch_size: int = 8  # completions per device per step (prompts x generations must divide evenly)
    grad_accum: int = 1
    num_generations: int = 8
    temperature: float = 0.7
    top_p: float = 0.9
    beta: float = 0.04
    max_completion_length: int = 512
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    seed: int = 13
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: int = 2
    threads: int | None = None
    log_completions: bool = False
    report_to: str = "none"

    def validate(self) -> None:
        if self.num_generations < 2:
            raise ValueError("grpo.num_generations must be >= 2 (advantages are relative within a group)")
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(
                f"grpo.batch_size x grpo.grad_accum ({self.batch_size} x {self.grad_accum}) must be a multiple "
                f"of grpo.num_generations ({self.num_generations})"
            )
        if not 0 < self.top_p <= 1 or self.temperature <= 0:
            raise ValueError("grpo.temperature must be > 0 and grpo.top_p in (0, 1]")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError("set grpo.epochs > 0 or grpo.max_steps > 0")


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
class GRPOConfigFile:
    model: ModelSettings = field(default_factory=ModelSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataConfig = field(default_factory=DataConfig)
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    rewards: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    vllm: VLLMSettings = field(default_factory=VLLMSettings)
    export: ExportSettings = field(default_factory=ExportSettings)

    def validate(self) -> None:
        resolve_rewards(self.rewards)  # unknown names / negative weights are configuration errors


def trl_grpo_config(s: GRPOSettings, reward_weights: list[float], vllm: VLLMSettings, *, use_cpu: bool,
                    bf16: bool):
    from trl import GRPOConfig

    kwargs: dict[str, Any] = {}
    if vllm.enabled:
        if importlib.util.find_spec("vllm") is None:
            raise ValueError("vllm.enabled=true but the vllm package is not installed (pip install '.[vllm]')")
        kwargs.update(use_vllm=True, vllm_mode=vllm.mode, vllm_gpu_memory_utilization=vllm.gpu_memory_utilization,
                      vllm_tensor_parallel_size=vllm.tensor_parallel_size)
        if vllm.server_base_url:
            kwargs["vllm_server_base_url"] = vllm.server_base_url
    return GRPOConfig(
        output_dir=s.output_dir,
        num_train_epochs=s.epochs,
        max_steps=s.max_steps,
        learning_rate=s.learning_rate,
        lr_scheduler_type=s.lr_scheduler,
        warmup_steps=s.warmup_ratio,
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum,
        num_generations=s.num_generations,
        temperature=s.temperature,
        top_p=s.top_p,
        beta=s.beta,
        max_completion_length=s.max_completion_length,
        loss_type=s.loss_type,
        scale_rewards=s.scale_rewards,
        reward_weights=reward_weights,
        seed=s.seed,
        logging_steps=s.logging_steps,
        save_steps=s.save_steps,
        save_total_limit=s.save_total_limit,
        log_completions=s.log_completions,
        report_to=s.report_to,
        use_cpu=use_cpu,
        bf16=bf16,
        remove_unused_columns=False,  # the rewards read gold / sentence / task
        **kwargs,
    )


def run_grpo(config: GRPOConfigFile, *, train_rows: list[dict] | None = None) -> dict[str, Any]:
    """Train with the reward registry, save the adapter (+ merged weights); returns the run summary."""
    import torch
    from trl import GRPOTrainer

    if config.grpo.threads:
        torch.set_num_threads(config.grpo.threads)
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
    use_cpu = not torch.cuda.is_available()
    bf16 = (not use_cpu) and model.dtype == torch.bfloat16
    timing = Timing()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=trl_grpo_config(config.grpo, weights, config.vllm, use_cpu=use_cpu, bf16=bf16),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(config.lora),
        callbacks=[timing_callback(timing)],
    )
    log.info("GRPO: %d prompts, rewards %s, %s", len(dataset),
             dict(zip([f.__name__ for f in funcs], weights)), device_summary())
    result = trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    rewards_logged = [h for h in trainer.state.log_history if "reward" in h]
    summary: dict[str, Any] = {
        "train_prompts": len(dataset),
        "data": data_stats,
        "global_steps": result.global_step,
        "timing": timing.summary(),
        "reward_history": [{k: v for k, v in h.items() if k.startswith(("reward", "rewards/", "step"))}
                           for h in rewards_logged],
        "device": device_summary(),
    }
    if config.export.merge and config.lora.enabled:
        merged_dir = out / "merged"
        trainer.model.merge_and_unload().save_pretrained(str(merged_dir))
        tokenizer.save_pretrained(str(merged_dir))
        summary["merged_dir"] = str(merged_dir)
    write_run_card(out, kind="grpo", config=config, extra={"summary": summary})
    return summary
