"""The one completion parser: model text -> relations, parse status and reason ("parse once, score many").

A completion should look like ``<think>...</think><answer>[{"type": ..., "ent_set": [...]}]</answer>``.
Small models rarely comply, so the parser recovers what it can, and says what it did:

* status ``ok``: both tag pairs present (``<think>`` only when the completion has one) and the answer
  is a valid JSON list of valid relations, nothing changed;
* ``repaired``: relations recovered after repairs (missing/unclosed tags, code fences, trailing text,
  single quotes, truncated JSON, unknown labels or one-drug sets dropped, duplicates merged, and with
  ``drop_contrasted`` DrugComb sets whose drugs the sentence contrasts, "A versus B"); each
  repair is a ``RepairNote`` (a ``Repair`` code and its details) in ``repairs``, and their messages make
  up ``reason``;
* ``no_answer``: no answer-like text at all (empty output, prose only);
* ``invalid_json``: an answer region exists but no JSON list could be recovered from it;
* ``invalid_schema``: JSON parsed but it is not a list of relation objects.

Relations hold only real relations of the task's labels (``task``: DrugComb's POS/COMB/NEG with >= 2
distinct drugs, or DDI13's EFFECT/MECHANISM/ADVISE/INT pairs; ``schemas.answer.TASK_LABELS``); an explicit
NO_COMB answer sets ``declared_no_comb``.  Every drug name is aligned to the sentence (when given):
case-, spacing- and hyphen-insensitive, on word boundaries; unaligned names keep ``span=None`` and
``grounded=False`` and are listed in ``reason``.  ``parse_completion`` never raises on model output.
"""

from __future__ import annotations

import ast
import enum
import json
import re
import unicodedata
from dataclasses import dataclass, field

from model.contrast import contrasted_pair
from model.evaluation.matching import normalize_drug_name
from schemas.answer import (
    COMB,
    DRUGCOMB_TASK,
    INVALID_JSON,
    INVALID_SCHEMA,
    NEG,
    NO_ANSWER,
    NO_COMB,
    PARSE_OK,
    PARSE_REPAIRED,
    POS,
    TASK_LABELS,
    USABLE_PARSE_STATUSES,
)


class Repair(enum.Enum):
    """What the parser changed to read a completion: a stable code (``Repair.X.code``) and the message
    template of the ``reason`` text (its fields are the note's ``details``).  Rewards and evaluations
    test codes, never the message text."""

    # the tags around the reasoning and the answer
    UNCLOSED_THINK = "unclosed <think>"
    MISSING_THINK = "missing <think>"
    TEXT_AFTER_ANSWER = "text after </answer> ignored"
    UNCLOSED_ANSWER = "unclosed <answer>"
    MISSING_ANSWER_TAGS = "missing <answer> tags"
    # the JSON text of the answer
    CODE_FENCE = "code fence removed"
    TRAILING_TEXT = "trailing text ignored"
    LEADING_TEXT = "leading text ignored"
    TRUNCATED_JSON = "truncated JSON closed"
    TRAILING_COMMAS = "trailing commas removed"
    PYTHON_LITERAL = "python-style literal"
    SINGLE_QUOTES = "single quotes replaced"
    SINGLE_OBJECT = "single object wrapped in a list"
    # the answer's items
    ITEM_NOT_OBJECT = "item {index} is not an object"
    UNKNOWN_LABEL = "unknown label {label!r} dropped"
    LABEL_SYNONYM = "label {written!r} read as {label}"
    NO_COMB_DRUGS = "drugs of a NO_COMB item ignored"
    REPEATED_NAMES = "repeated drug names merged in item {index}"
    TOO_FEW_DRUGS = "{label} item with {n} drug(s) dropped"
    DUPLICATE_SET = "duplicate drug set merged (kept {kept}, dropped {label})"
    DUPLICATE_RELATION = "duplicate relation merged"
    NO_COMB_BESIDE_RELATIONS = "NO_COMB item next to relations ignored"
    NOT_IN_SENTENCE = "not in sentence: {names}"
    CONTRASTED_SET = "{label} set dropped: the sentence contrasts {first!r} and {second!r} ({cue!r})"
    NO_RELATION_OBJECTS = "answer list holds no relation objects"
    EMPTY_LIST = "empty answer list read as NO_COMB"

    @property
    def code(self) -> str:
        return self.name.lower()

    def note(self, **details) -> RepairNote:
        return RepairNote(self, tuple(sorted(details.items())))


