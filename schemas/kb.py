"""The knowledge bases: one row per drug set (combinations), one row per drug pair (interactions)."""

from __future__ import annotations

import pyarrow as pa

from schemas.answer import DDI_LABELS, DDI_TYPES

EXAMPLE_SENTENCE = pa.struct(
    [
        pa.field("pmid", pa.string()),
        pa.field("label", pa.string()),
        pa.field("sentence", pa.string()),
    ]
)

# What both sections keep per entry, in this order at the end of each (etl.kb._evidence_sql).
_EVIDENCE = [
    pa.field("n_papers", pa.int64()),
    pa.field("n_sentences", pa.int64()),  # distinct sentences (pmid, sentence index)
    pa.field("n_mentions", pa.int64()),  # relation rows (one per model and prompt extraction)
    pa.field("pmids", pa.list_(pa.string())),
    pa.field("first_year", pa.int32()),
    pa.field("last_year", pa.int32()),
    pa.field("example_sentences", pa.list_(EXAMPLE_SENTENCE)),  # label: the row's label or interaction type
    pa.field("model_ids", pa.list_(pa.string())),
    # the rows' confidences (etl.combinations); null when no row of the entry has one
    pa.field("max_confidence", pa.float64()),
    pa.field("mean_confidence", pa.float64()),
    pa.field("evidence_rank", pa.int64()),  # 1 = the best supported entry (etl.kb ranking)
]

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
        *_EVIDENCE,
    ]
)

# One count column per DDI13 type, in DDI_LABELS order: n_effect, n_mechanism, n_advise, n_int.
INTERACTION_TYPE_COUNTS: dict[str, str] = {label: f"n_{t}" for label, t in zip(DDI_LABELS, DDI_TYPES)}

INTERACTION_KB = pa.schema(
    [
        pa.field("pair_key", pa.string(), nullable=False),  # "<drug_a id> + <drug_b id>", ids sorted
        pa.field("drug_a_id", pa.string()),
        pa.field("drug_a_name", pa.string()),
        pa.field("drug_b_id", pa.string()),
        pa.field("drug_b_name", pa.string()),
        pa.field("has_class_member", pa.bool_()),
        *(pa.field(column, pa.int64()) for column in INTERACTION_TYPE_COUNTS.values()),
        # the most frequent type; a tie goes to the type first in DDI_LABELS (majority_share shows it)
        pa.field("majority_type", pa.string()),
        pa.field("majority_share", pa.float64()),
        *_EVIDENCE,
    ]
)
