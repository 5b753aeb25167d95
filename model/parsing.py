"""The one completion parser: model text -> relations, parse status and reason ("parse once, score many").

A completion should look like ``<think>...</think><answer>[{"type": ..., "ent_set": [...]}]</answer>``.
Small models rarely comply, so the parser recovers what it can, and says what it did:

* status ``ok``: both tag pairs present (``<think>`` only when the completion has one) and the answer
  is a valid JSON list of valid relations, nothing changed;
* ``repaired``: relations recovered after repairs (missing/unclosed tags, code fences, trailing text,
  single quotes, truncated JSON, unknown labels or one-drug sets dropped, duplicates merged); the
  repairs are listed in ``reason``;
* ``no_answer``: no answer-like text at all (empty output, prose only);
* ``invalid_json``: an answer region exists but no JSON list could be recovered from it;
* ``invalid_schema``: JSON parsed but it is not a list of relation objects.

Relations hold only real combinations (POS/COMB/NEG with >= 2 distinct drugs); an explicit NO_COMB
answer sets ``declared_no_comb``.  Every drug name is aligned to the sentence (when given):
case-, spacing- and hyphen-insensitive, on word boundaries; unaligned names keep ``span=None`` and
``grounded=False`` and are listed in ``reason``.  ``parse_completion`` never raises on model output.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from dataclasses import dataclass, field

from model.answer_schema import COMBINATION_LABELS, NO_COMB
from model.evaluation.matching import normalize_drug_name

STATUSES = ("ok", "repaired", "no_answer", "invalid_json", "invalid_schema")

_LABEL_SYNONYMS = {
    "POS": "POS", "POSITIVE": "POS", "POS_COMB": "POS", "SYNERGY": "POS", "SYNERGISTIC": "POS",
    "COMB": "COMB", "COMBINATION": "COMB", "NEUTRAL": "COMB",
    "NEG": "NEG", "NEGATIVE": "NEG", "NEG_COMB": "NEG", "ANTAGONISTIC": "NEG",
    "NO_COMB": NO_COMB, "NOCOMB": NO_COMB, "NO_COMBINATION": NO_COMB, "NONE": NO_COMB, "NO": NO_COMB,
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
            drugs.append({
                "name": name,
                "start": span[0] if span else None,
                "end": span[1] if span else None,
                "grounded": bool(self.grounded[i]) if self.grounded is not None else False,
            })
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
    repairs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "repaired")

    @property
    def answer(self) -> list[dict]:
        """Relations in the model's answer format; [] means no combination."""
        return [{"type": r.label, "ent_set": list(r.drugs)} for r in self.relations]


def ddi_items(parsed: ParsedCompletion) -> list[dict] | None:
    """The recovered answer list of a DDI completion (None when nothing usable was recovered).

    Relations keep DrugComb labels only, so DDI labels (EFFECT, MECHANISM, ADVISE, INT) are read from
    the raw answer value: its object items, as the model wrote them.  Used by the DDI rewards and the
    DDI13 evaluation.
    """
    if not parsed.ok or not isinstance(parsed.raw_answer, list):
        return None
    return [i for i in parsed.raw_answer if isinstance(i, dict)]


def parse_completion(text: str | None, sentence: str | None = None) -> ParsedCompletion:
    """Parse one completion (see module doc).  Never raises on model output."""
    try:
        return _parse(text if isinstance(text, str) else ("" if text is None else str(text)), sentence)
    except Exception as exc:  # noqa: BLE001 - a parser bug must not kill a sweep; it becomes a status
        return ParsedCompletion([], None, "invalid_json", f"parser error: {type(exc).__name__}: {exc}",
                                False, False, False)


# --- structure: think / answer regions ----------------------------------------------------------------


