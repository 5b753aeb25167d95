"""The one n-ary set matcher: predicted drug sets against gold drug sets, with labels.

Shared by the DrugComb scorer (``model.evaluation.drugcomb``) and the RL rewards (``training``), so
"what counts as a hit" is defined in exactly one place.  Semantics follow the official allenai
DrugComb scorer (leaderboard/eval.py of allenai/drug-combo-extraction):

* Two relations of the same document *match* exactly when their drug sets are identical, and
  partially when they share at least two drugs (an identical set always matches).  The match score
  is the Jaccard overlap |A & B| / |A | B|; partial matches are credited with that fraction.
* Labels are folded into classes by a *mode*: ``pos`` (POS=1, everything else 0) or ``any``
  (POS/COMB/NEG=1, NO_COMB=0).  Rows of class 0 are not scored ("not interesting") and a partner of
  class 0 earns nothing.  ``typed`` (POS/COMB/NEG distinct, NO_COMB=0) additionally requires equal
  labels; it is our stricter type-aware variant for rewards, not part of the official scorer.
* Every gold row and every predicted row appears once, keyed by (doc, drug set, class); a row without
  any partner is paired with "nothing" (class 0, score 0).  Precision is the mean best score over
  predicted rows, recall the same over gold rows; every division is guarded (0.0 when empty).

One deliberate difference from the official code: drug sets are canonicalised (deduplicated and
sorted) before keying, so ``[1, 0]`` and ``[0, 1]`` are the same row.  The official inputs are
always sorted, so official numbers are unchanged (tested on the allenai self-test).

RexDrug's own scorer variant (``count_all_rows=True, empty_sets_match=True``) also scores class-0
rows (an agreed NO_COMB counts as a hit) and lets two empty NO_COMB sets match; see
``model.evaluation.drugcomb.score_rexdrug_variant``.  It is never mixed with the official numbers.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from schemas.answer import COMB, COMBINATION_LABELS, NO_COMB, POS

MODES = ("any", "pos", "typed")

# label -> class of each mode (0: not a combination, never credited)
_ANY = {**{label: 1 for label in COMBINATION_LABELS}, NO_COMB: 0}
_POS = {**{label: int(label == POS) for label in COMBINATION_LABELS}, NO_COMB: 0}
_TYPED = {**{label: k for k, label in enumerate(COMBINATION_LABELS, 1)}, NO_COMB: 0}
_CLASS_MAPS = {"any": _ANY, "pos": _POS, "typed": _TYPED}
# The official files may carry integer labels (label2idx.json: POS 2, COMB/NEG 1, none 0).
_INT_LABELS = {2: POS, 1: COMB, 0: NO_COMB}


@dataclass(frozen=True)
class SetRelation:
    """A relation row: document id, canonical drug set (sorted, unique) and label string."""

    doc_id: Hashable
    drugs: tuple
    label: str

    @classmethod
    def make(cls, doc_id: Hashable, drugs: Iterable, label: str | int) -> SetRelation:
        return cls(doc_id, canonical_set(drugs), normalize_label(label))


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float
    n_gold: int  # scored ("interesting") gold rows
    n_pred: int  # scored predicted rows

    def as_dict(self) -> dict:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "n_gold": self.n_gold,
            "n_pred": self.n_pred,
        }


def normalize_label(label: str | int | None) -> str:
    """Label string in POS/COMB/NEG/NO_COMB; unknown labels become NO_COMB (never credited)."""
    if isinstance(label, bool):
        return NO_COMB
    if isinstance(label, int):
        return _INT_LABELS.get(label, NO_COMB)
    text = str(label or "").strip().upper().replace(" ", "_").replace("-", "_")
    return text if text in _ANY else NO_COMB


def canonical_set(drugs: Iterable) -> tuple:
    """Deduplicated, sorted tuple (mixed types sorted by their repr, never raising)."""
    unique = set(drugs)
    try:
        return tuple(sorted(unique))
    except TypeError:
        return tuple(sorted(unique, key=repr))


_DASHES = re.compile(r"[\u2010-\u2015\u2212\u00ad-]")
_SPACE = re.compile(r"\s+")


def normalize_drug_name(name: str) -> str:
    """Comparison key of a drug name: case-, spacing- and hyphen-insensitive ("5-FU" == "5 fu")."""
    text = unicodedata.normalize("NFKC", str(name)).casefold()
    return _SPACE.sub("", _DASHES.sub("", text))


def jaccard(a: Iterable, b: Iterable) -> float:
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def sets_match(a: Iterable, b: Iterable, exact: bool, empty_sets_match: bool = False) -> tuple[bool, float]:
    """(matched, score) for two drug sets: exact = identical; partial = >= 2 shared drugs or identical."""
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return (True, 1.0) if empty_sets_match else (False, 0.0)
    shared = len(sa & sb)
    score = shared / len(sa | sb)
    if score == 1.0 or (not exact and shared >= 2):
        return True, score
    return False, score


def align(
    gold: Sequence[SetRelation],
    pred: Sequence[SetRelation],
    *,
    exact: bool,
    mode: str = "any",
    empty_sets_match: bool = False,
) -> tuple[dict[tuple, list[tuple[int, float]]], dict[tuple, list[tuple[int, float]]]]:
    """Pair every gold row with the predicted rows it matches (and vice versa).

    Returns two dicts keyed by (doc_id, drug set, class) mapping to lists of (partner class, score);
    rows without a partner get [(0, 0.0)].
    """
    classes = _class_map(mode)
    by_doc: dict[Hashable, list[tuple[int, SetRelation]]] = defaultdict(list)
    for k, rel in enumerate(pred):
        by_doc[rel.doc_id].append((k, rel))
    gold_rows: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    pred_rows: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    matched_pred: set[int] = set()
    for g in gold:
        g_key, g_cls = _key(g, classes)
        found = False
        for k, p in by_doc.get(g.doc_id, ()):
            ok, score = sets_match(g.drugs, p.drugs, exact, empty_sets_match)
            if not ok:
                continue
            p_key, p_cls = _key(p, classes)
            gold_rows[g_key].append((p_cls, score))
            pred_rows[p_key].append((g_cls, score))
            matched_pred.add(k)
            found = True
        if not found:
            gold_rows[g_key].append((0, 0.0))
    for k, p in enumerate(pred):
        if k not in matched_pred:
            pred_rows[_key(p, classes)[0]].append((0, 0.0))
    return dict(gold_rows), dict(pred_rows)


def mean_best_score(
    rows: dict[tuple, list[tuple[int, float]]], *, labeled: bool, count_all_rows: bool = False
) -> tuple[float, int]:
    """Mean over scored rows of the best partner score; (0.0, 0) when no row is scored.

    A partner earns its score when it is of a non-zero class (unlabeled), or of the same class.
    """
    total, n = 0.0, 0
    for (_doc, _drugs, cls), partners in rows.items():
        if cls == 0 and not count_all_rows:
            continue
        n += 1
        total += max((s if ((not labeled and other != 0) or other == cls) else 0.0) for other, s in partners)
    return (total / n if n else 0.0), n


def precision_recall_f1(
    gold: Sequence[SetRelation],
    pred: Sequence[SetRelation],
    *,
    exact: bool,
    mode: str = "any",
    count_all_rows: bool = False,
    empty_sets_match: bool = False,
) -> PRF:
    """P/R/F1 of predicted against gold relation rows under the official semantics (see module doc)."""
    gold_rows, pred_rows = align(gold, pred, exact=exact, mode=mode, empty_sets_match=empty_sets_match)
    labeled = mode == "typed"
    p, n_pred = mean_best_score(pred_rows, labeled=labeled, count_all_rows=count_all_rows)
    r, n_gold = mean_best_score(gold_rows, labeled=labeled, count_all_rows=count_all_rows)
    f1 = 2 * p * r / (p + r) if (p + r) > 0 else 0.0
    return PRF(p, r, f1, n_gold, n_pred)


def relation_f1(
    gold: Iterable[tuple[str, Iterable]],
    pred: Iterable[tuple[str, Iterable]],
    *,
    exact: bool,
    mode: str = "typed",
    key=normalize_drug_name,
) -> PRF:
    """Per-sentence F1 of (label, drug names) pairs (names compared via ``key``): for rewards.

    NO_COMB pairs and sets with fewer than two drugs carry no relation and are ignored; when both
    sides are empty the sentence is a correct "no combination" and F1 is 1.0.
    """
    g = _name_rows(gold, key)
    p = _name_rows(pred, key)
    if not g and not p:
        return PRF(1.0, 1.0, 1.0, 0, 0)
    return precision_recall_f1(g, p, exact=exact, mode=mode)


def best_overlap(gold_drugs: Iterable, pred_sets: Iterable[Iterable], *, min_shared: int = 2) -> float:
    """Best Jaccard overlap of one gold set with any predicted set sharing >= ``min_shared`` drugs."""
    g = set(gold_drugs)
    best = 0.0
    for ps in pred_sets:
        s = set(ps)
        if len(g & s) >= min_shared:
            best = max(best, jaccard(g, s))
    return best


def _name_rows(pairs: Iterable[tuple[str, Iterable]], key) -> list[SetRelation]:
    rows = []
    for label, names in pairs:
        lab = normalize_label(label)
        drugs = canonical_set(key(n) for n in names)
        if lab != NO_COMB and len(drugs) >= 2:
            rows.append(SetRelation(0, drugs, lab))
    return rows


def _class_map(mode: str) -> dict[str, int]:
    if mode not in _CLASS_MAPS:
        raise ValueError(f"unknown matching mode {mode!r}; expected one of {', '.join(MODES)}")
    return _CLASS_MAPS[mode]


def _key(rel: SetRelation, classes: dict[str, int]) -> tuple[tuple, int]:
    cls = classes.get(rel.label, 0)
    return (rel.doc_id, rel.drugs, cls), cls