# Repairs of the answer's text itself (tags, JSON syntax): after any of them the answer was not, as
# written, a valid JSON list inside answer tags (the format rewards give no credit for it).
FORMAT_REPAIRS = frozenset(
    {
        Repair.UNCLOSED_ANSWER,
        Repair.MISSING_ANSWER_TAGS,
        Repair.CODE_FENCE,
        Repair.TRAILING_TEXT,
        Repair.LEADING_TEXT,
        Repair.TRUNCATED_JSON,
        Repair.TRAILING_COMMAS,
        Repair.PYTHON_LITERAL,
        Repair.SINGLE_QUOTES,
        Repair.SINGLE_OBJECT,
    }
)


@dataclass(frozen=True)
class RepairNote:
    """One repair of one completion: its code and the details its message is written with."""

    repair: Repair
    details: tuple[tuple[str, object], ...] = ()

    @property
    def code(self) -> str:
        return self.repair.code

    @property
    def message(self) -> str:
        return self.repair.value.format(**dict(self.details))

    def __str__(self) -> str:
        return self.message


# Written labels -> answer labels, per task (keys upper-cased, spaces and hyphens as "_").
_DRUGCOMB_SYNONYMS = {
    POS: POS,
    "POSITIVE": POS,
    "POS_COMB": POS,
    "SYNERGY": POS,
    "SYNERGISTIC": POS,
    COMB: COMB,
    "COMBINATION": COMB,
    "NEUTRAL": COMB,
    NEG: NEG,
    "NEGATIVE": NEG,
    "NEG_COMB": NEG,
    "ANTAGONISTIC": NEG,
}
_NO_COMB_SYNONYMS = {
    NO_COMB: NO_COMB,
    "NOCOMB": NO_COMB,
    "NO_COMBINATION": NO_COMB,
    "NONE": NO_COMB,
    "NO": NO_COMB,
}
_LABEL_SYNONYMS = {
    task: {
        **({label: label for label in labels} if task != DRUGCOMB_TASK else _DRUGCOMB_SYNONYMS),
        **_NO_COMB_SYNONYMS,
    }
    for task, labels in TASK_LABELS.items()
}
_DRUG_KEYS = ("ent_set", "drugs", "entities", "ent", "drug_set")
_LABEL_KEYS = ("type", "label", "relation", "relation_type")

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"
_FENCE = re.compile(r"```(?:json|JSON|python)?\s*(.*?)(?:```|$)", re.DOTALL)


@dataclass(frozen=True)
class Relation:
    """One extracted combination; ``spans``/``grounded`` align with ``drugs`` (None without a sentence)."""

    label: str
    drugs: tuple[str, ...]
    spans: tuple[tuple[int, int] | None, ...] | None = None
    grounded: tuple[bool, ...] | None = None
    # position of the answer item it was read from (``raw_answer[item_index]``): ties a relation to the
    # type slot the model wrote it at (its label distribution, model.confidence); not part of equality
    item_index: int | None = field(default=None, compare=False)

    @property
    def all_grounded(self) -> bool:
        return bool(self.grounded) and all(self.grounded)

    def as_dict(self) -> dict:
        """Plain-dict form stored with results: label and drugs [{name, start, end, grounded}]."""
        drugs = []
        for i, name in enumerate(self.drugs):
            span = self.spans[i] if self.spans is not None else None
            drugs.append(
                {
                    "name": name,
                    "start": span[0] if span else None,
                    "end": span[1] if span else None,
                    "grounded": bool(self.grounded[i]) if self.grounded is not None else False,
                }
            )
        return {"label": self.label, "drugs": drugs}


@dataclass
class ParsedCompletion:
    relations: list[Relation]
    think: str | None
    status: str
    reason: str
    has_think_tags: bool
    has_answer_tags: bool
    answer_is_valid_list: bool  # the raw answer text is, unrepaired, a valid list of valid relations
    declared_no_comb: bool = False  # the model answered NO_COMB (explicitly)
    raw_answer: list | None = None  # the JSON value recovered from the answer region, before cleaning
    n_items: int = 0  # items in the recovered answer list
    n_duplicates: int = 0  # items that repeated an earlier drug set
    n_dropped: int = 0  # items dropped (unknown label, < 2 drugs, malformed)
    repairs: list[RepairNote] = field(default_factory=list)
    task: str = DRUGCOMB_TASK  # whose labels the relations carry (schemas.answer.TASK_LABELS)

    @property
    def ok(self) -> bool:
        return self.status in USABLE_PARSE_STATUSES

    @property
    def repair_codes(self) -> frozenset[Repair]:
        return frozenset(note.repair for note in self.repairs)

    @property
    def answer(self) -> list[dict]:
        """Relations in the model's answer format; [] means no combination."""
        return [answer_item(r) for r in self.relations]


