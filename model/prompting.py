"""The one prompt builder: chat messages for extraction, and the training target format.

Variants (``PromptConfig.variant``):

* ``rexdrug`` - the input layout the released RexDrug weights (DUTIR-BioNLP/RexDrug-base/-adapter)
  were trained on: a system message holding the annotation guideline (the four labels and when to
  prefer NO_COMB) and the reply contract (reason in ``<think>``, answer in ``<answer>``), then a user
  message that asks for the four reasoning sections, fixes the answer format, and ends with the
  ``Target sentence:`` and ``Context paragraph:`` fields.  Field names, section titles, tags and the
  answer format are the interface and kept as the model saw them; the guideline prose is ours.
* ``rexdrug_answer_only`` - the same layout, reasoning switched off (answer tags only).
* ``taiyi_en`` / ``taiyi_zh`` - a single instruction-style user turn in the manner of the Taiyi
  multi-task instruction data (English / Chinese), answer tags only.
* ``ddi`` - DDI13 pair extraction (EFFECT/MECHANISM/ADVISE/INT), the English instruction of the
  multi-task training data (``DDI_TEMPLATES["en"]`` below, which ``training.multitask`` uses too); the
  hints are the sentence's given entities (DDI13 annotates them), the context is not used.

Options: ``hints`` adds the candidate drugs the dictionary matcher found in the sentence;
``context`` is the abstract, the sentence alone, or the sentence with its neighbours (``window``).
The sentence's place in its context is its ``span`` when the caller knows it (the sweep's sentence rows
carry offsets into the abstract); only sources without offsets (the DrugComb corpora) have it located
by text.
Every result stores ``prompt_version(config)`` so numbers are never compared across prompts silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from model.answer_schema import NO_COMB_ANSWER, render_answer
from model.parsing import answer_item
from schemas.answer import DDI_TASK, DRUGCOMB_TASK, NO_COMB
from schemas.drugs import DRUG_KINDS

VARIANTS = ("rexdrug", "rexdrug_answer_only", "taiyi_en", "taiyi_zh", "compact", "ddi")
CONTEXTS = ("abstract", "sentence", "window")
# Bump when the wording of a variant changes: results carry the version they were produced with.
_VERSIONS = {
    "rexdrug": "v1",
    "rexdrug_answer_only": "v2",
    "taiyi_en": "v1",
    "taiyi_zh": "v1",
    "compact": "v1",
    "ddi": "v1",
}

THINK_SECTIONS: tuple[str, ...] = (
    "Clinical scenario",
    "Candidate drugs and regimen focus",
    "Combination reasoning and clinical effect",
    "Extraction-oriented clinical summary",
)


@dataclass
class PromptConfig:
    variant: str = "rexdrug"
    hints: bool = False  # list the matcher's candidate drugs in the prompt
    context: str = "abstract"  # abstract | sentence | window
    window: int = 1  # neighbouring sentences on each side for context=window
    max_context_chars: int = 6000  # long abstracts are cut around the sentence (keeps prompts bounded)

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"prompt.variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.context not in CONTEXTS:
            raise ValueError(f"prompt.context must be one of {', '.join(CONTEXTS)}, got {self.context!r}")
        if self.window < 0 or self.max_context_chars < 100:
            raise ValueError("prompt.window must be >= 0 and prompt.max_context_chars >= 100")

    @property
    def reasoning(self) -> bool:
        return self.variant == "rexdrug"

    @property
    def task(self) -> str:
        """The answer task this prompt asks for (``schemas.answer``): the ``ddi`` variant asks for DDI13
        pairs, every other variant for DrugComb combinations."""
        return DDI_TASK if self.variant == "ddi" else DRUGCOMB_TASK


def ddi_prompt_config() -> PromptConfig:
    """The ddi prompt as the sweep's interactions task and the multi-task training rows send it: DDI13
    pairs, the sentence's drugs as hints, the sentence alone (``context="sentence"``: the ddi prompt reads
    no context, and its version says so)."""
    return PromptConfig(variant="ddi", hints=True, context="sentence")


def prompt_version(config: PromptConfig) -> str:
    """Stable id of the prompt, e.g. ``rexdrug-v1``, ``rexdrug-v1+hints``, ``taiyi_zh-v1+ctx=sentence``."""
    version = f"{config.variant}-{_VERSIONS[config.variant]}"
    if config.hints:
        version += "+hints"
    if config.context != "abstract":
        version += f"+ctx={config.context}" + (str(config.window) if config.context == "window" else "")
    return version


def candidate_hints(sentence: str, matcher, *, drugs_only: bool = False) -> list[str]:
    """The candidate-drug hints of a sentence: distinct non-class matcher mentions (one per KB id), as
    written, in order of appearance.  Training, inference and the rule baselines all use this one list,
    so a model sees at test time exactly the kind of hints it was trained with (rexdrug-smol was trained
    with every non-class mention: naming drugs only in its prompt cost 0.004 on each official DrugComb
    test F1).  ``drugs_only`` keeps drug-kind mentions only (``schemas.drugs.DRUG_KINDS``): what the rule
    baselines combine."""
    found = [
        (
            m.start,
            m.end,
            getattr(m, "id", None),
            m.surface,
            getattr(m, "is_class", False),
            getattr(m, "is_drug", True),
        )
        for m in matcher.find(sentence)
    ]
    return _hint_names(sentence, found, drugs_only)


def mention_hints(sentence: str, mentions, *, drugs_only: bool = True) -> list[str]:
    """The hints of a sentence from its *stored* mentions (``schemas.drugs.MENTION`` rows, what the sweep's
    candidates stage found and passes on): the same rule as ``candidate_hints`` without running the
    matcher again.  ``drugs_only`` (the default: what the ``ddi`` prompt lists, the drugs that may
    interact) keeps drug-kind mentions (``schemas.drugs.DRUG_KINDS``)."""
    found = [
        (
            m.get("start"),
            m.get("end"),
            m.get("id"),
            m.get("surface"),
            bool(m.get("is_class")),
            m.get("kind") in DRUG_KINDS,
        )
        for m in mentions or ()
        if m.get("start") is not None and m.get("end") is not None
    ]
    return _hint_names(sentence, found, drugs_only)


def _hint_names(sentence: str, found, drugs_only: bool) -> list[str]:
    """Distinct names of (start, end, id, surface, is_class, is_drug) mentions: classes (and, with
    ``drugs_only``, non-drugs) left out, one per KB id (else per surface), as written, in order."""
    names, seen = [], set()
    for start, end, mention_id, surface, is_class, is_drug in sorted(found, key=lambda m: m[0]):
        if is_class or (drugs_only and not is_drug):
            continue
        key = (mention_id or surface or "").lower()
        if key not in seen:
            seen.add(key)
            names.append(sentence[start:end])
    return names


def build_messages(
    sentence: str,
    context: str | None,
    config: PromptConfig,
    hints: Sequence[str] | None = None,
    *,
    span: tuple[int, int] | None = None,
) -> list[dict]:
    """Chat messages (``[{"role", "content"}]``) asking for the relations of ``sentence``; ``span`` is
    its [start, end) in ``context`` when known (else it is located by text)."""
    config.validate()
    ctx = select_context(sentence, context, config, span)
    hint_names = unique_names(hints or []) if config.hints else []
    if config.variant in ("rexdrug", "rexdrug_answer_only"):
        return [
            {"role": "system", "content": _rexdrug_system(config.reasoning)},
            {"role": "user", "content": _rexdrug_user(sentence, ctx, hint_names, config.reasoning)},
        ]
    if config.variant == "taiyi_en":
        return [{"role": "user", "content": _taiyi_en(sentence, ctx, hint_names)}]
    if config.variant == "ddi":
        return [{"role": "user", "content": _ddi(sentence, hint_names)}]
    if config.variant == "compact":
        # Our own system line replaces the chat template's default one: every token costs on CPU.
        return [
            {"role": "system", "content": "You extract drug combinations from biomedical sentences."},
            {"role": "user", "content": _compact(sentence, ctx, hint_names)},
        ]
    return [{"role": "user", "content": _taiyi_zh(sentence, ctx, hint_names)}]


def format_target(relations: Iterable, think: str | Sequence[str] | None = None) -> str:
    """Assistant target text: ``<think>[1]..[4]..</think><answer>[...]</answer>``, or the answer only.

    ``relations`` are answer dicts ({type, ent_set}), parser ``Relation`` objects or their dicts
    ({label, drugs}); no relation renders the NO_COMB answer.  ``think`` is the rationale text, or
    four section texts that are numbered and titled here.
    """
    answer = f"<answer>{render_answer(_answer_rows(relations))}</answer>"
    if think is None:
        return answer
    if not isinstance(think, str):
        parts = list(think)
        if len(parts) != len(THINK_SECTIONS):
            raise ValueError(f"think needs {len(THINK_SECTIONS)} sections, got {len(parts)}")
        think = "\n".join(
            f"[{i}] {title}\n{body.strip()}" for i, (title, body) in enumerate(zip(THINK_SECTIONS, parts), 1)
        )
    return f"<think>\n{think.strip()}\n</think>\n{answer}"


# --- context selection --------------------------------------------------------------------------------


def select_context(
    sentence: str, context: str | None, config: PromptConfig, span: tuple[int, int] | None = None
) -> str | None:
    """The context text for the chosen mode (None for sentence-only); ``span``: the sentence's
    [start, end) in ``context`` when known."""
    if config.context == "sentence" or not context:
        return None
    if config.context == "window":
        return _window(sentence, context, config.window, span)
    return _clip(sentence, context, config.max_context_chars, span)


def _window(sentence: str, context: str, n: int, span: tuple[int, int] | None) -> str:
    """The sentence with ``n`` neighbouring sentences on each side, split by the project's splitter."""
    from etl.sentences import split_sentences

    spans = split_sentences(context)
    first, last = _overlapping(spans, *span) if span is not None else _locate(sentence, context, spans)
    if first is None:
        return sentence
    return context[spans[max(0, first - n)][0] : spans[min(len(spans) - 1, last + n)][1]]


