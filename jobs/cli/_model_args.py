"""Shared CLI options for commands that run an extraction model (eval, extract)."""

from __future__ import annotations

import argparse

from etl.config import load_config
from model.engines import ENGINE_KINDS, EngineConfig
from model.prompting import CONTEXTS, VARIANTS, PromptConfig


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        help="'embedded' (default), 'rexdrug-smol' (embedded + our adapter), a local HF folder, a hub id (with --allow-download), "
        "or a rule baseline: rule_all_drugs | rule_no_comb | rule_cue (DrugComb) | rule_ddi_all_pairs (DDI13)",
    )
    g.add_argument(
        "--engine", choices=ENGINE_KINDS, help="engine kind (default: transformers; rules imply theirs)"
    )
    g.add_argument("--adapter", help="LoRA adapter folder to layer on the model")
    g.add_argument("--engine-config", help="engine YAML (configs/model/*.yaml)")
    g.add_argument(
        "--prompt",
        choices=VARIANTS,
        help="prompt variant (default: rexdrug, or the one a bundled model was trained with)",
    )
    g.add_argument("--context", choices=CONTEXTS, help="context given with the sentence (default abstract)")
    g.add_argument("--window", type=int, help="neighbouring sentences on each side for --context window")
    g.add_argument("--hints", action="store_true", help="list the matcher's candidate drugs in the prompt")
    g.add_argument("--max-new-tokens", type=int, help="generation budget per sentence")
    g.add_argument("--batch-size", type=int, help="prompts per forward pass")
    g.add_argument("--constrained", action="store_true", help="JSON-constrained decoding (answer only)")
    g.add_argument("--allow-download", action="store_true", help="allow fetching a hub model")
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="engine config override key=value (repeatable), e.g. sampling.temperature=0.7",
    )


def engine_and_prompt(args: argparse.Namespace) -> tuple[EngineConfig, PromptConfig]:
    overrides = list(args.overrides or [])
    model = args.model or "embedded"
    if model.startswith("rule_"):
        overrides.append(f"kind={model}")
    elif args.engine:
        overrides.append(f"kind={args.engine}")
    if not model.startswith("rule_"):
        overrides.append(f"model={model}")
    if args.adapter:
        overrides.append(f"adapter_path={args.adapter}")
    if args.max_new_tokens:
        overrides.append(f"sampling.max_new_tokens={args.max_new_tokens}")
    if args.batch_size:
        overrides.append(f"batch_size={args.batch_size}")
    if args.constrained:
        overrides.append("sampling.constrained=true")
    if args.allow_download:
        overrides.append("allow_download=true")
    engine_config = load_config(EngineConfig, args.engine_config, overrides)
    from model.embedded import bundled_prompt_config

    # A bundled model is prompted the way it was trained unless the user says otherwise.
    prompt = bundled_prompt_config(model, fallback=PromptConfig())
    if args.prompt:
        prompt.variant = args.prompt
    if args.context:
        prompt.context = args.context
    if args.window is not None:
        prompt.window = args.window
    if args.hints:
        prompt.hints = True
    prompt.validate()
    return engine_config, prompt


def matcher_or_none(needed: bool):
    """The drug matcher when the run needs it (hints or rule baselines)."""
    if not needed:
        return None
    from etl.drugs import default_matcher

    return default_matcher()
