"""Parser tables: hand-made completions, the way small models actually fail."""

from __future__ import annotations

import pytest

from model.parsing import FORMAT_REPAIRS, ParsedCompletion, Repair, ground_name, parse_completion

SENT = "Combination of 5-FU and Leucovorin plus oxaliplatin improved survival in colorectal cancer ."
GOOD = (
    "<think>[1] Scenario: colorectal cancer.\n[2] Drugs: 5-FU, leucovorin, oxaliplatin.\n"
    "[3] Benefit.\n[4] One POS set.</think>"
    '<answer>[{"type": "POS", "ent_set": ["5-FU", "Leucovorin", "oxaliplatin"]}]</answer>'
)


def labels_and_drugs(p: ParsedCompletion):
    return [(r.label, r.drugs) for r in p.relations]


def test_well_formed_completion_is_ok_and_grounded():
    p = parse_completion(GOOD, SENT)
    assert p.status == "ok", p.reason
    assert p.has_think_tags and p.has_answer_tags and p.answer_is_valid_list
    assert p.think.startswith("[1] Scenario")
    assert labels_and_drugs(p) == [("POS", ("5-FU", "Leucovorin", "oxaliplatin"))]
    rel = p.relations[0]
    assert rel.all_grounded
    assert [SENT[s:e] for s, e in rel.spans] == ["5-FU", "Leucovorin", "oxaliplatin"]


@pytest.mark.parametrize(
    "text, status, expected, reason_part",
    [
        ("", "no_answer", [], "empty output"),
        ("   \n", "no_answer", [], "empty output"),
        ("The sentence describes a combination therapy.", "no_answer", [], "no answer"),
        # truncated JSON: the complete first object survives
        (
            '<think>x</think><answer>[{"type": "POS", "ent_set": ["5-FU", "oxaliplatin"]}, {"type": "CO',
            "repaired",
            [("POS", ("5-FU", "oxaliplatin"))],
            "truncated",
        ),
        # truncated inside the first object: nothing complete -> empty list -> NO_COMB reading
        ('<answer>[{"type": "POS", "ent_set": ["5-FU", "oxal', "repaired", [], "truncated"),
        # missing </think>
        (
            '<think>[1] reasoning goes on <answer>[{"type": "COMB", "ent_set": ["5-FU", "leucovorin"]}]</answer>',
            "repaired",
            [("COMB", ("5-FU", "leucovorin"))],
            "unclosed <think>",
        ),
        # fenced JSON, no tags
        (
            'Here you go:\n```json\n[{"type": "NEG", "ent_set": ["oxaliplatin", "leucovorin"]}]\n```',
            "repaired",
            [("NEG", ("oxaliplatin", "leucovorin"))],
            "fence",
        ),
        # single quotes (python literal)
        (
            "<answer>[{'type': 'POS', 'ent_set': ['5-FU', 'leucovorin']}]</answer>",
            "repaired",
            [("POS", ("5-FU", "leucovorin"))],
            "python-style",
        ),
        # trailing text after the list inside the answer
        (
            '<answer>[{"type": "POS", "ent_set": ["5-FU", "leucovorin"]}] I hope this helps.</answer>',
            "repaired",
            [("POS", ("5-FU", "leucovorin"))],
            "trailing text",
        ),
        # unknown label dropped, known one kept
        (
            (
                '<answer>[{"type": "SYNERGY-ISH", "ent_set": ["5-FU", "leucovorin"]},'
                ' {"type": "neg", "ent_set": ["5-FU", "oxaliplatin"]}]</answer>'
            ),
            "repaired",
            [("NEG", ("5-FU", "oxaliplatin"))],
            "unknown label",
        ),
        # one-drug set dropped
        ('<answer>[{"type": "POS", "ent_set": ["5-FU"]}]</answer>', "repaired", [], "1 drug(s) dropped"),
        # duplicate, reordered drugs: one relation kept, the duplicate counted
        (
            (
                '<answer>[{"type": "POS", "ent_set": ["5-FU", "leucovorin"]},'
                ' {"type": "POS", "ent_set": ["Leucovorin", "5 FU"]}]</answer>'
            ),
            "repaired",
            [("POS", ("5-FU", "leucovorin"))],
            "duplicate",
        ),
        # a drug repeated inside one set (case-insensitively) is merged
        (
            '<answer>[{"type": "POS", "ent_set": ["5-FU", "5-fu", "leucovorin"]}]</answer>',
            "repaired",
            [("POS", ("5-FU", "leucovorin"))],
            "repeated drug",
        ),
        # answer that is an object, not a list
        (
            '<answer>{"type": "POS", "ent_set": ["5-FU", "leucovorin"]}</answer>',
            "repaired",
            [("POS", ("5-FU", "leucovorin"))],
            "wrapped",
        ),
        # garbage in the answer
        ("<answer>[this is not json at all}</answer>", "invalid_json", [], "no JSON"),
        # JSON list of strings: not relation objects
        ('<answer>["5-FU", "leucovorin"]</answer>', "invalid_schema", [], "no relation objects"),
    ],
)
def test_parser_table(text, status, expected, reason_part):
    p = parse_completion(text, SENT)
    assert p.status == status, (p.status, p.reason)
    assert labels_and_drugs(p) == expected
    assert reason_part.lower() in p.reason.lower()


