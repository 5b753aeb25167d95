"""Extraction tables: one row per model run over a candidate sentence, the relations it yielded,
their drugs exploded, and what failed.  Written by the sweep (``jobs/sweep.py``).

The sweep's tasks (``schemas.answer.SWEEP_TASKS``) share the extraction rows and their error rows: a
task is its own model + prompt (an interaction row's ``prompt_version`` is a ``ddi`` prompt's), so its
rows have their own extraction keys.  ``COMBINATIONS`` holds the DrugComb task's sets,
``INTERACTIONS`` the DDI13 task's drug pairs."""

from __future__ import annotations

import pyarrow as pa

from schemas.drugs import MENTION, SENTENCES

# The sweep's sentences table: the drug layer's sentence rows plus the md5 of the abstract they were
# split from, so that a revised abstract under the same PMID version is split and extracted again.
SWEEP_SENTENCES = SENTENCES.append(pa.field("abstract_hash", pa.string()))

# A drug name as the model wrote it, aligned to the sentence (parser) and normalized (drug KB).
COMBINATION_DRUG = pa.struct(
    [
        pa.field("surface", pa.string()),  # the name the model wrote
        pa.field("start", pa.int32()),  # offsets in the sentence; null when not grounded
        pa.field("end", pa.int32()),
        pa.field("grounded", pa.bool_()),  # found in the sentence text
        pa.field("canonical_id", pa.string()),  # KB id, or "name:<folded surface>" when unnormalized
        pa.field("preferred_name", pa.string()),
        pa.field("is_class", pa.bool_()),
        pa.field("normalized", pa.bool_()),
        pa.field("matched_by", pa.string()),
        pa.field("via_regimen", pa.string()),  # set when this drug is a component of a named regimen
        pa.field("kind", pa.string()),  # schemas.drugs.KINDS of the mention it sits on, else of its KB entry
    ]
)

# The model's unbiased log-probability of each answer label (first token) at a relation's type slot.
LABEL_LOGPROB = pa.struct([pa.field("label", pa.string()), pa.field("logprob", pa.float64())])

# The relation as parsed from the completion (before normalization), kept for audit and re-scoring.
PARSED_RELATION = pa.struct(
    [
        pa.field("label", pa.string()),
        # the label distribution at the slot the relation was written at (null: the engine reports
        # none, e.g. rules, vLLM, OpenAI) and the confidence derived from it (model.confidence)
        pa.field("label_logprobs", pa.list_(LABEL_LOGPROB)),
        pa.field("confidence", pa.float64()),
        pa.field(
            "drugs",
            pa.list_(
                pa.struct(
                    [
                        pa.field("name", pa.string()),
                        pa.field("start", pa.int32()),
                        pa.field("end", pa.int32()),
                        pa.field("grounded", pa.bool_()),
                    ]
                )
            ),
        ),
    ]
)

_SENTENCE_KEY = [
    pa.field("extraction_key", pa.string(), nullable=False),  # sha1(pmid|version|text_hash|model|prompt)
    pa.field("pmid", pa.string(), nullable=False),
    pa.field("pmid_version", pa.int32(), nullable=False),
    pa.field("sentence_index", pa.int32(), nullable=False),
    pa.field("sentence_start", pa.int32()),
    pa.field("sentence_end", pa.int32()),
    pa.field("sentence_text", pa.string()),
    pa.field("text_hash", pa.string()),
]

# The columns that identify the sentence an extraction row is about (copied through to every output).
SENTENCE_KEY: tuple[str, ...] = tuple(f.name for f in _SENTENCE_KEY)

# A candidate sentence of the sweep, as the candidates stage selects it for the model (``jobs.sweep``): the
# sentence key, its drug mentions, its abstract as the context (``sentence_start``/``sentence_end`` index
# it) and the model + prompt it is to be extracted with.  ``model.items.ExtractionItem.from_candidate``
# reads it; ``model.extraction.extraction_rows`` turns it into EXTRACTIONS rows.
CANDIDATES = pa.schema(
    _SENTENCE_KEY
    + [
        pa.field("mentions", pa.list_(MENTION)),
        pa.field("context", pa.string()),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("prompt_version", pa.string(), nullable=False),
    ]
)

