"""What an extraction is asked about: one item per sentence, and the prompt an engine gets for it.

The contract from a candidate row to an extraction row (``model.extraction``):

    candidate row (``schemas.extraction.CANDIDATES``) -> ``ExtractionItem`` -> ``Prompt`` (messages + item)
    -> engine -> ``model.engines.base.EngineResult`` (text, error, label log-probs) -> runner row
    (``model.extraction.RESULT_KEYS``) -> extraction row (``schemas.extraction.EXTRACTIONS``)

An item carries the sentence, its context, the sentence's span in the context when the source knows it
(the sweep's sentence rows carry offsets into the abstract), the hints when the caller gives them and the
drug matcher's stored mentions (passed through to the extraction row).  LLM engines read a prompt's
messages; the rule baselines read its item and hints, never the prompt text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.answer import DRUGCOMB_TASK


@dataclass(frozen=True)
class ExtractionItem:
    sentence: str
    context: str | None = None
    # [start, end) of the sentence in ``context`` when the source knows it (sweep: the sentence row's
    # offsets); None: the prompt builder locates the sentence in its context (corpora without offsets)
    span: tuple[int, int] | None = None
    hints: tuple[str, ...] | None = None  # candidate drugs given by the caller; None: from the matcher
    mentions: tuple[Mapping[str, Any], ...] | None = (
        None  # the matcher's stored mentions (schemas.drugs.MENTION)
    )
    # the caller's own fields (doc_id, id, line, ...): every runner row starts with them
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> ExtractionItem:
        """An item from a runner input dict (``sentence``, ``context``, ``hints``, any other keys), checked
        by ``input_problem`` first; an optional ``span`` ([start, end]) is kept when it holds the sentence."""
        context = item.get("context")
        hints = item.get("hints")
        return cls(
            item["sentence"],
            context,
            valid_span(item.get("span"), item["sentence"], context),
            tuple(hints) if hints is not None else None,
            fields=dict(item),
        )

    @classmethod
    def from_candidate(cls, candidate: Mapping[str, Any]) -> ExtractionItem:
        """The item of a sweep candidate row (``schemas.extraction.CANDIDATES``): the sentence, its abstract
        as context, the sentence's offsets in it and its stored mentions.  No hints: the runner derives
        them from the matcher, exactly as training did."""
        sentence, context = candidate["sentence_text"], candidate.get("context") or ""
        span = (candidate.get("sentence_start"), candidate.get("sentence_end"))
        mentions = candidate.get("mentions")
        return cls(
            sentence,
            context,
            valid_span(span, sentence, context),
            mentions=tuple(mentions) if mentions is not None else None,
        )

    def row_fields(self) -> dict[str, Any]:
        """The fields a runner row starts with: the caller's own, else sentence and context."""
        return dict(self.fields) if self.fields else {"sentence": self.sentence, "context": self.context}


def valid_span(span, sentence: str, context: str | None) -> tuple[int, int] | None:
    """``span`` as a (start, end) pair when it indexes exactly ``sentence`` in ``context``, else None."""
    if not context or span is None:
        return None
    try:
        start, end = (int(x) for x in span)
    except (TypeError, ValueError):
        return None
    return (start, end) if 0 <= start <= end <= len(context) and context[start:end] == sentence else None


@dataclass(frozen=True)
class Prompt:
    """One request to an engine: the chat messages built for ``item``, and the hint names they list."""

    messages: list[dict]
    item: ExtractionItem
    hints: tuple[str, ...] = ()  # the candidate drugs the prompt names (what the rule baselines combine)
    # the answer task the messages ask for (``schemas.answer``: DrugComb sets or DDI13 pairs); the rule
    # baselines, which never read the messages, answer a ``ddi`` prompt with pairs
    task: str = DRUGCOMB_TASK
