"""`rexdrug train traces|sft|grpo|multitask|merge --config YAML [key=value ...]`: the training recipe;
`rexdrug train calibrate|package [options]`: calibrate a trained adapter, package it as a bundled model.

The summary of each run (counts, losses, timings, dev metrics) is printed to stdout as JSON; progress
and logs go to stderr.  Exit code 0, 2 for a configuration error.  ``calibrate`` and ``package`` take
the options of ``training.calibrate`` / ``training.package`` (the modules' ``add_arguments``; their
``python -m`` mains run the same code).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from dataclasses import dataclass, field

from etl.config import load_config

log = logging.getLogger(__name__)

# recipe -> one-line help: `--config YAML` plus key=value overrides
RECIPES: dict[str, str] = {
    "traces": "Write reasoning traces for the DrugComb training set (an LLM or the template).",
    "sft": "LoRA supervised fine-tuning.",
    "grpo": "GRPO with the reward registry (training.rewards).",
    "multitask": "Build the multi-task (DrugComb, DDI, NER) SFT data.",
    "merge": "Merge a LoRA adapter into its base model.",
}
# tool -> module with add_arguments(parser) and run(args) -> summary
TOOLS: dict[str, str] = {"calibrate": "training.calibrate", "package": "training.package"}
SUBCOMMANDS = (*RECIPES, *TOOLS)


@dataclass
class MergeConfig:
    base: str = "embedded"
    adapter: str = ""
    output: str = ""
    dtype: str = "auto"

    def validate(self) -> None:
        if not self.adapter or not self.output:
            raise ValueError("merge needs adapter=FOLDER and output=FOLDER")


@dataclass
class _Holder:  # lets `merge` share the --config/overrides handling of the others
    merge: MergeConfig = field(default_factory=MergeConfig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    steps = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    for name, help_text in RECIPES.items():
        recipe = steps.add_parser(name, help=help_text, description=help_text)
        recipe.add_argument("--config", default=None, help="YAML config (configs/training/*.yaml)")
        # REMAINDER: `train sft --config X a=b` keeps the overrides after --config (argparse would otherwise
        # bind the positionals before the option and reject the rest); --config is picked out in run().
        recipe.add_argument(
            "overrides", nargs=argparse.REMAINDER, help="key=value overrides, e.g. train.max_steps=2"
        )
    for name, module_name in TOOLS.items():
        module = importlib.import_module(module_name)
        help_text = module.__doc__.splitlines()[0]
        module.add_arguments(steps.add_parser(name, help=help_text, description=help_text))


def split_config_option(args: argparse.Namespace) -> None:
    """Move a ``--config FILE`` / ``--config=FILE`` found among the overrides into ``args.config``."""
    rest: list[str] = []
    items = list(args.overrides or [])
    i = 0
    while i < len(items):
        item = items[i]
        if item == "--config":
            if i + 1 >= len(items):
                raise ValueError("--config needs a file")
            args.config = items[i + 1]
            i += 2
            continue
        if item.startswith("--config="):
            args.config = item.split("=", 1)[1]
        elif item.startswith("-"):
            raise ValueError(f"unknown option {item!r}; overrides are key=value")
        else:
            rest.append(item)
        i += 1
    args.overrides = rest


def run(args: argparse.Namespace) -> int:
    if args.step in TOOLS:
        summary = importlib.import_module(TOOLS[args.step]).run(args)
    else:
        split_config_option(args)
        summary = {"traces": _traces, "sft": _sft, "grpo": _grpo, "multitask": _multitask, "merge": _merge}[
            args.step
        ](args)
    json.dump(summary, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


def _sft(args) -> dict:
    from training.sft import SFTConfigFile, run_sft

    return run_sft(load_config(SFTConfigFile, args.config, args.overrides))


def _grpo(args) -> dict:
    from training.grpo import GRPOConfigFile, run_grpo

    return run_grpo(load_config(GRPOConfigFile, args.config, args.overrides))


def _traces(args) -> dict:
    from training.data import load_drugcomb, split_train_dev
    from training.traces import TraceAgents, TraceConfig

    config = load_config(TraceConfig, args.config, args.overrides)
    train, _dev = split_train_dev(load_drugcomb(config.train_file), config.dev_fraction, config.split_seed)
    counts = TraceAgents(config).run(train)
    return {"output": config.output, **counts}


def _multitask(args) -> dict:
    from training.multitask import MultitaskConfig, build_multitask_rows, write_rows

    config = load_config(MultitaskConfig, args.config, args.overrides)
    rows, counts = build_multitask_rows(config)
    return {"output": str(write_rows(rows, config.output)), "rows": len(rows), "counts": counts}


def _merge(args) -> dict:
    from training.common import merge_adapter

    config = load_config(_Holder, args.config, [f"merge.{o}" for o in args.overrides]).merge
    out = merge_adapter(config.base, config.adapter, config.output, dtype=config.dtype)
    return {"merged": str(out)}
