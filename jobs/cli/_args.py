"""Argument handling shared by the commands that take inputs and ``KEY=VALUE`` overrides.

Everything here runs before any work starts (no Spark, no network), so a mistyped path, date or
override costs the user a second, not a JVM start.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

# A config override: a dotted key of identifiers, then ``=``.  A path such as ``data/run=1/a.xml`` has a
# ``/`` before its ``=`` and stays a path (write ``./a=b.xml`` for a file literally named so).
OVERRIDE_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*=")

TRAILING_OVERRIDES = "trailing_overrides"  # where PathsThenOverrides puts the overrides it finds


def is_override(token: str) -> bool:
    return bool(OVERRIDE_TOKEN.match(token))


class PathsThenOverrides(argparse.Action):
    """``--input A B key=value``: an ``nargs="+"`` option that leaves ``KEY=VALUE`` tokens to the overrides.

    Without it argparse hands every token after ``--input`` to ``--input``, so an override placed there
    became an input path ("input engine.batch_size=8 does not exist", after Spark had started).
    """

    def __call__(self, parser, namespace, values, option_string=None):
        paths = [v for v in values if not is_override(v)]
        overrides = [v for v in values if is_override(v)]
        if not paths:
            parser.error(f"{option_string} needs at least one path before KEY=VALUE overrides")
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), *paths])
        setattr(
            namespace, TRAILING_OVERRIDES, [*(getattr(namespace, TRAILING_OVERRIDES, None) or []), *overrides]
        )


def all_overrides(args: argparse.Namespace, *dests: str) -> list[str]:
    """Overrides from the given option/positional ``dests`` (in that order), then those found after --input."""
    found: list[str] = []
    for dest in (*dests, TRAILING_OVERRIDES):
        found.extend(getattr(args, dest, None) or [])
    bad = [item for item in found if not is_override(item)]
    if bad:
        raise ValueError(f"not a KEY=VALUE override: {', '.join(map(repr, bad))}")
    return found


def day(text: str):
    """argparse ``type`` for a day: YYYY-MM-DD or YYYY/MM/DD, through the E-utilities' one date parser."""
    from etl.pubmed.entrez import parse_day

    try:
        return parse_day(text, "the value")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def require_existing_inputs(paths) -> None:
    """``ValueError`` naming every input that does not exist (checked before Spark starts)."""
    missing = [str(p) for p in paths if not Path(p).expanduser().exists()]
    if missing:
        raise ValueError(f"input not found: {', '.join(missing)}")


def require_writable_dir(path: str | os.PathLike[str], what: str = "warehouse") -> None:
    """Create ``path`` if needed and prove a file can be written there; ``ValueError`` saying why not.

    Tried for real (a temp file created and removed): permission bits say nothing for root, and a
    read-only mount or a file in the way is only found by trying.
    """
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{what} {target} is a file, not a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".rexdrug-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(target) else ""
        raise ValueError(f"{what} {target} is not writable: {reason}{where}") from None
