"""The label priors on vLLM: a v1 custom logits processor with ``model.engines.label_bias``'s semantics.

vLLM runs logits processors inside its engine process, one class instance for the whole persistent
batch; a request asks for the priors through ``SamplingParams.extra_args`` (``bias_extra_args``), so
requests without them are untouched (the encoding lives in ``vllm_engine``, which imports no vLLM
at import time).  At every step of such a request whose generated tokens end at a
type slot (``label_bias.rows_at_slot``, the one definition shared with the transformers engine) each
label's first token (``label_bias.label_first_tokens``) gets its offset added, exactly as
``LabelBiasProcessor`` does.  The engine is built with
``LLM(logits_processors=[LABEL_BIAS_PROCESSOR])`` (a fully qualified class name, importable in the
engine process).

Unlike the transformers processor this one records no label log-probabilities: its state lives in the
engine process, not with the caller.
"""

from __future__ import annotations

from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from model.engines.label_bias import label_first_tokens, rows_at_slot
from model.engines.vllm_engine import bias_from_extra_args


class LabelBiasLogitsProcessor(AdapterLogitsProcessor):
    """Adds each label's offset to its first token's logit at every type slot of a biased request."""

    def __init__(self, vllm_config, device, is_pin_memory: bool):
        super().__init__(vllm_config, device, is_pin_memory)
        model_config = vllm_config.model_config
        self._tokenizer_source = (model_config.tokenizer, model_config.trust_remote_code)
        self._tokenizer = None
        self._first_tokens: dict[str, int] | None = None

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        bias_from_extra_args(sampling_params.extra_args)

    def is_argmax_invariant(self) -> bool:
        return False  # it exists to change the greedy choice at the slot

    def _labels(self):
        """(tokenizer, label -> first token id), loaded on the first biased request."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            name, trust_remote_code = self._tokenizer_source
            self._tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
            self._first_tokens = label_first_tokens(self._tokenizer)
        return self._tokenizer, self._first_tokens

    def new_req_logits_processor(self, params):
        bias = bias_from_extra_args(params.extra_args)
        if not bias:
            return None
        tokenizer, first_tokens = self._labels()
        offsets = [(first_tokens[label], value) for label, value in bias.items()]

        def at_slot(output_ids: list[int], logits):
            if output_ids and rows_at_slot(tokenizer, [output_ids]):
                for token, value in offsets:
                    logits[token] += value
            return logits

        return at_slot
