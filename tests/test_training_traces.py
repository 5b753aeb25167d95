"""Trace agents: template teacher + checks reviewer end to end; engine agents against a fake engine
(feedback rounds, attempts cap, rejection counting, resumable output)."""

from __future__ import annotations

import json
from pathlib import Path

from model.engines import Engine, EngineResult
from training import rewards as R
from training.data import DataConfig, build_sft_rows, load_drugcomb
from training.traces import (
    CRITERIA,
    AgentConfig,
    TraceAgents,
    TraceConfig,
    check_rationale,
    clean_generated,
    parse_review,
    template_rationale,
)

FIXTURE = Path(__file__).parent / "data" / "training" / "drugcomb_tiny.jsonl"
GOOD = "[1] Clinical scenario\n- x\n[2] Candidate drugs\n- {drugs}\n[3] Reasoning\n- together\n[4] Summary\n- done"


def _scores(value: int) -> dict:
    return {c: value for c in CRITERIA}


class FakeEngine(Engine):
    """Scripted agent: the generator writes a bad trace until it has seen feedback; the reviewer fails
    traces without section [4] and passes the others."""

    model_id = "fake-teacher"

    def __init__(self, always_bad: bool = False):
        self.calls: list[list[list[dict]]] = []
        self.always_bad = always_bad

    def generate(self, batch, sampling=None):
        self.calls.append(batch)
        out = []
        for messages in batch:
            user = messages[-1]["content"]
            if user.startswith("Review"):
                ok = "[4]" in user.split("Reasoning to review:")[1]
                out.append(
                    json.dumps({"scores": _scores(5 if ok else 2), "feedback": "" if ok else "add [4]"})
                )
            elif "A reviewer rejected" in user and not self.always_bad:
                out.append("<think>" + GOOD.format(drugs="drugs") + "</think><answer>[]</answer>")
            else:
                out.append("[1] only one section")
        return [EngineResult(text) for text in out]


def test_template_rationale_passes_checks_and_trains_think_reward():
    records = load_drugcomb(FIXTURE)
    for record in records:
        think = template_rationale(record)
        scores, feedback = check_rationale(think, record)
        assert all(v >= 4 for v in scores.values()), (scores, feedback)
        assert "<answer>" not in think and "ent_set" not in think
    cfg = DataConfig(train_file=str(FIXTURE), traces="template")
    rows, _ = build_sft_rows(records, cfg)
    target = rows[0]["completion"][0]["content"]
    assert R.think_reward([target]) == [1.0]
    assert R.format_reward([target], gold=[json.dumps(records[0].relations)]) == [1.0]
    assert R.accuracy_reward([target], gold=[json.dumps(records[0].relations)]) == [1.0]


def test_checks_reviewer_catches_problems():
    record = load_drugcomb(FIXTURE)[0]
    scores, feedback = check_rationale('[1] a [2] b <answer>[{"type": "POS"}]</answer>', record)
    assert scores["format"] < 4 and scores["semantic_fidelity"] == 0 and scores["consistency_with_gold"] < 5
    assert "four sections" in feedback and "JSON" in feedback


def test_template_agents_write_resumable_jsonl(tmp_path):
    records = load_drugcomb(FIXTURE)
    out = tmp_path / "traces.jsonl"
    agents = TraceAgents(TraceConfig(output=str(out), batch_size=4))
    counts = agents.run(records[:6])
    assert counts["accepted"] == 6 and counts["rejected"] == 0 and counts["skipped_existing"] == 0
    # a crash mid-write leaves a torn line: the rerun skips what is done and keeps the file valid
    with out.open("a") as fh:
        fh.write('{"doc_id": "torn')
    counts = agents.run(records)
    assert counts["skipped_existing"] == 6 and counts["accepted"] == 4
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.endswith("}")]
    assert len(rows) == 10 and len({r["doc_id"] for r in rows}) == 10
    assert all(r["teacher"] == "template" and r["template"] and r["reviewer"] == "checks" for r in rows)
    # the SFT builder reads them back as rationales
    cfg = DataConfig(train_file=str(FIXTURE), traces=str(out))
    _built, stats = build_sft_rows(records, cfg)
    assert stats == {"rows": 10, "dropped_no_trace": 0}


def test_engine_agents_retry_with_feedback(tmp_path):
    records = load_drugcomb(FIXTURE)[:3]
    engine = FakeEngine()
    cfg = TraceConfig(
        output=str(tmp_path / "t.jsonl"),
        generator=AgentConfig(kind="engine"),
        reviewer=AgentConfig(kind="engine"),
    )
    counts = TraceAgents(cfg, generator_engine=engine, reviewer_engine=engine).run(records)
    assert counts == {"skipped_existing": 0, "accepted": 3, "rejected": 0, "attempts": 6}
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert all(r["attempts"] == 2 and r["teacher"] == "fake-teacher" for r in rows)
    assert rows[0]["history"][0]["feedback"] == "add [4]" and rows[0]["scores"] == _scores(5)
    assert rows[0]["think"].startswith("[1]") and "<answer>" not in rows[0]["think"]
    # generator saw the gold answer and (second round) the reviewer's feedback
    first_gen = engine.calls[0][0][-1]["content"]
    assert "Gold annotation" in first_gen and "A reviewer rejected" not in first_gen
    assert "add [4]" in engine.calls[2][0][-1]["content"]


def test_engine_agents_give_up_after_max_attempts(tmp_path):
    records = load_drugcomb(FIXTURE)[:2]
    engine = FakeEngine(always_bad=True)
    cfg = TraceConfig(
        output=str(tmp_path / "t.jsonl"),
        generator=AgentConfig(kind="engine"),
        reviewer=AgentConfig(kind="engine"),
        max_attempts=3,
    )
    counts = TraceAgents(cfg, generator_engine=engine, reviewer_engine=engine).run(records)
    assert counts["rejected"] == 2 and counts["accepted"] == 0 and counts["attempts"] == 6
    assert len(engine.calls) == 6  # 3 rounds x (generate + review)
    cfg2 = DataConfig(train_file=str(FIXTURE), traces=str(tmp_path / "t.jsonl"))
    _rows, stats = build_sft_rows(records, cfg2)
    assert stats == {"rows": 0, "dropped_no_trace": 2}


def test_review_and_generation_parsing():
    assert parse_review('Sure: {"scores": ' + json.dumps(_scores(4)) + ', "feedback": "fine"}') == (
        _scores(4),
        "fine",
    )
    assert parse_review("no json")[0] is None
    bad = _scores(4)
    bad["usefulness"] = 9
    assert parse_review(json.dumps({"scores": bad}))[0] is None
    assert clean_generated("Here: <think>[1] a [2] b</think><answer>[]</answer>") == "[1] a [2] b"
