"""The sweep's ``interactions`` task without Spark: its configuration, the rule engine's answer to the ddi
prompt (hints from the stored mentions), the interaction rows and the per-task checkpoint digest."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from etl.combinations import build_interaction_tables, combination_id
from etl.config import load_config
from jobs.sweep import SweepConfig, TaskPlan, extraction_config_digest
from schemas.answer import DDI_EFFECT, DDI_LABELS, SWEEP_COMBINATIONS, SWEEP_INTERACTIONS
from schemas.extraction import EXTRACTION_ERRORS, EXTRACTIONS, INTERACTIONS
from tests.test_combinations import KB as COMBINATION_KB
from tests.test_combinations import extraction

BASE = ["source=demo", "engine.kind=rule_all_drugs"]

# --- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["tasks=[]"], "tasks must name at least one task"),
        (["tasks=[combinations, combinations]"], "tasks names combinations more than once"),
        (["tasks=[combinations, interaction]"], "unknown task(s) in tasks: 'interaction'"),
        (["tasks=combinations"], "tasks must be a list"),
        (["tasks=[interactions]", "interactions.prompt.variant=compact"], "interactions need variant ddi"),
        (["prompt.variant=ddi"], "prompt.variant=ddi asks for the ddi task"),
        (["tasks=[interactions]", "interactions.engine.kindd=rule_cue"], "interactions.engine"),
        (["tasks=[interactions]", "interactions.engine.kind=nope"], "engine.kind must be one of"),
        (["interactions.promt.variant=ddi"], "unknown config key(s) in section 'interactions'"),
    ],
)
def test_task_configuration_errors_are_clear(overrides, message):
    with pytest.raises(ValueError) as info:
        load_config(SweepConfig, None, [*BASE, *overrides])
    assert message in str(info.value)


def test_the_default_sweep_has_the_combinations_task_only():
    config = load_config(SweepConfig, None, BASE)
    assert config.tasks == [SWEEP_COMBINATIONS]
    assert [(p.name, p.engine, p.prompt) for p in config.task_plans()] == [
        (SWEEP_COMBINATIONS, config.engine, config.prompt)
    ]


def test_interactions_default_to_the_sweeps_engine_with_the_ddi_prompt():
    # listed out of order: the sweep runs its tasks in SWEEP_TASKS' order all the same
    config = load_config(SweepConfig, None, [*BASE, "tasks=[interactions, combinations]"])
    combos, pairs = config.task_plans()
    assert (combos.name, pairs.name) == (SWEEP_COMBINATIONS, SWEEP_INTERACTIONS)
    assert pairs.engine == config.engine
    assert pairs.identity == ("rule:all_drugs", "ddi-v1+hints+ctx=sentence")
    assert combos.identity[1] != pairs.identity[1]  # their own extraction keys


def test_interactions_engine_settings_change_only_what_they_name():
    config = load_config(
        SweepConfig,
        None,
        [*BASE, "engine.batch_size=3", "tasks=[interactions]", "interactions.engine.kind=rule_cue"],
    )
    (plan,) = config.task_plans()
    assert plan.engine == dataclasses.replace(config.engine, kind="rule_cue")
    assert plan.engine.batch_size == 3


def test_a_bad_task_is_exit_code_2_before_anything_runs(tmp_path, capsys):
    from jobs.cli import main

    rc = main(["sweep", "--warehouse", str(tmp_path / "wh"), "--demo", "tasks=[ddi]"])
    assert rc == 2
    assert "unknown task(s) in tasks: 'ddi'" in capsys.readouterr().out
    assert not (tmp_path / "wh" / "warehouse.duckdb").exists()


# --- checkpoints ---------------------------------------------------------------------------------------


def test_the_checkpoint_digest_names_the_task():
    config = load_config(SweepConfig, None, [*BASE, "tasks=[combinations, interactions]"])
    combos, pairs = config.task_plans()
    assert extraction_config_digest(config, combos) != extraction_config_digest(config, pairs)
    # the task itself, not only its prompt, is part of it
    same = TaskPlan(SWEEP_INTERACTIONS, combos.engine, combos.prompt)
    assert extraction_config_digest(config, same) != extraction_config_digest(config, combos)
    assert extraction_config_digest(config, combos) == extraction_config_digest(
        config, config.task_plans()[0]
    )


# --- the rule engine answers the ddi prompt; hints from the stored mentions -----------------------------


class NoMatcher:
    """The candidates stage found the mentions already: running the matcher again is a defect."""

    def find(self, text):
        raise AssertionError("the matcher was run again on a sweep candidate")


SENTENCE = "Warfarin with aspirin and NSAIDs raised INR; iron was given."


def mention(surface, ident, kind="drug", is_class=False):
    start = SENTENCE.index(surface)
    return {
        "start": start,
        "end": start + len(surface),
        "surface": surface,
        "id": ident,
        "preferred_name": surface.title(),
        "is_class": is_class,
        "kind": kind,
    }


def candidate(prompt_version):
    return {
        "extraction_key": "k1",
        "pmid": "7",
        "pmid_version": 1,
        "sentence_index": 0,
        "sentence_start": 0,
        "sentence_end": len(SENTENCE),
        "sentence_text": SENTENCE,
        "text_hash": "h",
        # aspirin first in the list: the hints follow the sentence's order, not the list's
        "mentions": [
            mention("aspirin", "DB00945"),
            mention("Warfarin", "DB00682"),
            mention("NSAIDs", "CLASS:nsaid", kind="class", is_class=True),
            mention("iron", "DB01592", kind="other_substance"),
        ],
        "context": SENTENCE,
        "model_id": "rule:all_drugs",
        "prompt_version": prompt_version,
    }


@pytest.mark.parametrize("kind", ["rule_all_drugs", "rule_cue", "rule_no_comb", "rule_ddi_all_pairs"])
def test_every_rule_answers_the_ddi_prompt_with_pairs_of_the_stored_drug_mentions(kind):
    from model.engines import EngineConfig, create_engine
    from model.engines.rules import RULE_DDI_CONFIDENCE
    from model.extraction import ExtractionRunner, extraction_rows
    from model.items import ExtractionItem
    from model.prompting import PromptConfig

    runner = ExtractionRunner(
        create_engine(EngineConfig(kind=kind), matcher=NoMatcher()),
        PromptConfig(variant="ddi", hints=True),
        matcher=NoMatcher(),
    )
    prompt = runner.prompt(ExtractionItem.from_candidate(candidate("ddi-v1+hints+ctx=sentence")))
    assert prompt.messages[0]["content"].endswith("\nDrugs: Warfarin; aspirin")  # no class, no iron
    (row,) = extraction_rows([candidate("ddi-v1+hints+ctx=sentence")], runner, "run-1")
    assert row["parse_status"] == "ok"
    assert [(r["label"], [d["name"] for d in r["drugs"]], r["confidence"]) for r in row["relations"]] == [
        (DDI_EFFECT, ["Warfarin", "aspirin"], RULE_DDI_CONFIDENCE)
    ]
    assert [(d["start"], d["end"], d["grounded"]) for d in row["relations"][0]["drugs"]] == [
        (0, 8, True),
        (14, 21, True),
    ]


# --- interaction rows ------------------------------------------------------------------------------------

KB = {
    "warfarin": {"id": "DB00682", "preferred_name": "Warfarin", "kind": "drug"},
    "aspirin": {"id": "DB00945", "preferred_name": "Aspirin", "kind": "drug"},
    "acetylsalicylic acid": {"id": "DB00945", "preferred_name": "Aspirin", "kind": "drug"},
    "gemcitabine": {"id": "DB00441", "preferred_name": "Gemcitabine", "kind": "drug"},
    "oxaliplatin": {"id": "DB00526", "preferred_name": "Oxaliplatin", "kind": "drug"},
    "iron": {"id": "DB01592", "preferred_name": "Iron", "kind": "other_substance"},
    "gemox": {
        "id": "REGIMEN:GEMOX",
        "preferred_name": "GEMOX",
        "kind": "regimen",
        "components": [
            {"id": "DB00441", "preferred_name": "Gemcitabine", "kind": "drug", "matched_by": "regimen"},
            {"id": "DB00526", "preferred_name": "Oxaliplatin", "kind": "drug", "matched_by": "regimen"},
        ],
    },
    "folfox": COMBINATION_KB["folfox"],
}


def normalize(name):
    hit = KB.get(name.lower())
    if hit is None:
        return {"id": None, "components": [], "matched_by": "unnormalized"}
    return {"is_class": False, "components": [], "matched_by": "exact", **hit}


def rel(label, *names, confidence=None):
    drugs = []
    for n in names:
        start = TEXT.find(n)
        grounded = start >= 0
        drugs.append(
            {"name": n, "start": start if grounded else None, "end": start + len(n) if grounded else None,
             "grounded": grounded}
        )  # fmt: skip
    return {"label": label, "drugs": drugs, "confidence": confidence}


TEXT = "Aspirin raised warfarin levels; GEMOX (gemcitabine, oxaliplatin) and FOLFOX; iron too."


def row(key, relations, status="ok", error=None, reason=""):
    """An extraction row of the interactions task (test_combinations' row, another sentence and prompt)."""
    return {
        **extraction(key, relations, status, error, raw="<answer>...</answer>"),
        "pmid": "9",
        "pmid_version": 2,
        "sentence_index": 4,
        "sentence_start": 100,
        "sentence_end": 100 + len(TEXT),
        "sentence_text": TEXT,
        "think": None,
        "parse_reason": reason,
        "model_id": "rule:all_drugs",
        "prompt_version": "ddi-v1+hints+ctx=sentence",
        "run_id": "r1",
    }


def interactions(rows):
    table, errors = build_interaction_tables(
        pa.Table.from_pylist(rows, schema=EXTRACTIONS), normalize, "rule_all_drugs"
    )
    assert table.schema == INTERACTIONS and errors.schema == EXTRACTION_ERRORS
    return table.to_pylist(), errors.to_pylist()


def test_a_pair_is_stored_in_canonical_order_with_its_type_grounding_and_provenance():
    mechanism = DDI_LABELS[1]
    pairs, errors = interactions(
        [
            row("k1", [rel(mechanism, "Aspirin", "warfarin", confidence=0.16)], reason="added answer tags"),
            row("k2", [rel(DDI_EFFECT, "warfarin", "acetylsalicylic acid")]),
        ]
    )
    assert errors == []
    first, second = pairs
    # DB00682 (warfarin) sorts before DB00945 (aspirin): drug_a is warfarin however the model wrote them
    assert (first["pair_key"], second["pair_key"]) == ("DB00682 + DB00945", "DB00682 + DB00945")
    assert (first["drug_a"]["surface"], first["drug_b"]["surface"]) == ("warfarin", "Aspirin")
    assert (second["drug_a"]["surface"], second["drug_b"]["surface"]) == ("warfarin", "acetylsalicylic acid")
    assert (first["drug_a"]["start"], first["drug_a"]["end"], first["drug_b"]["start"]) == (15, 23, 0)
    assert (first["all_grounded"], second["all_grounded"]) == (True, False)
    assert first["drug_b"]["preferred_name"] == "Aspirin" and first["drug_b"]["matched_by"] == "exact"
    assert (first["interaction_type"], second["interaction_type"]) == (mechanism, DDI_EFFECT)
    assert (first["confidence"], second["confidence"]) == (0.16, None)
    assert first["interaction_id"] == combination_id("k1", 0)
    assert (first["parse_status"], first["parse_reason"]) == ("ok", "added answer tags")
    assert (first["engine_kind"], first["model_id"], first["prompt_version"], first["run_id"]) == (
        "rule_all_drugs",
        "rule:all_drugs",
        "ddi-v1+hints+ctx=sentence",
        "r1",
    )
    assert (first["pmid"], first["pmid_version"], first["sentence_index"], first["sentence_start"]) == (
        "9",
        2,
        4,
        100,
    )


def test_a_regimen_pair_keeps_the_directly_named_drug_and_an_answer_names_a_pair_once():
    pairs, errors = interactions(
        [
            row(
                "k1",
                [
                    rel(DDI_EFFECT, "GEMOX", "gemcitabine"),  # folds to gemcitabine + oxaliplatin
                    rel(DDI_EFFECT, "gemcitabine", "oxaliplatin"),  # the same pair again: no second row
                ],
            )
        ]
    )
    assert errors == []
    (pair,) = pairs
    assert pair["pair_key"] == "DB00441 + DB00526" and pair["relation_index"] == 0
    assert (pair["drug_a"]["surface"], pair["drug_a"]["via_regimen"]) == ("gemcitabine", None)
    assert (pair["drug_b"]["surface"], pair["drug_b"]["via_regimen"]) == ("GEMOX", "GEMOX")


@pytest.mark.parametrize(
    "record, stage, reason",
    [
        (row("k1", [rel(DDI_EFFECT, "FOLFOX", "warfarin")]), "normalize", "names 4 distinct drugs"),
        (row("k1", [rel(DDI_EFFECT, "warfarin", "iron")]), "normalize", "fewer than two distinct drugs"),
        (row("k1", [], status="invalid_json", reason="no JSON list recovered"), "parse", "invalid_json"),
        (row("k1", [], status="engine_error", error="engine_error: down"), "engine", "engine_error: down"),
    ],
)
def test_unusable_answers_are_error_rows_with_the_extraction_key(record, stage, reason):
    pairs, errors = interactions([record])
    assert pairs == []
    (error,) = errors
    assert (error["extraction_key"], error["stage"], error["prompt_version"]) == (
        "k1",
        stage,
        "ddi-v1+hints+ctx=sentence",
    )
    assert reason in error["reason"]


def test_no_interaction_and_combination_labels_add_no_row_and_no_error():
    from schemas.answer import NO_COMB, POS

    pairs, errors = interactions([row("k1", [rel(NO_COMB)]), row("k2", [rel(POS, "warfarin", "aspirin")])])
    assert (pairs, errors) == ([], [])
