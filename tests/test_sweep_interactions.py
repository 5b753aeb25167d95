"""The sweep with tasks [combinations, interactions] and the "all drugs" rule engine, end to end on the
shared local SparkSession: interaction rows, the current view after a re-run, the KB section and its
export, and the default sweep (combinations only) unchanged beside it."""

from __future__ import annotations

import json
import shutil
from itertools import combinations
from pathlib import Path

import pytest

from jobs.sweep import run_sweep
from model.engines.rules import RULE_CONFIDENCE, RULE_DDI_CONFIDENCE
from schemas.answer import DDI_EFFECT, SWEEP_COMBINATIONS, SWEEP_INTERACTIONS
from tests.test_sweep import ENGINE, make_config, query, table_hashes

pytestmark = pytest.mark.spark

BOTH = "tasks=[combinations, interactions]"
COMBINATION_TABLES = ("combinations", "combination_drugs", "current_combinations", "combination_kb")


@pytest.fixture(scope="module")
def default_swept(spark, tmp_path_factory) -> Path:
    warehouse = tmp_path_factory.mktemp("default") / "wh"
    summary = run_sweep(make_config(warehouse), spark=spark)
    assert summary.n_combinations > 0 and summary.tasks == [SWEEP_COMBINATIONS]
    return warehouse


@pytest.fixture(scope="module")
def both_swept(spark, tmp_path_factory) -> tuple[Path, object]:
    warehouse = tmp_path_factory.mktemp("both") / "wh"
    summary = run_sweep(make_config(warehouse, BOTH), spark=spark)
    return warehouse, summary


def test_an_interaction_row_is_the_hand_checked_pair(both_swept):
    warehouse, summary = both_swept
    rows = query(
        warehouse,
        """SELECT interaction_type, pair_key, drug_a.surface, drug_a.start, drug_a."end", drug_a.grounded,
                  drug_a.preferred_name, drug_b.surface, drug_b.start, drug_b."end", drug_b.grounded,
                  drug_b.preferred_name, all_grounded, all_normalized, confidence, engine_kind, model_id,
                  prompt_version, parse_status, sentence_start >= 0
           FROM current_interactions WHERE pmid = '6089554' AND sentence_index = 0""",
    )
    # "Possible differences between enalapril and captopril ." (DrugBank DB00584, DB01197)
    assert rows == [
        (DDI_EFFECT, "DB00584 + DB01197", "enalapril", 29, 38, True, "Enalapril", "captopril", 43, 52, True,
         "Captopril", True, True, RULE_DDI_CONFIDENCE, ENGINE, "rule:all_drugs", "ddi-v1+hints+ctx=sentence", "ok", True)
    ]  # fmt: skip
    assert summary.n_interactions == query(warehouse, "SELECT count(*) FROM interactions")[0][0] > 0


def test_the_rules_pairs_are_every_pair_of_each_sentences_combination(both_swept):
    """The all-drugs rule puts a sentence's drugs in one set; its ddi answer pairs the same drugs (the
    stored mentions): per sentence with a combination, the interaction pairs are exactly the 2-subsets
    of its set."""
    warehouse, _ = both_swept
    sets = {
        (p, i): ids
        for p, i, ids in query(
            warehouse, "SELECT pmid, sentence_index, drug_set_ids FROM current_combinations"
        )
    }
    pairs: dict[tuple, list[str]] = {}
    for p, i, key, kind in query(
        warehouse, "SELECT pmid, sentence_index, pair_key, interaction_type FROM current_interactions"
    ):
        assert kind == DDI_EFFECT
        pairs.setdefault((p, i), []).append(key)
    # (a sentence whose set the parser drops, e.g. as contrasted, may still have pairs: <=, not ==)
    assert set(sets) <= set(pairs) and len(sets) >= 8
    for sentence, ids in sets.items():
        assert sorted(pairs[sentence]) == sorted(f"{a} + {b}" for a, b in combinations(sorted(ids), 2))
    # "gemcitabine-oxaliplatin (GEMOX)": three hinted names, one pair (GEMOX is the same two drugs)
    assert query(
        warehouse,
        """SELECT drug_a.surface, drug_b.surface, drug_b.via_regimen FROM current_interactions
           WHERE pmid = '20551640' AND sentence_index = 1""",
    ) == [("gemcitabine", "oxaliplatin", None)]
    # the article the update file deletes is never current: none of its sentences is asked about
    assert query(warehouse, "SELECT count(*) FROM interactions WHERE pmid = '1129034'") == [(0,)]


