"""The contrast check (model.contrast) and the parser's CONTRASTED_SET drop, on hand-made sentences.

Each case: a sentence, the drug set a model answered, and whether the set is dropped (with the cue)."""

import json

import pytest

from model.contrast import contrasted_pair, segment_contrasts
from model.parsing import Repair, SentenceIndex, parse_completion
from schemas.answer import DDI_TASK


def mentions(sentence, names):
    index = SentenceIndex(sentence)
    return [index.find_all(n) for n in names]


@pytest.mark.parametrize(
    "segment, cue",
    [
        (" versus ", "versus"),
        (" vs. ", "vs"),
        (" was superior to ", "superior"),
        (" was non-inferior to ", "non-inferior"),
        (" compared with ", "compared with"),
        (" in comparison with ", "in comparison with"),
        (" rather than ", "than"),
        (" instead of ", "instead"),
        (" plus ", None),  # co-administration
        (" and ", None),
        (" with ", None),
        (" + ", None),
        ("/", None),
        (" or ", None),  # alternatives are not a cue here (DrugComb writes "A or B with C")
        (" plus leucovorin versus ", None),  # both cues: the segment joins its drugs
        (" in the ", None),
        (" than did ", "than"),
        (" Thanksgiving ", None),  # whole words only
    ],
)
def test_segment_cues(segment, cue):
    assert segment_contrasts(segment) == cue


CASES = [
    # sentence, answered set, dropped pair (first, second) and cue, or None
    (
        "Rezafungin versus caspofungin for candidemia.",
        ["rezafungin", "caspofungin"],
        ("rezafungin", "caspofungin", "versus"),
    ),
    (
        "Anastrozole was superior to tamoxifen in DFS.",
        ["tamoxifen", "anastrozole"],
        ("anastrozole", "tamoxifen", "superior"),
    ),
    ("FOLFOX plus bevacizumab versus FOLFOX alone.", ["FOLFOX", "bevacizumab"], None),  # " plus " joins them
    ("Gemcitabine and cisplatin versus gemcitabine alone.", ["gemcitabine", "cisplatin"], None),
    # one mention pair is contrasted, another joined: kept
    ("Aspirin versus clopidogrel; aspirin plus clopidogrel was best.", ["aspirin", "clopidogrel"], None),
    # n-ary: neighbours in mention order are tested, not every pair
    ("Cisplatin, etoposide and bleomycin versus observation.", ["cisplatin", "etoposide", "bleomycin"], None),
    (
        "Cisplatin with etoposide compared with carboplatin.",
        ["cisplatin", "etoposide", "carboplatin"],
        ("etoposide", "carboplatin", "compared with"),
    ),
    ("Metformin or sitagliptin was given.", ["metformin", "sitagliptin"], None),  # "or": not a cue
    ("Warfarin than heparin", ["warfarin", "heparin"], ("warfarin", "heparin", "than")),
    # separate arms: each drug names its own group, whatever joins the two
    (
        "55 patients in the rezafungin group and 52 in the caspofungin group had adverse events.",
        ["rezafungin", "caspofungin"],
        ("rezafungin", "caspofungin", "group"),
    ),
    (
        "Responses in the cisplatin-treated arm and the carboplatin arm.",
        ["cisplatin", "carboplatin"],
        ("cisplatin", "carboplatin", "arm"),
    ),
    # one arm of two drugs: only the last is next to the word
    ("Pain was lowest in the propofol + dexmedetomidine group.", ["propofol", "dexmedetomidine"], None),
    (
        "The cyclophosphamide, methotrexate and fluorouracil group gained 2 kg.",
        ["cyclophosphamide", "methotrexate", "fluorouracil"],
        None,
    ),
    # a drug the sentence does not name is skipped (the parser flags it as not in the sentence)
    ("Rezafungin versus caspofungin.", ["rezafungin", "micafungin"], None),
]


@pytest.mark.parametrize("sentence, names, dropped", CASES)
def test_contrasted_pair(sentence, names, dropped):
    found = contrasted_pair(sentence, mentions(sentence, names))
    if dropped is None:
        assert found is None
    else:
        i, j, cue = found
        assert (names[i].lower(), names[j].lower(), cue.lower()) == tuple(x.lower() for x in dropped)


def answer(*sets, label="POS"):
    return "<answer>" + json.dumps([{"type": label, "ent_set": list(s)} for s in sets]) + "</answer>"


def test_the_parser_drops_a_contrasted_set_and_says_why():
    sentence = "Rezafungin versus caspofungin; FOLFOX plus bevacizumab was given."
    p = parse_completion(
        answer(["rezafungin", "caspofungin"], ["FOLFOX", "bevacizumab"]), sentence, drop_contrasted=True
    )
    assert [r.drugs for r in p.relations] == [("FOLFOX", "bevacizumab")]
    assert [note.repair for note in p.repairs] == [Repair.CONTRASTED_SET]
    assert p.reason == "POS set dropped: the sentence contrasts 'rezafungin' and 'caspofungin' ('versus')"
    assert p.status == "repaired" and p.n_dropped == 1
    # the relation kept is tied to its own answer item (its type slot, model.confidence)
    assert p.relations[0].item_index == 1


def test_a_fully_contrasted_answer_is_no_combination_not_an_error():
    p = parse_completion(
        answer(["rezafungin", "caspofungin"]), "Rezafungin versus caspofungin.", drop_contrasted=True
    )
    assert p.relations == [] and p.ok and not p.declared_no_comb


def test_by_default_the_parser_reads_the_answer_as_written():
    # the rewards' reading: a contrasted set the model wrote is the model's, and costs it
    p = parse_completion(answer(["rezafungin", "caspofungin"]), "Rezafungin versus caspofungin.")
    assert len(p.relations) == 1 and p.status == "ok"


def test_ddi_pairs_are_not_checked():
    # an interaction is stated between drugs a sentence may well contrast ("A increased B's levels
    # more than C"): the check is the combination task's
    text = '<answer>[{"type": "MECHANISM", "ent_set": ["warfarin", "heparin"]}]</answer>'
    p = parse_completion(text, "Warfarin than heparin", DDI_TASK, drop_contrasted=True)
    assert len(p.relations) == 1 and Repair.CONTRASTED_SET not in p.repair_codes


def test_without_a_sentence_nothing_is_checked():
    p = parse_completion(answer(["rezafungin", "caspofungin"]), drop_contrasted=True)
    assert len(p.relations) == 1


class _Engine:
    model_id = "fake"

    def __init__(self, text):
        self.text = text

    def complete(self, prompts, sampling=None):
        from model.engines.base import EngineResult

        return [EngineResult(self.text) for _ in prompts]


def test_the_runner_drops_contrasted_sets_and_keeps_the_raw_output():
    from model.extraction import ExtractionRunner
    from model.prompting import PromptConfig

    text = answer(["rezafungin", "caspofungin"])
    runner = ExtractionRunner(_Engine(text), PromptConfig(variant="compact", context="sentence"))
    [row] = runner.run([{"sentence": "Rezafungin versus caspofungin for candidemia.", "context": None}])
    assert row["parsed"] == [] and row["raw_output"] == text
    assert row["parse_repairs"] == ["contrasted_set"] and row["relation_evidence"] == []
    runner.drop_contrasted = False
    [row] = runner.run([{"sentence": "Rezafungin versus caspofungin for candidemia.", "context": None}])
    assert len(row["parsed"]) == 1
