"""Round-4 training data: real-PubMed train sentences mixed into DrugComb (``data.mix_file``), a seeded
DrugComb replay, the hold-out rule, prompts identical to the sweep's, resuming from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.drugs import default_matcher
from model.extraction import ExtractionRunner
from model.items import ExtractionItem
from model.prompting import PromptConfig
from training.common import latest_checkpoint
from training.data import DataConfig, build_sft_rows, hints_function, load_mix, load_splits

DATA = Path(__file__).parent / "data" / "training"
DRUGCOMB = DATA / "drugcomb_tiny.jsonl"
MIX = DATA / "realpm_mix_tiny.jsonl"
PROMPT = PromptConfig(variant="compact", hints=True, context="window", window=1)


def test_mix_reads_the_train_split_only():
    records = load_mix(MIX, "train")
    assert [r.doc_id for r in records] == ["m1", "m3"]
    assert records[0].relations == [{"type": "COMB", "ent_set": ["Cisplatin", "gemcitabine"]}]
    assert records[1].relations == []  # a no-combination sentence teaches NO_COMB


def test_mix_refuses_hold_out_records():
    with pytest.raises(ValueError, match="hold-out file 'pubmed20n1016'"):
        load_mix(DATA / "realpm_mix_holdout.jsonl", "train")


@pytest.mark.parametrize(
    "override, message",
    [
        ({"mix_split": "dev"}, "mix_split must be 'train'"),
        ({"mix_repeat": 0}, "mix_repeat must be >= 1"),
        ({"replay": 0}, "replay must be positive"),
    ],
)
def test_mix_settings_are_validated(override, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(mix_file=str(MIX), **override).validate()


def test_replay_and_repeat_counts():
    # 10 DrugComb records, dev fraction 0.2 -> 8 train; replay keeps 3 of them; the 2 mix records twice
    cfg = DataConfig(train_file=str(DRUGCOMB), dev_fraction=0.2, replay=3, mix_file=str(MIX), mix_repeat=2)
    cfg.validate()
    splits = load_splits(cfg)
    ids = [r.doc_id for r in splits.train]
    assert len(ids) == 3 + 4 and ids[3:] == ["m1", "m3", "m1", "m3"]
    assert len(splits.dev) == 2 and not {"m1", "m2", "m3"} & {r.doc_id for r in splits.dev}
    assert (
        splits.stats["replay"] == 3 and splits.stats["mix_records"] == 2 and splits.stats["mix_no_comb"] == 1
    )
    again = [r.doc_id for r in load_splits(cfg).train]
    assert again == ids  # seeded


def test_training_prompt_is_the_sweeps_prompt():
    """The prompt a mixed row trains on is the one the sweep builds for that sentence: the sentence, its
    abstract as context, hints from the runner's matcher (the sweep passes no hints of its own)."""
    cfg = DataConfig(train_file=str(DRUGCOMB), dev_fraction=0.2, prompt=PROMPT, replay=1, mix_file=str(MIX))
    splits = load_splits(cfg)
    rows, _ = build_sft_rows(splits.train, cfg, hints_function(cfg))
    runner = ExtractionRunner(
        engine=type("E", (), {"model_id": "x"})(), prompt_config=PROMPT, matcher=default_matcher()
    )
    for record, row in zip(splits.train, rows):
        # the item the sweep's extraction_rows hands the runner, and the runner's own request for it
        item = ExtractionItem.from_dict({"id": "x", "sentence": record.sentence, "context": record.paragraph})
        assert row["prompt"] == runner.prompt(item).messages
    m1 = rows[1]["prompt"][1]["content"]
    assert "Drugs: Cisplatin; gemcitabine" in m1 and "Advanced bladder cancer." in m1


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for name in ("checkpoint-8", "checkpoint-16", "checkpoint-final", "checkpoint-4"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-32").write_text("a file, not a checkpoint")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-16"
