"""Failed extractions are retried: an engine outage is not "already extracted" (issue 11, class 2).

A real `rexdrug sweep` (the CLI, in process, on the shared SparkSession) through the ``openai`` engine
against a local OpenAI-compatible fake that answers as the ``rule_all_drugs`` baseline.  First the
server is down (every request 503): the run commits its error rows, says "failed" in ``sweep_runs`` and
exits 1.  Then the server is back: the same sentences are extracted again (same model id and prompt,
so the same extraction keys), history keeps both rows, the current views show the successes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from etl.warehouse import connect_readonly
from jobs.cli import main
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.spark

BASELINE_DIR = Path(__file__).parent / "data" / "sweep" / "baseline"


def query(warehouse: Path, sql: str) -> list[tuple]:
    with connect_readonly(warehouse) as con:  # the views resolve relative to the warehouse
        return con.execute(sql).fetchall()


def run_sweep_cli(warehouse: Path, config: Path, capsys) -> tuple[int, dict]:
    code = main(
        [
            "sweep",
            "--warehouse",
            str(warehouse),
            "--config",
            str(config),
            "--no-kb",
            "--input",
            str(BASELINE_DIR),
        ]
    )
    return code, json.loads(capsys.readouterr().out)


def engine_config(path: Path, server: FakeOpenAI) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "engine": {
                    "kind": "openai",
                    "model": "fake-rule",
                    "base_url": server.base_url,
                    "max_retries": 0,
                    "timeout_s": 30,
                    "concurrency": 2,
                }
            }
        )
    )
    return path


@pytest.fixture
def fake_openai():
    server = FakeOpenAI("rule_all_drugs").start()
    yield server
    server.stop()


def test_outage_fails_the_run_and_the_next_sweep_retries_it(spark, fake_openai, tmp_path, capsys):
    warehouse = tmp_path / "wh"
    config = engine_config(tmp_path / "sweep.yaml", fake_openai)

    # 1. the engine is down: every extraction is an engine error -> exit 1, ledger "failed"
    fake_openai.down = True
    code, first = run_sweep_cli(warehouse, config, capsys)
    assert code == 1
    n = first["n_candidates"]
    assert n > 0 and first["status"] == "failed"
    assert (first["n_extracted"], first["n_failed"], first["n_combinations"]) == (n, n, 0)
    assert {status for _, status in fake_openai.requests} == {503}
    assert query(warehouse, "SELECT status, n_failed FROM sweep_runs") == [("failed", n)]
    assert query(warehouse, "SELECT parse_status, count(*) FROM extractions GROUP BY ALL") == [
        ("engine_error", n)
    ]
    assert query(
        warehouse, "SELECT count(*) FROM current_extractions WHERE parse_status = 'engine_error'"
    ) == [(n,)]
    assert query(warehouse, "SELECT count(*) FROM current_combinations") == [(0,)]

    # 2. the engine is back: the same sentences (same keys) are extracted again, nothing is skipped
    fake_openai.down = False
    code, second = run_sweep_cli(warehouse, config, capsys)
    assert code == 0
    assert second["status"] == "committed" and second["model_id"] == first["model_id"]
    assert (second["n_articles"], second["n_candidates"], second["n_retried"], second["n_skipped"]) == (
        0,
        n,
        n,
        0,
    )
    assert (second["n_extracted"], second["n_failed"]) == (n, 0) and second["n_combinations"] > 0
    # history keeps the failed rows beside the successes; the current view shows the successes only
    assert query(warehouse, "SELECT count(*), count(DISTINCT extraction_key) FROM extractions") == [
        (2 * n, n)
    ]
    # usable answers: "ok", or "repaired" where the runner dropped a contrasted set (model.contrast)
    current = query(
        warehouse,
        """SELECT parse_status IN ('ok', 'repaired'), run_id, count(*) FROM current_extractions
           GROUP BY ALL""",
    )
    assert [(usable, run, count) for usable, run, count in current] == [(True, second["run_id"], n)]
    assert query(warehouse, "SELECT count(*) FROM current_extraction_errors WHERE stage = 'engine'") == [(0,)]
    assert query(warehouse, "SELECT count(*) FROM extraction_errors WHERE stage = 'engine'") == [(n,)]
    assert query(warehouse, "SELECT status FROM sweep_runs ORDER BY started_at") == [
        ("failed",),
        ("committed",),
    ]
    combos = query(warehouse, "SELECT DISTINCT run_id FROM current_combinations")
    assert combos == [(second["run_id"],)]
    assert query(warehouse, "SELECT count(*) FROM current_combinations") == [(second["n_combinations"],)]

    # the answers are the rule baseline's, sentence by sentence (the fake answers as rule_all_drugs)
    assert_relations_are_the_rule_baselines(warehouse)

    # 3. the successes are final: a sweep after them has nothing to extract
    code, third = run_sweep_cli(warehouse, config, capsys)
    assert code == 0
    assert (third["n_candidates"], third["n_retried"], third["n_skipped"], third["n_extracted"]) == (
        0,
        0,
        n,
        0,
    )


def test_a_partial_outage_commits_and_retries_only_the_failed_sentences(spark, fake_openai, tmp_path, capsys):
    warehouse = tmp_path / "wh"
    config = engine_config(tmp_path / "sweep.yaml", fake_openai)
    fake_openai.fail_if = "dacarbazine"  # requests about one abstract's drug fail
    code, first = run_sweep_cli(warehouse, config, capsys)
    n, failed = first["n_candidates"], first["n_failed"]
    assert code == 0 and first["status"] == "committed"  # some extractions succeeded
    assert 0 < failed == len(prompts_containing(warehouse, "dacarbazine")) < n
    assert query(warehouse, "SELECT status, n_failed FROM sweep_runs") == [("committed", failed)]

    fake_openai.fail_if = None
    code, second = run_sweep_cli(warehouse, config, capsys)
    assert code == 0
    assert (second["n_candidates"], second["n_retried"], second["n_skipped"], second["n_failed"]) == (
        failed,
        failed,
        n - failed,
        0,
    )
    assert query(warehouse, "SELECT count(*) FROM extractions") == [(n + failed,)]
    assert query(
        warehouse,
        """SELECT count(*), count(DISTINCT extraction_key) FROM current_extractions
                               WHERE parse_status IN ('ok', 'repaired')""",
    ) == [(n, n)]
    assert_relations_are_the_rule_baselines(warehouse)


def prompts_containing(warehouse: Path, text: str) -> list[str]:
    """The candidate sentences whose prompt (as the sweep builds it) contains ``text``."""
    from etl.drugs import default_matcher
    from jobs.sweep import SweepConfig
    from model.prompting import build_messages, candidate_hints

    prompt, matcher = SweepConfig().prompt, default_matcher()
    rows = query(
        warehouse,
        """SELECT s.text, a.abstract FROM current_sentences s
                               JOIN current_articles a USING (pmid, pmid_version) WHERE s.is_candidate""",
    )
    hints = (lambda sentence: candidate_hints(sentence, matcher)) if prompt.hints else (lambda sentence: None)
    return [
        sentence
        for sentence, abstract in rows
        if text in json.dumps(build_messages(sentence, abstract, prompt, hints(sentence)), ensure_ascii=False)
    ]


def assert_relations_are_the_rule_baselines(warehouse: Path) -> None:
    from etl.drugs import default_matcher
    from jobs.sweep import SweepConfig
    from model.engines import EngineConfig, create_engine
    from model.extraction import ExtractionRunner

    rows = query(
        warehouse,
        """SELECT x.sentence_text, a.abstract, x.relations
                               FROM current_extractions x JOIN current_articles a USING (pmid, pmid_version)
                               ORDER BY x.pmid, x.sentence_index""",
    )
    matcher = default_matcher()
    runner = ExtractionRunner(
        create_engine(EngineConfig(kind="rule_all_drugs"), matcher=matcher),
        SweepConfig().prompt,
        matcher=matcher,
    )
    expected = runner.run([{"sentence": text, "context": abstract} for text, abstract, _ in rows])
    got = [[(r["label"], [d["name"] for d in r["drugs"]]) for r in relations] for _, _, relations in rows]
    want = [[(r["label"], [d["name"] for d in r["drugs"]]) for r in e["parsed"]] for e in expected]
    assert got == want and any(got)
