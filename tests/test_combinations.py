"""Extraction rows -> normalized combination tables (pure, no Spark)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from etl.combinations import build_combination_tables, combination_id, unnormalized_id
from schemas.extraction import COMBINATION_DRUGS, COMBINATIONS, EXTRACTION_ERRORS, EXTRACTIONS

# A tiny hand-made normalizer: the contract of etl.drugs.normalize, with a regimen and a class.
KB = {
    "gemcitabine": {"id": "DB00441", "preferred_name": "Gemcitabine", "kind": "drug"},
    "nab-paclitaxel": {"id": "DB01229", "preferred_name": "Paclitaxel", "kind": "drug"},
    "paclitaxel": {"id": "DB01229", "preferred_name": "Paclitaxel", "kind": "drug"},
    "bevacizumab": {"id": "DB00112", "preferred_name": "Bevacizumab", "kind": "drug"},
    "platinum": {
        "id": "CLASS:platinum",
        "preferred_name": "platinum compounds",
        "is_class": True,
        "kind": "class",
    },
    "folfox": {
        "id": "REGIMEN:FOLFOX",
        "preferred_name": "FOLFOX",
        "kind": "regimen",
        "components": [
            {"id": "DB00544", "preferred_name": "Fluorouracil", "kind": "drug"},
            {"id": "DB00650", "preferred_name": "Leucovorin", "kind": "drug"},
            {"id": "DB00526", "preferred_name": "Oxaliplatin", "kind": "drug"},
        ],
    },
}


def fake_normalize(name: str) -> dict:
    hit = KB.get(name.lower())
    if hit is None:
        return {
            "id": None,
            "preferred_name": None,
            "is_class": False,
            "components": [],
            "matched_by": "unnormalized",
        }
    return {"is_class": False, "components": [], "matched_by": "exact", **hit}


def extraction(key: str, relations, status="ok", error=None, raw="<answer>[]</answer>") -> dict:
    return {
        "extraction_key": key,
        "pmid": "123",
        "pmid_version": 1,
        "sentence_index": 2,
        "sentence_start": 10,
        "sentence_end": 80,
        "sentence_text": "Gemcitabine plus nab-paclitaxel improved survival.",
        "text_hash": "h",
        "raw_output": raw,
        "think": "[1] ...",
        "parse_status": status,
        "parse_reason": None if status == "ok" else "bad json",
        "relations": relations,
        "n_relations": len(relations),
        "error": error,
        "model_id": "m",
        "prompt_version": "p",
        "run_id": "r",
        "extracted_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


def rel(label, *names):
    return {
        "label": label,
        "drugs": [{"name": n, "start": 0, "end": len(n), "grounded": True} for n in names],
    }


def run(rows):
    return build_combination_tables(pa.Table.from_pylist(rows, schema=EXTRACTIONS), fake_normalize)


def test_relation_becomes_one_row_with_sorted_set_key_and_exploded_drugs():
    combos, drugs, errors = run([extraction("k1", [rel("POS", "nab-paclitaxel", "Gemcitabine")])])
    assert (
        combos.schema == COMBINATIONS
        and drugs.schema == COMBINATION_DRUGS
        and errors.schema == EXTRACTION_ERRORS
    )
    row = combos.to_pylist()[0]
    assert row["label"] == "POS"
    assert row["drug_set_ids"] == ["DB00441", "DB01229"]
    assert row["drug_set_key"] == "DB00441 + DB01229"
    assert row["combination_id"] == combination_id("k1", 0)
    assert row["all_normalized"] and row["all_grounded"]
    assert [d["canonical_id"] for d in drugs.to_pylist()] == ["DB01229", "DB00441"]
    assert errors.num_rows == 0


def test_reordered_or_differently_written_drugs_give_the_same_set_key():
    a, _, _ = run([extraction("k1", [rel("POS", "gemcitabine", "paclitaxel")])])
    b, _, _ = run([extraction("k2", [rel("POS", "nab-paclitaxel", "GEMCITABINE")])])
    assert a.column("drug_set_key").to_pylist() == b.column("drug_set_key").to_pylist()


def test_regimen_expands_to_components():
    combos, drugs, _ = run([extraction("k1", [rel("COMB", "FOLFOX", "bevacizumab")])])
    row = combos.to_pylist()[0]
    assert row["drug_set_ids"] == ["DB00112", "DB00526", "DB00544", "DB00650"]
    assert {d["via_regimen"] for d in drugs.to_pylist()} == {"FOLFOX", None}


def test_unnormalized_names_are_recorded_but_are_no_members():
    """A name neither in the KB nor on a matcher mention is no known drug: left out of the set, recorded
    on the row (it used to be a member under a name key; on real PubMed those were mostly non-drugs)."""
    combos, _, errors = run([extraction("k1", [rel("NEG", "gemcitabine", "bevacizumab", "Drug X-12")])])
    row = combos.to_pylist()[0]
    assert unnormalized_id("Drug  X-12") not in row["drug_set_ids"] and row["non_drugs"] == ["Drug X-12"]
    assert row["all_normalized"]
    _, _, errors = run([extraction("k2", [rel("NEG", "gemcitabine", "Drug X-12")])])
    assert errors.to_pylist()[0]["reason"].endswith("not known drugs: Drug X-12")


def test_no_comb_yields_nothing_and_no_error():
    combos, drugs, errors = run([extraction("k1", [{"label": "NO_COMB", "drugs": []}])])
    assert (combos.num_rows, drugs.num_rows, errors.num_rows) == (0, 0, 0)


@pytest.mark.parametrize(
    "row, stage",
    [
        (extraction("k1", [], status="invalid_json", raw="<answer>[{"), "parse"),
        (extraction("k1", [], status=None, error="TimeoutError: server", raw=None), "engine"),
        (extraction("k1", [rel("POS", "paclitaxel", "nab-paclitaxel")]), "normalize"),
    ],
)
def test_unusable_outputs_become_error_rows_with_raw_text(row, stage):
    combos, _, errors = run([row, extraction("ok", [rel("POS", "gemcitabine", "bevacizumab")])])
    assert combos.num_rows == 1  # the good sentence is kept
    err = errors.to_pylist()
    assert [e["stage"] for e in err] == [stage]
    assert err[0]["extraction_key"] == "k1" and err[0]["raw_output"] == row["raw_output"]


def test_class_members_are_left_out():
    """A class is no specific drug (DrugComb's entities are drugs): recorded, not a member."""
    combos, drugs, _ = run([extraction("k1", [rel("POS", "platinum", "gemcitabine", "bevacizumab")])])
    assert {d["canonical_id"] for d in drugs.to_pylist()} == {"DB00441", "DB00112"}
    assert combos.to_pylist()[0]["non_drugs"] == ["platinum"]


def test_name_the_kb_lacks_is_resolved_through_the_matcher_mention_it_sits_on():
    row = extraction("k1", [rel("POS", "CZP", "gemcitabine")])
    # the matcher knew "CZP" from "certolizumab pegol (CZP)" earlier in the abstract
    row["mentions"] = [
        {
            "start": 0,
            "end": 3,
            "surface": "CZP",
            "id": "DB08904",
            "preferred_name": "Certolizumab pegol",
            "is_class": False,
            "kind": "drug",
        }
    ]
    combos, drugs, _ = run([row])
    czp = next(d for d in drugs.to_pylist() if d["surface"] == "CZP")
    assert (czp["canonical_id"], czp["normalized"]) == ("DB08904", True)
    assert combos.to_pylist()[0]["all_normalized"]
    # an ungrounded name (no offsets) is never attached to a mention
    row = extraction("k2", [{"label": "POS", "drugs": [{"name": "CZP"}, {"name": "gemcitabine"}]}])
    row["mentions"] = [
        {
            "start": 0,
            "end": 3,
            "surface": "CZP",
            "id": "DB08904",
            "preferred_name": "x",
            "is_class": False,
            "kind": "drug",
        }
    ]
    _, drugs, errors = run([row])
    assert drugs.num_rows == 0  # so "CZP" stays unknown: no known drug, no combination with one drug
    assert errors.to_pylist()[0]["reason"].endswith("not known drugs: CZP")


KINDED = {
    "iron": {"id": "UNII:IRON", "preferred_name": "Iron", "kind": "other_substance"},
    "sulfur": {"id": "UNII:SULFUR", "preferred_name": "Sulfur", "kind": "other_substance"},
    "prostate-specific antigen": {
        "id": "MESH:PSA",
        "preferred_name": "Prostate-Specific Antigen",
        "kind": "not_drug",
    },
    "anthracyclines": {
        "id": "CLASS:anthracyclines",
        "preferred_name": "Anthracyclines",
        "is_class": True,
        "kind": "class",
    },
    "cisplatin": {"id": "DB00515", "preferred_name": "Cisplatin", "kind": "drug"},
    "alg": {"id": "DB:GAVISCON", "preferred_name": "Gaviscon", "kind": "drug"},
}


def kinded_normalize(name: str) -> dict:
    hit = KINDED.get(name.lower())
    return (
        {"is_class": False, "components": [], "matched_by": "exact", **hit} if hit else fake_normalize(name)
    )


@pytest.mark.parametrize(
    "names,mention_kind,set_ids,non_drugs,error",
    [
        # two known non-drugs: no combination, an error row that says why
        (("iron", "sulfur"), None, None, None, "not known drugs: iron, sulfur"),
        # a drug with a class and a biomarker: one drug left, not a combination
        (
            ("cisplatin", "anthracyclines", "prostate-specific antigen"),
            None,
            None,
            None,
            "not known drugs: anthracyclines, prostate-specific antigen",
        ),
        # two drugs and a biomarker: the drugs form the combination, the biomarker is recorded as left out
        (
            ("cisplatin", "gemcitabine", "prostate-specific antigen"),
            None,
            ["DB00441", "DB00515"],
            ["prostate-specific antigen"],
            None,
        ),
        # a name neither in the KB nor on a matcher mention is no known drug (recorded, not a member)
        (("cisplatin", "gemcitabine", "testerone"), None, ["DB00441", "DB00515"], ["testerone"], None),
        (("cisplatin", "buforin II"), None, None, None, "not known drugs: buforin II"),
        # the sentence's mention decides: "ALG" defined in the abstract as alginate is not the drug "ALG"
        (("ALG", "cisplatin"), "other_substance", None, None, "not known drugs: ALG"),
        (("ALG", "cisplatin"), "drug", ["DB00515", "DB:GAVISCON"], [], None),
    ],
)
def test_known_non_drugs_are_left_out_of_the_set(names, mention_kind, set_ids, non_drugs, error):
    # each name at its own offsets (one after the other, a space apart)
    drugs, at = [], 0
    for n in names:
        drugs.append({"name": n, "start": at, "end": at + len(n), "grounded": True})
        at += len(n) + 1
    row = extraction("k1", [{"label": "POS", "drugs": drugs}])
    if mention_kind:  # the matcher's mention on "ALG" (offsets 0..3), with its kind in this sentence
        row["mentions"] = [
            {
                "start": 0,
                "end": 3,
                "surface": "ALG",
                "id": "DB:GAVISCON",
                "preferred_name": "Gaviscon",
                "is_class": False,
                "kind": mention_kind,
            }
        ]
    combos, drugs, errors = build_combination_tables(
        pa.Table.from_pylist([row], schema=EXTRACTIONS), kinded_normalize
    )
    if error:
        assert combos.num_rows == 0
        assert errors.to_pylist()[0]["reason"].endswith(error)
    else:
        (combo,) = combos.to_pylist()
        assert (combo["drug_set_ids"], combo["non_drugs"]) == (set_ids, non_drugs)
        assert {d["canonical_id"] for d in drugs.to_pylist()} == set(set_ids)


@pytest.mark.parametrize(
    "given, stored",
    [
        (0.73, 0.73),
        (0.0, 0.0),
        (1.0, 1.0),
        (None, None),  # engines without one (vLLM, OpenAI-compatible), old rows
        (1.3, None),
        (-0.2, None),
        (float("nan"), None),  # not a probability: never passes a threshold
    ],
)
def test_combination_rows_carry_the_relations_confidence(given, stored):
    relation = {
        "label": "POS",
        "confidence": given,
        "label_logprobs": None,
        "drugs": [
            {"name": "Gemcitabine", "start": 0, "end": 11, "grounded": True},
            {"name": "nab-paclitaxel", "start": 17, "end": 31, "grounded": True},
        ],
    }
    combos, _, errors = build_combination_tables(
        pa.Table.from_pylist([extraction("k1", [relation])], schema=EXTRACTIONS), fake_normalize
    )
    assert errors.num_rows == 0
    got = combos.column("confidence").to_pylist()
    assert got == [stored] if stored is None else got == [pytest.approx(stored)]