def answer_item(relation) -> dict:
    """The answer form ``{"type", "ent_set"}`` of a relation, the one conversion between the relation
    shapes: a parser ``Relation``, its stored dict (``Relation.as_dict``: {label, drugs: [{name, ...}]})
    or an answer item already."""
    if not isinstance(relation, dict) and hasattr(relation, "label") and hasattr(relation, "drugs"):
        return {"type": relation.label, "ent_set": list(relation.drugs)}
    if isinstance(relation, dict) and "type" in relation:
        return {"type": relation["type"], "ent_set": list(relation.get("ent_set", []))}
    if isinstance(relation, dict) and "label" in relation:
        return {
            "type": relation["label"],
            "ent_set": [d["name"] if isinstance(d, dict) else d for d in relation.get("drugs", [])],
        }
    raise ValueError(f"cannot read relation {relation!r}")


def ddi_items(parsed: ParsedCompletion) -> list[dict] | None:
    """The object items of the recovered answer list, as the model wrote them (None when nothing usable
    was recovered): what the DDI rewards and the DDI13 scorer read (they count duplicates and NO_COMB
    items as written, which relations merge or drop)."""
    if not parsed.ok or not isinstance(parsed.raw_answer, list):
        return None
    return [i for i in parsed.raw_answer if isinstance(i, dict)]


def parse_completion(
    text: str | None, sentence: str | None = None, task: str = DRUGCOMB_TASK, *, drop_contrasted: bool = False
) -> ParsedCompletion:
    """Parse one completion of ``task`` (``drugcomb`` or ``ddi``; see module doc).  Never raises on
    model output.  ``drop_contrasted``: DrugComb sets whose drugs the sentence contrasts ("A versus B",
    ``model.contrast``) are dropped with ``Repair.CONTRASTED_SET`` — what the extraction runner reads;
    rewards read the answer as the model wrote it (a contrasted set must cost the model, not vanish)."""
    if task not in TASK_LABELS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASK_LABELS)}")
    try:
        parsed = _parse(
            text if isinstance(text, str) else ("" if text is None else str(text)),
            sentence,
            task,
            drop_contrasted and task == DRUGCOMB_TASK,
        )
    except Exception as exc:  # noqa: BLE001 - a parser bug must not kill a sweep; it becomes a status
        parsed = ParsedCompletion(
            [], None, INVALID_JSON, f"parser error: {type(exc).__name__}: {exc}", False, False, False
        )
    parsed.task = task
    return parsed


# --- structure: think / answer regions ----------------------------------------------------------------


def _parse(text: str, sentence: str | None, task: str, drop_contrasted: bool = False) -> ParsedCompletion:
    repairs: list[RepairNote] = []
    think, has_think_tags, rest = _split_think(text, repairs)
    region, has_answer_tags = _answer_region(rest, repairs)
    base = {"think": think, "has_think_tags": has_think_tags, "has_answer_tags": has_answer_tags}
    if region is None or not region.strip():
        reason = "empty output" if not text.strip() else "no answer found"
        return ParsedCompletion(
            [], status=NO_ANSWER, reason=reason, answer_is_valid_list=False, repairs=repairs, **base
        )
    strict_ok = has_answer_tags and _strictly_valid(region, TASK_LABELS[task])
    value = _load_json_list(region, repairs)
    if value is None:
        status = INVALID_JSON if ("[" in region or "{" in region) else NO_ANSWER
        return ParsedCompletion(
            [],
            status=status,
            reason=_join(repairs, "no JSON list recovered"),
            answer_is_valid_list=False,
            repairs=repairs,
            **base,
        )
    if not isinstance(value, list):
        return ParsedCompletion(
            [],
            status=INVALID_SCHEMA,
            reason=_join(repairs, f"answer is a JSON {type(value).__name__}, not a list"),
            answer_is_valid_list=False,
            raw_answer=None,
            repairs=repairs,
            **base,
        )
    relations, declared_no_comb, n_dup, n_drop, schema_ok = _clean_items(
        value, sentence, repairs, task, drop_contrasted
    )
    if not schema_ok:
        return ParsedCompletion(
            [],
            status=INVALID_SCHEMA,
            reason=_join(repairs),
            answer_is_valid_list=False,
            raw_answer=value,
            n_items=len(value),
            n_dropped=n_drop,
            repairs=repairs,
            **base,
        )
    status = PARSE_OK if not repairs else PARSE_REPAIRED
    return ParsedCompletion(
        relations,
        status=status,
        reason=_join(repairs) if repairs else "",
        answer_is_valid_list=strict_ok,
        declared_no_comb=declared_no_comb and not relations,
        raw_answer=value,
        n_items=len(value),
        n_duplicates=n_dup,
        n_dropped=n_drop,
        repairs=repairs,
        **base,
    )


