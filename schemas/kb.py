"""The drug-combination knowledge base: one row per drug set."""

from __future__ import annotations

import pyarrow as pa

EXAMPLE_SENTENCE = pa.struct(
    [
        pa.field("pmid", pa.string()),
        pa.field("label", pa.string()),
        pa.field("sentence", pa.string()),
    ]
)

COMBINATION_KB = pa.schema(
    [
        pa.field("drug_set_key", pa.string(), nullable=False),
        pa.field("member_ids", pa.list_(pa.string())),
        pa.field("member_names", pa.list_(pa.string())),
        pa.field("n_members", pa.int32()),
        pa.field("has_class_member", pa.bool_()),
        pa.field("n_pos", pa.int64()),
        pa.field("n_comb", pa.int64()),
        pa.field("n_neg", pa.int64()),
        pa.field("consensus_label", pa.string()),
        pa.field(
            "consensus_share", pa.float64()
        ),  # label agreement: share of mentions with the consensus label
        pa.field("n_papers", pa.int64()),
        pa.field("n_sentences", pa.int64()),  # distinct sentences (pmid, sentence text)
        pa.field("n_mentions", pa.int64()),  # combination rows (one per model and prompt extraction)
        pa.field("pmids", pa.list_(pa.string())),
        pa.field("first_year", pa.int32()),
        pa.field("last_year", pa.int32()),
        pa.field("example_sentences", pa.list_(EXAMPLE_SENTENCE)),
        pa.field("model_ids", pa.list_(pa.string())),
        # the rows' confidences (etl.combinations); null when no row of the set has one
        pa.field("max_confidence", pa.float64()),
        pa.field("mean_confidence", pa.float64()),
        pa.field("evidence_rank", pa.int64()),  # 1 = the best supported drug set (etl.kb ranking)
    ]
)
