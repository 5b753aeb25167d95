"""Dictionary drug matcher: longest match over folded tokens, with character offsets into the text.

The text is tokenized once with one compiled regex (C speed); only tokens that start some alias
(a dict lookup) open a window, and the window is tried longest-first against the alias dict, so a
typical abstract costs one dict lookup per token. Plural tokens ("taxanes") are also tried singular.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from etl.drugs.kb import AliasEntry, DrugKB
from etl.drugs.text import singular, token_arrays, tokenize

_COMPACT_RE = re.compile(r"[\s\-\u2010\u2011\u2012\u2013\u2014]+")


@dataclass(frozen=True, slots=True)
class Mention:
    start: int
    end: int
    surface: str  # always text[start:end]
    id: str
    preferred_name: str
    is_class: bool


class DrugMatcher:
    def __init__(self, kb: DrugKB):
        self.kb = kb

    def find(self, text: str, evidence: Iterable[str] | None = None) -> list[Mention]:
        """Drug mentions in ``text``, left to right, non-overlapping, longest match first.

        ``evidence``: entry ids the article's own MeSH chemical list supports (see
        ``evidence_from_chemicals``); it enables aliases flagged ``needs_evidence`` (e.g. "TC") and
        picks the supported reading of an ambiguous alias.
        """
        if not text:
            return []
        evidence = frozenset(evidence) if evidence else frozenset()
        starts, ends, words = token_arrays(text)
        n = len(words)
        rows, prefixes = self.kb.alias_row, self.kb.prefixes
        alias_at, entries = self.kb.alias_at, self.kb.entries
        out: list[Mention] = []
        i = 0
        while i < n:
            w = words[i]
            if (w not in rows and w not in prefixes
                    and (w[-1] != "s" or (sg := singular(w)) is None or sg not in rows)):
                i += 1
                continue
            hit = None
            key, j = w, i
            while True:  # grow the window while it is a prefix; keep the longest accepted alias
                row = rows.get(key)
                if row is None and key[-1] == "s" and (sg := singular(words[j])) is not None:
                    row = rows.get(key[: len(key) - len(words[j])] + sg)
                if row is not None:
                    chosen = self._accept(alias_at(row), text[starts[i] : ends[j]], evidence)
                    if chosen is not None:
                        hit = (j, chosen)
                j += 1
                if j >= n or key not in prefixes:
                    break
                key = key + " " + words[j]
            if hit is None:
                i += 1
                continue
            j, chosen = hit
            ent = entries[chosen]
            start, end = starts[i], ends[j]
            out.append(Mention(start, end, text[start:end], ent.id, ent.preferred_name, ent.is_class))
            i = j + 1
        return out

    def _accept(self, entry: AliasEntry, surface: str, evidence: frozenset) -> str | None:
        """The entry id this surface reads as, or None if the alias's conditions reject it."""
        if entry.case_sensitive:
            if entry.curated:
                got, want = _COMPACT_RE.sub("", surface), _COMPACT_RE.sub("", entry.alias)
                # exact spelling, or a capitalised variant of it ("Dex" for "DEX"); never all lower case
                if got != want and not (got[:1].isupper() and got.upper() == want.upper()):
                    return None
            elif surface != surface.upper():  # vocabulary acronyms lost their case: demand upper case
                return None
        if entry.needs_evidence and not self._supported(entry.id, evidence):
            return None
        if evidence and entry.alt_ids and entry.id not in evidence:
            for alt in entry.alt_ids:
                if alt in evidence:
                    return alt
        return entry.id

    def _supported(self, entry_id: str, evidence: frozenset) -> bool:
        if not evidence:
            return False
        if entry_id in evidence:
            return True
        comps = self.kb.entries[entry_id].components
        return bool(comps) and any(c in evidence for c in comps)

    def evidence_from_chemicals(self, chemicals: Iterable[dict] | None) -> frozenset[str]:
        """Entry ids named by an article's MeSH chemical list (``{ui, name, registry_number}`` dicts).

        A chemical counts by its descriptor/supplementary id (MeSH cross-id of an entry) or, failing
        that, by its name read through the alias dictionary (names like "Cisplatin" or
        "Doxorubicin, Liposomal" fold to their entry).
        """
        ids = set()
        for chem in chemicals or ():
            if not chem:
                continue
            ui, name = chem.get("ui"), chem.get("name")
            hit = self.kb.by_mesh(ui) if ui else None
            if hit is None and name:
                base = name.split(",")[0]  # MeSH inverts qualifiers: "Doxorubicin, Liposomal"
                entry = self.kb.alias(_key(name)) or self.kb.alias(_key(base))
                hit = entry.id if entry else None
            if hit:
                ids.add(hit)
        return frozenset(ids)


def _key(name: str) -> str:
    return " ".join(t[2] for t in tokenize(name))


@lru_cache(maxsize=1)
def default_kb() -> DrugKB:
    return DrugKB.load()


@lru_cache(maxsize=1)
def default_matcher() -> DrugMatcher:
    """The process-wide matcher over the committed KB (loaded on first call, then cached)."""
    return DrugMatcher(default_kb())
