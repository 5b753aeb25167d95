"""Package a trained LoRA adapter as a bundled model (model/adapters/<name>/).

    rexdrug train package --run runs/sft_smol --name rexdrug-smol     (or python -m training.package ...)

Copies the adapter weights (as float16: half the size, no measurable change for LoRA deltas of a
float32 base), its config, the prompt it was trained with and the training provenance, so that
``engine.model=<name>`` loads base + adapter and the extraction uses the same prompt.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from model.confidence import CONFIDENCE_FILE
from model.embedded import TRAINING_RECORD

log = logging.getLogger(__name__)

ADAPTERS_DIR = Path(__file__).resolve().parents[1] / "model" / "adapters"
MAX_BYTES = 25 * 1024 * 1024


def package_adapter(run_dir: Path, name: str, dest_root: Path = ADAPTERS_DIR) -> Path:
    from safetensors.torch import load_file, save_file

    run_dir = Path(run_dir)
    weights = run_dir / "adapter_model.safetensors"
    config = run_dir / "adapter_config.json"
    if not weights.is_file() or not config.is_file():
        raise ValueError(f"{run_dir} holds no LoRA adapter (adapter_model.safetensors + adapter_config.json)")
    dest = dest_root / name
    tmp = dest_root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {k: v.half().contiguous() for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    adapter_config = json.loads(config.read_text())
    # The base is resolved by name at load time (the embedded model lives in a per-user cache).
    adapter_config["base_model_name_or_path"] = "embedded"
    (tmp / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    # the training record (prompt, dev split, label priors) and the confidence map fitted on the run
    # (training.calibrate --confidence); a retrained adapter never inherits the old one's map
    for record in (TRAINING_RECORD, CONFIDENCE_FILE):
        if (run_dir / record).is_file():
            shutil.copy(run_dir / record, tmp / record)
    size = sum(p.stat().st_size for p in tmp.iterdir())
    if size > MAX_BYTES:
        raise ValueError(f"adapter is {size / 2**20:.1f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB budget")
    card = dest / "MODEL_CARD.md"
    if card.is_file():  # the card is written by hand; keep it across re-packaging
        shutil.copy(card, tmp / "MODEL_CARD.md")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    log.info("packaged %s (%.1f MiB) into %s", name, size / 2**20, dest)
    return dest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rexdrug train package`` and ``python -m training.package`` (one parser)."""
    parser.add_argument("--run", type=Path, required=True, help="training output folder (the adapter)")
    parser.add_argument("--name", default="rexdrug-smol", help="the bundled model's name (engine.model=NAME)")
    parser.add_argument(
        "--into",
        type=Path,
        default=ADAPTERS_DIR,
        help="folder of bundled adapters (default: this checkout's model/adapters)",
    )


def run(args: argparse.Namespace) -> dict:
    """Package the adapter; its summary.  Raises ``ValueError`` for a folder without adapter or one too big."""
    return {"packaged": str(package_adapter(args.run, args.name, args.into))}


def main(argv: list[str] | None = None) -> int:
    """``python -m training.package``: the same options and code as ``rexdrug train package``."""
    from training.common import tool_main

    return tool_main(__doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
