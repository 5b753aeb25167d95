"""The sweep's configuration reaches its stages (pure functions, no Spark)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("kind,expected", [("drugs", True), ("evidence", False)])
def test_the_sweeps_sentence_stage_uses_the_configured_selector(kind, expected):
    """SweepConfig.selector reaches the sentence stage (pure function, no Spark): a comparison that
    names two drugs is a candidate for the drugs selector, not for the evidence one."""
    import hashlib

    import pyarrow as pa

    from etl.candidates import SelectorConfig
    from etl.config import load_config
    from jobs.sweep import SweepConfig, make_sentences_fn

    config = load_config(SweepConfig, None, ["source=demo", f"selector.kind={kind}"])
    abstract = "We compared paclitaxel and sotorasib in KRAS cells."
    batch = pa.RecordBatch.from_pylist(
        [
            {
                "pmid": "1",
                "pmid_version": 1,
                "abstract": abstract,
                "chemicals": None,
                "mesh_headings": None,
                "abstract_hash": hashlib.md5(abstract.encode()).hexdigest(),
            }
        ]
    )
    assert isinstance(config.selector, SelectorConfig)
    (out,) = list(make_sentences_fn(config.selector)(iter([batch])))
    assert out.column("is_candidate").to_pylist() == [expected]


def test_a_failing_batch_stores_and_logs_its_reason_without_credentials(caplog):
    """An engine that raises with its URL in the message: every row gets the reason, with no secret."""
    from model.extraction import extraction_rows

    class Raising:
        def run(self, items):
            raise ConnectionError("cannot reach http://alice:s3cret@llm.internal:8000/v1?api_key=KEY123")

    candidates = [
        {
            "sentence_text": "Cisplatin plus gemcitabine.",
            "extraction_key": "k",
            "pmid": "1",
            "pmid_version": 1,
            "sentence_index": 0,
            "sentence_start": 0,
            "sentence_end": 27,
            "text_hash": "h",
            "model_id": "openai:m@http://llm.internal:8000/v1",
            "prompt_version": "p",
        }
    ]
    with caplog.at_level("DEBUG"):
        rows = extraction_rows(candidates, Raising(), "run-1")
    assert [r["parse_status"] for r in rows] == ["engine_error"]
    text = repr(rows) + caplog.text
    assert "ConnectionError" in text and "s3cret" not in text and "KEY123" not in text