def _overlapping(spans: list[tuple[int, int]], start: int, end: int) -> tuple[int | None, int | None]:
    """Indices of the first and last context sentences that [start, end) overlaps."""
    hit = [i for i, (a, b) in enumerate(spans) if a < end and start < b]
    return (hit[0], hit[-1]) if hit else (None, None)


def _locate(sentence: str, context: str, spans: list[tuple[int, int]]) -> tuple[int | None, int | None]:
    """Indices of the first and last context sentences the target sentence overlaps, the sentence found
    by text (sources without offsets: its first occurrence, else spacing/punctuation-blind)."""
    pos = context.find(sentence)
    if pos >= 0:
        first, last = _overlapping(spans, pos, pos + len(sentence))
        if first is not None:
            return first, last
    key = _squash(sentence)[:60]  # spacing/punctuation differ (tokenized corpora): compare squashed text
    if key:
        for i in range(len(spans)):
            if _squash(context[spans[i][0] : spans[min(i + 2, len(spans) - 1)][1]]).startswith(key):
                return i, i
    return None, None


def _squash(text: str) -> str:
    return re.sub(r"\W+", "", text).lower()


def _clip(sentence: str, context: str, limit: int, span: tuple[int, int] | None) -> str:
    if len(context) <= limit:
        return context
    pos = span[0] if span is not None else context.find(sentence[:40])
    centre = max(pos, 0)
    start = max(0, min(centre - limit // 2, len(context) - limit))
    return context[start : start + limit]


def unique_names(names: Iterable[str]) -> list[str]:
    """Stripped, non-empty names, first spelling of each kept (case-insensitive), in order."""
    seen, out = set(), []
    for n in names:
        k = str(n).strip()
        if k and k.lower() not in seen:
            seen.add(k.lower())
            out.append(k)
    return out


def _answer_rows(relations: Iterable) -> list[dict]:
    return [item for item in map(answer_item, relations or []) if item["type"] != NO_COMB]


# --- the variants ---------------------------------------------------------------------------------------

_ANSWER_FORMAT = '[{"type": "POS|NEG|COMB|NO_COMB", "ent_set": ["drug1", "drug2", "..."]}]'
_NO_COMB_TEXT = json.dumps(NO_COMB_ANSWER)


def _rexdrug_system(reasoning: bool = True) -> str:
    # The reasoning variant's last paragraph is the interface the released RexDrug weights expect;
    # the answer-only variant must not ask for reasoning it then forbids.
    closing = (
        "Reply by first reasoning step by step, in a structured way, inside <think>...</think>, and "
        "then giving the final relations as a JSON array inside <answer>...</answer>."
        if reasoning
        else "Reply with the final relations as a JSON array inside <answer>...</answer>, without reasoning."
    )
    return (
        "You are a specialist in extracting drug-drug combination relations from biomedical text.\n\n"
        "Read a target sentence together with its surrounding context and decide whether the sentence "
        "reports clinically meaningful drug combinations; explain how you decided.\n\n"
        "Relation types:\n"
        "- POS: the drugs are given together (or as one regimen) and the text reports a favourable "
        "result, such as improved response or survival, or synergy.\n"
        "- NEG: the drugs are given together or interact and the text reports an unfavourable result, "
        "such as added toxicity or risk, lower efficacy, or advice not to combine them.\n"
        "- COMB: the drugs are clearly given or studied together, but the reported effect is neutral, "
        "mixed, or not judged.\n"
        "- NO_COMB: several drugs appear, but only as lists, alternatives (A or B), separate arms "
        "(A vs B), earlier or background treatments, or hypothetical interactions with no actual "
        "co-administration and outcome.\n\n"
        "Predict POS, NEG or COMB only when joint use or interaction is stated or very strongly "
        "implied; when in doubt answer NO_COMB.\n\n" + closing
    )


def _rexdrug_user(sentence: str, context: str | None, hints: list[str], reasoning: bool) -> str:
    lines = [
        (
            "Using the context paragraph, decide whether the target sentence below contains drug "
            "combination relations that the guideline in the system message asks to extract."
        ),
        "",
    ]
    if reasoning:
        lines += [
            "First, reason inside <think>...</think> in FOUR sections:",
            *(f"[{i}] {title}" for i, title in enumerate(THINK_SECTIONS, 1)),
            '- Under each section, write only short bullet points starting with "- ".',
            "- Keep the whole reasoning short, roughly 100-200 words.",
            "",
            "Then, right after </think>, give ONLY the extracted relations inside an <answer> tag.",
        ]
    else:
        lines += ["Give ONLY the extracted relations inside an <answer> tag, with no reasoning."]
    lines += [
        "- Inside <answer>, return a valid JSON array of the form:",
        "<answer>",
        _ANSWER_FORMAT,
        "</answer>",
        f"- If there is no combination, answer <answer>{_NO_COMB_TEXT}</answer>.",
        "- Do not add any text or explanation outside <answer>.",
        "",
        f"Target sentence: {sentence}",
    ]
    if hints:
        lines.append("Candidate drugs in the sentence: " + "; ".join(hints))
    if context:
        lines.append(f"Context paragraph: {context}")
    return "\n".join(lines) + "\n"


def _instruction_prompt(
    instruction: str,
    sentence: str,
    hints: list[str],
    context: str | None,
    labels: tuple[str, str, str],
    joiner: str = "; ",
) -> str:
    """Instruction, then labelled lines: the sentence, the hinted drugs (if any), the context (if any)."""
    sentence_label, hints_label, context_label = labels
    parts = [instruction, f"{sentence_label}{sentence}"]
    if hints:
        parts.append(hints_label + joiner.join(hints))
    if context:
        parts.append(f"{context_label}{context}")
    return "\n".join(parts)


def _taiyi_en(sentence: str, context: str | None, hints: list[str]) -> str:
    return _instruction_prompt(
        "Drug combination extraction. Find every set of drugs that the sentence reports as used "
        "together, and label each set POS (beneficial), NEG (harmful) or COMB (effect unclear). "
        f"Output a JSON array {_ANSWER_FORMAT} inside <answer></answer>; if there is no "
        f"combination output <answer>{_NO_COMB_TEXT}</answer>.",
        sentence,
        hints,
        context,
        ("Sentence: ", "Drugs mentioned: ", "Context: "),
    )


def _compact(sentence: str, context: str | None, hints: list[str]) -> str:
    """The shortest instruction, for small models trained on it (rexdrug-smol): ~4x fewer tokens."""
    return _instruction_prompt(
        "Label each drug set given together: POS (beneficial), NEG (harmful), COMB (effect unclear). "
        f"Answer <answer>JSON</answer>; none: <answer>{_NO_COMB_TEXT}</answer>.",
        sentence,
        hints,
        context,
        ("Sentence: ", "Drugs: ", "Context: "),
    )


# The multi-task instruction templates (Taiyi-style; English and Chinese): the ``ddi`` prompt variant and
# the multi-task training rows of ``training.multitask`` both read them here.
DDI_TEMPLATES = {
    "en": (
        "Drug-drug interaction extraction. For every pair of drugs in the sentence that interact, give the "
        "interaction type: EFFECT (pharmacodynamic effect), MECHANISM (pharmacokinetic mechanism), ADVISE "
        "(a recommendation) or INT (interaction without detail). Output a JSON array "
        '[{"type": "EFFECT", "ent_set": ["drugA", "drugB"]}] inside <answer></answer>; if no pair interacts, '
        'output <answer>[{"type": "NO_COMB", "ent_set": []}]</answer>.\nSentence: {sentence}\nDrugs: {drugs}'
    ),
    "zh": (
        "药物相互作用抽取。找出句子中存在相互作用的每一对药物，并给出类型：EFFECT（药效学作用）、MECHANISM（药代动力学机制）、"
        "ADVISE（用药建议）或 INT（未说明细节的相互作用）。请在<answer></answer>中输出JSON数组 "
        '[{"type": "EFFECT", "ent_set": ["药物A", "药物B"]}]；如果没有相互作用，输出'
        '<answer>[{"type": "NO_COMB", "ent_set": []}]</answer>。\n句子：{sentence}\n药物：{drugs}'
    ),
}
NER_TEMPLATES = {
    "en": (
        "Drug name recognition. List every drug mentioned in the sentence, written exactly as in the text, "
        'as a JSON array inside <answer></answer>, e.g. <answer>["drugA", "drugB"]</answer>.\nSentence: {sentence}'
    ),
    "zh": (
        "药物命名实体识别。列出句子中提到的所有药物名称（保持原文写法），以JSON数组形式输出在<answer></answer>中，"
        '例如 <answer>["药物A", "药物B"]</answer>。\n句子：{sentence}'
    ),
}


def _ddi(sentence: str, hints: list[str]) -> str:
    """The multi-task DDI instruction (the wording the adapters were trained with); no Drugs line without hints."""
    text = DDI_TEMPLATES["en"].replace("{sentence}", sentence)
    if hints:
        return text.replace("{drugs}", "; ".join(hints))
    return text.replace("\nDrugs: {drugs}", "")


def _taiyi_zh(sentence: str, context: str | None, hints: list[str]) -> str:
    return _instruction_prompt(
        "药物联合用药关系抽取。找出句子中描述为联合使用的所有药物组合，并为每个组合标注类型："
        "POS（有益）、NEG（有害）或 COMB（效果不明确）。"
        f"请在<answer></answer>中输出JSON数组 {_ANSWER_FORMAT}；"
        f"如果没有联合用药，输出<answer>{_NO_COMB_TEXT}</answer>。药物名称请保持原文写法。",
        sentence,
        hints,
        context,
        ("句子：", "句中药物：", "上下文："),
        joiner="；",
    )
