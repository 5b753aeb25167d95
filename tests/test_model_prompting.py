"""Prompt snapshots (any wording change must be deliberate: bump the variant's version) and targets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from model.parsing import parse_completion
from model.prompting import (
    VARIANTS,
    PromptConfig,
    build_messages,
    format_target,
    prompt_version,
)
from tests.prompt_fields import read_prompt_fields

SNAPSHOTS = Path(__file__).parent / "data" / "model" / "prompt_snapshots.json"
SENT = "Pentostatin , cyclophosphamide and rituximab improved survival ."
ABSTRACT = (
    "Background sentence one. Pentostatin, cyclophosphamide and rituximab improved survival. Final remark."
)
CASES = [(v, h, c) for v in VARIANTS for h in (False, True) for c in ("abstract", "sentence")] + [
    ("rexdrug", False, "window")
]


def _build(variant, hints, context):
    cfg = PromptConfig(variant=variant, hints=hints, context=context)
    return prompt_version(cfg), build_messages(SENT, ABSTRACT, cfg, hints=["Pentostatin", "rituximab"])


def test_prompt_snapshots():
    current = {f"{v}|{h}|{c}": dict(zip(("version", "messages"), _build(v, h, c))) for v, h, c in CASES}
    if os.environ.get("REXDRUG_UPDATE_SNAPSHOTS"):
        SNAPSHOTS.write_text(json.dumps(current, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert current == json.loads(SNAPSHOTS.read_text(encoding="utf-8"))


def test_rexdrug_layout_and_versions():
    version, messages = _build("rexdrug", True, "abstract")
    assert version == "rexdrug-v1+hints"
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    for needle in (
        "[1] Clinical scenario",
        "[4] Extraction-oriented clinical summary",
        "<answer>",
        f"Target sentence: {SENT}",
        f"Context paragraph: {ABSTRACT}",
        "Candidate drugs in the sentence: Pentostatin; rituximab",
    ):
        assert needle in user
    assert user.index("Target sentence:") < user.index("Context paragraph:")
    assert "<think>" not in _build("rexdrug_answer_only", False, "abstract")[1][1]["content"]
    assert prompt_version(PromptConfig(context="window")) == "rexdrug-v1+ctx=window1"


def test_hints_off_means_no_hints_even_if_given():
    _, messages = _build("rexdrug", False, "sentence")
    assert "Candidate drugs in the sentence" not in messages[1]["content"]
    assert "Context paragraph:" not in messages[1]["content"]


def test_window_context_is_the_sentence_and_its_neighbours():
    _, messages = _build("rexdrug", False, "window")
    assert "Context paragraph: Background sentence one. Pentostatin" in messages[1]["content"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_prompt_fields_read_back(variant):
    _, messages = _build(variant, True, "abstract")
    assert read_prompt_fields(messages) == {"sentence": SENT, "hints": ["Pentostatin", "rituximab"]}


def test_format_target_round_trips_through_the_parser():
    rels = [{"type": "POS", "ent_set": ["Pentostatin", "cyclophosphamide", "rituximab"]}]
    text = format_target(rels, think=["- lymphoma", "- three drugs", "- better survival", "- one POS set"])
    p = parse_completion(text, SENT)
    assert p.status == "ok" and p.answer == rels and "[3] Combination reasoning" in p.think
    assert format_target([]) == '<answer>[{"type": "NO_COMB", "ent_set": []}]</answer>'
    assert parse_completion(format_target([])).declared_no_comb
    with pytest.raises(ValueError, match="4 sections"):
        format_target(rels, think=["only one"])


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="prompt.variant"):
        build_messages(SENT, None, PromptConfig(variant="gpt"))