def _parse(text: str, sentence: str | None) -> ParsedCompletion:
    repairs: list[str] = []
    think, has_think_tags, rest = _split_think(text, repairs)
    region, has_answer_tags = _answer_region(rest, repairs)
    base = dict(think=think, has_think_tags=has_think_tags, has_answer_tags=has_answer_tags)
    if region is None or not region.strip():
        reason = "empty output" if not text.strip() else "no answer found"
        return ParsedCompletion([], status="no_answer", reason=reason, answer_is_valid_list=False,
                                repairs=repairs, **base)
    strict_ok = has_answer_tags and _strictly_valid(region)
    value = _load_json_list(region, repairs)
    if value is None:
        status = "invalid_json" if ("[" in region or "{" in region) else "no_answer"
        return ParsedCompletion([], status=status, reason=_join(repairs + ["no JSON list recovered"]),
                                answer_is_valid_list=False, repairs=repairs, **base)
    if not isinstance(value, list):
        return ParsedCompletion([], status="invalid_schema",
                                reason=_join(repairs + [f"answer is a JSON {type(value).__name__}, not a list"]),
                                answer_is_valid_list=False, raw_answer=None, repairs=repairs, **base)
    relations, declared_no_comb, n_dup, n_drop, schema_ok = _clean_items(value, sentence, repairs)
    if not schema_ok:
        return ParsedCompletion([], status="invalid_schema", reason=_join(repairs), answer_is_valid_list=False,
                                raw_answer=value, n_items=len(value), n_dropped=n_drop, repairs=repairs, **base)
    status = "ok" if not repairs else "repaired"
    return ParsedCompletion(
        relations, status=status, reason=_join(repairs) if repairs else "", answer_is_valid_list=strict_ok,
        declared_no_comb=declared_no_comb and not relations, raw_answer=value, n_items=len(value),
        n_duplicates=n_dup, n_dropped=n_drop, repairs=repairs, **base,
    )


def _split_think(text: str, repairs: list[str]) -> tuple[str | None, bool, str]:
    """(think text, both think tags present, text after the think block)."""
    low = text.lower()
    o, c = low.find(_THINK_OPEN), low.find(_THINK_CLOSE)
    if o >= 0 and c > o:
        return text[o + len(_THINK_OPEN):c].strip(), True, text[c + len(_THINK_CLOSE):]
    if o >= 0:  # unclosed <think>: reasoning runs until the answer (or the end)
        a = low.find(_ANSWER_OPEN, o)
        end = a if a >= 0 else len(text)
        repairs.append("unclosed <think>")
        return text[o + len(_THINK_OPEN):end].strip(), False, text[end:]
    if c >= 0:  # chat templates sometimes put <think> in the prompt: only the closing tag is generated
        repairs.append("missing <think>")
        return text[:c].strip(), False, text[c + len(_THINK_CLOSE):]
    return None, False, text


def _answer_region(rest: str, repairs: list[str]) -> tuple[str | None, bool]:
    low = rest.lower()
    o = low.find(_ANSWER_OPEN)
    if o >= 0:
        c = low.find(_ANSWER_CLOSE, o)
        if c >= 0:
            if rest[c + len(_ANSWER_CLOSE):].strip():
                repairs.append("text after </answer> ignored")
            return rest[o + len(_ANSWER_OPEN):c], True
        repairs.append("unclosed <answer>")
        return rest[o + len(_ANSWER_OPEN):], False
    # No answer tags: the last JSON-looking list (or object) in the text is the answer.
    start = _last_json_start(rest)
    if start is None:
        return None, False
    repairs.append("missing <answer> tags")
    return rest[start:], False


def _last_json_start(text: str) -> int | None:
    """Start of the last fenced block holding a list, else of the last ``[{``/``[]``, else of a ``{``."""
    fenced = [m for m in re.finditer(r"```", text)]
    for m in reversed(fenced[::2]):  # opening fences
        if "[" in text[m.start():]:
            return m.start()
    lists = list(re.finditer(r"\[\s*[\{\]]", text))
    if lists:
        return lists[-1].start()
    m = text.find("{")
    return m if m >= 0 else None


# --- JSON recovery --------------------------------------------------------------------------------------


def _strictly_valid(region: str) -> bool:
    try:
        value = json.loads(region.strip())
    except (json.JSONDecodeError, ValueError):
        return False
    return isinstance(value, list) and bool(value) and all(_item_strictly_valid(v) for v in value)


def _item_strictly_valid(item) -> bool:
    if not isinstance(item, dict) or set(item) != {"type", "ent_set"}:
        return False
    ents = item["ent_set"]
    if item["type"] == NO_COMB:
        return ents == []
    return (item["type"] in COMBINATION_LABELS and isinstance(ents, list) and len(ents) >= 2
            and all(isinstance(e, str) and e.strip() for e in ents))


def _load_json_list(region: str, repairs: list[str]):
    text = region.strip()
    fence = _FENCE.search(text)
    if fence and "```" in text:
        text = fence.group(1).strip()
        repairs.append("code fence removed")
    start = _first_bracket(text)
    if start is None:
        return None
    candidate, closed = _balanced(text, start)
    if closed and text[start + len(candidate):].strip():
        repairs.append("trailing text ignored")
    if start > 0 and text[:start].strip():
        repairs.append("leading text ignored")
    if not closed:
        candidate = _close_truncated(candidate)
        if candidate is None:
            return None
        repairs.append("truncated JSON closed")
    value = _loads_lenient(candidate, repairs)
    if isinstance(value, dict):
        repairs.append("single object wrapped in a list")
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
                return text[start:i + 1], True
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
    return prefix[:last_obj_end + 1] + "]"


