"""`rexdrug drugs`: normalize names, find mentions in text, rebuild the drug KB artifact.

rexdrug drugs normalize NAME...          one JSON object per name, in order
rexdrug drugs find --text TEXT | --file F   one JSON object per mention
rexdrug drugs build-kb [--out DIR]       rebuild etl/drugs/kb/ (prints its provenance JSON)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="drugs_command", metavar="ACTION", required=True)
    p = sub.add_parser("normalize", help="Normalize drug names to KB entries (JSON lines).")
    p.add_argument("names", nargs="+", metavar="NAME")
    p = sub.add_parser("find", help="Find drug mentions in a text (JSON lines).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to search")
    src.add_argument("--file", type=Path, help="a UTF-8 text file to search ('-' for stdin)")
    p = sub.add_parser("build-kb", help="Rebuild the drug knowledge base artifact from the vocabularies.")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: etl/drugs/kb/)")


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def run(args: argparse.Namespace) -> int:
    if args.drugs_command == "normalize":
        from etl.drugs import normalize

        for name in args.names:
            _emit({k: v for k, v in normalize(name).items() if k != "name"} | {"name": name})
        return 0
    if args.drugs_command == "find":
        from etl.drugs import default_matcher

        if args.text is not None:
            text = args.text
        elif str(args.file) == "-":
            text = sys.stdin.read()
        else:
            if not args.file.is_file():
                raise ValueError(f"--file {args.file}: no such file")
            text = args.file.read_text(encoding="utf-8")
        for m in default_matcher().find(text):
            _emit(m.as_row())
        return 0
    if args.drugs_command == "build-kb":
        from etl.drugs.build import build_kb

        provenance = build_kb(args.out)
        _emit(provenance)
        return 0
    raise ValueError(f"unknown drugs action {args.drugs_command!r}")