def _split_think(text: str, repairs: list[RepairNote]) -> tuple[str | None, bool, str]:
    """(think text, both think tags present, text after the think block)."""
    low = text.lower()
    o, c = low.find(_THINK_OPEN), low.find(_THINK_CLOSE)
    if o >= 0 and c > o:
        return text[o + len(_THINK_OPEN) : c].strip(), True, text[c + len(_THINK_CLOSE) :]
    if o >= 0:  # unclosed <think>: reasoning runs until the answer (or the end)
        a = low.find(_ANSWER_OPEN, o)
        end = a if a >= 0 else len(text)
        repairs.append(Repair.UNCLOSED_THINK.note())
        return text[o + len(_THINK_OPEN) : end].strip(), False, text[end:]
    if c >= 0:  # chat templates sometimes put <think> in the prompt: only the closing tag is generated
        repairs.append(Repair.MISSING_THINK.note())
        return text[:c].strip(), False, text[c + len(_THINK_CLOSE) :]
    return None, False, text


def _answer_region(rest: str, repairs: list[RepairNote]) -> tuple[str | None, bool]:
    low = rest.lower()
    o = low.find(_ANSWER_OPEN)
    if o >= 0:
        c = low.find(_ANSWER_CLOSE, o)
        if c >= 0:
            if rest[c + len(_ANSWER_CLOSE) :].strip():
                repairs.append(Repair.TEXT_AFTER_ANSWER.note())
            return rest[o + len(_ANSWER_OPEN) : c], True
        repairs.append(Repair.UNCLOSED_ANSWER.note())
        return rest[o + len(_ANSWER_OPEN) :], False
    # No answer tags: the last JSON-looking list (or object) in the text is the answer.
    start = _last_json_start(rest)
    if start is None:
        return None, False
    repairs.append(Repair.MISSING_ANSWER_TAGS.note())
    return rest[start:], False


def _last_json_start(text: str) -> int | None:
    """Start of the last fenced block holding a list, else of the last ``[{``/``[]``, else of a ``{``."""
    fenced = [m for m in re.finditer(r"```", text)]
    for m in reversed(fenced[::2]):  # opening fences
        if "[" in text[m.start() :]:
            return m.start()
    lists = list(re.finditer(r"\[\s*[\{\]]", text))
    if lists:
        return lists[-1].start()
    m = text.find("{")
    return m if m >= 0 else None


# --- JSON recovery --------------------------------------------------------------------------------------


def _strictly_valid(region: str, labels: tuple[str, ...]) -> bool:
    try:
        value = json.loads(region.strip())
    except (json.JSONDecodeError, ValueError):
        return False
    return isinstance(value, list) and bool(value) and all(_item_strictly_valid(v, labels) for v in value)


def _item_strictly_valid(item, labels: tuple[str, ...]) -> bool:
    if not isinstance(item, dict) or set(item) != {"type", "ent_set"}:
        return False
    ents = item["ent_set"]
    if item["type"] == NO_COMB:
        return ents == []
    return (
        item["type"] in labels
        and isinstance(ents, list)
        and len(ents) >= 2
        and all(isinstance(e, str) and e.strip() for e in ents)
    )


def _load_json_list(region: str, repairs: list[RepairNote]):
    text = region.strip()
    fence = _FENCE.search(text)
    if fence and "```" in text:
        text = fence.group(1).strip()
        repairs.append(Repair.CODE_FENCE.note())
    start = _first_bracket(text)
    if start is None:
        return None
    candidate, closed = _balanced(text, start)
    if closed and text[start + len(candidate) :].strip():
        repairs.append(Repair.TRAILING_TEXT.note())
    if start > 0 and text[:start].strip():
        repairs.append(Repair.LEADING_TEXT.note())
    if not closed:
        candidate = _close_truncated(candidate)
        if candidate is None:
            return None
        repairs.append(Repair.TRUNCATED_JSON.note())
    value = _loads_lenient(candidate, repairs)
    if isinstance(value, dict):
        repairs.append(Repair.SINGLE_OBJECT.note())
        value = [value]
    return value


