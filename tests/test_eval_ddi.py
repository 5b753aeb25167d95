"""DDI13 evaluation: the official-corpus reader, the name -> mention-pair scorer, the ddi prompt and rule,
and ``rexdrug eval ddi`` on the committed fixtures (tests/data/ddi13/, see its README)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from jobs.cli import main
from model.engines import EngineConfig, create_engine
from model.evaluation.ddi import predicted_pairs, score_ddi
from model.evaluation.ddi_official import (
    corpus_counts,
    map_name_pair,
    name_oracle,
    parse_offsets,
    read_official,
    score_official,
    score_string_pairs,
)
from model.items import ExtractionItem, Prompt
from model.parsing import ddi_items, parse_completion
from model.prompting import PromptConfig, build_messages, prompt_version
from tests.prompt_fields import read_prompt_fields

DATA = Path(__file__).parent / "data" / "ddi13"
ZIP = DATA / "DDICorpus-fixture.zip"
PROCESSED = DATA / "processed.jsonl"
S0, S1, M0 = "DDI-DrugBank.d900.s0", "DDI-DrugBank.d900.s1", "DDI-MedLine.d900.s0"


@pytest.fixture(scope="module")
def corpus():
    return read_official(ZIP, "test")


def _by_id(corpus):
    return {s["id"]: s for s in corpus.sentences}


# --- reader ---------------------------------------------------------------------------------------------


def test_reader_reads_the_test_documents_only(corpus):
    assert corpus.errors == []
    assert [s["id"] for s in corpus.sentences] == [S0, S1, M0]  # no DrugNER copy, no .DS_Store, no Train
    assert corpus_counts(corpus.sentences) == {
        "documents": 2,
        "sentences": 3,
        "pairs": 9,
        "positive": 4,
        "negative": 5,
        "ddi_without_type": 0,
        "effect": 1,
        "mechanism": 2,
        "advise": 1,
        "int": 0,
    }
    train = read_official(ZIP, "train").sentences
    assert [s["id"] for s in train] == ["DDI-DrugBank.d901.s0"] and train[0]["pairs"][0][
        "type"
    ] == "mechanism"


def test_reader_record_fields_and_half_open_offsets(corpus):
    s = _by_id(corpus)
    aspirin = s[S0]["entities"][2]
    assert aspirin == {
        "id": "DDI-DrugBank.d900.s0.e2",
        "text": "aspirin",
        "type": "drug",
        "offsets": [(42, 49)],
    }
    assert s[S0]["sentence"][42:49] == "aspirin"  # charOffset "42-48": inclusive end -> half-open (42, 49)
    loop = s[M0]["entities"][0]  # discontinuous "0-3;18-26"
    assert loop["offsets"] == [(0, 4), (18, 27)] and loop["text"] == "Loop diuretics"
    assert " ".join(s[M0]["sentence"][a:b] for a, b in loop["offsets"]) == "Loop diuretics"
    assert s[S1]["sentence"].endswith("study.\r\n") and s[S1]["pairs"] == []  # character references kept
    p5 = s[S0]["pairs"][5]
    assert p5 == {
        "id": "DDI-DrugBank.d900.s0.p5",
        "e1": "DDI-DrugBank.d900.s0.e2",
        "e2": "DDI-DrugBank.d900.s0.e3",
        "ddi": True,
        "type": "advise",
    }
    assert s[S0]["pairs"][1]["type"] is None and s[S0]["pairs"][1]["ddi"] is False


def test_parse_offsets():
    assert parse_offsets("5-9") == [(5, 10)]
    assert parse_offsets("0-3;18-26", 53) == [(0, 4), (18, 27)]
    for bad in ("", "3", "9-5", "a-b", "0-3;"):
        with pytest.raises(ValueError):
            parse_offsets(bad)
    with pytest.raises(ValueError, match="outside"):
        parse_offsets("10-60", 53)


def _zip_with(tmp_path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "corpus.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_bad_members_become_error_rows_and_reading_goes_on(tmp_path):
    good = (DATA / "src" / "test_medline.xml").read_bytes()
    prefix = "DDICorpus/Test/Test for DDI Extraction task/MedLine/"
    entity_bomb = (
        b'<?xml version="1.0"?><!DOCTYPE document [<!ENTITY x "boom">]>'
        b'<document id="d"><sentence id="d.s0" text="&x;"/></document>'
    )
    path = _zip_with(
        tmp_path,
        {
            prefix + "1.xml": entity_bomb,
            prefix + "2.xml": b"<document id='d2'><sentence id='d2.s0' text='x'>",  # not well-formed
            prefix + "3.xml": good.replace(
                b'charOffset="35-41"', b'charOffset="35-99"'
            ),  # offset past the text
            prefix + "4.xml": good,
        },
    )
    result = read_official(path)
    assert [s["id"] for s in result.sentences] == [M0]
    reasons = {e["id"].rsplit("/", 1)[1]: e["reason"] for e in result.errors}
    assert set(reasons) == {"1.xml", "2.xml", "3.xml"}
    assert (
        "DOCTYPE" in reasons["1.xml"] and "well-formed" in reasons["2.xml"] and "outside" in reasons["3.xml"]
    )


def test_reader_configuration_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_official(tmp_path / "missing.zip")
    with pytest.raises(ValueError, match="split"):
        read_official(ZIP, "dev")
    with pytest.raises(ValueError, match="no XML documents"):
        read_official(_zip_with(tmp_path, {"other/file.xml": b"<document/>"}))


# --- name -> mention-pair mapping and scoring --------------------------------------------------------------


def test_a_name_pair_maps_to_every_mention_pair_of_those_names(corpus):
    s = _by_id(corpus)
    assert map_name_pair(s[S0], "aspirin", "warfarin") == [
        "DDI-DrugBank.d900.s0.p0",
        "DDI-DrugBank.d900.s0.p3",
    ]
    assert map_name_pair(s[S0], "HEPARIN", "Aspirin") == [
        "DDI-DrugBank.d900.s0.p2",
        "DDI-DrugBank.d900.s0.p5",
    ]
    assert map_name_pair(s[S0], "aspirin", "ASPIRIN") == []  # one name: not a pair
    assert map_name_pair(s[S0], "aspirin", "ibuprofen") == []
    assert map_name_pair(s[M0], "loop-diuretics", "lithium") == ["DDI-MedLine.d900.s0.p1"]


def test_scorer_arithmetic_on_hand_made_predictions(corpus):
    pred = [
        {
            "id": S0,
            "relations": [
                {"type": "EFFECT", "ent_set": ["aspirin", "warfarin"]},  # p0 effect: TP; p3 negative: FP
                {
                    "type": "MECHANISM",
                    "ent_set": ["aspirin", "heparin"],
                },  # p2 negative: FP; p5 advise: FP + FN
                {"type": "effect", "ent_set": ["warfarin", "Aspirin"]},  # same mention pairs, same type
                {
                    "type": "ADVISE",
                    "ent_set": ["Aspirin", "warfarin"],
                },  # first type wins: 2 conflicts ignored
                {"type": "INT", "ent_set": ["warfarin", "ibuprofen"]},  # maps to nothing: FP, unmapped
            ],
        },
        {
            "id": M0,
            "relations": [
                {"type": "mechanism", "ent_sets": ["Loop diuretics", "lithium"]},  # p1: TP; p2 stays FN
                {"type": "POS", "ent_set": ["Loop diuretics", "lithium"]},  # not a DDI type: ignored
                {"type": "NO_COMB", "ent_set": []},  # a negative answer: nothing
            ],
        },
        {"id": "DDI-unknown.s0", "relations": []},
    ]
    r = score_official(corpus.sentences, pred)
    m = r["micro"]
    assert (m["tp"], m["fp"], m["fn"]) == (2, 4, 2)
    assert (
        m["precision"] == pytest.approx(2 / 6)
        and m["recall"] == pytest.approx(0.5)
        and m["f1"] == pytest.approx(0.4)
    )
    assert {t: (v["tp"], v["fp"], v["fn"]) for t, v in r["per_type"].items()} == {
        "effect": (1, 1, 0),
        "mechanism": (1, 2, 1),
        "advise": (0, 0, 1),
        "int": (0, 1, 0),
    }
    d = r["detection"]
    assert (d["tp"], d["fp"], d["fn"]) == (3, 3, 1) and d["f1"] == pytest.approx(0.6)
    assert (r["unmapped_predicted_pairs"], r["mapped_predicted_pairs"], r["conflicting_types_ignored"]) == (
        1,
        5,
        2,
    )
    assert r["ignored_items"] == 1 and r["predictions_for_unknown_sentences"] == 1
    assert r["gold_sentences_without_prediction"] == 0  # S1 has no candidate pair: needs no prediction


def test_scorer_guards_and_missing_predictions(corpus):
    r = score_official(corpus.sentences, [])
    assert r["micro"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 4}
    assert r["gold_sentences_without_prediction"] == 2
    empty = score_official([], [])
    assert empty["micro"]["f1"] == 0.0 and empty["detection"]["precision"] == 0.0


def test_larger_sets_count_as_all_their_pairs(corpus):
    pred = [
        {
            "id": M0,
            "relations": [
                {"type": "MECHANISM", "ent_set": ["Loop diuretics", "thiazide diuretics", "lithium"]}
            ],
        }
    ]
    r = score_official([_by_id(corpus)[M0]], pred)
    assert (r["micro"]["tp"], r["micro"]["fp"], r["micro"]["fn"]) == (2, 1, 0)
    pairs, ignored = predicted_pairs(
        [
            {"type": "EFFECT", "ent_set": ["a", "A", "b"]},
            {"type": "EFFECT", "ent_set": ["a"]},
            "junk",
            {"type": "other", "ent_sets": ["a", "b"]},
        ]
    )
    assert pairs == [("effect", "a", "b")] and ignored == 2


def test_string_pair_scorer_on_hand_made_predictions(corpus):
    # Gold as lowercased string pairs: S0 {aspirin, warfarin} effect, {aspirin, heparin} advise (the two
    # aspirin mentions are one string); M0 {loop diuretics, lithium}, {thiazide diuretics, lithium} mechanism.
    pred = [
        {
            "id": S0,
            "relations": [
                {"type": "EFFECT", "ent_set": ["ASPIRIN", "warfarin"]},  # TP (effect)
                {"type": "effect", "ent_set": ["warfarin", " Aspirin"]},  # the same relation again: a set
                {"type": "ADVISE", "ent_set": ["aspirin", "warfarin"]},  # a second type of that pair: FP
                {"type": "MECHANISM", "ent_set": ["aspirin", "heparin"]},  # wrong type: FP; advise stays FN
                {"type": "INT", "ent_set": ["warfarin", "ibuprofen"]},  # not a gold pair: FP
            ],
        },
        {
            "id": M0,
            "relations": [
                {"type": "mechanism", "ent_sets": ["Loop  diuretics", "lithium"]},  # TP; thiazide pair FN
                {"type": "POS", "ent_set": ["thiazide diuretics", "lithium"]},  # not a DDI type: ignored
            ],
        },
        {"id": "DDI-unknown.s0", "relations": [{"type": "EFFECT", "ent_set": ["a", "b"]}]},
    ]
    r = score_string_pairs(corpus.sentences, pred)
    m = r["micro"]
    assert (m["tp"], m["fp"], m["fn"]) == (2, 3, 2)
    assert m["precision"] == pytest.approx(0.4) and m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert {t: (v["tp"], v["fp"], v["fn"]) for t, v in r["per_type"].items()} == {
        "effect": (1, 0, 0),
        "mechanism": (1, 1, 1),
        "advise": (0, 1, 1),
        "int": (0, 1, 0),
    }
    assert r["predictions_for_unknown_sentences"] == 1 and r["gold_self_pairs"] == 0
    gold_only = score_string_pairs(corpus.sentences, [])["micro"]
    assert (gold_only["tp"], gold_only["fp"], gold_only["fn"]) == (0, 0, 4)


def test_name_oracle_is_the_ceiling_of_name_predictions(corpus):
    oracle = name_oracle(corpus.sentences)
    # aspirin/warfarin and aspirin/heparin also cover the negative pairs of the other aspirin mention
    assert (oracle["micro"]["tp"], oracle["micro"]["fp"], oracle["micro"]["fn"]) == (4, 2, 0)


def test_processed_scorer_reads_model_labels():
    gold = [json.loads(line) for line in PROCESSED.read_text().splitlines()]
    pred = [{"id": 1, "relations": [{"type": "MECHANISM", "ent_set": ["cimetidine", "Theophylline"]}]}]
    r = score_ddi(gold, pred)
    assert (r["micro"]["tp"], r["micro"]["fp"], r["micro"]["fn"]) == (1, 0, 1)


# --- prompt, parser helper, rule ---------------------------------------------------------------------------


def test_ddi_prompt_uses_the_training_instruction_and_gold_entities():
    from model.prompting import DDI_TEMPLATES

    config = PromptConfig(variant="ddi", hints=True)
    messages = build_messages("A raises B levels.", "ignored context", config, ["A", "B", "a"])
    assert len(messages) == 1 and messages[0]["role"] == "user"
    assert messages[0]["content"].startswith(DDI_TEMPLATES["en"].split("{sentence}")[0])
    assert messages[0]["content"].endswith("Sentence: A raises B levels.\nDrugs: A; B")
    assert read_prompt_fields(messages) == {"sentence": "A raises B levels.", "hints": ["A", "B"]}
    assert prompt_version(config) == "ddi-v1+hints"
    assert "Drugs:" not in build_messages("A and B.", None, PromptConfig(variant="ddi"))[0]["content"]


def test_ddi_items_reads_ddi_labels_from_the_raw_answer():
    parsed = parse_completion('<answer>[{"type": "EFFECT", "ent_set": ["A", "B"]}, 3]</answer>', "A and B")
    assert parsed.relations == [] and ddi_items(parsed) == [{"type": "EFFECT", "ent_set": ["A", "B"]}]
    assert ddi_items(parse_completion("no answer at all")) is None


def test_ddi_predictions_come_from_the_runners_single_parse():
    from model.engines.base import Engine, EngineResult
    from model.evaluation.run import ddi_prediction
    from model.extraction import ExtractionRunner

    class CannedEngine(Engine):
        model_id = "canned"
        answers = (
            '<answer>[{"type": "MECHANISM", "ent_set": ["A", "B"]}]</answer>',
            '<answer>[{"type": "ADVISE", "ent_set": ["A", "B"]}, {"type": "POS", "ent_set": ["A"]}]</answer>',
            "no answer at all",
        )

        def generate(self, batch, sampling=None):
            return [EngineResult(a) for a in self.answers[: len(batch)]]

    runner = ExtractionRunner(CannedEngine(), PromptConfig(variant="ddi", hints=True))
    rows = runner.run([{"id": k, "sentence": "A and B.", "hints": ["A", "B"]} for k in range(3)])
    predictions = [ddi_prediction(row) for row in rows]
    # a DDI label is not a repair; dropping a one-drug DrugComb item is
    assert predictions[0] == {
        "id": 0,
        "relations": [{"type": "MECHANISM", "ent_sets": ["A", "B"]}],
        "parse_status": "ok",
        "parse_reason": "",
    }
    assert predictions[1]["relations"][0] == {"type": "ADVISE", "ent_sets": ["A", "B"]}
    assert predictions[1]["parse_status"] == "repaired" and predictions[1]["parse_reason"]
    assert (
        predictions[2]["relations"] == []
        and predictions[2]["parse_status"] == rows[2]["parse_status"] != "ok"
    )


def test_rule_ddi_all_pairs_labels_every_pair_of_the_given_drugs():
    engine = create_engine(EngineConfig(kind="rule_ddi_all_pairs"))
    assert engine.model_id == "rule:ddi_all_pairs"
    config = PromptConfig(variant="ddi", hints=True)
    results = engine.complete(
        [
            Prompt(
                build_messages("A, B and C.", None, config, ["A", "B", "C"]),
                ExtractionItem("A, B and C."),
                ("A", "B", "C"),
            ),
            Prompt(build_messages("Only A.", None, config, ["A"]), ExtractionItem("Only A."), ("A",)),
        ]
    )
    texts = [r.text for r in results]
    items = ddi_items(parse_completion(texts[0]))
    assert [(i["type"], i["ent_set"]) for i in items] == [
        ("EFFECT", ["A", "B"]),
        ("EFFECT", ["A", "C"]),
        ("EFFECT", ["B", "C"]),
    ]
    assert ddi_items(parse_completion(texts[1])) == [{"type": "NO_COMB", "ent_set": []}]
    assert [r.error for r in results] == [None, None]


# --- CLI -----------------------------------------------------------------------------------------------------


def _cli(capsys, *argv) -> tuple[int, dict | None]:
    rc = main(["eval", "ddi", *argv])
    out = capsys.readouterr().out
    return rc, (json.loads(out) if rc == 0 else None)


def test_cli_end_to_end_the_matcher_finds_the_drugs(capsys):
    """--entities found: no gold entities in the prompt; our drug matcher finds aspirin, warfarin and
    heparin in S0 and only lithium in M0 (drug classes are not hints), so the rule pairs S0's three and
    answers NO_COMB on M0.  Official: aspirin/warfarin hits p0 (effect, TP) and p3 (negative, FP);
    aspirin/heparin hits p2 (FP) and p5 (advise: FP and FN); warfarin/heparin p4 (FP); M0's two
    mechanism pairs are FN.  String pairs: 1 TP, 2 FP (aspirin/heparin as effect, warfarin/heparin), 3 FN."""
    rc, summary = _cli(
        capsys,
        "--model",
        "rule_ddi_all_pairs",
        "--zip",
        str(ZIP),
        "--corpus",
        "official",
        "--entities",
        "found",
    )
    off = summary["official"]
    assert rc == 0 and off["entities"] == "found"
    assert [off["scores"]["micro"][k] for k in ("tp", "fp", "fn")] == [1, 4, 3]
    assert [off["string_pair_scores"]["micro"][k] for k in ("tp", "fp", "fn")] == [1, 2, 3]
    rc, summary = _cli(capsys, "--model", "rule_ddi_all_pairs", "--zip", str(ZIP), "--corpus", "official")
    gold = summary["official"]  # gold entities: M0's diuretics are hints too
    assert gold["entities"] == "gold" and [
        gold["string_pair_scores"]["micro"][k] for k in ("tp", "fp", "fn")
    ] == [1, 5, 3]


def test_cli_runs_the_rule_on_both_corpora(tmp_path, capsys):
    rc, summary = _cli(
        capsys,
        "--model",
        "rule_ddi_all_pairs",
        "--zip",
        str(ZIP),
        "--gold",
        str(PROCESSED),
        "--out",
        str(tmp_path),
    )
    assert (
        rc == 0
        and summary["model_id"] == "rule:ddi_all_pairs"
        and summary["prompt_version"] == "ddi-v1+hints"
    )
    off, proc = summary["official"], summary["processed"]
    assert off["benchmark"].startswith(
        "ddi13-official (DDIExtraction 2013 test: 3 sentences, 9 candidate pairs, 4 positive"
    )
    assert "ddi13-processed" in proc["benchmark"] and "official" not in json.dumps(proc["scores"])
    # official: S0's three distinct names give 5 mention pairs (not aspirin/aspirin), M0's give all 3
    assert [off["scores"]["micro"][k] for k in ("tp", "fp", "fn")] == [1, 7, 3]
    assert [off["scores"]["detection"][k] for k in ("tp", "fp", "fn")] == [4, 4, 0]
    assert off["sentences_run"] == 2 and off["sentences_without_candidate_pairs_skipped"] == 1
    assert off["parse_status"] == {"ok": 2} and off["name_oracle"]["micro"]["fp"] == 2
    assert off["answers_with_ddi_pairs"] == 2
    assert [proc["scores"]["micro"][k] for k in ("tp", "fp", "fn")] == [1, 3, 1]
    assert proc["sentences_run"] == 2 and proc["sentences_without_candidate_pairs_skipped"] == 1
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["official"]["scores"] == off["scores"]
    rows = [
        json.loads(line) for line in (tmp_path / "official" / "predictions.jsonl").read_text().splitlines()
    ]
    assert [r["id"] for r in rows] == [S0, M0] and len(rows[1]["relations"]) == 3
    assert (tmp_path / "processed" / "outputs.jsonl").read_text().count("raw_output") == 2


def test_cli_limit_and_single_corpus(capsys):
    rc, summary = _cli(
        capsys, "--model", "rule_ddi_all_pairs", "--zip", str(ZIP), "--corpus", "official", "--limit", "1"
    )
    assert rc == 0 and "processed" not in summary
    assert (
        summary["official"]["sentences_run"] == 1
        and "subset: 1 sentences" in summary["official"]["benchmark"]
    )
    assert summary["official"]["counts"]["pairs"] == 6


def test_cli_scores_a_prediction_file_on_the_official_corpus(tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        json.dumps(
            {"id": M0, "relations": [{"type": "mechanism", "ent_sets": ["lithium", "Loop diuretics"]}]}
        )
        + "\n"
    )
    rc, out = _cli(capsys, "--pred", str(pred), "--corpus", "official", "--zip", str(ZIP))
    assert rc == 0 and out["benchmark"].startswith("ddi13-official")
    assert [out["scores"]["micro"][k] for k in ("tp", "fp", "fn")] == [1, 0, 3]


@pytest.mark.parametrize(
    "argv",
    [
        ["--pred", "x.jsonl", "--model", "rule_ddi_all_pairs"],
        [],
        ["--pred", "x.jsonl", "--corpus", "both"],
        ["--model", "rule_ddi_all_pairs", "--prompt", "rexdrug"],
        ["--model", "rule_ddi_all_pairs", "--limit", "0"],
    ],
)
def test_cli_configuration_errors_exit_2(argv, capsys):
    assert main(["eval", "ddi", "--zip", str(ZIP), *argv]) == 2
