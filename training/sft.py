"""LoRA SFT with trl ``SFTTrainer`` (RexDrug's recipe): completion-only loss, CPU or GPU, merge/export, dev eval.

Defaults are RexDrug's: LoRA r 16 / alpha 32 on all linear layers, learning rate 1e-5, cosine schedule,
10% warmup.  Data are trl's conversational prompt-completion rows from ``training.data``, so the loss
covers the assistant completion only.  The adapter (and tokenizer) are saved in ``output_dir``; with
``export.merge`` the merged weights go to ``output_dir/merged``; the dev split is scored at the end
with the official DrugComb metrics (``dev_eval``), written to ``output_dir/dev_metrics.json``.
"""

from __future__ import annotations

import json
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
from training.data import build_sft_rows, check_targets, hints_function, load_splits, to_dataset

log = logging.getLogger(__name__)


@dataclass
class TrainSettings(TrainerSettings):
    SECTION = "train"

    output_dir: str = "runs/sft"
    max_length: int = 1024  # tokens of prompt + completion; longer rows are truncated
    weight_decay: float = 0.0
    packing: bool = False


@dataclass
class DevEvalSettings:
    enabled: bool = True
    limit: int | None = None  # dev sentences scored (None: all)
    max_new_tokens: int = 256
    batch_size: int = 8


@dataclass
class SFTConfigFile(RecipeConfig):
    """Everything ``rexdrug train sft --config`` reads (YAML + key=value overrides)."""

    train: TrainSettings = field(default_factory=TrainSettings)
    dev_eval: DevEvalSettings = field(default_factory=DevEvalSettings)

    def validate(self) -> None:
        check_targets(self.data)


def trl_sft_config(train: TrainSettings, *, use_cpu: bool, bf16: bool):
    from trl import SFTConfig

    return SFTConfig(
        **trainer_arguments(train, use_cpu=use_cpu, bf16=bf16),
        max_length=train.max_length,
        weight_decay=train.weight_decay,
        packing=train.packing,
        completion_only_loss=True,  # prompt-completion rows: loss on the assistant completion only
        assistant_only_loss=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def run_sft(config: SFTConfigFile, *, train_rows: list[dict] | None = None) -> dict[str, Any]:
    """Train, save the adapter (+ merged weights), score dev; returns the run summary.

    ``train_rows`` bypasses the DrugComb builder (tests, custom data).
    """
    from trl import SFTTrainer

    set_threads(config.train.threads)
    out = Path(config.train.output_dir)
    splits = None
    data_stats: dict[str, Any] = {}
    if train_rows is None and config.data.rows_file:
        from training.multitask import read_rows

        train_rows = read_rows(config.data.rows_file)
        data_stats = {"rows_file": config.data.rows_file}
    if train_rows is None:
        splits = load_splits(config.data)
        train_rows, counts = build_sft_rows(splits.train, config.data, hints_function(config.data))
        data_stats = {**splits.stats, **counts}
    dataset = to_dataset(train_rows)
    model, tokenizer = load_model(config.model)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    use_cpu, bf16 = precision(model)
    log.info("SFT: %d rows, %s", len(dataset), device_summary())
    trainer, result, timing = train_and_save(
        SFTTrainer,
        out,
        model=model,
        tokenizer=tokenizer,
        dataset=dataset,
        lora=config.lora,
        resume=config.train.resume,
        args=trl_sft_config(config.train, use_cpu=use_cpu, bf16=bf16),
    )
    summary: dict[str, Any] = {
        "train_rows": len(dataset),
        "data": data_stats,
        "train_loss": result.training_loss,
        "global_steps": result.global_step,
        "timing": timing.summary(),
        "device": device_summary(),
    }
    trained = trainer.model
    if config.dev_eval.enabled and splits is not None and splits.dev:
        from training.evaluate import evaluate_dev

        dev = splits.dev[: config.dev_eval.limit] if config.dev_eval.limit else splits.dev
        summary["dev"] = evaluate_dev(
            trained,
            tokenizer,
            dev,
            config.data,
            max_new_tokens=config.dev_eval.max_new_tokens,
            batch_size=config.dev_eval.batch_size,
        )
        (out / "dev_metrics.json").write_text(json.dumps(summary["dev"], indent=2) + "\n", encoding="utf-8")
        log.info(
            "dev: official F1 %s, parse failure rate %s",
            summary["dev"]["official"],
            summary["dev"]["parse_failure_rate"],
        )
    return finish_run(out, kind="sft", config=config, trained=trained, tokenizer=tokenizer, summary=summary)
