"""Where bundled data and caches live.  Nothing here touches the network."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Bundled corpora (DrugComb, DDI13, PubMed samples) with their provenance READMEs.
DATA_DIR = REPO_ROOT / "data"


def cache_location() -> Path:
    """Where the cache is, absolute, without creating it: $REXDRUG_CACHE or ~/.cache/rexdrug."""
    return Path(os.environ.get("REXDRUG_CACHE") or Path.home() / ".cache" / "rexdrug").expanduser().absolute()


def cache_dir() -> Path:
    """Per-user cache (converted model folders, downloads), created on first use."""
    root = cache_location()
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_path(*parts: str) -> Path:
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        raise ValueError(f"bundled data file missing: {path} (is this a complete checkout?)")
    return path
