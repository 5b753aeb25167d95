"""A confidence in [0, 1] on every extracted combination: the model's own label distribution, calibrated.

Where it comes from, per engine:

* **transformers** (and the bundled ``rexdrug-smol``): at each relation's type slot the engine records
  the model's unbiased log-probabilities of the labels' first tokens (``model.engines.label_bias``).
  Renormalised over the answer labels (``LABELS``: POS, COMB, NEG, NO_COMB), the probability mass of the
  combination labels is the *raw score* ("the model believes a combination starts here"); a calibration
  fitted on a dev split (``training.calibrate --confidence``) maps it, with the relation's position in
  the answer (first or later), to the probability that the relation is right (its drug set equals a
  gold set).  The calibration is stored in the adapter folder
  (``CONFIDENCE_FILE``); a model without one gets no confidence (null): an uncalibrated model
  probability is not what a curator's threshold means.  The distribution itself is kept on the
  extraction row either way, so a later calibration can be applied to old rows.
* **rules**: a documented constant per rule engine (``model.engines.rules.RULE_CONFIDENCE``).
* **vLLM, OpenAI-compatible**: null.  Neither engine asks its backend for token log-probabilities yet
  (vLLM could return them with ``SamplingParams(logprobs=...)``, an OpenAI server with ``logprobs``
  where supported); until one does, there is no distribution to calibrate and a made-up number would
  be worse than none.

Everything here is pure: no model, no I/O except reading/writing the calibration file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from schemas.answer import COMBINATION_LABELS, DRUGCOMB_TASK, LABELS

CONFIDENCE_FILE = "confidence_calibration.json"  # next to an adapter; not part of its model id
CALIBRATION_METHODS = ("platt", "isotonic")
_EPS = 1e-6  # raw scores are clipped to [EPS, 1 - EPS] before the logit


# --- the raw score ------------------------------------------------------------------------------------


def label_distribution(logprobs: Mapping[str, float] | None) -> dict[str, float] | None:
    """The label log-probabilities renormalised over ``LABELS`` (a missing label has probability 0).

    None when there is nothing to normalise (no slot, or every label impossible, e.g. all -inf).
    """
    if not logprobs:
        return None
    values = {
        label: float(logprobs[label]) if label in logprobs and logprobs[label] is not None else -math.inf
        for label in LABELS
    }
    finite = [v for v in values.values() if math.isfinite(v)]
    if not finite:
        return None
    top = max(finite)
    weights = {label: (math.exp(v - top) if math.isfinite(v) else 0.0) for label, v in values.items()}
    total = sum(weights.values())
    return {label: w / total for label, w in weights.items()}


def combination_score(logprobs: Mapping[str, float] | None) -> float | None:
    """Raw score of a relation: the renormalised probability of the combination labels (POS+COMB+NEG)."""
    dist = label_distribution(logprobs)
    if dist is None:
        return None
    return sum(dist[label] for label in COMBINATION_LABELS)


# --- calibration -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfidenceCalibration:
    """A monotone map raw score -> probability of being right.

    ``platt``: ``sigmoid(a * logit(score) + b + later * [position > 0])`` (``params = {"a", "b"}``,
    optional ``later``).  ``position`` is the relation's place in the answer: the type slot of a later
    relation is opened only once the model has decided to continue its list, so its label distribution
    says nearly nothing about whether that relation exists (on the DrugComb dev split, second relations
    score 0.99 raw and 1 in 12 is right); ``later`` is their own offset.
    ``isotonic``: a non-decreasing step function of the score alone, ``steps`` = [[upper raw score,
    value], ...] sorted by upper bound; a score takes the value of the first step whose bound it does not
    exceed (the last step beyond).
    """

    method: str
    params: dict[str, float] = field(default_factory=dict)
    steps: tuple[tuple[float, float], ...] = ()
    fitted_on: dict = field(default_factory=dict, compare=False)  # provenance: split, n, accuracy...

    def __post_init__(self):
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(
                f"confidence calibration method must be one of {CALIBRATION_METHODS}, not {self.method!r}"
            )
        if self.method == "platt" and not {"a", "b"} <= set(self.params) <= {"a", "b", "later"}:
            raise ValueError("a platt calibration needs params a and b (and optionally later)")
        if self.method == "isotonic" and not self.steps:
            raise ValueError("an isotonic calibration needs at least one step")

    def apply(self, score: float, position: int = 0) -> float:
        if self.method == "platt":
            later = self.params.get("later", 0.0) if position > 0 else 0.0
            return _sigmoid(self.params["a"] * _logit(score) + self.params["b"] + later)
        for bound, value in self.steps:
            if score <= bound:
                return value
        return self.steps[-1][1]

    def as_dict(self) -> dict:
        out: dict = {"method": self.method, "score": "renormalised P(POS)+P(COMB)+P(NEG) at the type slot"}
        if self.method == "platt":
            out["params"] = dict(self.params)
        else:
            out["steps"] = [list(s) for s in self.steps]
        out["fitted_on"] = dict(self.fitted_on)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> ConfidenceCalibration:
        if not isinstance(data, Mapping) or "method" not in data:
            raise ValueError("a confidence calibration is a mapping with a 'method'")
        return cls(
            data["method"],
            {k: float(v) for k, v in (data.get("params") or {}).items()},
            tuple((float(b), float(v)) for b, v in data.get("steps") or ()),
            dict(data.get("fitted_on") or {}),
        )


def fit_platt(
    pairs: Sequence[tuple[float, bool]],
    *,
    positions: Sequence[int] | None = None,
    prior: float = 0.0,
    iterations: int = 100,
) -> ConfidenceCalibration:
    """Logistic regression of correctness on logit(raw score) (and, given ``positions``, an offset for
    relations after the first: ``later``), by Newton's method with backtracking.

    ``prior`` > 0 adds a Gaussian prior centred on the identity map (a = 1, b = 0, later = 0) with that
    precision: with a few dozen dev relations the raw model probability is kept unless the data say
    otherwise, and separable data cannot drive a parameter to infinity.  ``prior`` 0 is plain maximum
    likelihood.  Needs both outcomes in ``pairs``.
    """
    if prior < 0 or not math.isfinite(prior):
        raise ValueError(f"prior must be a finite number >= 0, got {prior!r}")
    xs, ys = _checked(pairs)
    if positions is not None and len(positions) != len(xs):
        raise ValueError(f"{len(xs)} pairs but {len(positions)} positions")
    # features per pair: logit(score), 1, [later relation]; parameters start at (and shrink to) the identity
    rows = [
        [x, 1.0] + ([1.0 if positions[i] > 0 else 0.0] if positions is not None else [])
        for i, x in enumerate(xs)
    ]
    centre = [1.0, 0.0] + ([0.0] if positions is not None else [])
    k = len(centre)

    def loss(theta: list[float]) -> float:
        total = prior / 2 * sum((t - c) ** 2 for t, c in zip(theta, centre))
        for f, y in zip(rows, ys):
            z = sum(t * v for t, v in zip(theta, f))
            total += _softplus(z) - y * z  # -log-likelihood of one Bernoulli outcome
        return total

    theta = list(centre)
    current = loss(theta)
    for _ in range(iterations):
        grad = [prior * (t - c) for t, c in zip(theta, centre)]
        hess = [[(prior + 1e-9) if i == j else 0.0 for j in range(k)] for i in range(k)]
        for f, y in zip(rows, ys):
            p = _sigmoid(sum(t * v for t, v in zip(theta, f)))
            for i in range(k):
                grad[i] += (p - y) * f[i]
                for j in range(k):
                    hess[i][j] += p * (1 - p) * f[i] * f[j]
        delta = _solve(hess, grad)
        if delta is None:
            break
        step = 1.0
        while step > 1e-8:  # backtracking: a full Newton step can overshoot far from the optimum
            candidate_theta = [t - step * d for t, d in zip(theta, delta)]
            candidate = loss(candidate_theta)
            if candidate <= current:
                break
            step /= 2
        else:
            break
        theta, current = candidate_theta, candidate
        if max(abs(step * d) for d in delta) < 1e-10:
            break
    params = {"a": theta[0], "b": theta[1]}
    if positions is not None:
        params["later"] = theta[2]
    return ConfidenceCalibration(
        "platt", params, fitted_on={"n": len(xs), "accuracy": sum(ys) / len(ys), "prior": prior}
    )


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting for the small Newton systems; None when singular."""
    n = len(vector)
    m = [row[:] + [vector[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-15:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            factor = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= factor * m[col][c]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (m[r][n] - sum(m[r][c] * out[c] for c in range(r + 1, n))) / m[r][r]
    return out


def fit_isotonic(pairs: Sequence[tuple[float, bool]]) -> ConfidenceCalibration:
    """Pool-adjacent-violators: the non-decreasing step function of raw score closest to correctness
    (least squares); equal scores are pooled first, so a step never splits one score."""
    _checked(pairs)
    grouped: dict[float, list[float]] = {}
    for score, correct in pairs:
        grouped.setdefault(float(score), []).append(1.0 if correct else 0.0)
    blocks = []  # [upper score, sum of outcomes, count]
    for score in sorted(grouped):
        blocks.append([score, sum(grouped[score]), len(grouped[score])])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            upper, total, count = blocks.pop()
            blocks[-1] = [upper, blocks[-1][1] + total, blocks[-1][2] + count]
    steps = tuple((upper, total / count) for upper, total, count in blocks)
    n = sum(len(v) for v in grouped.values())
    return ConfidenceCalibration(
        "isotonic", steps=steps, fitted_on={"n": n, "accuracy": sum(map(sum, grouped.values())) / n}
    )


def reliability_table(pairs: Sequence[tuple[float, bool]], bins: int = 5) -> list[dict]:
    """Equal-width bins of confidence: n, mean confidence, accuracy (empty bins left out)."""
    if bins < 1:
        raise ValueError("bins must be >= 1")
    rows = []
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        inside = [(c, y) for c, y in pairs if lo <= c < hi or (k == bins - 1 and c == 1.0)]
        if inside:
            rows.append(
                {
                    "bin": f"[{lo:.2f}, {hi:.2f}{']' if k == bins - 1 else ')'}",
                    "n": len(inside),
                    "mean_confidence": sum(c for c, _ in inside) / len(inside),
                    "accuracy": sum(1 for _, y in inside if y) / len(inside),
                }
            )
    return rows


def expected_calibration_error(pairs: Sequence[tuple[float, bool]], bins: int = 5) -> float:
    """Sum over bins of |mean confidence - accuracy| weighted by the bin's share of the pairs."""
    n = len(pairs)
    return (
        sum(r["n"] / n * abs(r["mean_confidence"] - r["accuracy"]) for r in reliability_table(pairs, bins))
        if n
        else 0.0
    )


def _checked(pairs: Sequence[tuple[float, bool]]) -> tuple[list[float], list[float]]:
    if not pairs:
        raise ValueError("no (score, correct) pairs to fit a calibration on")
    xs, ys = [], []
    for score, correct in pairs:
        if score is None or not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise ValueError(f"raw scores must lie in [0, 1], got {score!r}")
        xs.append(_logit(score))
        ys.append(1.0 if correct else 0.0)
    if len(set(ys)) < 2:
        raise ValueError("calibration needs both right and wrong relations in the dev pairs")
    return xs, ys


def _logit(score: float) -> float:
    s = min(max(float(score), _EPS), 1.0 - _EPS)
    return math.log(s / (1.0 - s))


def _softplus(z: float) -> float:
    return z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# --- storage with an adapter ------------------------------------------------------------------------


def load_confidence_calibration(folder: str | Path) -> ConfidenceCalibration | None:
    """The calibration stored in an adapter folder, or None when it has none."""
    path = Path(folder) / CONFIDENCE_FILE
    if not path.is_file():
        return None
    try:
        return ConfidenceCalibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"unreadable confidence calibration {path}: {exc}") from exc


def write_confidence_calibration(
    folder: str | Path, calibration: ConfidenceCalibration, extra: dict | None = None
) -> Path:
    """Write ``CONFIDENCE_FILE`` into ``folder`` atomically (temp file + rename)."""
    path = Path(folder) / CONFIDENCE_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({**calibration.as_dict(), **(extra or {})}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# --- per relation ------------------------------------------------------------------------------------


def model_confidence(
    logprobs: Mapping[str, float] | None,
    calibration: ConfidenceCalibration | None,
    position: int = 0,
    task: str = DRUGCOMB_TASK,
) -> float | None:
    """Calibrated confidence of one relation (the ``position``-th of its answer) from its slot's
    log-probabilities (None without either).  Calibrations are fitted on DrugComb combinations: a
    relation of another task (a DDI13 interaction) gets None, not a number that means something else."""
    if task != DRUGCOMB_TASK:
        return None
    score = combination_score(logprobs)
    if score is None or calibration is None:
        return None
    return min(1.0, max(0.0, calibration.apply(score, position)))


def slots_of_relations(relations, raw_answer, slot_records: Sequence[Mapping] | None) -> list[Mapping | None]:
    """The slot record (``{"logprobs", "label"}``) each parsed relation was written at, or None.

    The engine records one slot per ``"type": "`` the model generated, in order; the answer items that
    carry a ``type`` key are the last of them (a think block may open slots first).  A relation gets
    its item's slot only when the label generated there is the relation's label, so a slot the
    recorder missed (a tokenizer merge) or an answer read from elsewhere never lends its numbers to the
    wrong relation.
    """
    out: list[Mapping | None] = [None] * len(relations)
    if not slot_records or not isinstance(raw_answer, list):
        return out
    typed = [
        i for i, item in enumerate(raw_answer) if isinstance(item, dict) and isinstance(item.get("type"), str)
    ]
    if len(typed) > len(slot_records):
        return out
    slot_of_item = dict(zip(typed, slot_records[len(slot_records) - len(typed) :]))
    for k, relation in enumerate(relations):
        slot = slot_of_item.get(relation.item_index)
        if slot is not None and slot.get("label") == relation.label:
            out[k] = slot
    return out


def logprobs_rows(logprobs: Mapping[str, float] | None) -> list[dict] | None:
    """A slot's log-probabilities as stored on the extraction row: [{label, logprob}] in LABELS order.

    An impossible label (-inf, e.g. masked by constrained decoding) is stored as null, so rows stay
    strict JSON; reading back, a null label counts as impossible again (``label_distribution``).
    """
    if logprobs is None:
        return None
    return [
        {"label": label, "logprob": float(logprobs[label]) if math.isfinite(logprobs[label]) else None}
        for label in LABELS
        if label in logprobs
    ]


def logprobs_from_rows(rows: Sequence[Mapping] | None) -> dict[str, float] | None:
    """Inverse of :func:`logprobs_rows` (what a re-calibration reads back from the warehouse)."""
    if not rows:
        return None
    return {
        r["label"]: float(r["logprob"])
        for r in rows
        if r.get("label") is not None and r.get("logprob") is not None
    }


def relation_evidence(parsed, slot_records: Sequence[Mapping] | None, engine) -> list[dict]:
    """Per parsed relation (same order as ``parsed.relations``): its slot's label log-probabilities
    (``logprobs_rows`` form, None without a slot) and its confidence from ``engine.relation_confidence``
    for the parse's task (``parsed.task``: a combination or an interaction)."""
    confidence_of = getattr(engine, "relation_confidence", None)
    out = []
    slots = slots_of_relations(parsed.relations, parsed.raw_answer, slot_records)
    for position, slot in enumerate(slots):
        logprobs = slot.get("logprobs") if slot else None
        out.append(
            {
                "label_logprobs": logprobs_rows(logprobs),
                "confidence": (
                    confidence_of(logprobs, position, task=parsed.task) if confidence_of is not None else None
                ),
            }
        )
    return out


def relations_with_evidence(result: Mapping) -> list[dict]:
    """A runner result's parsed relations with ``label_logprobs`` and ``confidence`` merged in (the
    ``relations`` of an extraction row, ``schemas.extraction.PARSED_RELATION``)."""
    relations = list(result.get("parsed") or [])
    evidence = list(result.get("relation_evidence") or [])
    evidence += [{"label_logprobs": None, "confidence": None}] * (len(relations) - len(evidence))
    return [{**r, **e} for r, e in zip(relations, evidence)]
