"""transformers engine (default; CPU or GPU): batched generation with left padding.

Prompts are rendered with the tokenizer's chat template, sorted by length so each forward pass pads
little, generated in chunks of ``batch_size`` and returned in input order.  Greedy when
``temperature == 0``, else sampled (seeded).  Optional constrained decoding forces
``<answer>JSON</answer>`` matching the answer schema through lm-format-enforcer's token enforcer
(its own transformers integration does not import under transformers 5, so the small glue it
needs - the token table and a ``prefix_allowed_tokens_fn`` - lives here).
"""

from __future__ import annotations

import logging
import os
import time

from model.engines.base import Engine, EngineConfig, EngineResult, SamplingConfig, engine_model_id
from schemas.answer import DRUGCOMB_TASK

log = logging.getLogger(__name__)


class TransformersEngine(Engine):
    def __init__(self, config: EngineConfig, *, model=None, tokenizer=None):
        """Load ``config.model`` (or use the given ``model``/``tokenizer``, e.g. one built in a test)."""
        import torch

        self.config = config
        self._torch = torch
        if config.threads:
            torch.set_num_threads(config.threads)
        if model is None or tokenizer is None:
            model, tokenizer, self.model_id = _load(config)
        else:
            self.model_id = getattr(model.config, "_name_or_path", None) or "in-memory"
        tokenizer.padding_side = "left"  # generation continues at the right edge of every row
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self._enforcer_data = None
        self._last_processor = None
        self.label_bias = _effective_label_bias(config)
        # Every type slot's unbiased label log-probabilities are recorded in each result's ``slots`` (a
        # combination row's confidence comes from them) whenever the tokenizer allows; calibration
        # (model.calibration) turns this on to require them, whatever the tokenizer.
        self.record_label_logprobs = False
        self._slots_supported = _slots_supported(tokenizer)
        self.confidence_calibration = _effective_confidence_calibration(config)
        self.stats = {"prompt_tokens": 0, "generated_tokens": 0, "seconds": 0.0, "batches": 0}

    # -- generation ----------------------------------------------------------------------------------

    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, batch: list[list[dict]], sampling: SamplingConfig | None = None) -> list[EngineResult]:
        sampling = sampling or self.config.sampling
        prompts = [self.render(m) for m in batch]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[EngineResult] = [EngineResult()] * len(prompts)
        size = self.config.batch_size
        for start in range(0, len(order), size):
            idx = order[start : start + size]
            texts = self.generate_prompts([prompts[i] for i in idx], sampling)
            proc = self._last_processor
            for k, (i, text) in enumerate(zip(idx, texts)):
                slots = (
                    ()
                    if proc is None
                    else tuple(
                        {"logprobs": lp, "label": label}
                        for lp, label in zip(proc.slot_logprobs[k], proc.slot_labels[k])
                    )
                )
                results[i] = EngineResult(text, slots=slots)
        return results

    def relation_confidence(
        self, label_logprobs: dict[str, float] | None, position: int = 0, task: str = DRUGCOMB_TASK
    ) -> float | None:
        """Calibrated confidence of a relation from its slot's label log-probabilities (model.confidence)."""
        from model.confidence import model_confidence

        return model_confidence(label_logprobs, self.confidence_calibration, position, task)

    def generate_prompts(self, prompts: list[str], sampling: SamplingConfig) -> list[str]:
        """One padded forward batch of already-rendered prompts."""
        torch = self._torch
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        kwargs = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": not sampling.greedy,
        }
        if self.config.cache == "static":
            kwargs["cache_implementation"] = "static"
        if sampling.greedy:
            # neutralise sampling defaults shipped in generation_config.json (they only cause warnings)
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=None)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
        if sampling.constrained:
            kwargs["prefix_allowed_tokens_fn"] = self._prefix_allowed_tokens_fn()
        self._last_processor = None
        if self.label_bias or self.record_label_logprobs or self._slots_supported:
            from transformers import LogitsProcessorList

            from model.engines.label_bias import LabelBiasProcessor

            self._last_processor = LabelBiasProcessor(
                self.tokenizer, self.label_bias, enc["input_ids"].shape[1], len(prompts)
            )
            kwargs["logits_processor"] = LogitsProcessorList([self._last_processor])
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1] :]
        self._account(enc, new, time.perf_counter() - started)
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def _account(self, enc, new, seconds: float) -> None:
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        generated = 0
        for row in new.tolist():
            n = 0
            for tok in row:
                n += 1
                if tok == eos or (pad != eos and tok == pad):
                    break
            generated += n
        self.stats["prompt_tokens"] += int(enc["attention_mask"].sum())
        self.stats["generated_tokens"] += generated
        self.stats["seconds"] += seconds
        self.stats["batches"] += 1

    # -- constrained decoding ------------------------------------------------------------------------

    def _prefix_allowed_tokens_fn(self):
        from lmformatenforcer import JsonSchemaParser, SequenceParser, StringParser
        from lmformatenforcer.tokenenforcer import TokenEnforcer

        from model.answer_schema import answer_json_schema

        if self._enforcer_data is None:
            self._enforcer_data = _enforcer_tokenizer_data(self.tokenizer)
        parser = SequenceParser(
            [StringParser("<answer>"), JsonSchemaParser(answer_json_schema()), StringParser("</answer>")]
        )
        enforcer = TokenEnforcer(self._enforcer_data, parser)

        def allowed(_batch_id, sent):
            return enforcer.get_allowed_tokens(sent.tolist()).allowed_tokens

        return allowed


