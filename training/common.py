"""Pieces shared by the SFT and GRPO trainers: model/LoRA settings, loading, run provenance, merging.

The heavy libraries (torch, transformers, peft) are imported inside functions so that importing this
module (e.g. to read a config) costs nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from etl.config import to_dict
from model.embedded import TRAINING_RECORD, read_training_record
from training.data import DataConfig
from training.tiny import TINY_MODEL_NAME

log = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "embedded"  # SmolLM2-135M-Instruct converted by model.embedded
DTYPES = ("auto", "float32", "bfloat16", "float16")
ADAPTER_MODES = ("merge", "continue")


@dataclass
class ModelSettings:
    # "embedded" (bundled SmolLM2-135M-Instruct), "tiny" (random tiny Llama for smoke tests),
    # a local HF folder, or a hub id (only when the machine is online and the user asked for it).
    name_or_path: str = EMBEDDED_MODEL_NAME
    # A LoRA adapter folder to start from (e.g. GRPO on top of SFT).  adapter_mode "merge": merged into
    # the base and a new LoRA trained on top (the result needs base + both adapters); "continue": the
    # same LoRA trained further (the result replaces the starting adapter: more epochs, GRPO after SFT).
    adapter: str | None = None
    adapter_mode: str = "merge"
    # "auto": bfloat16 on a CUDA GPU that supports it, float32 on CPU.
    dtype: str = "auto"
    attn_implementation: str | None = None  # e.g. "flash_attention_2" / "sdpa" on GPUs
    gradient_checkpointing: bool = False

    def validate(self) -> None:
        if not self.name_or_path:
            raise ValueError("model.name_or_path must be set ('embedded', 'tiny', a folder or a hub id)")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.adapter_mode not in ADAPTER_MODES:
            raise ValueError(f"model.adapter_mode must be one of {ADAPTER_MODES}, got {self.adapter_mode!r}")
        if self.adapter and not (Path(self.adapter) / "adapter_config.json").is_file():
            raise ValueError(
                f"model.adapter {self.adapter!r} is not a LoRA adapter folder (no adapter_config.json)"
            )


@dataclass
class LoraSettings:
    """RexDrug's LoRA defaults: r 16, alpha 32, all linear layers."""

    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"

    def validate(self) -> None:
        if self.r <= 0 or self.alpha <= 0:
            raise ValueError(f"lora.r and lora.alpha must be positive, got r={self.r} alpha={self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TrainerSettings:
    """What SFT and GRPO share of trl's trainer arguments (each recipe subclasses it with its defaults)."""

    SECTION: ClassVar[str] = "train"  # config section name, for error messages

    output_dir: str = "runs/train"
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs (smoke runs, timing)
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    batch_size: int = 4
    grad_accum: int = 4
    seed: int = 13
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    threads: int | None = None  # torch CPU threads
    report_to: str = "none"
    # continue an interrupted run from the latest ``output_dir/checkpoint-*`` (weights, optimizer, schedule
    # and step); with no checkpoint there yet the run starts from the beginning
    resume: bool = False

    def validate(self) -> None:
        s = self.SECTION
        if self.learning_rate <= 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError(f"{s}.learning_rate must be > 0, {s}.batch_size and {s}.grad_accum >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"{s}.warmup_ratio must be in [0, 1)")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError(f"set {s}.epochs > 0 or {s}.max_steps > 0")


def trainer_arguments(s: TrainerSettings, *, use_cpu: bool, bf16: bool) -> dict[str, Any]:
    """The keyword arguments of trl's ``SFTConfig``/``GRPOConfig`` that both recipes set the same way."""
    return {
        "output_dir": s.output_dir,
        "num_train_epochs": s.epochs,
        "max_steps": s.max_steps,
        "learning_rate": s.learning_rate,
        "lr_scheduler_type": s.lr_scheduler,
        "warmup_steps": s.warmup_ratio,  # a float < 1 is a ratio of the total steps
        "per_device_train_batch_size": s.batch_size,
        "gradient_accumulation_steps": s.grad_accum,
        "seed": s.seed,
        "logging_steps": s.logging_steps,
        "save_steps": s.save_steps,
        "save_total_limit": s.save_total_limit,
        "report_to": s.report_to,
        "use_cpu": use_cpu,
        "bf16": bf16,
    }


@dataclass
class ExportSettings:
    merge: bool = False  # also write base+adapter merged weights to <output_dir>/merged
    merged_dtype: str = "auto"


@dataclass
class RecipeConfig:
    """The config sections every training recipe reads (SFT and GRPO add their own)."""

    model: ModelSettings = field(default_factory=ModelSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataConfig = field(default_factory=DataConfig)
    export: ExportSettings = field(default_factory=ExportSettings)


def resolve_model_path(name_or_path: str, *, tiny_dir: Path | None = None) -> str:
    """Map the symbolic names to a local folder; anything else is passed to ``from_pretrained`` as is."""
    if name_or_path == EMBEDDED_MODEL_NAME:
        from model import embedded  # the model layer owns the GGUF -> HF conversion and its cache

        return str(embedded.ensure_embedded_model())
    if name_or_path == TINY_MODEL_NAME:
        from etl.paths import cache_dir
        from training.tiny import build_tiny_model_dir

        return str(build_tiny_model_dir(tiny_dir or cache_dir() / "models" / "tiny-llama"))
    path = Path(name_or_path).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise ValueError(f"model folder {path} has no config.json (not a Hugging Face model folder)")
    return str(path) if path.exists() else name_or_path


def torch_dtype(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # batched training needs one; eos is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise ValueError(f"tokenizer of {path} has no chat template; training uses conversational data")
    return tokenizer


def load_model(settings: ModelSettings):
    """Base model (+ merged starting adapter when ``settings.adapter``), and its tokenizer."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(settings.name_or_path)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(settings.dtype)}
    if settings.attn_implementation:
        kwargs["attn_implementation"] = settings.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    tokenizer = load_tokenizer(settings.adapter if _has_tokenizer(settings.adapter) else path)
    if settings.adapter:
        from peft import PeftModel

        if settings.adapter_mode == "continue":
            log.info("continuing to train adapter %s on %s", settings.adapter, path)
            model = PeftModel.from_pretrained(model, settings.adapter, is_trainable=True)
        else:
            log.info("merging starting adapter %s into %s", settings.adapter, path)
            model = PeftModel.from_pretrained(model, settings.adapter).merge_and_unload()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _has_tokenizer(folder: str | None) -> bool:
    return bool(folder) and (Path(folder) / "tokenizer_config.json").is_file()


def peft_config(settings: LoraSettings):
    if not settings.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def precision(model) -> tuple[bool, bool]:
    """``(use_cpu, bf16)`` for trl: CPU without a CUDA device; bf16 on GPU when the model is loaded in it."""
    import torch

    use_cpu = not torch.cuda.is_available()
    return use_cpu, (not use_cpu) and model.dtype == torch.bfloat16


def latest_checkpoint(out: Path) -> Path | None:
    """The highest-step ``checkpoint-N`` folder under ``out`` (what ``train.resume`` continues), or None."""
    steps = [
        (int(p.name.split("-", 1)[1]), p)
        for p in Path(out).glob("checkpoint-*")
        if p.is_dir() and p.name.split("-", 1)[1].isdigit()
    ]
    return max(steps)[1] if steps else None


def train_and_save(
    trainer_cls,
    out: Path,
    *,
    model,
    tokenizer,
    args,
    dataset,
    lora: LoraSettings,
    resume: bool = False,
    **trainer_kwargs,
):
    """Build the trl trainer (LoRA, step timing), train, save the adapter (or full weights) and tokenizer.
    With ``resume`` training continues from the latest checkpoint under ``out`` when there is one.

    Returns ``(trainer, train_output, timing)``.
    """
    timing = Timing()
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        # a model that already carries a trainable adapter (adapter_mode "continue") keeps it
        peft_config=None if hasattr(model, "peft_config") else peft_config(lora),
        callbacks=[timing_callback(timing)],
        **trainer_kwargs,
    )
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    trainer.save_model(str(out))  # the LoRA adapter (or full weights without LoRA)
    tokenizer.save_pretrained(str(out))
    return trainer, result, timing


def export_merged(model, tokenizer, out: Path, export: ExportSettings, lora: LoraSettings) -> str | None:
    """With ``export.merge`` (and LoRA on): base + adapter merged into ``out/merged``; its path, else None."""
    if not (export.merge and lora.enabled):
        return None
    merged_dir = out / "merged"
    model.merge_and_unload().save_pretrained(str(merged_dir))
    tokenizer.save_pretrained(str(merged_dir))
    return str(merged_dir)


def finish_run(
    out: Path, *, kind: str, config: RecipeConfig, trained, tokenizer, summary: dict[str, Any]
) -> dict[str, Any]:
    """Merged export (when asked) and the run card next to the weights; returns ``summary``."""
    merged_dir = export_merged(trained, tokenizer, out, config.export, config.lora)
    if merged_dir:
        summary["merged_dir"] = merged_dir
    write_run_card(out, kind=kind, config=config, extra={"summary": summary})
    return summary


def merge_adapter(base: str, adapter: str | Path, out_dir: str | Path, *, dtype: str = "auto") -> Path:
    """Write base + LoRA adapter merged into plain weights (for vLLM / GGUF export) with the tokenizer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    base_path = resolve_model_path(base)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype(dtype))
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out_dir)
    tokenizer = load_tokenizer(str(adapter) if _has_tokenizer(str(adapter)) else base_path)
    tokenizer.save_pretrained(out_dir)
    log.info("merged %s + %s -> %s", base_path, adapter, out_dir)
    return out_dir


def write_run_card(
    out_dir: str | Path, *, kind: str, config: Any, extra: dict[str, Any] | None = None
) -> Path:
    """Provenance next to the weights: which recipe, config and data produced them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = {"kind": kind, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": to_dict(config)}
    start = starting_adapter_record(getattr(config, "model", None))
    if start:
        card["starting_adapter"] = start
    card.update(extra or {})
    path = out / TRAINING_RECORD
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return path


def starting_adapter_record(settings: ModelSettings | None) -> dict[str, Any] | None:
    """The training record of the adapter a run started from, so a continued adapter keeps its history."""
    if settings is None or not getattr(settings, "adapter", None):
        return None
    parent = read_training_record(settings.adapter)
    if parent:
        parent.pop("decision", None)  # label priors belong to that adapter, not to the new one
    return {"path": str(settings.adapter), "mode": settings.adapter_mode, "record": parent}


def device_summary() -> dict[str, Any]:
    import torch

    return {
        "cuda": torch.cuda.is_available(),
        "device_count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


@dataclass
class Timing:
    """Seconds per optimizer step, measured by a callback (what the lead plans long runs with)."""

    step_seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        s = self.step_seconds
        if not s:
            return {"steps": 0}
        steady = s[1:] or s  # the first step pays for warm-up allocations
        return {"steps": len(s), "first_step_s": s[0], "mean_step_s": sum(steady) / len(steady)}


def timing_callback(timing: Timing):
    from transformers import TrainerCallback

    class _StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            timing.step_seconds.append(time.perf_counter() - getattr(self, "_t0", time.perf_counter()))

    return _StepTimer()


def tool_main(description: str, add_arguments, run, argv: list[str] | None = None) -> int:
    """``python -m training.<tool>``: the tool's own options (``add_arguments``) and code (``run``), the
    ones ``rexdrug train <tool>`` uses; its result as JSON on stdout, exit 2 on a configuration error."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = run(args)
    except ValueError as exc:
        logging.getLogger(run.__module__).error("%s", exc)
        return 2
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