def test_no_comb_answer_is_ok_and_declared():
    p = parse_completion('<think>a</think><answer>[{"type":"NO_COMB","ent_set":[]}]</answer>', SENT)
    assert p.status == "ok" and p.answer_is_valid_list and p.declared_no_comb and p.relations == []


def test_drug_not_in_sentence_is_flagged_not_silently_kept():
    p = parse_completion('<answer>[{"type": "POS", "ent_set": ["5-FU", "cisplatin"]}]</answer>', SENT)
    rel = p.relations[0]
    assert rel.grounded == (True, False) and rel.spans[1] is None
    assert p.status == "repaired" and "cisplatin" in p.reason
    assert rel.as_dict()["drugs"][1] == {"name": "cisplatin", "start": None, "end": None, "grounded": False}


def test_without_sentence_no_grounding():
    p = parse_completion(GOOD)
    assert p.status == "ok" and p.relations[0].grounded is None and p.relations[0].spans is None


def test_repair_is_not_strictly_valid():
    p = parse_completion("<answer>[{'type': 'POS', 'ent_set': ['5-FU', 'leucovorin']}]</answer>", SENT)
    assert p.has_answer_tags and not p.answer_is_valid_list


@pytest.mark.parametrize("bad", [None, 42, "<answer>" + "[" * 5000, "<think><think></think></answer>]]]{{"])
def test_never_raises(bad):
    p = parse_completion(bad, SENT)
    assert p.status in ("no_answer", "invalid_json", "invalid_schema", "repaired", "ok")


@pytest.mark.parametrize(
    "name, found",
    [
        ("5-fu", "5-FU"),
        ("5 FU", "5-FU"),
        ("5FU", "5-FU"),
        ("LEUCOVORIN", "Leucovorin"),
        ("oxali platin", "oxaliplatin"),
        ("platin", None),
        ("cancer colorectal", None),
    ],
)
def test_grounding(name, found):
    span = ground_name(name, SENT)
    assert (SENT[span[0] : span[1]] if span else None) == found


def test_apostrophe_inside_word_does_not_break_json_scan():
    text = '<answer>[{"type": "POS", "ent_set": ["5-FU", "leucovorin"]}]</answer>'
    p = parse_completion("In Hodgkin's lymphoma " + text, SENT)
    assert labels_and_drugs(p) == [("POS", ("5-FU", "leucovorin"))]


# --- repairs as codes ------------------------------------------------------------------------------------

R = Repair
PAIR = '{"type": "POS", "ent_set": ["5-FU", "leucovorin"]}'


