"""The one n-ary set matcher: tables of gold/pred sets."""

from __future__ import annotations

import pytest

from model.evaluation.matching import (
    SetRelation,
    best_overlap,
    jaccard,
    normalize_drug_name,
    normalize_label,
    precision_recall_f1,
    relation_f1,
    sets_match,
)


@pytest.mark.parametrize(
    "a, b, exact, matched, score",
    [
        ({0, 1}, {0, 1}, True, True, 1.0),
        ({0, 1}, {1, 0}, False, True, 1.0),
        ({0, 1, 2}, {0, 1}, True, False, 2 / 3),
        ({0, 1, 2}, {0, 1}, False, True, 2 / 3),
        ({0, 1}, {1, 2}, False, False, 1 / 3),  # one shared drug is not a partial match
        ({0}, {0}, True, True, 1.0),  # identical sets always match
        (set(), set(), False, False, 0.0),
    ],
)
def test_sets_match(a, b, exact, matched, score):
    assert sets_match(a, b, exact) == (matched, pytest.approx(score))


def test_empty_sets_match_only_when_asked():
    assert sets_match([], [], True, empty_sets_match=True) == (True, 1.0)


def rel(doc, drugs, label):
    return SetRelation.make(doc, drugs, label)


def test_partial_credit_is_jaccard_and_label_mode_matters():
    gold = [rel("d", [0, 1, 2], "POS")]
    pred = [rel("d", [0, 1], "COMB")]
    anyp = precision_recall_f1(gold, pred, exact=False, mode="any")
    assert anyp.precision == pytest.approx(2 / 3) and anyp.recall == pytest.approx(2 / 3)
    # POS vs rest: the COMB prediction is not scored and earns the gold POS nothing
    posp = precision_recall_f1(gold, pred, exact=False, mode="pos")
    assert (posp.precision, posp.recall, posp.n_pred, posp.n_gold) == (0.0, 0.0, 0, 1)
    assert precision_recall_f1(gold, pred, exact=True, mode="any").f1 == 0.0


def test_other_document_never_matches_and_divisions_are_guarded():
    assert precision_recall_f1([rel("a", [0, 1], "POS")], [rel("b", [0, 1], "POS")], exact=True).f1 == 0.0
    empty = precision_recall_f1([], [], exact=True)
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0)


def test_reordered_drug_ids_are_one_row():
    gold = [rel("d", [1, 0], "POS")]
    pred = [rel("d", [0, 1], "POS"), rel("d", [1, 0], "POS")]
    prf = precision_recall_f1(gold, pred, exact=True, mode="pos")
    assert (prf.f1, prf.n_pred) == (1.0, 1)


def test_typed_mode_requires_same_label():
    gold = [("POS", ["a", "b"])]
    assert relation_f1(gold, [("NEG", ["A", "b"])], exact=True, mode="typed").f1 == 0.0
    assert relation_f1(gold, [("NEG", ["A", "b"])], exact=True, mode="any").f1 == 1.0
    assert relation_f1(gold, [("POS", ["B", "a"])], exact=True, mode="typed").f1 == 1.0


def test_relation_f1_no_combination_both_sides_is_perfect():
    assert relation_f1([], [("NO_COMB", [])], exact=True).f1 == 1.0
    assert relation_f1([("POS", ["a", "b"])], [], exact=True).f1 == 0.0
    assert relation_f1([], [("POS", ["a", "b"])], exact=True).f1 == 0.0


def test_best_overlap_and_names():
    assert best_overlap({"a", "b", "c"}, [{"a"}, {"a", "b"}, {"a", "b", "c", "d"}]) == pytest.approx(0.75)
    assert best_overlap({"a", "b"}, [{"a", "c"}]) == 0.0
    assert jaccard([], []) == 0.0
    assert normalize_drug_name("5 - FU") == normalize_drug_name("5-fu") == "5fu"
    assert (
        normalize_label("neg") == "NEG"
        and normalize_label("weird") == "NO_COMB"
        and normalize_label(2) == "POS"
    )


def test_unknown_mode_is_a_configuration_error():
    with pytest.raises(ValueError, match="unknown matching mode"):
        precision_recall_f1([], [], exact=True, mode="labelled")
