"""Reward tables: hand-made completions with expected values computed by hand (see training/rewards.py)."""

from __future__ import annotations

import json

import pytest

from training import rewards as R

SENTENCE = "Cisplatin plus gemcitabine and paclitaxel improved survival compared with docetaxel ."
GOLD = json.dumps([{"type": "POS", "ent_set": ["cisplatin", "gemcitabine"]}])
NO_GOLD = json.dumps([{"type": "NO_COMB", "ent_set": []}])
THINK = (
    "<think>[1] Lung cancer.\n[2] Cisplatin, gemcitabine.\n[3] Improved survival.\n[4] One POS set.</think>"
)


def ans(items) -> str:
    return f"<answer>{json.dumps(items)}</answer>"


CG = ["cisplatin", "gemcitabine"]

# (case, completion, gold, expected format, think, coverage, accuracy)
TABLE = [
    ("perfect", THINK + ans([{"type": "POS", "ent_set": CG}]), GOLD, 1.0, 1.0, 1.0, 1.0),
    ("empty", "", GOLD, 0.0, 0.0, 0.0, 0.0),
    ("prose only", "The drugs were combined.", GOLD, 0.0, 0.0, 0.0, 0.0),
    # cut inside the first object: nothing recovered, and no NO_COMB claim either -> coverage 0, not -1
    (
        "truncated, nothing",
        THINK + '<answer>[{"type": "POS", "ent_set": ["cisplatin", "gemc',
        GOLD,
        0.0,
        1.0,
        0.0,
        0.0,
    ),
    # cut after a complete object: it is recovered; no closed answer tag -> format 0
    (
        "truncated, one object",
        THINK + '<answer>[{"type": "POS", "ent_set": ["cisplatin", "gemcitabine"]}, {"ty',
        GOLD,
        0.0,
        1.0,
        1.0,
        1.0,
    ),
    # missing </think>: no think pair (format 0 + 0.5 for the valid list, think 0); the answer still counts
    (
        "missing </think>",
        "<think>[1] a\n[2] b\n[3] c\n[4] d" + ans([{"type": "POS", "ent_set": CG}]),
        GOLD,
        0.5,
        0.0,
        1.0,
        1.0,
    ),
    (
        "reordered drugs",
        THINK + ans([{"type": "POS", "ent_set": ["gemcitabine", "Cisplatin"]}]),
        GOLD,
        1.0,
        1.0,
        1.0,
        1.0,
    ),
    # the same set twice (reordered): duplicate share 2/2 -> coverage 1 - 1 = 0; accuracy on merged rows
    (
        "duplicate set",
        THINK + ans([{"type": "POS", "ent_set": CG}, {"type": "POS", "ent_set": CG[::-1]}]),
        GOLD,
        1.0,
        1.0,
        0.0,
        1.0,
    ),
    # duplicate + an extra wrong set: share 2/3 -> coverage 1/3; P 1/2 R 1 -> F1 2/3 (partial and exact)
    (
        "duplicate + extra",
        THINK
        + ans(
            [
                {"type": "POS", "ent_set": CG},
                {"type": "POS", "ent_set": CG},
                {"type": "COMB", "ent_set": ["paclitaxel", "docetaxel"]},
            ]
        ),
        GOLD,
        1.0,
        1.0,
        1 / 3,
        2 / 3,
    ),
    # carboplatin is not in the sentence: Jaccard 2/3; partial F1 2/3, exact 0 -> 0.33 * 2/3
    (
        "drug not in text",
        THINK + ans([{"type": "POS", "ent_set": CG + ["carboplatin"]}]),
        GOLD,
        1.0,
        1.0,
        2 / 3,
        0.33 * 2 / 3,
    ),
    ("wrong label", THINK + ans([{"type": "COMB", "ent_set": CG}]), GOLD, 1.0, 1.0, 1.0, 0.0),
    (
        "NO_COMB for a combination",
        THINK + ans([{"type": "NO_COMB", "ent_set": []}]),
        GOLD,
        1.0,
        1.0,
        -1.0,
        0.0,
    ),
    # RexDrug's consistency penalty: a combination label without drugs
    ("POS without drugs", THINK + ans([{"type": "POS", "ent_set": []}]), GOLD, 0.5, 1.0, -1.0, 0.0),
    ("NO_COMB with drugs", THINK + ans([{"type": "NO_COMB", "ent_set": CG}]), NO_GOLD, 0.5, 1.0, -1.0, 1.0),
    ("both NO_COMB", THINK + ans([{"type": "NO_COMB", "ent_set": []}]), NO_GOLD, 1.0, 1.0, 1.0, 1.0),
    ("empty list is NO_COMB", THINK + "<answer>[]</answer>", NO_GOLD, 0.5, 1.0, 1.0, 1.0),
    ("combination for NO_COMB", THINK + ans([{"type": "POS", "ent_set": CG}]), NO_GOLD, 1.0, 1.0, 0.0, 0.0),
    (
        "single quotes repaired",
        THINK + "<answer>[{'type': 'POS', 'ent_set': ['cisplatin', 'gemcitabine']}]</answer>",
        GOLD,
        0.5,
        1.0,
        1.0,
        1.0,
    ),
]


