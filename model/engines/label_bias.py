"""Label priors at the answer's type slot: the thresholded decision of a small extraction model.

A small model's first answer token is a decision between NO_COMB and the three combination labels,
and its raw preference is mis-calibrated (rexdrug-smol said NO_COMB on a quarter of the test sentences
that hold a combination and never wrote COMB or NEG).  ``LabelBiasProcessor`` adds a per-label
log-probability offset at every ``"type": "`` slot the model writes, and records the model's own
(unbiased) label log-probabilities at every slot, in order: the first slot's are what the offsets are
chosen on by measurement on a dev split (``model.calibration``) and shipped with the model, like a
classifier's threshold; every slot's give each relation of the answer its own label distribution (the
confidence of a combination row, ``model.confidence``).  The offsets change the token chosen at a slot,
never the distribution recorded there.

Labels are recognised by their first token under the model's tokenizer, so labels must differ in it
(they do for the GPT-2 style BPE of SmolLM2/Llama: ``POS``, ``CO``, ``N``, ``NO``); if they do not,
construction fails with a ``ValueError`` rather than biasing two labels at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from schemas.answer import LABELS  # the answer labels, in their order (POS first)

# The slot opens where the model has just written `"type": "` (any spacing) inside the answer.
_SLOT = re.compile(r'"type"\s*:\s*"$')
_SLOT_PREFIX = '{"type": "'
_TAIL_TOKENS = 6  # enough generated tokens to see `"type": "` whatever the merges


def validate_label_bias(bias: Mapping[str, float] | None) -> None:
    """Configuration check: known labels, finite numbers."""
    if bias is None:
        return
    if not isinstance(bias, Mapping):
        raise ValueError(f"label_bias must be a mapping label -> float, got {type(bias).__name__}")
    for label, value in bias.items():
        if label not in LABELS:
            raise ValueError(f"label_bias: unknown label {label!r} (expected one of {', '.join(LABELS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"label_bias[{label}] must be a finite number, got {value!r}")


def rows_at_slot(tokenizer, generated) -> list[int]:
    """Indices of the rows whose generated tokens (one sequence of ids per row) end at a type slot.

    The one definition of "the next token is a label" for every engine's logits hook: the decoded
    tail of the row ends with `"type": "` (any spacing).  Only the last few tokens are decoded.
    """
    tails = tokenizer.batch_decode([list(ids[-_TAIL_TOKENS:]) for ids in generated], skip_special_tokens=True)
    return [i for i, tail in enumerate(tails) if _SLOT.search(tail)]


def label_first_tokens(tokenizer) -> dict[str, int]:
    """label -> id of the token that starts it right after `"type": "`; distinct by construction."""
    base = tokenizer(_SLOT_PREFIX, add_special_tokens=False)["input_ids"]
    first: dict[str, int] = {}
    for label in LABELS:
        ids = tokenizer(_SLOT_PREFIX + label, add_special_tokens=False)["input_ids"]
        # the prefix must tokenize the same way with the label after it, or the slot is not a token edge
        if ids[: len(base)] != base or len(ids) == len(base):
            raise ValueError(
                f"tokenizer merges the label {label!r} into the preceding quote; label_bias "
                "cannot address it at a token boundary"
            )
        first[label] = ids[len(base)]
    if len(set(first.values())) != len(first):
        raise ValueError(
            f"labels share a first token under this tokenizer ({first}); label_bias needs them distinct"
        )
    return first


class LabelBiasProcessor:
    """A transformers logits processor (callable ``(input_ids, scores) -> scores``) for one batch.

    ``prompt_length`` is the padded prompt width, so only generated tokens are inspected.
    ``slot_logprobs[row]`` is, after generation, one dict per type slot the row opened, in order: the
    model's unbiased log-probability of each label's first token there.  ``slot_labels[row]`` is the
    label whose first token was then generated at each slot (None: another token, or generation
    stopped at the slot), so a caller can check which answer item a slot belongs to.
    ``first_slot_logprobs[row]`` is the first slot's dict (None if the row never opened one).
    """

    def __init__(self, tokenizer, bias: Mapping[str, float] | None, prompt_length: int, batch_size: int):
        validate_label_bias(bias)
        self.tokenizer = tokenizer
        self.first_tokens = label_first_tokens(tokenizer)
        self.bias = {label: float(v) for label, v in (bias or {}).items() if v}
        self.prompt_length = prompt_length
        self.slot_logprobs: list[list[dict[str, float]]] = [[] for _ in range(batch_size)]
        self.slot_labels: list[list[str | None]] = [[] for _ in range(batch_size)]
        self._label_of_token = {tok: label for label, tok in self.first_tokens.items()}
        self._open: list[int] = []  # rows whose last step was a slot: their next token is its label

    @property
    def first_slot_logprobs(self) -> list[dict[str, float] | None]:
        return [slots[0] if slots else None for slots in self.slot_logprobs]

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] == 0:
            return scores
        for row in self._open:  # the token generated at each slot of the previous step
            self.slot_labels[row][-1] = self._label_of_token.get(int(generated[row, -1]))
        self._open = []
        rows = rows_at_slot(self.tokenizer, generated[:, -_TAIL_TOKENS:].tolist())
        if not rows:
            return scores
        logprobs = torch.log_softmax(scores[rows].float(), dim=-1)
        for k, row in enumerate(rows):
            self.slot_logprobs[row].append(
                {label: float(logprobs[k, tok]) for label, tok in self.first_tokens.items()}
            )
            self.slot_labels[row].append(None)
        self._open = rows
        if self.bias:
            index = torch.tensor(rows, device=scores.device)
            for label, value in self.bias.items():
                scores[index, self.first_tokens[label]] += value
        return scores
