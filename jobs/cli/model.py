"""rexdrug model: the embedded model (convert the bundled GGUF once; show where things are)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    conv = sub.add_parser("convert", help="convert the bundled SmolLM2 GGUF into the cached HF folder")
    conv.add_argument("--force", action="store_true", help="convert again even if the folder exists")
    sub.add_parser("info", help="show the embedded model's source, cache folder and state")


def run(args: argparse.Namespace) -> int:
    from model.embedded import ensure_embedded_model, model_info

    if args.action == "convert":
        print(ensure_embedded_model(force=args.force))
        return 0
    print(json.dumps(model_info(), indent=2))
    return 0
