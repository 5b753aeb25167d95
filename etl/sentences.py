"""Sentence splitting for biomedical abstracts, with character offsets.

A boundary is a run of ``.``/``?``/``!`` (optionally followed by closing quotes/brackets), then
whitespace, then something that can start a sentence (an upper-case letter, a digit, an opening
bracket or quote). The run is *not* a boundary when the word before it is a known abbreviation
("et al.", "e.g.", "i.v.", "vs.", "Fig.", "approx."), a single upper-case initial ("J. Smith"), or
a dotted abbreviation ("b.i.d."). Decimals ("2.5 mg") never match since no whitespace follows the
dot. Line breaks (structured abstracts joined with newlines) are hard boundaries.
"""

from __future__ import annotations

import re

# Lower-cased, without the final dot.
_ABBREVIATIONS = frozenset(
    ["al", "e.g", "eg", "i.e", "ie", "vs", "v", "cf", "fig", "figs", "no", "nos", "ref", "refs", "approx", "ca", "resp", "dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "i.v", "iv", "i.p", "i.m", "s.c", "p.o", "b.i.d", "t.i.d", "q.i.d", "q.d", "o.d", "p.r.n", "vol", "vols", "pp", "ed", "eds", "eq", "eqs", "etc", "inc", "ltd", "co", "corp", "dept", "univ", "sp", "spp", "var", "subsp", "min", "max", "mol", "wt", "no.", "tab", "suppl", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "e.g.,", "incl", "est", "dist"]
)
_BOUNDARY_RE = re.compile(r"[.?!]+[\"'\u201d\u2019)\]]*(?=\s+[\"'\u201c\u2018(\[A-Z0-9\u0391-\u03a9])")
_WORD_BEFORE_RE = re.compile(r"(\S+)$")
_NEWLINE_RE = re.compile(r"\n\s*")


def _is_abbreviation(text: str, dot_pos: int) -> bool:
    """Is the '.' at ``dot_pos`` the end of an abbreviation rather than of a sentence?"""
    m = _WORD_BEFORE_RE.search(text, 0, dot_pos)
    if not m:
        return False
    word = m.group(1).lstrip("([\"'")
    low = word.lower()
    if low in _ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isupper():  # an initial: "J. Smith", "vitamin D. " is rare
        return True
    # dotted abbreviations: "b.i.d", "U.S", "p.o"
    return "." in word and all(len(part) <= 2 for part in word.split(".") if part)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text``; whitespace trimmed; empty text -> []."""
    if not text:
        return []
    cuts = []
    for m in _BOUNDARY_RE.finditer(text):
        first = m.start()
        if text[first] == "." and m.end() - first == 1 and _is_abbreviation(text, first):
            continue
        cuts.append(m.end())
    cuts.extend(m.start() for m in _NEWLINE_RE.finditer(text))
    cuts = sorted(set(cuts))
    spans = []
    start = 0
    for cut in cuts + [len(text)]:
        s, e = start, cut
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            spans.append((s, e))
        start = cut
    return spans