def _first_bracket(text: str) -> int | None:
    positions = [p for p in (text.find("["), text.find("{")) if p >= 0]
    return min(positions) if positions else None


def _balanced(text: str, start: int) -> tuple[str, bool]:
    """The bracketed value starting at ``start`` (string-aware); (prefix, False) when never closed."""
    depth, quote, escape = 0, None, False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'":
            # an apostrophe inside a word (e.g. Hodgkin's) is not a quote
            if ch == "'" and i > 0 and text[i - 1].isalnum() and i + 1 < len(text) and text[i + 1].isalnum():
                continue
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1], True
    return text[start:], False


def _close_truncated(prefix: str) -> str | None:
    """Keep the complete objects of a truncated list: cut after the last object that closed."""
    if not prefix.startswith("["):
        return None
    depth, quote, escape, last_obj_end = 0, None, False, None
    for i, ch in enumerate(prefix):
        if quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if ch == "}" and depth == 1:
                last_obj_end = i
    if last_obj_end is None:
        return "[]"
    return prefix[: last_obj_end + 1] + "]"


def _loads_lenient(candidate: str, repairs: list[RepairNote]):
    try:
        return json.loads(candidate)
    except (json.JSONDecodeError, ValueError):
        pass
    no_trailing_commas = re.sub(r",\s*([\]}])", r"\1", candidate)
    if no_trailing_commas != candidate:
        try:
            value = json.loads(no_trailing_commas)
            repairs.append(Repair.TRAILING_COMMAS.note())
            return value
        except (json.JSONDecodeError, ValueError):
            pass
    try:  # Python literal syntax: single quotes, True/None
        value = ast.literal_eval(no_trailing_commas)
        repairs.append(Repair.PYTHON_LITERAL.note())
        return value
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        pass
    swapped = no_trailing_commas.replace("'", '"')
    try:
        value = json.loads(swapped)
        repairs.append(Repair.SINGLE_QUOTES.note())
        return value
    except (json.JSONDecodeError, ValueError):
        return None


# --- relation cleaning and grounding ----------------------------------------------------------------


def _clean_items(
    items: list, sentence: str | None, repairs: list[RepairNote], task: str, drop_contrasted: bool = False
):
    relations: list[Relation] = []
    seen: dict[frozenset, str] = {}
    declared_no_comb = False
    n_dup = n_drop = 0
    n_objects = 0
    unaligned: list[str] = []
    index = SentenceIndex(sentence) if sentence is not None else None  # built once per answer
    for idx, item in enumerate(items):
        if not isinstance(item, dict):
            n_drop += 1
            repairs.append(Repair.ITEM_NOT_OBJECT.note(index=idx))
            continue
        n_objects += 1
        raw_label = _first_present(item, _LABEL_KEYS)
        label = _normalize_label(raw_label, task)
        names = _drug_names(_first_present(item, _DRUG_KEYS))
        if label is None:
            n_drop += 1
            repairs.append(Repair.UNKNOWN_LABEL.note(label=raw_label))
            continue
        if raw_label != label:
            repairs.append(Repair.LABEL_SYNONYM.note(written=raw_label, label=label))
        if label == NO_COMB:
            declared_no_comb = True
            if names:
                repairs.append(Repair.NO_COMB_DRUGS.note())
            continue
        unique = _dedupe_names(names)
        if len(unique) != len(names):
            repairs.append(Repair.REPEATED_NAMES.note(index=idx))
        if len(unique) < 2:
            n_drop += 1
            repairs.append(Repair.TOO_FEW_DRUGS.note(label=label, n=len(unique)))
            continue
        key = frozenset(normalize_drug_name(n) for n in unique)
        if key in seen:
            n_dup += 1
            repairs.append(
                Repair.DUPLICATE_SET.note(kept=seen[key], label=label)
                if seen[key] != label
                else Repair.DUPLICATE_RELATION.note()
            )
            continue
        if drop_contrasted and index is not None:
            contrast = contrasted_pair(sentence, [index.find_all(n) for n in unique])
            if contrast is not None:
                i, j, cue = contrast
                n_drop += 1
                repairs.append(
                    Repair.CONTRASTED_SET.note(label=label, first=unique[i], second=unique[j], cue=cue)
                )
                continue
        seen[key] = label
        spans, grounded = _ground(unique, index)
        if grounded is not None:
            unaligned += [n for n, g in zip(unique, grounded) if not g]
        relations.append(Relation(label, tuple(unique), spans, grounded, item_index=idx))
    if relations and declared_no_comb:
        repairs.append(Repair.NO_COMB_BESIDE_RELATIONS.note())
    if unaligned and task == DRUGCOMB_TASK:
        # a DrugComb answer must write names as the sentence does; DDI13's given entities may be
        # discontinuous ("Loop ... diuretics"), so an unaligned DDI name is no defect of the answer
        repairs.append(Repair.NOT_IN_SENTENCE.note(names=", ".join(repr(n) for n in unaligned)))
    schema_ok = not items or n_objects > 0
    if not schema_ok:
        repairs.append(Repair.NO_RELATION_OBJECTS.note())
    if not items:
        repairs.append(Repair.EMPTY_LIST.note())
    return relations, declared_no_comb, n_dup, n_drop, schema_ok


