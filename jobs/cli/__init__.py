"""The `rexdrug` command line: one dispatcher, one module per subcommand.

Each subcommand module in this package exposes ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their command runs, so ``rexdrug --help`` stays fast and a broken
optional dependency of one command never breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# command name -> (module under jobs.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "parse": ("parse", "Parse PubMed XML files and print one JSON object per record."),
    "fetch": ("fetch", "Download/verify NLM baseline and update files into a local folder."),
    "ingest": ("ingest", "Load PubMed XML (files or E-utilities) into the Parquet + DuckDB warehouse."),
    "query": ("query", "Run SQL on the warehouse."),
    "drugs": ("drugs", "Drug knowledge base: normalize names, find mentions, rebuild the KB."),
    "eval": ("eval", "Score extraction models on DrugComb and DDI13."),
    "extract": ("extract", "Run the extraction model on sentences (JSONL in, JSONL out)."),
    "sweep": ("sweep", "The nightly sweep: ingest -> candidates -> extraction -> tables -> DuckDB."),
    "kb": ("kb", "Build and export the drug-combination knowledge base."),
    "report": ("report", "Write a self-contained HTML report of a warehouse (runs, labels, top drug sets)."),
    "train": ("train", "Training: reasoning traces, LoRA SFT, GRPO, multi-task data."),
    "model": ("model", "Embedded model management (convert the bundled GGUF, show paths)."),
}

log = logging.getLogger("rexdrug")


def configure_logging(verbosity: int) -> None:
    """Logs go to stderr; stdout is reserved for data."""
    level = logging.WARNING - 10 * verbosity if verbosity else logging.INFO
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Third-party chatter that drowns our own progress lines.
    for noisy in ("py4j", "urllib3", "httpx", "httpcore", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rexdrug", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        # Only the selected command's module is imported (its arguments are needed to parse).
        if only == name:
            _load(module_name).add_arguments(sp)
    return parser


def _load(module_name: str):
    return importlib.import_module(f"jobs.cli.{module_name}")


def _selected_command(argv: list[str]) -> str | None:
    for token in argv:
        if token in COMMANDS:
            return token
        if not token.startswith("-"):
            return None
    return None


# sysexits' EX_TEMPFAIL: the warehouse is busy (another writing command holds its lock); retry later.
EXIT_BUSY = 75


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _selected_command(argv)
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    configure_logging(args.verbose)
    module = _load(COMMANDS[args.command][0])
    from etl.warehouse import WarehouseBusy, WarehouseError

    try:
        return int(module.run(args) or 0)
    except WarehouseBusy as exc:  # another command writes the warehouse: try again later
        log.error("%s", exc)
        return EXIT_BUSY
    except WarehouseError as exc:  # e.g. a full disk: said plainly, the previous state is kept
        log.error("%s", exc)
        return 1
    except ValueError as exc:  # configuration errors: loud, short, exit 2
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `rexdrug parse ... | head` is normal use
        return 0
    except OSError as exc:  # a read-only or full warehouse, a vanished file: one line; -v for the traceback
        log.error("%s", describe_os_error(exc))
        log.debug("traceback", exc_info=True)
        return 1


def describe_os_error(exc: OSError) -> str:
    """``cannot write /wh/x.parquet: Read-only file system`` rather than a traceback."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p]
    if not paths:
        return f"I/O error: {reason}"
    return f"I/O error on {' -> '.join(map(str, paths))}: {reason}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
