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
from training.data import DataConfig, build_sft_rows, check_targets, hints_function, load_splits, to_dataset

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    output_dir: str = "runs/sft"
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs (smoke runs, timing)
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    batch_size: int = 4
    grad_accum: int = 4
    max_length: int = 1024  # tokens of prompt + completion; longer rows are truncated
    weight_decay: float = 0.0
    seed: int = 13
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    threads: int | None = None  # torch CPU threads
    packing: bool = False
    report_to: str = "none"

    def validate(self) -> None:
        if self.learning_rate <= 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("train.learning_rate must be > 0, train.batch_size and train.grad_accum >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("train.warmup_ratio must be in [0, 1)")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError("set train.epochs > 0 or train.max_steps > 0")


@dataclass
class DevEvalSettings:
    enabled: bool = True
    limit: int | None = None  # dev sentences scored (None: all)
    max_new_tokens: int = 256
    batch_size: int = 8


@dataclass
class SFTConfigFile:
    """Everything ``rexdrug train sft --config`` reads (YAML + key=value overrides)."""

    model: ModelSettings = field(default_factory=ModelSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    dev_eval: DevEvalSettings = field(default_factory=DevEvalSettings)
    export: ExportSettings = field(default_factory=ExportSettings)

    def validate(self) -> None:
        check_targets(self.data)


def trl_sft_config(train: TrainSettings, *, use_cpu: bool, bf16: bool):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=train.output_dir,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # a float < 1 is a ratio of the total steps
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        max_length=train.max_length,
        weight_decay=train.weight_decay,
        seed=train.seed,
        logging_steps=train.logging_steps,
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        packing=train.packing,
        completion_only_loss=True,  # prompt-completion rows: loss on the assistant completion only
        assistant_only_loss=False,
        report_to=train.report_to,
        use_cpu=use_cpu,
        bf16=bf16,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def run_sft(config: SFTConfigFile, *, train_rows: list[dict] | None = None) -> dict[str, Any]:
    """Train, save the adapter (+ merged weights), score dev; returns the run summary.

    ``train_rows`` bypasses the DrugComb builder (tests, custom data).
    """
    import torch
    from trl import SFTTrainer

    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    out = Path(config.train.output_dir)
    splits = None
    hints_fn = None
    data_stats: dict[str, Any] = {}
    if train_rows is None and config.data.rows_file:
        from training.multitask import read_rows

        train_rows = read_rows(config.data.rows_file)
        data_stats = {"rows_file": config.data.rows_file}
    if train_rows is None:
        splits = load_splits(config.data)
        hints_fn = hints_function(config.data)
        train_rows, counts = build_sft_rows(splits.train, config.data, hints_fn)
        data_stats = {**splits.stats, **counts}
    dataset = to_dataset(train_rows)
    model, tokenizer = load_model(config.model)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    use_cpu = not torch.cuda.is_available()
    bf16 = (not use_cpu) and model.dtype == torch.bfloat16
    timing = Timing()
    trainer = SFTTrainer(
        model=model,
        args=trl_sft_config(config.train, use_cpu=use_cpu, bf16=bf16),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(config.lora),
        callbacks=[timing_callback(timing)],
    )
    log.info("SFT: %d rows, %s", len(dataset), device_summary())
    result = trainer.train()
    trainer.save_model(str(out))  # the LoRA adapter (or full weights without LoRA)
    tokenizer.save_pretrained(str(out))
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
        from training.evaluate import evaluate_records

        dev = splits.dev[: config.dev_eval.limit] if config.dev_eval.limit else splits.dev
        summary["dev"] = evaluate_records(trained, tokenizer, dev, config.data.prompt, hints_fn=hints_fn,
                                          max_new_tokens=config.dev_eval.max_new_tokens,
                                          batch_size=config.dev_eval.batch_size)
        (out / "dev_metrics.json").write_text(json.dumps(summary["dev"], indent=2) + "\n", encoding="utf-8")
        log.info("dev: %s", {k: round(v["f1"], 4) for k, v in summary["dev"]["official"].items()})
    if config.export.merge and config.lora.enabled:
        merged_dir = out / "merged"
        trained.merge_and_unload().save_pretrained(str(merged_dir))
        tokenizer.save_pretrained(str(merged_dir))
        summary["merged_dir"] = str(merged_dir)
    write_run_card(out, kind="sft", config=config, extra={"summary": summary})
    return summary