@pytest.mark.parametrize("case,completion,gold,fmt,think,coverage,accuracy", TABLE, ids=[t[0] for t in TABLE])
def test_reward_table(case, completion, gold, fmt, think, coverage, accuracy):
    kw = {"gold": [gold], "sentence": [SENTENCE]}
    assert R.format_reward([completion], **kw) == [pytest.approx(fmt)]
    assert R.think_reward([completion], **kw) == [pytest.approx(think)]
    assert R.coverage_reward([completion], **kw) == [pytest.approx(coverage)]
    assert R.accuracy_reward([completion], **kw) == [pytest.approx(accuracy)]


def test_partial_superset_gold():
    gold = json.dumps([{"type": "POS", "ent_set": ["cisplatin", "gemcitabine", "paclitaxel"]}])
    c = THINK + ans([{"type": "POS", "ent_set": CG}])
    assert R.coverage_reward([c], gold=[gold]) == [pytest.approx(2 / 3)]
    assert R.accuracy_reward([c], gold=[gold]) == [pytest.approx(0.33 * 2 / 3)]


def test_two_gold_sets_mean_coverage():
    gold = json.dumps(
        [{"type": "POS", "ent_set": CG}, {"type": "NEG", "ent_set": ["paclitaxel", "docetaxel"]}]
    )
    c = THINK + ans([{"type": "POS", "ent_set": CG}])
    # coverage (1 + 0) / 2; accuracy: P 1, R 1/2 -> F1 2/3 both partial and exact
    assert R.coverage_reward([c], gold=[gold]) == [pytest.approx(0.5)]
    assert R.accuracy_reward([c], gold=[gold]) == [pytest.approx(2 / 3)]


@pytest.mark.parametrize(
    "think,expected",
    [
        ("[1] a [2] b [3] c [4] d", 1.0),
        ("[1] a\n[2] b\n[3] c", 0.0),  # three sections
        ("[2] b [1] a [3] c [4] d", 0.0),  # out of order
        ("1. dose 0.1. 2. x 3. y 4. z", 0.0),  # RexDrug's "1." check would pass this
        ("see ref[1] and ref[2] ref[3] ref[4]", 0.0),  # citations glued to words are not section markers
    ],
)
def test_think_sections(think, expected):
    c = f"<think>{think}</think>" + ans([{"type": "NO_COMB", "ent_set": []}])
    assert R.think_reward([c]) == [expected]


def test_chat_message_completions_and_gold_forms():
    text = THINK + ans([{"type": "POS", "ent_set": CG}])
    as_messages = [[{"role": "assistant", "content": text}]]
    for gold in (GOLD, json.loads(GOLD), "<answer>" + GOLD + "</answer>"):
        assert R.accuracy_reward(as_messages, gold=[gold]) == [1.0]
    assert R.accuracy_reward(as_messages, solution=["<answer>" + GOLD + "</answer>"]) == [1.0]


def test_grounding():
    c = THINK + ans([{"type": "POS", "ent_set": CG + ["carboplatin"]}])
    assert R.grounding_reward([c], gold=[GOLD], sentence=[SENTENCE]) == [pytest.approx(2 / 3)]
    assert R.grounding_reward([c], gold=[GOLD]) == [None]


def test_task_column_routes_rewards():
    c = THINK + ans([{"type": "POS", "ent_set": CG}])
    kw = {"gold": [GOLD, GOLD], "task": ["drugcomb", "ddi"]}
    assert R.accuracy_reward([c, c], **kw) == [1.0, None]
    assert R.ddi_accuracy_reward([c, c], **kw)[0] is None