# ``parse_status`` of an extraction row: the parser's statuses (``schemas.answer.PARSE_STATUSES``) when
# the model answered, else a runner status (``schemas.answer.RUNNER_STATUSES``: engine_error,
# input_error), which is retryable (``schemas.answer.RETRYABLE_STATUSES``).

_PROVENANCE = [
    pa.field("model_id", pa.string(), nullable=False),
    pa.field("prompt_version", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("extracted_at", pa.timestamp("us", tz="UTC")),
]

EXTRACTIONS = pa.schema(
    _SENTENCE_KEY
    + [
        pa.field("raw_output", pa.string()),
        pa.field("think", pa.string()),
        pa.field("parse_status", pa.string()),
        pa.field("parse_reason", pa.string()),
        pa.field("relations", pa.list_(PARSED_RELATION)),
        pa.field("n_relations", pa.int32()),
        pa.field("error", pa.string()),  # engine failure for this sentence (then raw_output is null)
        # the drug matcher's mentions of the sentence (abbreviations resolved from the abstract): used to
        # normalize a name the model wrote that the KB alone cannot resolve ("CZP")
        pa.field("mentions", pa.list_(MENTION)),
    ]
    + _PROVENANCE
)

# A sweep's per-partition extraction checkpoint (``etl.checkpoints``, in the warehouse's staging): the
# extraction rows plus the digest of the candidate row each was extracted from (a changed input never
# reuses a row).
EXTRACTION_CHECKPOINT = pa.schema([*EXTRACTIONS, pa.field("input_sha", pa.string(), nullable=False)])

COMBINATIONS = pa.schema(
    [pa.field("combination_id", pa.string(), nullable=False)]
    + _SENTENCE_KEY
    + [
        pa.field("relation_index", pa.int32(), nullable=False),
        pa.field("label", pa.string(), nullable=False),  # schemas.answer.COMBINATION_LABELS
        pa.field("drugs", pa.list_(COMBINATION_DRUG)),
        pa.field("drug_set_key", pa.string()),  # sorted distinct canonical ids joined by " + "
        pa.field("drug_set_ids", pa.list_(pa.string())),
        pa.field("n_drugs", pa.int32()),
        pa.field("all_grounded", pa.bool_()),
        pa.field("all_normalized", pa.bool_()),
        pa.field("reasoning", pa.string()),
        pa.field("parse_status", pa.string()),
        # names the model put in this relation that are not known drugs (a class, another substance, a
        # non-drug, a name neither in the KB nor on a matcher mention: "iron", "testerone"); left out of the set
        pa.field("non_drugs", pa.list_(pa.string())),
        # in [0, 1]: the calibrated probability that the drug set is right, from the extraction
        # row's relation (model.confidence); null when the engine gives none (vLLM, OpenAI-compatible)
        pa.field("confidence", pa.float64()),
    ]
    + _PROVENANCE
)

# One drug-drug interaction (the sweep's ``interactions`` task): a DDI13 relation of an extraction row whose
# two drugs normalize to two distinct canonical ids.  The pair is in canonical order (drug_a's canonical id
# sorts first), so the same two drugs give the same row shape and ``pair_key`` however the model wrote them.
INTERACTIONS = pa.schema(
    [pa.field("interaction_id", pa.string(), nullable=False)]  # sha1(extraction_key#relation_index)
    + _SENTENCE_KEY
    + [
        pa.field("relation_index", pa.int32(), nullable=False),
        pa.field("interaction_type", pa.string(), nullable=False),  # schemas.answer.DDI_LABELS
        pa.field("pair_key", pa.string(), nullable=False),  # "<drug_a id> + <drug_b id>"
        # each drug: the name as the model wrote it, its offsets in the sentence and whether it was found
        # there, the canonical id + preferred name and how it was normalized (matched_by)
        pa.field("drug_a", COMBINATION_DRUG),
        pa.field("drug_b", COMBINATION_DRUG),
        pa.field("all_grounded", pa.bool_()),
        pa.field("all_normalized", pa.bool_()),
        pa.field("non_drugs", pa.list_(pa.string())),  # names of the relation that are no known drugs
        pa.field("reasoning", pa.string()),
        pa.field("parse_status", pa.string()),
        pa.field("parse_reason", pa.string()),  # the parser's repairs of the answer, as text ("" when none)
        # the relation's confidence as the engine gave it (etl.combinations.relation_confidence): a rule's
        # documented constant (model.engines.rules.RULE_DDI_CONFIDENCE); null from engines with none
        pa.field("confidence", pa.float64()),
        pa.field("engine_kind", pa.string()),  # model.engines.base.ENGINE_KINDS
    ]
    + _PROVENANCE
)

COMBINATION_DRUGS = pa.schema(
    [
        pa.field("combination_id", pa.string(), nullable=False),
        pa.field("pmid", pa.string(), nullable=False),
        pa.field("pmid_version", pa.int32(), nullable=False),
        pa.field("sentence_index", pa.int32()),
        pa.field("label", pa.string()),
        pa.field("drug_set_key", pa.string()),
        pa.field("position", pa.int32()),
        pa.field("surface", pa.string()),
        pa.field("start", pa.int32()),
        pa.field("end", pa.int32()),
        pa.field("grounded", pa.bool_()),
        pa.field("canonical_id", pa.string()),
        pa.field("preferred_name", pa.string()),
        pa.field("is_class", pa.bool_()),
        pa.field("normalized", pa.bool_()),
        pa.field("via_regimen", pa.string()),
        pa.field("kind", pa.string()),
    ]
    + _PROVENANCE
)

EXTRACTION_ERRORS = pa.schema(
    [
        pa.field("extraction_key", pa.string()),
        pa.field("pmid", pa.string()),
        pa.field("pmid_version", pa.int32()),
        pa.field("sentence_index", pa.int32()),
        pa.field("stage", pa.string(), nullable=False),  # "engine" | "parse" | "ground" | "normalize"
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw_output", pa.string()),
    ]
    + _PROVENANCE
)

STAGE_TIMING = pa.struct([pa.field("stage", pa.string()), pa.field("seconds", pa.float64())])

SWEEP_RUNS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        # "committed"; "failed" when the run had extractions and none got an answer from the model (an
        # engine outage): its rows are committed all the same and the next sweep retries them
        pa.field("status", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("model_id", pa.string()),
        pa.field("prompt_version", pa.string()),
        pa.field("n_articles", pa.int64()),
        pa.field("n_sentences", pa.int64()),
        pa.field("n_candidates", pa.int64()),
        pa.field("n_skipped", pa.int64()),  # candidates already extracted with this model + prompt
        pa.field("n_extracted", pa.int64()),
        pa.field("n_combinations", pa.int64()),
        pa.field("n_errors", pa.int64()),
        pa.field("n_retried", pa.int64()),  # candidates whose earlier extraction failed (retryable status)
        pa.field("n_failed", pa.int64()),  # extractions of this run with a retryable status
        pa.field("stage_seconds", pa.list_(STAGE_TIMING)),
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
        # source "entrez": the E-utilities window [window_since, window_until] (days) and its date types;
        # the next nightly sweep starts the day after the latest committed window (jobs/nightly.py)
        pa.field("window_since", pa.date32()),
        pa.field("window_until", pa.date32()),
        pa.field("datetype", pa.string()),
        # what the run read: JSON {"entrez_term": ..., "articles": etl.article_filters.ArticleFilters}
        pa.field("filters", pa.string()),
        pa.field("n_filtered", pa.int64()),  # new articles the filters left out
        # extractions taken from the checkpoints of an interrupted run (not sent to the engine again);
        # counted in n_extracted too
        pa.field("n_resumed", pa.int64()),
        # the tasks the run extracted (schemas.answer.SWEEP_TASKS); model_id / prompt_version above are
        # the combinations task's, the interactions task's are its own columns
        pa.field("tasks", pa.list_(pa.string())),
        pa.field("n_interactions", pa.int64()),
        pa.field("interactions_model_id", pa.string()),
        pa.field("interactions_prompt_version", pa.string()),
    ]
)
