"""The engine interface: chat messages in, completion texts out, batched."""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from model.items import Prompt
from schemas.answer import DRUGCOMB_TASK

ENGINE_KINDS = (
    "transformers",
    "ctranslate2",
    "vllm",
    "openai",
    "rule_all_drugs",
    "rule_no_comb",
    "rule_cue",
    "rule_ddi_all_pairs",
)
# CPU compute types of the ctranslate2 engine (int8 kernels on AVX2; float32 gives transformers' answers)
CT2_COMPUTE_TYPES = ("int8", "int8_float32", "int16", "float32")


@dataclass
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = 0
    # Constrained decoding: the completion is forced to ``<answer>JSON</answer>`` matching the answer
    # schema (no reasoning).  Off by default: it costs speed and hides format errors we want to see.
    constrained: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("sampling.max_new_tokens must be >= 1")
        if self.temperature < 0 or not (0 < self.top_p <= 1):
            raise ValueError("sampling.temperature must be >= 0 and sampling.top_p in (0, 1]")


@dataclass
class EngineConfig:
    kind: str = "transformers"
    model: str = "embedded"  # 'embedded', a local HF folder, or a hub id (needs allow_download)
    adapter_path: str | None = None  # a LoRA adapter folder layered on the model (peft)
    allow_download: bool = False  # hub ids may be fetched only when the user asked for it
    device: str = "auto"  # transformers: auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    batch_size: int = 8  # prompts per forward pass (transformers) / per request chunk (vllm)
    threads: int | None = None  # torch CPU threads (None: torch default)
    # transformers KV cache: "dynamic" (grows per step) or "static" (preallocated for the batch; no
    # per-step copies, which is what batched CPU generation spends its time on)
    cache: str = "dynamic"
    # ctranslate2: weights (converted once into the cache per compute type) and kernels.  float32 gives
    # the transformers engine's answers (1.37x faster, bench_generation); int8 is 3.4x but changes answers.
    compute_type: str = "float32"
    # vLLM
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None
    # OpenAI-compatible HTTP
    # ``base_url`` may carry credentials (``http://user:pass@host/v1``, ``?api_key=...``): the engine
    # authenticates with them, but model ids, rows and logs only ever see ``public_url(base_url)``.
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable, never config
    served_model: str | None = None  # model name sent to the server (default: ``model``)
    concurrency: int = 8
    timeout_s: float = 120.0  # per network operation of one attempt (connect, each read, each write)
    max_retries: int = 4
    backoff_s: float = 1.0  # first retry wait; doubles per retry (with jitter) unless Retry-After says
    # Total wall-clock budget of one item: all its attempts *and* the waits between them.  An attempt
    # is cut off when it runs out (a server dripping one byte a second cannot hold it), and a retry
    # whose wait would end past it is not taken.
    request_deadline_s: float = 300.0
    retry_after_max_s: float = 60.0  # a server's Retry-After (seconds or HTTP-date) is honoured up to this
    # Circuit breaker: after this many consecutive connection failures/timeouts (any item) the server
    # is taken as down, and items fail at once with "engine_unavailable" instead of each waiting out
    # its timeouts; after ``breaker_cooldown_s`` one probe request is let through, and its success
    # closes the circuit again.  0 = never open it.
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    structured_output_field: str = "structured_outputs"  # structured_outputs (vLLM) | response_format
    # Label priors at the answer's type slot (transformers and vllm; see model.engines.label_bias): a
    # calibrated decision threshold.  None = the one shipped with a bundled model, {} = none at all.
    label_bias: dict[str, float] | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def validate(self) -> None:
        if self.kind not in ENGINE_KINDS:
            raise ValueError(f"engine.kind must be one of {', '.join(ENGINE_KINDS)}, got {self.kind!r}")
        if self.batch_size < 1 or self.concurrency < 1 or self.tensor_parallel_size < 1:
            raise ValueError(
                "engine.batch_size, engine.concurrency and engine.tensor_parallel_size must be >= 1"
            )
        if self.max_retries < 0 or self.timeout_s <= 0:
            raise ValueError("engine.max_retries must be >= 0 and engine.timeout_s > 0")
        if self.kind == "openai" and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"engine.base_url must be http(s)://..., got {public_url(self.base_url)!r}")
        if not self.request_deadline_s > 0:
            raise ValueError(f"engine.request_deadline_s must be > 0, got {self.request_deadline_s!r}")
        for name in ("backoff_s", "retry_after_max_s", "breaker_cooldown_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"engine.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.breaker_failures < 0:
            raise ValueError(
                f"engine.breaker_failures must be >= 0 (0 = no circuit breaker), got {self.breaker_failures!r}"
            )
        if self.structured_output_field not in ("structured_outputs", "response_format"):
            raise ValueError("engine.structured_output_field must be structured_outputs or response_format")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"engine.dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.cache not in ("dynamic", "static"):
            raise ValueError(f"engine.cache must be dynamic or static, got {self.cache!r}")
        from model.engines.label_bias import validate_label_bias

        validate_label_bias(self.label_bias)
        if self.label_bias and self.kind not in ("transformers", "ctranslate2", "vllm"):
            raise ValueError(
                "engine.label_bias needs the transformers, ctranslate2 or vllm engine (it biases the "
                f"label choice); kind is {self.kind!r}"
            )
        if self.kind == "ctranslate2":
            self._validate_ctranslate2()
        self.sampling.validate()

    def _validate_ctranslate2(self) -> None:
        if self.compute_type not in CT2_COMPUTE_TYPES:
            raise ValueError(
                f"engine.compute_type must be one of {', '.join(CT2_COMPUTE_TYPES)}, got {self.compute_type!r}"
            )
        if self.device not in ("auto", "cpu"):
            raise ValueError(
                f"engine.kind=ctranslate2 runs on the CPU (engine.device=cpu or auto), got {self.device!r}"
            )
        if self.sampling.constrained:
            raise ValueError(
                "engine.kind=ctranslate2 has no constrained decoding: set sampling.constrained=false "
                "or use engine.kind=transformers"
            )
        if not self.sampling.greedy:
            from model.embedded import bundled_decision

            priors = (
                self.label_bias
                if self.label_bias is not None
                else bundled_decision(self.model).get("label_bias")
            )
            if priors:
                raise ValueError(
                    "engine.kind=ctranslate2 applies label priors to greedy decoding only "
                    "(sampling.temperature=0), or set engine.label_bias={}"
                )


def engine_model_id(config: EngineConfig) -> str:
    """The model id stored with every extraction row: known from the config, before any model loads.

    It is part of the sweep's incremental key, so a different model or adapter must give a different
    id: an adapter is identified by its folder name *and* a hash of its files (retraining into the same
    folder is a new model).
    """
    if config.kind.startswith("rule_"):
        return f"rule:{config.kind.removeprefix('rule_')}"
    if config.kind == "openai":
        # never the credentials: the id is printed and stored in every row (and a rotated key is
        # the same model, so it must not change the incremental key either)
        return f"openai:{config.served_model or config.model}@{public_url(config.base_url)}"
    from model.embedded import BUNDLED_ADAPTERS, resolve_model_and_adapter

    if config.model in BUNDLED_ADAPTERS:
        # the fingerprint covers rexdrug_training.json, so the shipped label priors are part of it
        _, folder = resolve_model_and_adapter(config.model, config.adapter_path)
        model = f"{config.model}@{_adapter_fingerprint(folder).split('@')[1]}"
    else:
        model = "embedded:SmolLM2-135M-Instruct" if config.model == "embedded" else config.model
        if config.adapter_path:
            model += f"+adapter:{_adapter_fingerprint(config.adapter_path)}"
    if config.label_bias is not None:  # an explicit decision setting changes the outputs
        model += "+label_bias:" + (
            ",".join(f"{k}={v:g}" for k, v in sorted(config.label_bias.items())) or "none"
        )
    if config.kind == "ctranslate2":  # int8 weights answer differently: the compute type is part of the model
        return f"ctranslate2-{config.compute_type}:{model}"
    return model if config.kind == "transformers" else f"{config.kind}:{model}"


# Query parameters that carry a credential (api_key, key, access_token, X-Amz-Signature, ...).
_SECRET_PARAM = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def public_url(url: str) -> str:
    """``url`` without its credentials: no ``user:password@``, no secret-named query parameters.

    A URL without either comes back unchanged (so ids made before stay the same).
    """
    return _strip_credentials(url, None)


def redact_secrets(text: str) -> str:
    """``text`` (a log line, an error message) with the credentials of every URL in it as ``***``."""
    return _URL_IN_TEXT.sub(lambda m: _strip_credentials(m.group(0), "***"), text)


def _strip_credentials(url: str, mask: str | None) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL we can take apart: show nothing of it
        return mask or ""
    netloc, changed = parts.netloc, False
    if "@" in netloc:
        netloc, changed = (f"{mask}@" if mask else "") + netloc.rpartition("@")[2], True
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            kept = [
                (k, mask) if _SECRET_PARAM.search(k) else (k, v)
                for k, v in pairs
                if mask or not _SECRET_PARAM.search(k)
            ]
            query, changed = urlencode(kept, safe="*"), True
    return urlunsplit(parts._replace(netloc=netloc, query=query)) if changed else url


def _adapter_fingerprint(path: str) -> str:
    import hashlib
    import os
    from pathlib import Path

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"adapter folder not found: {path}")
    from model.confidence import CONFIDENCE_FILE

    digest = hashlib.sha256()
    # The confidence calibration maps scores after the fact; it changes no output, so refitting it
    # must not make every sentence "new" to the sweep's incremental key.
    for file in sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix in (".json", ".safetensors", ".bin") and p.name != CONFIDENCE_FILE
    ):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return f"{os.path.basename(os.path.normpath(path))}@{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class EngineResult:
    """One completion: its text, or the error that left the item without one (a request that failed
    after retries has text "" and its message here, so one bad item never sinks a batch), and the
    label log-probabilities the engine recorded at the answer's type slots, in order: one
    ``{"logprobs": {label: logprob}, "label": label generated there or None}`` per slot (the
    transformers engine; () for engines that report none)."""

    text: str = ""
    error: str | None = None
    slots: tuple[dict, ...] = ()

    @property
    def first_slot_logprobs(self) -> dict[str, float] | None:
        """The label log-probabilities at the answer's first type slot (None when none was recorded)."""
        return self.slots[0]["logprobs"] if self.slots else None


