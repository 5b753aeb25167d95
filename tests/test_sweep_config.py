"""The sweep's configuration reaches its stages (pure functions, no Spark)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("kind,expected", [("drugs", True), ("evidence", False)])
def test_the_sweeps_sentence_stage_uses_the_configured_selector(kind, expected):
    """SweepConfig.selector reaches the sentence stage (pure function, no Spark): a docking study that
    names two drugs is a candidate for the drugs selector, not for the evidence one."""
    import hashlib

    import pyarrow as pa

    from etl.candidates import SelectorConfig
    from etl.config import load_config
    from jobs.sweep import SweepConfig, make_sentences_fn

    config = load_config(SweepConfig, None, ["source=demo", f"selector.kind={kind}"])
    abstract = "We docked paclitaxel and sotorasib into KRAS."
    batch = pa.RecordBatch.from_pylist([{"pmid": "1", "pmid_version": 1, "abstract": abstract, "chemicals": None,
                                         "mesh_headings": None,
                                         "abstract_hash": hashlib.md5(abstract.encode()).hexdigest()}])
    assert isinstance(config.selector, SelectorConfig)
    (out,) = list(make_sentences_fn(config.selector)(iter([batch])))
    assert out.column("is_candidate").to_pylist() == [expected]