DDI_GOLD = json.dumps([{"type": "EFFECT", "ent_set": ["aspirin", "warfarin"]}])


@pytest.mark.parametrize(
    "completion,gold,fmt,coverage,accuracy",
    [
        (THINK + ans([{"type": "EFFECT", "ent_set": ["warfarin", "aspirin"]}]), DDI_GOLD, 1.0, 1.0, 1.0),
        (THINK + ans([{"type": "ADVISE", "ent_set": ["warfarin", "aspirin"]}]), DDI_GOLD, 1.0, 1.0, 0.0),
        # two predicted pairs, one right: P 1/2 R 1 -> F1 2/3; coverage 1 (no duplicates)
        (
            THINK
            + ans(
                [
                    {"type": "EFFECT", "ent_set": ["warfarin", "aspirin"]},
                    {"type": "INT", "ent_set": ["aspirin", "heparin"]},
                ]
            ),
            DDI_GOLD,
            1.0,
            1.0,
            2 / 3,
        ),
        (THINK + ans([{"type": "NO_COMB", "ent_set": []}]), DDI_GOLD, 1.0, -1.0, 0.0),
        (THINK + ans([{"type": "NO_COMB", "ent_set": []}]), NO_GOLD, 1.0, 1.0, 1.0),
        (
            THINK + "<answer>[{'type': 'EFFECT', 'ent_set': ['aspirin', 'warfarin']}]</answer>",
            DDI_GOLD,
            0.5,
            1.0,
            1.0,
        ),
        ("", DDI_GOLD, 0.0, 0.0, 0.0),
    ],
)
def test_ddi_rewards(completion, gold, fmt, coverage, accuracy):
    kw = {"gold": [gold], "task": ["ddi"]}
    assert R.ddi_format_reward([completion], **kw) == [pytest.approx(fmt)]
    assert R.ddi_coverage_reward([completion], **kw) == [pytest.approx(coverage)]
    assert R.ddi_accuracy_reward([completion], **kw) == [pytest.approx(accuracy)]


RANGES = {
    "format": (0, 1),
    "think": (0, 1),
    "coverage": (-1, 1),
    "accuracy": (0, 1),
    "grounding": (0, 1),
    "ddi_format": (0, 1),
    "ddi_coverage": (-1, 1),
    "ddi_accuracy": (0, 1),
}

GARBAGE = [
    None,
    123,
    {"content": None},
    [{"role": "assistant"}],
    "<answer>",
    "<answer>{]</answer>",
    "<think></think><answer>[1, 2, 3]</answer>",
    '<answer>[{"type": ["POS"], "ent_set": {"a": 1}}]</answer>',
    "<answer>" + "[" * 500 + "</answer>",
    "</think></answer><answer><think>",
]


def test_every_reward_in_range_and_never_raises():
    completions = [row[1] for row in TABLE] + GARBAGE
    n = len(completions)
    kw = {"gold": [GOLD] * (n - 1) + ["not json at all"], "sentence": [SENTENCE] * n}
    for name, (lo, hi) in RANGES.items():
        values = R.get_reward(name)(completions, **kw)
        assert len(values) == n
        for v in values:
            assert v is None or lo <= v <= hi, (name, v)


def test_registry_and_weights():
    funcs, weights = R.resolve_rewards()
    assert [f.__name__ for f in funcs] == ["format", "think", "coverage", "accuracy"]
    assert weights == [0.05, 0.05, 0.10, 0.80]
    funcs, weights = R.resolve_rewards({"accuracy": 1.0, "grounding": 0.0})
    assert [f.__name__ for f in funcs] == ["accuracy"]
    with pytest.raises(ValueError, match="unknown reward"):
        R.resolve_rewards({"acuracy": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        R.resolve_rewards({"accuracy": -1})
    perfect = THINK + ans([{"type": "POS", "ent_set": CG}])
    assert R.combined_reward([perfect, ""], gold=[GOLD, GOLD]) == [pytest.approx(1.0), pytest.approx(0.0)]


def test_parse_once_per_completion():
    R._parse_cached.cache_clear()
    c = THINK + ans([{"type": "POS", "ent_set": CG}])
    kw = {"gold": [GOLD] * 3, "sentence": [SENTENCE] * 3}
    for name in ("format", "think", "coverage", "accuracy"):
        R.get_reward(name)([c, c, c], **kw)
    info = R._parse_cached.cache_info()
    assert info.misses == 1 and info.hits == 11