class Engine(abc.ABC):
    """Turns a batch of chat conversations into one ``EngineResult`` each (same order).

    ``complete`` is what the extraction runner calls, with one ``model.items.Prompt`` (messages and the
    item they were built for) per sentence: LLM engines generate from the messages; the rule baselines
    override it and read the items.
    """

    model_id: str = "unknown"

    @abc.abstractmethod
    def generate(
        self, batch: list[list[dict]], sampling: SamplingConfig | None = None
    ) -> list[EngineResult]: ...

    def complete(
        self, prompts: Sequence[Prompt], sampling: SamplingConfig | None = None
    ) -> list[EngineResult]:
        """One result per prompt, in order (default: generate from each prompt's messages)."""
        return self.generate([p.messages for p in prompts], sampling)

    def relation_confidence(
        self, label_logprobs: dict[str, float] | None, position: int = 0, task: str = DRUGCOMB_TASK
    ) -> float | None:
        """Confidence in [0, 1] of one extracted relation (the ``position``-th of its answer, of ``task``:
        ``schemas.answer``), given its type slot's label log-probabilities (None when the engine recorded none).  Default None: an engine that reports no log-probabilities
        (vLLM and OpenAI-compatible today) has nothing to calibrate (see ``model.confidence``)."""
        return None

    def close(self) -> None:  # engines holding GPUs/threads release them here
        pass


def wrap_answer(json_text: str) -> str:
    """Engines whose constrained output is bare JSON return it in the usual answer tags."""
    return f"<answer>{json_text.strip()}</answer>"