@pytest.mark.parametrize(
    "text, codes, message",
    [
        (GOOD, [], ""),
        (f"<think>x<answer>[{PAIR}]</answer>", [R.UNCLOSED_THINK], "unclosed <think>"),
        (f"x</think><answer>[{PAIR}]</answer>", [R.MISSING_THINK], "missing <think>"),
        (f"<answer>[{PAIR}]</answer> thanks", [R.TEXT_AFTER_ANSWER], "text after </answer> ignored"),
        (f"<answer>[{PAIR}]", [R.UNCLOSED_ANSWER], "unclosed <answer>"),
        (f"The answer is [{PAIR}]", [R.MISSING_ANSWER_TAGS], "missing <answer> tags"),
        (f"<answer>```json\n[{PAIR}]\n```</answer>", [R.CODE_FENCE], "code fence removed"),
        (f"<answer>[{PAIR}] done</answer>", [R.TRAILING_TEXT], "trailing text ignored"),
        (f"<answer>Here: [{PAIR}]</answer>", [R.LEADING_TEXT], "leading text ignored"),
        (f'<answer>[{PAIR}, {{"type": "NEG", "ent</answer>', [R.TRUNCATED_JSON], "truncated JSON closed"),
        (f"<answer>[{PAIR},]</answer>", [R.TRAILING_COMMAS], "trailing commas removed"),
        (
            "<answer>[{'type': 'POS', 'ent_set': ['5-FU', 'leucovorin']}]</answer>",
            [R.PYTHON_LITERAL],
            "python-style literal",
        ),
        (f"<answer>{PAIR}</answer>", [R.SINGLE_OBJECT], "single object wrapped in a list"),
        (f"<answer>[{PAIR}, 7]</answer>", [R.ITEM_NOT_OBJECT], "item 1 is not an object"),
        (
            '<answer>[{"type": "SYNERGY?", "ent_set": ["5-FU", "leucovorin"]}]</answer>',
            [R.UNKNOWN_LABEL],
            "unknown label 'SYNERGY?' dropped",
        ),
        (
            '<answer>[{"type": "positive", "ent_set": ["5-FU", "leucovorin"]}]</answer>',
            [R.LABEL_SYNONYM],
            "label 'positive' read as POS",
        ),
        (
            '<answer>[{"type": "NO_COMB", "ent_set": ["5-FU"]}]</answer>',
            [R.NO_COMB_DRUGS],
            "drugs of a NO_COMB item ignored",
        ),
        (
            '<answer>[{"type": "POS", "ent_set": ["5-FU", "5-fu", "leucovorin"]}]</answer>',
            [R.REPEATED_NAMES],
            "repeated drug names merged in item 0",
        ),
        (
            '<answer>[{"type": "NEG", "ent_set": ["5-FU"]}]</answer>',
            [R.TOO_FEW_DRUGS],
            "NEG item with 1 drug(s) dropped",
        ),
        (
            f'<answer>[{PAIR}, {{"type": "NEG", "ent_set": ["leucovorin", "5-FU"]}}]</answer>',
            [R.DUPLICATE_SET],
            "duplicate drug set merged (kept POS, dropped NEG)",
        ),
        (f"<answer>[{PAIR}, {PAIR}]</answer>", [R.DUPLICATE_RELATION], "duplicate relation merged"),
        (
            f'<answer>[{PAIR}, {{"type": "NO_COMB", "ent_set": []}}]</answer>',
            [R.NO_COMB_BESIDE_RELATIONS],
            "NO_COMB item next to relations ignored",
        ),
        (
            '<answer>[{"type": "POS", "ent_set": ["5-FU", "cisplatin"]}]</answer>',
            [R.NOT_IN_SENTENCE],
            "not in sentence: 'cisplatin'",
        ),
        (
            "<answer>[1, 2]</answer>",
            [R.ITEM_NOT_OBJECT, R.ITEM_NOT_OBJECT, R.NO_RELATION_OBJECTS],
            "item 0 is not an object; item 1 is not an object; answer list holds no relation objects",
        ),
        ("<answer>[]</answer>", [R.EMPTY_LIST], "empty answer list read as NO_COMB"),
    ],
)
def test_each_repair_has_its_code_and_message(text, codes, message):
    p = parse_completion(text, SENT)
    assert [note.repair for note in p.repairs] == codes, p.reason
    assert p.reason == message  # the reason text is the repairs' messages, as before they had codes
    assert p.repair_codes == frozenset(codes)