def _first_present(item: dict, keys: tuple[str, ...]):
    for k in keys:
        if k in item:
            return item[k]
    lowered = {str(k).lower(): v for k, v in item.items()}
    for k in keys:
        if k in lowered:
            return lowered[k]
    return None


def _normalize_label(raw, task: str) -> str | None:
    if not isinstance(raw, str):
        return None
    key = re.sub(r"[\s\-]+", "_", raw.strip().upper())
    return _LABEL_SYNONYMS[task].get(key)


def _drug_names(raw) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [p for p in re.split(r"\s*[,;]\s*|\s+\+\s+", raw)]
    if not isinstance(raw, (list, tuple)):
        return []
    names = []
    for v in raw:
        if isinstance(v, (list, tuple)):  # nested lists: flatten one level
            names += [str(x).strip() for x in v if isinstance(x, (str, int, float)) and str(x).strip()]
        elif isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v).strip():
            names.append(str(v).strip())
    return names


def _dedupe_names(names: list[str]) -> list[str]:
    out, seen = [], set()
    for n in names:
        k = normalize_drug_name(n)
        if k and k not in seen:
            seen.add(k)
            out.append(n)
    return out


def _ground(names: list[str], index: SentenceIndex | None):
    """Each name's first span in the sentence ``index`` was built on (None, None without a sentence)."""
    if index is None:
        return None, None
    spans = tuple(index.find(n) for n in names)
    return spans, tuple(s is not None for s in spans)


class SentenceIndex:
    """Case/spacing/hyphen-insensitive search of names in one sentence, on word boundaries."""

    def __init__(self, sentence: str):
        self.sentence = sentence
        chars, offsets = [], []
        for i, ch in enumerate(sentence):
            for c in unicodedata.normalize("NFKC", ch).casefold():
                if c.isspace() or c in "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00ad":
                    continue
                chars.append(c)
                offsets.append(i)
        self.text = "".join(chars)
        self.offsets = offsets

    def find(self, name: str) -> tuple[int, int] | None:
        """The first occurrence of ``name`` (its character span), or None."""
        return next(self._occurrences(name), None)

    def find_all(self, name: str) -> list[tuple[int, int]]:
        """Every occurrence of ``name``, in order."""
        return list(self._occurrences(name))

    def _occurrences(self, name: str):
        key = normalize_drug_name(name)
        if not key:
            return
        pos = self.text.find(key)
        while pos >= 0:
            start = self.offsets[pos]
            end = self.offsets[pos + len(key) - 1] + 1
            if self._boundary(start, end):
                yield start, end
            pos = self.text.find(key, pos + 1)

    def _boundary(self, start: int, end: int) -> bool:
        s = self.sentence
        before_ok = start == 0 or not s[start - 1].isalnum()
        after_ok = end >= len(s) or not s[end].isalnum()
        return before_ok and after_ok


def ground_name(name: str, sentence: str) -> tuple[int, int] | None:
    """Character span of ``name`` in ``sentence`` (case/spacing/hyphen-insensitive), or None."""
    return SentenceIndex(sentence).find(name)


def _join(repairs: list[RepairNote], *failure: str) -> str:
    """The ``reason`` text: each repair's message once, in order, then the failure (if any)."""
    return "; ".join(dict.fromkeys([note.message for note in repairs] + list(failure)))