def _enforcer_tokenizer_data(tokenizer):
    """The token table lm-format-enforcer needs: (id, text, starts a word) for every regular token."""
    from lmformatenforcer.tokenenforcer import TokenEnforcerTokenizerData

    vocab_size = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    regular = []
    for tok in range(vocab_size):
        if tok in special:
            continue
        after_zero = tokenizer.decode([zero, tok])[1:]  # keeps a leading space that decode alone drops
        alone = tokenizer.decode([tok])
        regular.append((tok, after_zero, len(after_zero) > len(alone)))

    def decode(tokens):
        return tokenizer.decode(tokens).rstrip("\ufffd")

    return TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, vocab_size)


def _slots_supported(tokenizer) -> bool:
    """Whether type slots can be read under this tokenizer (labels start with distinct tokens).

    Without label priors the slot recorder is optional: a tokenizer it cannot address leaves the
    relations without a label distribution (confidence null) instead of failing generation.
    """
    from model.engines.label_bias import label_first_tokens

    try:
        label_first_tokens(tokenizer)
    except ValueError as exc:
        log.warning(
            "no label distributions under this tokenizer (combination confidence will be null): %s", exc
        )
        return False
    return True


def _effective_confidence_calibration(config: EngineConfig):
    """The confidence calibration shipped with a bundled model or an adapter folder (None: raw score)."""
    from model.confidence import load_confidence_calibration
    from model.embedded import resolve_model_and_adapter

    try:
        _, adapter = resolve_model_and_adapter(config.model, config.adapter_path)
    except ValueError:
        return None
    return load_confidence_calibration(adapter) if adapter else None


def _effective_label_bias(config: EngineConfig) -> dict[str, float]:
    """The configured label priors, or (config unset) the ones calibrated for a bundled model."""
    if config.label_bias is not None:
        return dict(config.label_bias)
    from model.embedded import bundled_decision

    return dict(bundled_decision(config.model).get("label_bias") or {})


def _dtype(name: str, device: str):
    import torch

    if name == "auto":
        return (
            torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        )
    return getattr(torch, name)


def _load(config: EngineConfig):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model.embedded import resolve_model_and_adapter, resolve_model_path

    if not config.allow_download:
        # Offline unless the user asked for a hub model explicitly (nothing downloads behind their back).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base, adapter_path = resolve_model_and_adapter(config.model, config.adapter_path)
    path, local_only = resolve_model_path(base, allow_network=config.allow_download)
    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=local_only, dtype=_dtype(config.dtype, device)
    ).to(device)
    model_id = engine_model_id(config)
    if adapter_path:
        from peft import PeftModel

        if not os.path.isdir(adapter_path):
            raise ValueError(f"adapter folder not found: {adapter_path}")
        model = PeftModel.from_pretrained(model, adapter_path)
    log.info("loaded %s on %s in %.1fs", model_id, device, time.perf_counter() - started)
    return model, tokenizer, model_id