def test_repair_codes_are_stable_names():
    assert (
        R.TRUNCATED_JSON.code == "truncated_json"
        and R.NOT_IN_SENTENCE.note(names="'x'").code == "not_in_sentence"
    )
    assert len({r.code for r in Repair}) == len(Repair)
    # the format repairs are those of the answer's text (tags, JSON), none of its items
    assert R.UNCLOSED_ANSWER in FORMAT_REPAIRS and R.UNKNOWN_LABEL not in FORMAT_REPAIRS
    assert R.UNCLOSED_THINK not in FORMAT_REPAIRS and R.NOT_IN_SENTENCE not in FORMAT_REPAIRS


DDI_SENT = "Aspirin increases the effect of warfarin ."


@pytest.mark.parametrize(
    "text, task, status, relations, codes",
    [
        # the same DDI answer: DDI labels are the ddi task's own, DrugComb's parse drops them
        (
            '<answer>[{"type": "EFFECT", "ent_set": ["Aspirin", "warfarin"]}]</answer>',
            "ddi",
            "ok",
            [("EFFECT", ("Aspirin", "warfarin"))],
            [],
        ),
        (
            '<answer>[{"type": "EFFECT", "ent_set": ["Aspirin", "warfarin"]}]</answer>',
            "drugcomb",
            "repaired",
            [],
            [R.UNKNOWN_LABEL],
        ),
        # a DrugComb label in a DDI answer is unknown there
        (
            '<answer>[{"type": "POS", "ent_set": ["Aspirin", "warfarin"]}]</answer>',
            "ddi",
            "repaired",
            [],
            [R.UNKNOWN_LABEL],
        ),
        # case, duplicates and one-drug items are repaired as in DrugComb answers
        (
            '<answer>[{"type": "effect", "ent_set": ["Aspirin", "warfarin"]}]</answer>',
            "ddi",
            "repaired",
            [("EFFECT", ("Aspirin", "warfarin"))],
            [R.LABEL_SYNONYM],
        ),
        (
            (
                '<answer>[{"type": "ADVISE", "ent_set": ["Aspirin", "warfarin"]}, '
                '{"type": "INT", "ent_set": ["warfarin", "aspirin"]}]</answer>'
            ),
            "ddi",
            "repaired",
            [("ADVISE", ("Aspirin", "warfarin"))],
            [R.DUPLICATE_SET],
        ),
        (
            '<answer>[{"type": "MECHANISM", "ent_set": ["Aspirin"]}]</answer>',
            "ddi",
            "repaired",
            [],
            [R.TOO_FEW_DRUGS],
        ),
        ('<answer>[{"type": "NO_COMB", "ent_set": []}]</answer>', "ddi", "ok", [], []),
        # DDI13 names the entities (they can be discontinuous): an unaligned name is no repair there
        (
            '<answer>[{"type": "EFFECT", "ent_set": ["Aspirin", "Loop diuretics"]}]</answer>',
            "ddi",
            "ok",
            [("EFFECT", ("Aspirin", "Loop diuretics"))],
            [],
        ),
    ],
)
def test_ddi_answers_parse_like_drugcomb_ones(text, task, status, relations, codes):
    p = parse_completion(text, DDI_SENT, task)
    assert (p.status, labels_and_drugs(p), [n.repair for n in p.repairs]) == (status, relations, codes)
    assert p.task == task


def test_ddi_strict_validity_uses_ddi_labels():
    text = '<answer>[{"type": "MECHANISM", "ent_set": ["Aspirin", "warfarin"]}]</answer>'
    assert parse_completion(text, DDI_SENT, "ddi").answer_is_valid_list
    assert not parse_completion(text, DDI_SENT).answer_is_valid_list


def test_unknown_task_is_a_configuration_error():
    with pytest.raises(ValueError, match="unknown task"):
        parse_completion("<answer>[]</answer>", None, "ner")
