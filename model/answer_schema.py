"""The answer schema of the extraction task, declared once.

A completion's ``<answer>`` holds a JSON array of relations ``{"type": LABEL, "ent_set": [drug, ...]}``.
"No combination" is exactly ``[{"type": "NO_COMB", "ent_set": []}]``.  The Pydantic model validates
answers and its JSON schema drives constrained decoding in every engine (lm-format-enforcer,
vLLM structured outputs, OpenAI-compatible ``response_format``).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from schemas.answer import LABELS, no_comb_answer  # the labels are declared once, there

Label = Literal[LABELS]  # Literal of a tuple is the Literal of its members: POS, COMB, NEG, NO_COMB


class AnswerRelation(BaseModel):
    """One relation of an answer: a label and the set of drug names (as written in the sentence)."""

    model_config = ConfigDict(extra="forbid")

    type: Label
    ent_set: list[str] = Field(default_factory=list)


class Answer(RootModel[list[AnswerRelation]]):
    """The whole answer: a JSON array of relations."""


NO_COMB_ANSWER: list[dict] = no_comb_answer()


def answer_json_schema() -> dict:
    """JSON schema of the answer array (for constrained decoding); a fresh copy each call."""
    return Answer.model_json_schema()


def answer_json_schema_text() -> str:
    return json.dumps(answer_json_schema(), sort_keys=True)


def render_answer(relations: list[dict]) -> str:
    """Canonical compact JSON text of an answer; an empty list renders as the NO_COMB answer."""
    rows = [{"type": r["type"], "ent_set": list(r.get("ent_set", []))} for r in relations] or NO_COMB_ANSWER
    Answer.model_validate(rows)  # raises pydantic.ValidationError on a malformed answer we produce
    return json.dumps(rows, ensure_ascii=False)
