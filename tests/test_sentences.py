"""split_sentences: biomedical-aware sentence boundaries with character offsets."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import pytest

from etl import sentences as sentences_module
from etl.sentences import split_sentences
from tests.sentences_reference import reference_split


def parts(text):
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Smith et al. (2005) found this. It held.", ["Smith et al. (2005) found this.", "It held."]),
        ("Drugs, e.g. Cisplatin, were used. Then more.", ["Drugs, e.g. Cisplatin, were used.", "Then more."]),
        ("It was given i.v. Twice daily doses followed.", ["It was given i.v. Twice daily doses followed."]),
        ("The dose was 2.5 mg/kg. Next.", ["The dose was 2.5 mg/kg.", "Next."]),
        (
            "As shown in Fig. 2 the effect was large. Next.",
            ["As shown in Fig. 2 the effect was large.", "Next."],
        ),
        ("A vs. B were compared. Next.", ["A vs. B were compared.", "Next."]),
        ("Reported by J. Smith and A. B. Jones. Next.", ["Reported by J. Smith and A. B. Jones.", "Next."]),
        ("Given b.i.d. Dosing was oral.", ["Given b.i.d. Dosing was oral."]),
        ("Really? Yes! (Both) were.", ["Really?", "Yes!", "(Both) were."]),
        ("BACKGROUND: one.\nMETHODS: two", ["BACKGROUND: one.", "METHODS: two"]),
        ("Ends without a dot", ["Ends without a dot"]),
        ("5-FU was used. 5-FU was used again.", ["5-FU was used.", "5-FU was used again."]),
        ("", []),
        ("   ", []),
    ],
)
def test_cases(text, expected):
    assert parts(text) == expected


def test_offsets_cover_the_text_in_order():
    path = Path(__file__).resolve().parent / "data" / "drugs" / "drugcomb_train_slice.jsonl"
    for line in path.read_text().splitlines()[:50]:
        text = json.loads(line)["sentence"] + "  Second one here. Third."
        spans = split_sentences(text)
        assert spans and all(s < e for s, e in spans)
        assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
        assert "".join(text[s:e] for s, e in spans).replace(" ", "") == text.replace(" ", "")
        assert all(text[s:e] == text[s:e].strip() for s, e in spans)


# --- issue 11, class 10: linear work, same output -------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
PROSE = (
    "Cisplatin (CDDP) was given i.v. to 12 patients, as reported by J. Smith et al. in 2005. "
    "Responses, e.g. in 5/12 cases, were seen! Was the effect durable? Yes (p < 0.05).\n"
    "RESULTS: the dose was 2.5 mg/kg b.i.d. Toxicity was mild. "
)


def _repeat(piece: str, size: int) -> str:
    return (piece * (size // len(piece) + 1))[:size]


class _ScanMeter:
    """Stands in for one compiled pattern of ``etl.sentences`` and charges each call with the characters
    it may read: the whole window for ``search``/``finditer``, the matched run plus the character that
    ends it for ``match`` (the module's ``match`` patterns are single character-class runs, so that is
    what the engine reads).  Raises once the budget is spent, so that a lookup rescanning the text from
    its start fails at once instead of running for an hour.  Other methods are refused: unmetered."""

    def __init__(self, pattern: re.Pattern, account: dict):
        self._pattern = pattern
        self._account = account

    def _charge(self, n: int) -> None:
        self._account["spent"] += max(n, 1)
        if self._account["spent"] > self._account["budget"]:
            raise AssertionError(
                f"the splitter read {self._account['spent']:,} characters of a "
                f"{self._account['length']:,}-character text: not linear"
            )

    def match(self, string, pos=0, endpos=sys.maxsize):
        m = self._pattern.match(string, pos, endpos)
        self._charge((m.end() - pos if m else 0) + 1)
        return m

    def search(self, string, pos=0, endpos=sys.maxsize):
        self._charge(min(endpos, len(string)) - pos)
        return self._pattern.search(string, pos, endpos)

    def finditer(self, string, pos=0, endpos=sys.maxsize):
        self._charge(min(endpos, len(string)) - pos)
        return self._pattern.finditer(string, pos, endpos)

    def __getattr__(self, name):
        raise AttributeError(f"the test does not meter re.Pattern.{name}: add it to _ScanMeter")


@pytest.mark.parametrize(
    "shape, text",
    [
        ("prose with abbreviations, 2 MB", _repeat(PROSE, 2_000_000)),
        (
            "initials and dotted abbreviations, 1 MB",
            _repeat("Given by J. R. Smith i.v. b.i.d. vs. A. B. Jones. It ended. ", 1_000_000),
        ),
        ("one line per sentence, 1 MB", _repeat("BACKGROUND: Drug A was given.\nMETHODS: et al.\n", 10**6)),
    ],
)
def test_scanning_work_is_linear_in_the_text_length(monkeypatch, shape, text):
    """Every regular expression of the splitter is metered: all together they may read the text a
    bounded number of times (here 10x its length).  Before issue 11 the word before each dot was found by
    searching ``(\\S+)$`` from the start of the text: the work grew with the square of the length (500 KB
    of prose took minutes) and this test stopped at the first few thousand dots."""
    account = {"spent": 0, "budget": 10 * len(text), "length": len(text)}
    for name, value in list(vars(sentences_module).items()):
        if isinstance(value, re.Pattern):
            monkeypatch.setattr(sentences_module, name, _ScanMeter(value, account))
    spans = split_sentences(text)
    assert len(spans) > len(text) // 1000  # it did split (a meter that breaks the splitter would not)
    assert account["spent"] >= 2 * len(text)  # and it was metered: every pattern scan went through it


# Pathological shapes with hand-computed splits; each is large (100-200 KB) so that a quadratic splitter
# (which rescanned each run of n dots n times: 10,000 dots took 2.8 s) makes the suite visibly slow.
N = 200_000
BANGS = "Yes" + "!" * (N // 2) + ")" * (N // 2)
LONG_WORDS = "x" * (N // 2) + " " + "y" * (N // 2) + "."


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Result" + "." * N + " Next", ["Result" + "." * N, "Next"]),
        (BANGS + " Next", [BANGS, "Next"]),
        # a run followed by closers and a lower-case word is not a boundary, a thousand times over
        (("!" * 100 + ")" * 100 + " x") * 1000, [(("!" * 100 + ")" * 100 + " x") * 1000)]),
        (LONG_WORDS + " Next", [LONG_WORDS, "Next"]),
        # one long dotted abbreviation ("a.a.a....a.") is not a sentence end
        ("a." * (N // 2) + " Next", ["a." * (N // 2) + " Next"]),
        ("Done." + " " * N + "Next.", ["Done.", "Next."]),
        ("Done." + " \t\u00a0" * (N // 3) + "next.", ["Done." + " \t\u00a0" * (N // 3) + "next."]),
        (". " * (N // 2), [(". " * (N // 2)).strip()]),
        ("A. " * (N // 3) + "Next", [("A. " * (N // 3) + "Next")]),
        ("\n \t" * (N // 3) + "Text", ["Text"]),
        ("a.\n" * (N // 3), ["a."] * (N // 3)),
    ],
    ids=[
        "dot-run",
        "bang-and-closer-runs",
        "runs-without-boundary",
        "long-words",
        "long-dotted-abbreviation",
        "space-run",
        "unicode-space-run-then-lower-case",
        "dot-space-runs",
        "initials",
        "newline-runs",
        "many-lines",
    ],
)
def test_pathological_shapes_split_as_specified(text, expected):
    assert parts(text) == expected


_ALPHABET = list(".?!  \n\t\u00a0\u2028AaJexbi1)\"'\u201d\u2019(\u201c[]\u0391") + [
    "al",
    "e.g",
    "i.v",
    "Fig",
    "vs",
    "b.i.d",
    "U.S",
    "et al.",
    ".\n",
]


def test_same_splits_as_the_quadratic_splitter_on_random_texts():
    """Differential check against the splitter before issue 11 (tests/sentences_reference.py) on texts
    built from the characters that matter (punctuation runs, closers, Unicode spaces, newlines,
    sentence starters, abbreviations)."""
    rng = random.Random(11)
    for _ in range(20_000):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 24)))
        assert split_sentences(text) == reference_split(text), repr(text)


def test_same_splits_as_the_quadratic_splitter_on_drugcomb_paragraphs():
    texts = set()
    for name in ("final_train_set.jsonl", "final_test_set.jsonl"):
        for line in (REPO / "data" / "drugcomb" / name).read_text().splitlines():
            record = json.loads(line)
            texts.update(t for t in (record.get("paragraph"), record.get("sentence")) if t)
    assert len(texts) > 1000
    for text in texts:
        assert split_sentences(text) == reference_split(text)
