"""The sentence splitter as it was before issue 11 (quadratic in the text's length), kept as an oracle.

``etl.sentences`` was rewritten to run in linear time with the *same* output; the differential test in
``tests/test_sentences.py`` and ``bench/bench_sentences.py`` compare the two on short random texts and on
every bundled abstract.  Use it only on short texts: it rescans the text from its start at every dot
(100 KB took 7.5 s) and rescans a run of n dots n times.  A deliberate change of the splitting rules
changes this oracle too (or retires it).
"""

from __future__ import annotations

import re

from etl.sentences import _ABBREVIATIONS

_BOUNDARY_RE = re.compile(r"[.?!]+[\"'\u201d\u2019)\]]*(?=\s+[\"'\u201c\u2018(\[A-Z0-9\u0391-\u03a9])")
_WORD_BEFORE_RE = re.compile(r"(\S+)$")
_NEWLINE_RE = re.compile(r"\n\s*")


def _is_abbreviation(text: str, dot_pos: int) -> bool:
    m = _WORD_BEFORE_RE.search(text, 0, dot_pos)
    if not m:
        return False
    word = m.group(1).lstrip("([\"'")
    low = word.lower()
    if low in _ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isupper():
        return True
    return "." in word and all(len(part) <= 2 for part in word.split(".") if part)


def reference_split(text: str) -> list[tuple[int, int]]:
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
