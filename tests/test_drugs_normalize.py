"""normalize(name): the extraction stage's name -> KB entry step; never raises."""

from __future__ import annotations

import pytest

from etl.drugs import normalize

KEYS = {"name", "id", "preferred_name", "ids", "is_class", "kind", "components", "matched_by"}


@pytest.mark.parametrize(
    "name, preferred, matched_by",
    [
        ("cisplatin", "Cisplatin", "preferred_name"),
        ("CISPLATIN", "Cisplatin", "preferred_name"),
        ("  cis\u00adplatin ".replace("\u00ad", ""), "Cisplatin", "preferred_name"),
        ("cisplatin\u00a0\u00a075 mg/m2", "Cisplatin", "dose_stripped"),
        ("carboplatin AUC 5", "Carboplatin", "dose_stripped"),
        ("aspirin 100mg daily", "Aspirin", "dose_stripped"),
        ("Herceptin", "Trastuzumab", "alias"),
        ("Adriamycin", "Doxorubicin", "alias"),
        ("imatinib mesylate", "Imatinib", "alias"),
        ("interferon α", "Interferon-alpha", "preferred_name"),
        ("Ｃｉｓｐｌａｔｉｎ", "Cisplatin", "preferred_name"),  # full-width Unicode
        ("trastuzumab (Herceptin)", "Trastuzumab", "parenthesis"),
        ("cisplatin-based chemotherapy", "Cisplatin", "mention"),
        ("taxanes", "taxane", "alias"),
        ("carboplatins", "Carboplatin", "plural"),
        ("DB00515", "Cisplatin", "id"),
    ],
)
def test_names_normalize(name, preferred, matched_by):
    r = normalize(name)
    assert set(r) == KEYS
    assert r["preferred_name"] == preferred, r
    assert r["matched_by"] == matched_by, r


def test_cross_ids():
    r = normalize("cisplatin")
    assert r["id"] == r["ids"]["drugbank"] == "DB00515"
    assert r["ids"]["unii"] == "Q20Q21Q62J" and r["ids"]["mesh"] == "D002945"
    assert not r["is_class"]


def test_regimen_returns_normalized_components():
    r = normalize("FOLFOX")
    assert r["id"].startswith("RXD:REG:")
    comps = {c["preferred_name"] for c in r["components"]}
    assert comps == {"Oxaliplatin", "Fluorouracil", "Leucovorin"}
    assert all(c["id"] and c["matched_by"] == "component" for c in r["components"])


def test_class_is_flagged():
    assert normalize("PD-1 inhibitor")["is_class"]


@pytest.mark.parametrize("name", ["xyzzy", "", "   ", None, 42, "paclitaxel and carboplatin", "the patients"])
def test_unknown_is_explicitly_unnormalized(name):
    r = normalize(name)
    assert set(r) == KEYS
    assert r["id"] is None and r["matched_by"] == "unnormalized"
    assert r["ids"] == {"drugbank": None, "unii": None, "mesh": None}


def test_research_code_outside_the_kb_normalizes_by_shape():
    from etl.drugs.normalize import normalize

    r = normalize("PF-4708671")
    assert (r["id"], r["matched_by"]) == ("RXD:CODE:PF4708671", "code")
    assert normalize("HT-1080")["id"] is None
