"""Calibrate a trained adapter's label decision on its dev split and store it with the adapter.

    python -m training.calibrate --adapter runs/sft_smol            # a training output folder
    python -m training.calibrate --adapter model/adapters/rexdrug-smol

Reads the adapter's ``rexdrug_training.json`` (written by ``rexdrug train sft``) for the base model, the
prompt and the seeded dev split, generates once over the dev split (``model.calibration``), searches the
label priors, checks them with a real biased run on the same split, and writes them under ``decision``
in ``rexdrug_training.json``: the transformers engine applies them whenever the adapter is loaded as a
bundled model (``engine.label_bias`` overrides; ``{}`` switches them off).  The summary goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from etl.config import from_dict

log = logging.getLogger(__name__)


def _provenance(adapter: Path) -> dict:
    from model.embedded import TRAINING_RECORD, read_training_record

    record = read_training_record(adapter)
    if record is None:
        raise ValueError(f"{adapter} has no {TRAINING_RECORD} (the training record names its prompt and dev split)")
    return record


def calibrate_adapter(adapter: Path, *, model: str | None = None, batch_size: int = 16, max_new_tokens: int = 96,
                      dev_limit: int | None = None, write: bool = True) -> dict:
    from model.calibration import collect_evidence, search_label_bias
    from model.embedded import BUNDLED_ADAPTERS, TRAINING_RECORD
    from model.engines.base import EngineConfig, SamplingConfig, engine_model_id
    from model.engines.transformers_engine import TransformersEngine
    from model.evaluation.run import evaluate_drugcomb
    from training.data import DataConfig, load_splits
    from training.evaluate import dev_runner

    provenance = _provenance(adapter)
    data = from_dict(DataConfig, provenance.get("config", {}).get("data", {}))
    if dev_limit:
        data.dev_limit = dev_limit
    data.validate()
    dev = load_splits(data).dev
    if not dev:
        raise ValueError("the adapter's training config holds out no dev split (data.dev_fraction = 0)")
    bundled = {str(folder.resolve()): name for name, (_, folder) in BUNDLED_ADAPTERS.items()}
    if model is None and str(adapter.resolve()) in bundled:
        engine_config = EngineConfig(model=bundled[str(adapter.resolve())])
    else:
        base = model or provenance.get("config", {}).get("model", {}).get("name_or_path", "embedded")
        engine_config = EngineConfig(model=base, adapter_path=str(adapter))
    engine_config.label_bias = {}  # measure the model itself, not a previously shipped decision
    engine_config.batch_size = batch_size
    engine_config.sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    engine_config.validate()
    engine = TransformersEngine(engine_config)
    runner = dev_runner(engine, data, dev)
    records = [r.raw for r in dev]

    started = time.perf_counter()
    evidence = collect_evidence(records, runner)
    result = search_label_bias(records, evidence)
    # The search simulates; a real biased run on the same split is what we store as its dev score.
    engine.label_bias = dict(result.label_bias)
    engine.model_id = engine_model_id(replace(engine_config, label_bias=dict(result.label_bias)))
    checked = evaluate_drugcomb(records, runner, progress=True).summary
    decision = {
        **result.as_dict(),
        "dev_f1_measured": checked["official"],
        "calibrated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if write:
        provenance["decision"] = decision
        path = adapter / TRAINING_RECORD
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(provenance, indent=2) + "\n")
        tmp.replace(path)
        log.info("wrote decision into %s", path)
    return decision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True, help="adapter folder holding rexdrug_training.json")
    parser.add_argument("--model", help="base model (default: the one in the training record)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dev-limit", type=int, help="only the first N dev sentences (quick checks)")
    parser.add_argument("--dry-run", action="store_true", help="print the decision, do not write it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        decision = calibrate_adapter(args.adapter, model=args.model, batch_size=args.batch_size,
                                     max_new_tokens=args.max_new_tokens, dev_limit=args.dev_limit,
                                     write=not args.dry_run)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    json.dump(decision, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
