"""split_sentences: biomedical-aware sentence boundaries with character offsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.sentences import split_sentences


def parts(text):
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Smith et al. (2005) found this. It held.", ["Smith et al. (2005) found this.", "It held."]),
        ("Drugs, e.g. Cisplatin, were used. Then more.", ["Drugs, e.g. Cisplatin, were used.", "Then more."]),
        ("It was given i.v. Twice daily doses followed.", ["It was given i.v. Twice daily doses followed."]),
        ("The dose was 2.5 mg/kg. Next.", ["The dose was 2.5 mg/kg.", "Next."]),
        ("As shown in Fig. 2 the effect was large. Next.", ["As shown in Fig. 2 the effect was large.", "Next."]),
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
