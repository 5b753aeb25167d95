"""Sentence splitting for biomedical abstracts, with character offsets.

A boundary is a run of ``.``/``?``/``!`` (optionally followed by closing quotes/brackets), then
whitespace, then something that can start a sentence (an upper-case letter, a digit, an opening
bracket or quote). The run is *not* a boundary when the word before it is a known abbreviation
("et al.", "e.g.", "i.v.", "vs.", "Fig.", "approx."), a single upper-case initial ("J. Smith"), or
a dotted abbreviation ("b.i.d."). Decimals ("2.5 mg") never match since no whitespace follows the
dot. Line breaks (structured abstracts joined with newlines) are hard boundaries.

The work is linear in the length of the text: every character is looked at a bounded number of times.
Each regular expression below matches one maximal run of one character class and never backtracks
across another run, and the word before a dot is read backwards from the dot, never by searching from
the start of the text (which made long abstracts quadratic: 500 KB took minutes).
"""

from __future__ import annotations

import re

# Lower-cased, without the final dot.
_ABBREVIATIONS = frozenset(
    [
        "al",
        "e.g",
        "eg",
        "i.e",
        "ie",
        "vs",
        "v",
        "cf",
        "fig",
        "figs",
        "no",
        "nos",
        "ref",
        "refs",
        "approx",
        "ca",
        "resp",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "st",
        "jr",
        "sr",
        "i.v",
        "iv",
        "i.p",
        "i.m",
        "s.c",
        "p.o",
        "b.i.d",
        "t.i.d",
        "q.i.d",
        "q.d",
        "o.d",
        "p.r.n",
        "vol",
        "vols",
        "pp",
        "ed",
        "eds",
        "eq",
        "eqs",
        "etc",
        "inc",
        "ltd",
        "co",
        "corp",
        "dept",
        "univ",
        "sp",
        "spp",
        "var",
        "subsp",
        "min",
        "max",
        "mol",
        "wt",
        "no.",
        "tab",
        "suppl",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "e.g.,",
        "incl",
        "est",
        "dist",
    ]
)
# A boundary candidate: a maximal run of sentence punctuation, the closing quotes/brackets right after it,
# then whitespace, then a character that can start a sentence. Each piece is matched separately so that
# no match can restart inside a run (one regex with a lookahead rescanned a run of n dots n times).
_PUNCT_RUN_RE = re.compile(r"[.?!]+")
_CLOSERS_RE = re.compile(r"[\"'\u201d\u2019)\]]*")
_SPACES_RE = re.compile(r"\s*")
_STARTER_RE = re.compile(r"[\"'\u201c\u2018(\[A-Z0-9\u0391-\u03a9]")
_NON_SPACES_RE = re.compile(r"\S*")  # matched on the reversed text: the word that ends at a position
_NEWLINE_RE = re.compile(r"\n\s*")


def _word_before(text: str, reversed_text: str, dot_pos: int) -> str:
    r"""The run of non-whitespace that ends right before ``dot_pos`` (``""`` if there is none).

    A single newline right before the dot is skipped ("word\n."), as the ``(\S+)$`` search this
    replaces did: ``$`` also matches before a final newline.
    """
    end = dot_pos - 1 if dot_pos and text[dot_pos - 1] == "\n" else dot_pos
    rpos = len(text) - end
    return text[end - (_NON_SPACES_RE.match(reversed_text, rpos).end() - rpos) : end]


def _is_abbreviation(word: str) -> bool:
    """Is ``word``, followed by a single '.', an abbreviation rather than the end of a sentence?"""
    word = word.lstrip("([\"'")
    low = word.lower()
    if low in _ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isupper():  # an initial: "J. Smith", "vitamin D. " is rare
        return True
    # dotted abbreviations: "b.i.d", "U.S", "p.o"
    return "." in word and all(len(part) <= 2 for part in word.split(".") if part)


def _boundary_ends(text: str) -> list[int]:
    """End offsets (after the punctuation and closers) of the sentence boundaries of ``text``."""
    ends = []
    reversed_text = None  # built on the first abbreviation check only
    for run in _PUNCT_RUN_RE.finditer(text):
        first = run.start()
        end = _CLOSERS_RE.match(text, run.end()).end()
        after = _SPACES_RE.match(text, end).end()
        if after == end or _STARTER_RE.match(text, after) is None:
            continue
        if end - first == 1 and text[first] == ".":
            if reversed_text is None:
                reversed_text = text[::-1]
            if _is_abbreviation(_word_before(text, reversed_text, first)):
                continue
        ends.append(end)
    return ends


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text``; whitespace trimmed; empty text -> []."""
    if not text:
        return []
    cuts = _boundary_ends(text)
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
