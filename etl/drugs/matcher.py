"""Dictionary drug matcher: longest match over folded tokens, with character offsets into the text.

The text is tokenized once with one compiled regex (C speed); only tokens that start some alias
(a dict lookup) open a window, and the window is tried longest-first against the alias dict, so a
typical abstract costs one dict lookup per token. Plural tokens ("taxanes") are also tried singular.

Two text-driven readings complete the dictionary:
  * research codes by shape: a sponsor prefix of ``curated/code_prefixes.txt`` then digits
    ("PF-4708671", "CP-870,893") is a drug even when no vocabulary lists it (id ``RXD:CODE:<code>``);
  * abbreviations the text defines: a (non-class) drug mention followed by ``(SF)`` ("cisplatin (CDDP)",
    "ipsapirone (IPSA)") makes later occurrences of SF mentions of the same entry, within the text
    and, through ``abbreviations``/``find(..., abbreviations=)``, in the other sentences of an abstract.
    A short form takes its long form's kind: "bisphenol A (BPA)" makes BPA an other substance.

Abbreviations must not invent drugs. A vocabulary acronym is a guess about what a short form stands for,
so two rules hold it back (curated acronyms such as MTX, CDDP, 5-FU keep only the first):
  * a short form the text defines as something that is no drug mention ("microbial microdroplet culture
    (MMC)", ``foreign_short_forms``) is not read as the KB's acronym anywhere in the text/abstract;
  * a vocabulary acronym without a digit ("CZP", "HCTZ", "GM-CSF": letters only, so it reads as an
    abbreviation, unlike codes such as "SN-38") is read only when the article's MeSH chemicals support it;
    otherwise only a definition in the abstract ("certolizumab pegol (CZP)") makes it a mention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache

from etl.drugs.kb import AliasEntry, DrugEntry, DrugKB
from etl.drugs.text import singular, token_arrays, tokenize
from schemas.drugs import DRUG_KINDS

_COMPACT_RE = re.compile(r"[\s\-\u2010\u2011\u2012\u2013\u2014]+")


@dataclass(frozen=True, slots=True)
class Mention:
    start: int
    end: int
    surface: str  # always text[start:end]
    id: str
    preferred_name: str
    is_class: bool
    kind: str = "drug"  # schemas.drugs.KINDS of the entry (a defined short form has its long form's kind)

    @property
    def is_drug(self) -> bool:
        return self.kind in DRUG_KINDS

    def as_row(self) -> dict:
        """The mention as stored (``schemas`` mention struct) and printed by ``rexdrug drugs find``."""
        return asdict(self)


CODE_ID_PREFIX = "RXD:CODE:"
# "(SF)" anywhere: a parenthesised single token of 2-10 characters (candidates for a foreign definition)
_LONG_FORM_CHARS = 160
_PAREN_SF_RE = re.compile(r"[(\[]\s*([A-Za-z][A-Za-z0-9\-]{1,9})\s*[)\]]")
# "(SF)" right after a mention: one token of 2-12 characters with an upper-case letter, nothing else
_DEFINITION_RE = re.compile(r"\s*[(\[]\s*([A-Za-z0-9][\w\-/+.]{0,10}[\w+])\s*[)\]]")


def _is_short_form(sf: str, long_form: str) -> bool:
    """Schwartz-Hearst test: SF has an upper-case letter, starts like a word of the long form and its
    letters occur in order in it ("IPSA" of "ipsapirone", "AzadC" of "5'-Aza-2'-deoxycytidine")."""
    if not any(c.isupper() for c in sf) or sf.isdigit() or len(sf) > len(long_form):
        return False
    letters = [c for c in sf.lower() if c.isalpha()]
    low = long_form.lower()
    if not letters or not re.search(r"(?:^|[^a-z])" + re.escape(letters[0]), low):
        return False
    pos = low.find(letters[0])
    for c in letters[1:]:
        pos = low.find(c, pos + 1)
        if pos < 0:
            return False
    return True


class DrugMatcher:
    def __init__(self, kb: DrugKB):
        self.kb = kb
        prefixes = kb.provenance.get("code_prefixes") or []
        # sponsor prefix, optional hyphen/space, 3-7 digits, optional ",ddd" group and letter suffix
        self._code_re = (
            re.compile(
                r"(?<![\w\-/])(?:"
                + "|".join(map(re.escape, prefixes))
                + r")[\-\u2010\u2011 ]?\d{3,7}(?:,\d{3})?[A-Z]?(?![\w\-])"
            )
            if prefixes
            else None
        )
        # stop-listed aliases ("5-HT") stay unmatched even when a text defines them
        self._stop_keys = frozenset(kb.provenance.get("stop_aliases") or ())

    def entry(self, entry_id: str) -> DrugEntry:
        """The KB entry of a mention id, or a synthetic entry for a research code (``RXD:CODE:``)."""
        ent = self.kb.entries.get(entry_id)
        if ent is None and entry_id.startswith(CODE_ID_PREFIX):
            code = entry_id[len(CODE_ID_PREFIX) :]
            return DrugEntry(entry_id, code, None, None, None, False, False, (), "drug")
        if ent is None:
            raise KeyError(entry_id)
        return ent

    def find(
        self,
        text: str,
        evidence: Iterable[str] | None = None,
        abbreviations: Mapping[str, Mention] | None = None,
        foreign: Iterable[str] | None = None,
    ) -> list[Mention]:
        """Drug mentions in ``text``, left to right, non-overlapping, longest match first.

        ``evidence``: entry ids the article's own MeSH chemical list supports (see
        ``evidence_from_chemicals``); it enables aliases flagged ``needs_evidence`` (e.g. "TC") and
        picks the supported reading of an ambiguous alias.
        ``abbreviations``: short forms defined elsewhere in the article (``abbreviations()``), read as
        their defining mention's entry; definitions inside ``text`` itself are always used.
        ``foreign``: short forms defined elsewhere in the article as something else (``foreign_short_forms``);
        those inside ``text`` itself are always used.
        """
        if not text:
            return []
        out = self._base_mentions(text, evidence)
        local = self._definitions(text, out)
        defs = {sf: m for sf, m, _ in local}
        if abbreviations:
            defs = {**abbreviations, **defs}
        other = set(self._foreign(text, out)) | set(foreign or ())
        if other - defs.keys():
            other -= defs.keys()
            out = [
                m for m in out if not (m.surface in other or m.surface[:-1] in other and m.surface[-1] == "s")
            ]
        if defs:
            # the "(SF)" of a definition repeats its long form's mention: not a second mention
            at_definition = {start for _, _, start in local}
            out = _merge(out, [m for m in _short_form_mentions(text, defs) if m.start not in at_definition])
        return out

    def abbreviations(self, text: str, mentions: list[Mention] | None = None) -> dict[str, Mention]:
        """Short forms ``text`` defines for drug mentions: ``{"IPSA": <mention of ipsapirone>}``.

        ``mentions``: the mentions of ``text`` if already found (saves a second pass)."""
        if mentions is None:
            mentions = self._base_mentions(text, None)
        return {sf: m for sf, m, _ in self._definitions(text, mentions)}

    def foreign_short_forms(self, text: str, mentions: list[Mention] | None = None) -> set[str]:
        """Short forms ``text`` defines as something that is not a drug mention: "microbial microdroplet
        culture (MMC)" -> {"MMC"}: in this article MMC is not the KB's acronym for mitomycin C."""
        if mentions is None:
            mentions = self._base_mentions(text, None)
        return self._foreign(text, mentions)

    def _foreign(self, text: str, mentions: list[Mention]) -> set[str]:
        """ "<long form> (SF)" where no mention ends right before the parenthesis and SF's letters start a
        word of the few words before it and occur in order in them (the Schwartz-Hearst test)."""
        if "(" not in text:
            return set()
        out = set()
        for d in _PAREN_SF_RE.finditer(text):
            sf = d.group(1)
            if sum(c.isupper() for c in sf) < 2:
                continue  # one capital: "(Fig)", "(Table)"
            offset = max(0, d.start() - _LONG_FORM_CHARS)  # the long form is a few words: look that far back
            before = text[offset : d.start()].rstrip()
            if before and before[-1] in ",;":
                continue  # a list, not a definition
            words = before.split()[-(len(sf) + 3) :]
            window_start = offset + len(before) - len(" ".join(words))
            window_end = offset + len(before)
            if any(m.end > window_start and m.start < window_end for m in mentions):
                continue  # a drug in the long form ("cisplatin (CDDP)", "methotrexate therapy (MTX)")
            if _is_short_form(sf, " ".join(words)):
                out.add(sf)
        return out

    def _definitions(self, text: str, mentions: list[Mention]) -> list[tuple[str, Mention, int]]:
        """(short form, defining mention, offset of the short form) for each "<mention> (SF)"."""
        taken = {m.surface: m.id for m in mentions}
        seen: set[str] = set()
        out = []
        for m in mentions:
            if m.is_class:  # "tyrosine kinase inhibitors (TKIs)": class short forms are mostly noise
                continue
            d = _DEFINITION_RE.match(text, m.end)
            if d is None:
                continue
            sf = d.group(1)
            if (
                taken.get(sf, m.id) != m.id
                or sf in seen
                or not _is_short_form(sf, m.surface)
                or _key(sf) in self._stop_keys
            ):
                continue  # an SF that names another drug is no definition; the first definition wins
            seen.add(sf)
            out.append((sf, m, d.start(1)))
        return out

    def _base_mentions(self, text: str, evidence: Iterable[str] | None) -> list[Mention]:
        """Dictionary mentions plus research codes (codes never override a dictionary match)."""
        out = self._dictionary_mentions(text, evidence)
        if self._code_re is not None:
            out = _merge(out, self._code_mentions(text))
        return out

    def _code_mentions(self, text: str) -> list[Mention]:
        out = []
        for m in self._code_re.finditer(text):
            code = re.sub(r"[\s\-\u2010\u2011,]", "", m.group())
            out.append(Mention(m.start(), m.end(), m.group(), CODE_ID_PREFIX + code, m.group(), False))
        return out

    def _dictionary_mentions(self, text: str, evidence: Iterable[str] | None) -> list[Mention]:
        evidence = frozenset(evidence) if evidence else frozenset()
        starts, ends, words = token_arrays(text)
        n = len(words)
        rows, prefixes = self.kb.alias_row, self.kb.prefixes
        alias_at, entries = self.kb.alias_at, self.kb.entries
        out: list[Mention] = []
        i = 0
        while i < n:
            w = words[i]
            if (
                w not in rows
                and w not in prefixes
                and (w[-1] != "s" or (sg := singular(w)) is None or sg not in rows)
            ):
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
            out.append(
                Mention(start, end, text[start:end], ent.id, ent.preferred_name, ent.is_class, ent.kind)
            )
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
        # a vocabulary acronym of letters only ("CZP"): an abbreviation, not a name; read it only where
        # the article's chemicals name the entry (a definition in the abstract reads it otherwise)
        if (
            entry.case_sensitive
            and not entry.curated
            and not any(c.isdigit() for c in entry.alias)
            and not (entry.id in evidence or any(a in evidence for a in entry.alt_ids))
        ):
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