def _loads_lenient(candidate: str, repairs: list[str]):
    try:
        return json.loads(candidate)
    except (json.JSONDecodeError, ValueError):
        pass
    no_trailing_commas = re.sub(r",\s*([\]}])", r"\1", candidate)
    if no_trailing_commas != candidate:
        try:
            value = json.loads(no_trailing_commas)
            repairs.append("trailing commas removed")
            return value
        except (json.JSONDecodeError, ValueError):
            pass
    try:  # Python literal syntax: single quotes, True/None
        value = ast.literal_eval(no_trailing_commas)
        repairs.append("python-style literal")
        return value
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        pass
    swapped = no_trailing_commas.replace("'", '"')
    try:
        value = json.loads(swapped)
        repairs.append("single quotes replaced")
        return value
    except (json.JSONDecodeError, ValueError):
        return None


# --- relation cleaning and grounding ----------------------------------------------------------------


def _clean_items(items: list, sentence: str | None, repairs: list[str]):
    relations: list[Relation] = []
    seen: dict[frozenset, str] = {}
    declared_no_comb = False
    n_dup = n_drop = 0
    n_objects = 0
    unaligned: list[str] = []
    for idx, item in enumerate(items):
        if not isinstance(item, dict):
            n_drop += 1
            repairs.append(f"item {idx} is not an object")
            continue
        n_objects += 1
        raw_label = _first_present(item, _LABEL_KEYS)
        label = _normalize_label(raw_label)
        names = _drug_names(_first_present(item, _DRUG_KEYS))
        if label is None:
            n_drop += 1
            repairs.append(f"unknown label {raw_label!r} dropped")
            continue
        if raw_label != label:
            repairs.append(f"label {raw_label!r} read as {label}")
        if label == NO_COMB:
            declared_no_comb = True
            if names:
                repairs.append("drugs of a NO_COMB item ignored")
            continue
        unique = _dedupe_names(names)
        if len(unique) != len(names):
            repairs.append(f"repeated drug names merged in item {idx}")
        if len(unique) < 2:
            n_drop += 1
            repairs.append(f"{label} item with {len(unique)} drug(s) dropped")
            continue
        key = frozenset(normalize_drug_name(n) for n in unique)
        if key in seen:
            n_dup += 1
            repairs.append(f"duplicate drug set merged (kept {seen[key]}, dropped {label})"
                           if seen[key] != label else "duplicate relation merged")
            continue
        seen[key] = label
        spans, grounded = _ground(unique, sentence)
        if grounded is not None:
            unaligned += [n for n, g in zip(unique, grounded) if not g]
        relations.append(Relation(label, tuple(unique), spans, grounded, item_index=idx))
    if relations and declared_no_comb:
        repairs.append("NO_COMB item next to relations ignored")
    if unaligned:
        repairs.append("not in sentence: " + ", ".join(repr(n) for n in unaligned))
    schema_ok = not items or n_objects > 0
    if not schema_ok:
        repairs.append("answer list holds no relation objects")
    if not items:
        repairs.append("empty answer list read as NO_COMB")
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


def _normalize_label(raw) -> str | None:
    if not isinstance(raw, str):
        return None
    key = re.sub(r"[\s\-]+", "_", raw.strip().upper())
    return _LABEL_SYNONYMS.get(key)


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


def _ground(names: list[str], sentence: str | None):
    if sentence is None:
        return None, None
    index = SentenceIndex(sentence)
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
        key = normalize_drug_name(name)
        if not key:
            return None
        pos = self.text.find(key)
        while pos >= 0:
            start = self.offsets[pos]
            end = self.offsets[pos + len(key) - 1] + 1
            if self._boundary(start, end):
                return start, end
            pos = self.text.find(key, pos + 1)
        return None

    def _boundary(self, start: int, end: int) -> bool:
        s = self.sentence
        before_ok = start == 0 or not s[start - 1].isalnum()
        after_ok = end >= len(s) or not s[end].isalnum()
        return before_ok and after_ok


def ground_name(name: str, sentence: str) -> tuple[int, int] | None:
    """Character span of ``name`` in ``sentence`` (case/spacing/hyphen-insensitive), or None."""
    return SentenceIndex(sentence).find(name)


def _join(parts: list[str]) -> str:
    return "; ".join(dict.fromkeys(parts))
