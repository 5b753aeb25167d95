"""Normalize a drug name (as an LLM or a curator writes it) to one KB entry; never raises."""

from __future__ import annotations

import re
import unicodedata

from etl.drugs.build import strip_salt
from etl.drugs.kb import DrugKB
from etl.drugs.text import alias_key, singular

# Trailing dose/route text: "cisplatin 75 mg/m2", "carboplatin AUC 5", "aspirin 100mg daily".
_DOSE_RE = re.compile(
    r"\s*[,;]?\s*(?:\(?\s*(?:\d[\d.,]*\s*(?:-|to)?\s*\d*[\d.,]*\s*"
    r"(?:mg|mcg|µg|ug|g|kg|ng|ml|l|iu|u|units?|mmol|mol|µm|um|nm|mm|%)(?:\s*/\s*\w+)*\b"
    r"|auc\s*=?\s*\d+[\d.]*))(?:.*)$",
    re.IGNORECASE,
)
_PAREN_RE = re.compile(r"^(.*?)\s*[\(\[]([^\)\]]*)[\)\]]\s*(.*)$")
# Words that surround a drug name without changing which drug it is.
_FILLER = frozenset(
    [
        "therapy",
        "treatment",
        "chemotherapy",
        "alone",
        "monotherapy",
        "drug",
        "agent",
        "injection",
        "tablet",
        "tablets",
        "oral",
        "iv",
        "intravenous",
        "infusion",
        "regimen",
        "based",
        "dose",
        "doses",
        "daily",
        "weekly",
        "combination",
        "plus",
    ]
)
_SPACES_RE = re.compile(r"\s+")


def _unnormalized(name) -> dict:
    return {
        "name": name,
        "id": None,
        "preferred_name": None,
        "ids": {"drugbank": None, "unii": None, "mesh": None},
        "is_class": False,
        "kind": None,
        "components": [],
        "matched_by": "unnormalized",
    }


def _result(kb: DrugKB, name, entry_id: str, matched_by: str, _depth: int = 0) -> dict:
    e = kb.entries[entry_id]
    comps = (
        [_result(kb, kb.entries[c].preferred_name, c, "component", _depth + 1) for c in e.components]
        if _depth < 2
        else []
    )
    return {
        "name": name,
        "id": e.id,
        "preferred_name": e.preferred_name,
        "ids": {"drugbank": e.drugbank, "unii": e.unii, "mesh": e.mesh},
        "is_class": e.is_class,
        "kind": e.kind,
        "components": comps,
        "matched_by": matched_by,
    }


def _clean(name: str) -> str:
    text = unicodedata.normalize("NFKC", name)
    text = "".join(" " if unicodedata.category(ch) in ("Zs", "Cc", "Cf") else ch for ch in text)
    return _SPACES_RE.sub(" ", text).strip().strip(".,;:")


def _lookup(kb: DrugKB, text: str) -> tuple[str, str] | None:
    """(entry id, how) for an exact alias/salt/plural reading of ``text``, else None."""
    key = alias_key(text)
    if not key:
        return None
    entry = kb.alias(key)
    if entry is not None:
        how = "preferred_name" if alias_key(kb.entries[entry.id].preferred_name) == key else "alias"
        return entry.id, how
    toks = key.split(" ")
    sg = singular(toks[-1])
    if sg and (entry := kb.alias(" ".join(toks[:-1] + [sg]))):
        return entry.id, "plural"
    base = strip_salt(key)
    if base != key and (entry := kb.alias(alias_key(base))):
        return entry.id, "salt"
    return None


def normalize(name: str, kb: DrugKB | None = None) -> dict:
    """``{name, id, preferred_name, ids{drugbank,unii,mesh}, is_class, kind, components, matched_by}``.

    ``kind`` is the entry's ``schemas.drugs.KINDS`` value (None when unnormalized).

    ``matched_by``: "id", "preferred_name", "alias", "plural", "salt", "dose_stripped",
    "parenthesis", "mention" (one drug found inside a longer phrase), "code" (a research code outside
    the KB, id ``RXD:CODE:<code>``), or "unnormalized" (``id=None``).
    A regimen ("FOLFOX") comes back with its ``components``, each normalized.
    """
    try:
        if kb is None:
            from etl.drugs.matcher import default_kb

            kb = default_kb()
        if not isinstance(name, str):
            return _unnormalized(name)
        text = _clean(name)
        if not text:
            return _unnormalized(name)
        if text in kb.entries:
            return _result(kb, name, text, "id")
        hit = _lookup(kb, text)
        if hit:
            return _result(kb, name, *hit)
        undosed = _DOSE_RE.sub("", text).strip()
        if undosed and undosed != text and (hit := _lookup(kb, undosed)):
            return _result(kb, name, hit[0], "dose_stripped")
        m = _PAREN_RE.match(undosed or text)
        if m:  # "trastuzumab (Herceptin)", "Adriamycin (doxorubicin)"
            for part in (f"{m.group(1)} {m.group(3)}".strip(), m.group(2)):
                if part and (hit := _lookup(kb, part)):
                    return _result(kb, name, hit[0], "parenthesis")
        return _from_mentions(kb, name, undosed or text)
    except Exception:  # noqa: BLE001 - the contract is "never an exception"; a bad name is unnormalized
        return _unnormalized(name)


def _from_mentions(kb: DrugKB, name, text: str) -> dict:
    """One drug inside filler words ("cisplatin-based chemotherapy") -> that drug."""
    from etl.drugs.matcher import DrugMatcher, default_kb, default_matcher

    matcher = default_matcher() if kb is default_kb() else DrugMatcher(kb)
    mentions = matcher.find(text)
    ids = {m.id for m in mentions}
    if len(ids) != 1:
        return _unnormalized(name)
    covered = set()
    for m in mentions:
        covered.update(range(m.start, m.end))
    rest = "".join(ch if i not in covered else " " for i, ch in enumerate(text))
    leftover = [t for t in alias_key(rest).split(" ") if t and t.isalnum()]
    if any(t not in _FILLER for t in leftover):
        return _unnormalized(name)
    found = ids.pop()
    if found not in kb.entries:  # a research code ("PF-4708671"): a drug outside the KB
        e = matcher.entry(found)
        return {
            **_unnormalized(name),
            "id": e.id,
            "preferred_name": e.preferred_name,
            "kind": e.kind,
            "matched_by": "code",
        }
    return _result(kb, name, found, "mention")