def _merge(first: list[Mention], extra: list[Mention]) -> list[Mention]:
    """``first`` plus the ``extra`` mentions that overlap none of them, in text order."""
    if not extra:
        return first
    kept = [m for m in extra if not any(f.start < m.end and m.start < f.end for f in first)]
    return sorted(first + kept, key=lambda m: m.start) if kept else first


def _short_form_mentions(text: str, defs: Mapping[str, Mention]) -> list[Mention]:
    """Occurrences of defined short forms (exact case, whole word, optional plural "s")."""
    pattern = re.compile(
        r"(?<![\w\-])("
        + "|".join(re.escape(k) for k in sorted(defs, key=len, reverse=True))
        + r")s?(?![\w\-])"
    )
    out = []
    for m in pattern.finditer(text):
        d = defs[m.group(1)]
        out.append(Mention(m.start(), m.end(), m.group(), d.id, d.preferred_name, d.is_class, d.kind))
    return out


def _key(name: str) -> str:
    return " ".join(t[2] for t in tokenize(name))


@lru_cache(maxsize=1)
def default_kb() -> DrugKB:
    return DrugKB.load()


@lru_cache(maxsize=1)
def default_matcher() -> DrugMatcher:
    """The process-wide matcher over the committed KB (loaded on first call, then cached)."""
    return DrugMatcher(default_kb())