def test_the_ledger_and_summary_name_both_tasks(both_swept):
    warehouse, summary = both_swept
    assert summary.tasks == [SWEEP_COMBINATIONS, SWEEP_INTERACTIONS]
    assert (summary.interactions_model_id, summary.interactions_prompt_version) == (
        "rule:all_drugs",
        "ddi-v1+hints+ctx=sentence",
    )
    # one item per task and candidate sentence
    (n_sentences,) = query(warehouse, "SELECT count(*) FROM current_sentences WHERE is_candidate")[0]
    assert summary.n_extracted == summary.n_candidates == 2 * n_sentences
    assert query(
        warehouse, "SELECT tasks, n_interactions, interactions_prompt_version, n_extracted FROM sweep_runs"
    ) == [
        (
            [SWEEP_COMBINATIONS, SWEEP_INTERACTIONS],
            summary.n_interactions,
            "ddi-v1+hints+ctx=sentence",
            summary.n_extracted,
        )
    ]
    assert summary.kb_interaction_pairs == query(warehouse, "SELECT count(*) FROM interaction_kb")[0][0] > 0


def test_the_default_sweep_writes_no_interactions_and_the_same_combinations(default_swept, both_swept):
    warehouse, _ = both_swept
    assert table_hashes(default_swept, COMBINATION_TABLES) == table_hashes(warehouse, COMBINATION_TABLES)
    (version,) = query(default_swept, "SELECT DISTINCT prompt_version FROM extractions")[0]
    same = f"SELECT * EXCLUDE (run_id, extracted_at) FROM extractions WHERE prompt_version = '{version}'"
    assert sorted(map(repr, query(default_swept, same))) == sorted(map(repr, query(warehouse, same)))
    assert query(default_swept, "SELECT DISTINCT confidence FROM combinations") == [
        (RULE_CONFIDENCE[ENGINE],)
    ]
    assert query(default_swept, "SELECT count(*) FROM interactions") == [(0,)]
    assert not (default_swept / "interactions").exists()
    assert not (default_swept / "interaction_kb").exists()
    assert query(default_swept, "SELECT tasks, n_interactions FROM sweep_runs") == [([SWEEP_COMBINATIONS], 0)]


def test_a_rerun_extracts_nothing_and_leaves_current_interactions_unchanged(spark, both_swept, tmp_path):
    warehouse, first = both_swept
    copy = tmp_path / "wh"
    shutil.copytree(warehouse, copy)
    tables = ("interactions", "current_interactions", "interaction_kb", "extractions", "current_combinations")
    before = table_hashes(warehouse, tables)
    summary = run_sweep(make_config(copy, BOTH), spark=spark)
    assert (summary.n_extracted, summary.n_interactions, summary.n_skipped) == (0, 0, first.n_extracted)
    assert table_hashes(copy, tables) == before


def test_kb_export_includes_the_interactions_section_and_its_threshold(both_swept, tmp_path, capsys):
    from jobs.cli import main

    warehouse, _ = both_swept
    out = tmp_path / "kb.jsonl"
    assert main(["kb", "export", "--warehouse", str(warehouse), "--output", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    section = Path(result["interactions_output"])
    assert section == tmp_path / "kb.interactions.jsonl"
    rows = [json.loads(line) for line in section.read_text().splitlines()]
    stored = query(warehouse, "SELECT pair_key, n_mentions FROM interaction_kb ORDER BY evidence_rank")
    assert [(r["pair_key"], r["n_mentions"]) for r in rows] == stored and result["interaction_pairs"] == len(
        stored
    )
    # the rule's interaction constant (0.16) is below 0.2, its combination constant (0.45) above
    assert (
        main(["kb", "export", "--warehouse", str(warehouse), "--output", str(out), "--min-confidence", "0.2"])
        == 0
    )
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (result["interaction_pairs"], result["drug_sets"] > 0) == (0, True)
    assert section.read_text() == ""
