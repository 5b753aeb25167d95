"""The task vocabulary, declared once: answer labels, parse and runner statuses.

Every layer imports these names from here (``etl/``, ``model/``, ``training/``, ``jobs/``);
``tests/test_vocabulary.py`` fails when a second declaration of them appears elsewhere.

A completion's ``<answer>`` holds a JSON array ``[{"type": LABEL, "ent_set": [drug, ...]}]``; "nothing
to extract" is exactly ``[{"type": "NO_COMB", "ent_set": []}]`` (``no_comb_answer()``).
"""

from __future__ import annotations

# --- answer labels ------------------------------------------------------------------------------------

# DrugComb (n-ary combinations): POS (beneficial combination), COMB (combination, effect neutral or
# unclear), NEG (harmful combination), in this order (label priors, stored log-probabilities).
POS, COMB, NEG = "POS", "COMB", "NEG"
COMBINATION_LABELS: tuple[str, ...] = (POS, COMB, NEG)
# The explicit "no combination" answer label, shared by both tasks.
NO_COMB = "NO_COMB"
LABELS: tuple[str, ...] = COMBINATION_LABELS + (NO_COMB,)

# DDI13 (drug pairs): the corpus' interaction types, lower case as the corpus writes them, and the answer
# labels a model writes for them (upper case).  ``other``/negative pairs have no label.
DDI_TYPES: tuple[str, ...] = ("effect", "mechanism", "advise", "int")
DDI_LABELS: tuple[str, ...] = tuple(t.upper() for t in DDI_TYPES)
DDI_EFFECT = DDI_LABELS[0]  # the most frequent DDI13 type (train and test)

# The tasks and the relation labels of their answers (what the parser keeps as relations).
DRUGCOMB_TASK, DDI_TASK = "drugcomb", "ddi"
TASK_LABELS: dict[str, tuple[str, ...]] = {DRUGCOMB_TASK: COMBINATION_LABELS, DDI_TASK: DDI_LABELS}

# The sweep's tasks (``SweepConfig.tasks``), named after the warehouse tables they fill, and the answer
# task each one asks the model for: ``combinations`` (DrugComb n-ary sets) and ``interactions`` (DDI13
# pairs).  In the order the sweep runs them.
SWEEP_COMBINATIONS, SWEEP_INTERACTIONS = "combinations", "interactions"
SWEEP_TASKS: dict[str, str] = {SWEEP_COMBINATIONS: DRUGCOMB_TASK, SWEEP_INTERACTIONS: DDI_TASK}


def no_comb_answer() -> list[dict]:
    """The NO_COMB answer value (a fresh list each call: callers may extend it)."""
    return [{"type": NO_COMB, "ent_set": []}]


# --- statuses of a parsed completion (``model.parsing``) -----------------------------------------------

PARSE_OK = "ok"  # both tag pairs, a valid JSON list of valid relations, nothing changed
PARSE_REPAIRED = "repaired"  # relations recovered after repairs (``model.parsing.Repair``)
NO_ANSWER = "no_answer"  # no answer-like text at all
INVALID_JSON = "invalid_json"  # an answer region, but no JSON list could be recovered
INVALID_SCHEMA = "invalid_schema"  # JSON, but not a list of relation objects
PARSE_STATUSES: tuple[str, ...] = (PARSE_OK, PARSE_REPAIRED, NO_ANSWER, INVALID_JSON, INVALID_SCHEMA)
# Statuses whose relations are used (combinations, scores); the others are extraction errors.
USABLE_PARSE_STATUSES = frozenset({PARSE_OK, PARSE_REPAIRED})

# --- statuses of a runner row that never got a model answer ---------------------------------------------

ENGINE_ERROR = "engine_error"  # the engine gave no answer: down, timed out, HTTP error, bad response body
INPUT_ERROR = "input_error"  # the item never reached the model (no sentence, bad field)
RUNNER_STATUSES: tuple[str, ...] = (ENGINE_ERROR, INPUT_ERROR)
# Statuses that do not count as "extracted": the model never read the sentence, so a later sweep with
# the same model and prompt retries it.  Every parser status is final: the model did answer, and the
# same model and prompt (greedy decoding) would answer the same unusable text again; a new model or
# prompt version is a new extraction key anyway.
RETRYABLE_STATUSES = frozenset(RUNNER_STATUSES)
