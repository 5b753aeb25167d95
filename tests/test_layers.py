"""Guards that keep the shape: the import layers, and every shipped config loads and validates.

Layers (CONVENTIONS.md): ``schemas/`` <- ``etl/`` <- ``model/`` <- ``training/`` <- ``jobs/``; a package
imports only packages below it, at module level or inside functions alike (a lazy import is still a
dependency).  The scan reads the source with ``ast``; it imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("schemas", "etl", "model", "training", "jobs")
# what each layer may import of ours
ALLOWED = {name: set(LAYERS[: i + 1]) for i, name in enumerate(LAYERS)}


def imported_packages(source: str) -> set[str]:
    """Top-level package names a module's source imports (absolute imports only; ours use no relative)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def upward_imports() -> list[str]:
    found = []
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            ours = imported_packages(path.read_text(encoding="utf-8")) & set(LAYERS)
            for bad in sorted(ours - ALLOWED[layer]):
                found.append(f"{path.relative_to(ROOT)} imports {bad}")
    return found


@pytest.mark.parametrize(
    "source,expected",
    [
        ("import etl.paths\nfrom model.parsing import parse_completion\n", {"etl", "model"}),
        ("def f():\n    from training.multitask import X\n", {"training"}),  # lazy imports count
        ("from . import sibling\nimport os, json\n", {"os", "json"}),
        ("x = 'from jobs import cli'\n", set()),  # strings are not imports
    ],
)
def test_imported_packages(source, expected):
    assert imported_packages(source) == expected


def test_no_layer_imports_upward():
    assert upward_imports() == []


def _config_class(path: Path):
    from jobs.sweep import SweepConfig
    from model.engines import EngineConfig
    from training.grpo import GRPOConfigFile
    from training.multitask import MultitaskConfig
    from training.sft import SFTConfigFile
    from training.traces import TraceConfig

    rel = path.relative_to(ROOT / "configs").as_posix()
    if rel.startswith("model/"):
        return EngineConfig
    if not rel.startswith("training/"):
        return SweepConfig
    kinds = {
        "sft_": SFTConfigFile,
        "grpo_": GRPOConfigFile,
        "traces_": TraceConfig,
        "multitask_": MultitaskConfig,
    }
    for prefix, cls in kinds.items():
        if path.name.startswith(prefix):
            return cls
    raise AssertionError(f"{rel}: no config class known for this file name; add it to _config_class")


CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def _adapters_named(node) -> list[str]:
    """``adapter:`` values of a parsed YAML tree: earlier runs' outputs that a config continues from."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "adapter" and isinstance(v, str)]
        return found + [a for v in node.values() for a in _adapters_named(v)]
    if isinstance(node, list):
        return [a for v in node for a in _adapters_named(v)]
    return []


@pytest.mark.parametrize("path", CONFIGS, ids=[p.relative_to(ROOT).as_posix() for p in CONFIGS])
def test_every_shipped_config_loads_and_validates(path, tmp_path, monkeypatch):
    """Each YAML loads into its dataclass and validates, given what it documents as run-time input: the
    earlier run's adapter it continues from (a placeholder folder here) and, for a sweep over files,
    ``--input``."""
    import yaml

    from etl.config import load_config
    from jobs.sweep import SweepConfig

    cls = _config_class(path)
    tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    monkeypatch.chdir(tmp_path)
    for adapter in _adapters_named(tree):
        (tmp_path / adapter).mkdir(parents=True, exist_ok=True)
        (tmp_path / adapter / "adapter_config.json").write_text("{}")
    overrides = []
    if cls is SweepConfig and tree.get("source", "files") == "files" and not tree.get("inputs"):
        overrides.append("inputs=[nlm/]")
    config = load_config(cls, path, overrides)
    config.validate()  # load_config validates already; calling it again keeps the test honest if that changes
