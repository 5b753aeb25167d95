"""`etl.config.load_config`: every value is checked against its field's annotation, with clear messages.

Before, wrong-typed overrides either crashed later with Python errors (``prompt=null`` ->
AttributeError in validate, ``engine.sampling=3``, bad YAML -> a yaml traceback) or were taken as
they came (``extract_partitions=abc`` reached Spark, ``max_candidates=1.5`` sliced a list).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from etl.config import load_config
from etl.pubmed.entrez import EntrezConfig
from jobs.sweep import SweepConfig
from model.engines.base import EngineConfig


@dataclass
class Inner:
    n: int = 1


@dataclass
class Shapes:
    """Annotations the shipped configs use, in one place: unions, tuples, literals, paths, mappings."""

    modules: str | list[str] = "all"
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[int, str] = (1, "a")
    mode: Literal["fast", "slow"] = "fast"
    out: Path = Path("out")
    weights: dict[str, float] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)
    maybe_inner: Inner | None = None


# (config class, overrides, fragment the message must contain)
BAD_OVERRIDES = [
    (SweepConfig, ["prompt=null"], "prompt is a section (variant, hints"),
    (SweepConfig, ["engine.sampling=3"], "engine.sampling is a section"),
    (SweepConfig, ["engine=openai"], "set its keys instead, e.g. engine.kind="),
    (SweepConfig, ["engine.batch_size=[1"], "'engine.batch_size=[1': the value is not valid YAML"),
    (SweepConfig, ["prompt.variant={a: 1"], "not valid YAML"),
    (SweepConfig, ["extract_partitions=abc"], "extract_partitions must be an integer, got 'abc' (text)"),
    (SweepConfig, ["max_candidates=1.5"], "max_candidates must be an integer or null, got 1.5"),
    (SweepConfig, ["batch_size=true"], "batch_size must be an integer, got true"),
    (SweepConfig, ["batch_size.x=1"], "batch_size must be an integer, got {'x': 1}"),
    (SweepConfig, ["prompt.window=2.0"], "prompt.window must be an integer, got 2.0"),
    (SweepConfig, ["build_kb=1"], "build_kb must be true or false, got 1"),
    (SweepConfig, ["engine.timeout_s=fast"], "engine.timeout_s must be a number, got 'fast'"),
    (SweepConfig, ["engine.model=3.10"], "engine.model must be text, got 3.1 (number); quote it"),
    (SweepConfig, ["inputs=a.xml"], "inputs must be a list of text values, got 'a.xml'"),
    (SweepConfig, ["inputs=[a.xml, 3]"], "inputs[1] must be text, got 3"),
    (SweepConfig, ["engine.label_bias={POS: x}"], "engine.label_bias.POS must be a number, got 'x'"),
    (SweepConfig, ["engine.label_bias=[1]"], "engine.label_bias must be a mapping or null"),
    (SweepConfig, ["warehouse="], "warehouse must be a path, got ''"),
    (SweepConfig, ["=3"], "has an empty key"),
    (SweepConfig, ["engine..kind=x"], "has an empty key"),
    (SweepConfig, ["nope=1"], "unknown config key(s): nope"),
    (EngineConfig, ["sampling.seed=1.5"], "sampling.seed must be an integer or null, got 1.5"),
    (EntrezConfig, ["batch_size=ten"], "batch_size must be an integer, got 'ten'"),
    (EntrezConfig, ["rate_per_s=[3]"], "rate_per_s must be a number or null"),
    (Shapes, ["modules=3"], "modules must be text or a list of text values, got 3"),
    (Shapes, ["sizes=[1, x]"], "sizes[1] must be an integer, got 'x'"),
    (Shapes, ["pair=[1]"], "pair must have 2 items, got 1"),
    (Shapes, ["mode=medium"], "mode must be one of 'fast', 'slow', got 'medium'"),
    (Shapes, ["out=[a]"], "out must be a path"),
    (Shapes, ["weights.a=heavy"], "weights.a must be a number, got 'heavy'"),
    (Shapes, ["inner=null"], "inner is a section (n)"),
    (Shapes, ["inner.n=x"], "inner.n must be an integer"),
    (Shapes, ["maybe_inner=5"], "maybe_inner must be a section (n) or null, got 5"),
]


@pytest.mark.parametrize(
    "cls, overrides, fragment", BAD_OVERRIDES, ids=lambda v: str(v) if isinstance(v, list) else ""
)
def test_bad_override_is_a_clear_configuration_error(cls, overrides, fragment):
    with pytest.raises(ValueError) as caught:
        load_config(cls, None, ["inputs=[x.xml]", *overrides] if cls is SweepConfig else overrides)
    assert fragment in str(caught.value)


# (config class, overrides, attribute path, expected value and type)
GOOD_OVERRIDES = [
    (SweepConfig, ["max_candidates=null"], "max_candidates", None),
    (SweepConfig, ["max_candidates=12"], "max_candidates", 12),
    (SweepConfig, ["engine.timeout_s=5"], "engine.timeout_s", 5.0),  # int -> float
    (SweepConfig, ["since=2026-11-01"], "since", "2026-11-01"),  # a YAML date, back to its text
    (SweepConfig, ["since=2026/11/01"], "since", "2026/11/01"),
    (SweepConfig, ["engine.model='3.10'"], "engine.model", "3.10"),  # quoted: text, as the hint says
    (SweepConfig, ["engine.label_bias={POS: 1, NEG: -0.5}"], "engine.label_bias", {"POS": 1.0, "NEG": -0.5}),
    (SweepConfig, ["warehouse=wh"], "warehouse", Path("wh")),
    (SweepConfig, ["build_kb=no"], "build_kb", False),  # YAML 1.1 booleans stay booleans
    (Shapes, ["modules=[q, v]"], "modules", ["q", "v"]),
    (Shapes, ["modules=all-linear"], "modules", "all-linear"),
    (Shapes, ["sizes=[3, 4, 5]"], "sizes", (3, 4, 5)),  # list -> tuple
    (Shapes, ["pair=[2, b]"], "pair", (2, "b")),
    (Shapes, ["mode=slow"], "mode", "slow"),
    (Shapes, ["maybe_inner={n: 4}"], "maybe_inner", Inner(4)),
]


@pytest.mark.parametrize(
    "cls, overrides, attribute, expected", GOOD_OVERRIDES, ids=lambda v: str(v) if isinstance(v, list) else ""
)
def test_good_override_is_taken_with_its_declared_type(cls, overrides, attribute, expected):
    config = load_config(cls, None, ["inputs=[x.xml]", *overrides] if cls is SweepConfig else overrides)
    value = config
    for part in attribute.split("."):
        value = getattr(value, part)
    assert value == expected
    assert type(value) is type(expected)


def test_shipped_defaults_still_load():
    assert load_config(SweepConfig, None, ["inputs=[x.xml]"]).engine.sampling.max_new_tokens > 0
    assert load_config(EntrezConfig).batch_size > 0


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("engine: [1\n", "is not valid YAML"),
        ("engine:\n  kind: openai\n   model: x\n", "is not valid YAML"),
        ("- a\n- b\n", "must contain a mapping at the top level"),
        ("engine:\n  batch_size: many\n", "engine.batch_size must be an integer, got 'many'"),
        ("since: 2026-11-01\ninputs: [a.xml]\n", None),  # a YAML date in a text field: accepted
    ],
)
def test_config_file_errors_are_configuration_errors(tmp_path, text, fragment):
    path = tmp_path / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    if fragment is None:
        assert load_config(SweepConfig, path).since == "2026-11-01"
        return
    with pytest.raises(ValueError) as caught:
        load_config(SweepConfig, path, ["inputs=[x.xml]"])
    assert fragment in str(caught.value)
    if "YAML" in fragment:
        assert str(path) in str(caught.value)


def test_non_utf8_config_file_is_a_configuration_error(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_bytes(b"engine:\n  model: \xff\xfe\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(SweepConfig, path)
