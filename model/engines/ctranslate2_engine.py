"""CTranslate2 engine (CPU, int8 kernels): the merged model converted once, label priors applied.

The model (base + LoRA, merged with peft) is converted by CTranslate2's transformers converter into
``cache_dir()/models/ct2/`` once, like the embedded model (``model.embedded``): written to a temp dir
and renamed, under a file lock, keyed by the base model, the adapter's digest, the compute type and the
CTranslate2 version (``converted_model_dir``).  Later loads are offline.

Label priors (``model.engines.label_bias``): CTranslate2 has no logits hook, so they are applied by
verify-and-resume, exact for greedy decoding.  Every batch is decoded greedily without priors, keeping
each step's logits; at each ``"type": "`` slot the biased choice (logits plus the priors at the labels'
first tokens, as the transformers engine adds them) is compared with the token decoded.  Where they
agree at every slot the unbiased output *is* the biased one (priors change no other step).  Where a
slot disagrees, the row is decoded again from its prompt + its tokens up to the slot + the biased
label token, and checked the same way from there on.  Only rows whose decision the priors change pay a
second prefill.  The unbiased label log-probabilities at every slot are recorded as the transformers
engine records them (each result's ``slots``), so relation confidence works.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

from model.engines.base import Engine, EngineConfig, EngineResult, SamplingConfig, engine_model_id
from schemas.answer import DRUGCOMB_TASK

log = logging.getLogger(__name__)

# What the converted folder holds; written last, so a folder without it is incomplete.
_MARKER = "rexdrug-ct2.json"
_TAIL_TOKENS = 6  # generated tokens decoded to recognise a slot (as model.engines.label_bias)


class CTranslate2Engine(Engine):
    def __init__(self, config: EngineConfig):
        super().__init__()
        try:
            import ctranslate2
        except ImportError as exc:  # pragma: no cover - it is a dependency
            raise ValueError(
                "engine.kind=ctranslate2 needs the ctranslate2 package (pip install ctranslate2)"
            ) from exc
        from transformers import AutoTokenizer

        from model.engines.label_bias import label_first_tokens
        from model.engines.transformers_engine import _effective_confidence_calibration, _effective_label_bias

        self.config = config
        folder = ensure_converted_model(config)
        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        marker = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
        self.end_ids = [int(t) for t in marker["eos_token_ids"]]
        self.generator = ctranslate2.Generator(
            str(folder), device="cpu", compute_type=config.compute_type, intra_threads=config.threads or 0
        )
        self.model_id = engine_model_id(config)
        self.label_bias = _effective_label_bias(config)
        self.confidence_calibration = _effective_confidence_calibration(config)
        self.first_tokens = label_first_tokens(self.tokenizer)
        self._label_of_token = {tok: label for label, tok in self.first_tokens.items()}
        self.record_label_logprobs = False
        self._greedy = True
        self.stats = {
            "prompt_tokens": 0,
            "generated_tokens": 0,
            "seconds": 0.0,
            "batches": 0,
            "resumed_rows": 0,
        }
        log.info("loaded %s (%s) in %.1fs", self.model_id, folder, time.perf_counter() - started)

    # -- generation ----------------------------------------------------------------------------------

    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, batch: list[list[dict]], sampling: SamplingConfig | None = None) -> list[EngineResult]:
        sampling = sampling or self.config.sampling
        if sampling.constrained:
            raise ValueError("engine.kind=ctranslate2 cannot constrain decoding (sampling.constrained=false)")
        prompts = [self.tokenizer(self.render(m), add_special_tokens=False)["input_ids"] for m in batch]
        generated: list[list[int]] = [[] for _ in prompts]
        slots: list[list[dict]] = [[] for _ in prompts]
        for idx in length_groups([len(p) for p in prompts], self.config.batch_size):
            out = self._generate_rows([prompts[i] for i in idx], sampling)
            for i, (ids, row_slots) in zip(idx, out):
                generated[i], slots[i] = ids, row_slots
        return [
            EngineResult(self.tokenizer.decode(ids, skip_special_tokens=True), slots=tuple(row_slots))
            for ids, row_slots in zip(generated, slots)
        ]

    def relation_confidence(
        self, label_logprobs: dict[str, float] | None, position: int = 0, task: str = DRUGCOMB_TASK
    ) -> float | None:
        from model.confidence import model_confidence

        return model_confidence(label_logprobs, self.confidence_calibration, position, task)

    def _generate_rows(
        self, prompts: list[list[int]], sampling: SamplingConfig
    ) -> list[tuple[list[int], list[dict]]]:
        """Generated ids and slot records of each prompt, priors applied (verify-and-resume, see module doc)."""
        done: list[tuple[list[int], list[dict]] | None] = [None] * len(prompts)
        # rows still to decode: (row, tokens fixed so far after the prompt, slot records of those tokens)
        pending = [(i, [], []) for i in range(len(prompts))]
        while pending:
            starts = [prompts[i] + fixed for i, fixed, _ in pending]
            budgets = [sampling.max_new_tokens - len(fixed) for _, fixed, _ in pending]
            results = self._decode(starts, max(budgets), sampling)
            resumed = []
            for (i, fixed, records), (ids, logits) in zip(pending, results):
                ids = ids[: sampling.max_new_tokens - len(fixed)]
                cut, forced, new_records = self._check_slots(fixed, ids, logits)
                if forced is None:
                    done[i] = (fixed + ids, records + new_records)
                elif len(fixed) + cut + 1 >= sampling.max_new_tokens:  # the forced label is the last token
                    done[i] = (fixed + ids[:cut] + [forced], records + new_records)
                else:
                    resumed.append((i, fixed + ids[:cut] + [forced], records + new_records))
            self.stats["resumed_rows"] += len(resumed)
            pending = resumed
        return done  # type: ignore[return-value]

    def _decode(self, starts: list[list[int]], max_new: int, sampling: SamplingConfig):
        """One CTranslate2 batch: (generated ids, per-step logits or None) per start sequence."""
        import numpy as np

        # every step's logits come back: the slots' label distributions are always recorded (confidence)
        kwargs = {
            "max_length": max(1, max_new),
            "include_prompt_in_result": False,
            "end_token": self.end_ids,
            "return_logits_vocab": True,
        }
        if sampling.greedy:
            kwargs["sampling_topk"] = 1
        else:
            import ctranslate2

            if sampling.seed is not None:
                ctranslate2.set_random_seed(sampling.seed)
            kwargs.update(
                sampling_topk=0, sampling_topp=sampling.top_p, sampling_temperature=sampling.temperature
            )
        self._greedy = sampling.greedy
        tokens = [self.tokenizer.convert_ids_to_tokens(s) for s in starts]
        started = time.perf_counter()
        results = self.generator.generate_batch(tokens, **kwargs)
        self.stats["seconds"] += time.perf_counter() - started
        self.stats["batches"] += 1
        self.stats["prompt_tokens"] += sum(len(s) for s in starts)
        out = []
        shortest = min(len(s) for s in starts)
        for start, r in zip(starts, results):
            ids = [t for t in r.sequences_ids[0] if t not in self.end_ids]
            self.stats["generated_tokens"] += len(ids) + (len(ids) < max_new)  # + the end token, if it came
            steps = r.logits[0] if r.logits else None
            if steps is not None:
                # a batch is prefilled up to its shortest prompt; a longer prompt's remaining tokens are fed
                # in the decoding loop, and their steps' logits come first
                skip = len(start) - shortest
                steps = [np.asarray(s).reshape(-1) for s in steps[skip : skip + len(ids)]]
                if len(steps) != len(ids):
                    raise RuntimeError(f"CTranslate2 returned {len(steps)} logit steps for {len(ids)} tokens")
            out.append((ids, steps))
        return out

    def _check_slots(self, fixed: list[int], ids: list[int], logits) -> tuple[int, int | None, list[dict]]:
        """Walk the type slots of ``ids`` (decoded after ``fixed``): (position of the first slot where the
        priors choose another token, that token or None, the slot records up to and including it)."""
        import numpy as np

        records: list[dict] = []
        if logits is None:
            return len(ids), None, records
        for step, token in enumerate(ids):
            history = fixed + ids[:step]
            tail = self.tokenizer.decode(history[-_TAIL_TOKENS:], skip_special_tokens=True)
            if not _is_slot(tail):
                continue
            row = logits[step].astype(np.float64)
            if self._greedy and row[token] < row.max():  # the logits must be the step that chose ``token``
                raise RuntimeError(f"CTranslate2 logits do not match the decoded token at step {step}")
            logprobs = row - (row.max() + math.log(np.exp(row - row.max()).sum()))
            record = {
                "logprobs": {label: float(logprobs[tok]) for label, tok in self.first_tokens.items()},
                "label": None,
            }
            choice = token
            if self.label_bias:
                biased = row.copy()
                for label, value in self.label_bias.items():
                    biased[self.first_tokens[label]] += value
                choice = int(biased.argmax())
                if biased[choice] == biased[token]:  # a tie keeps the decoded token (same as no change)
                    choice = token
            record["label"] = self._label_of_token.get(choice)
            records.append(record)
            if choice != token:
                return step, choice, records
        return len(ids), None, records


# CTranslate2 prefills a batch only up to its shortest prompt and feeds the longer prompts' remaining
# tokens through the decoding loop, one step each: a batch whose prompts differ by 150 tokens spends 150
# sequential steps there (more than the ~30 tokens of an answer).  Batches hold prompts within this many
# tokens of the batch's shortest.
MAX_LENGTH_SPREAD = 24


def length_groups(
    lengths: list[int], batch_size: int, max_spread: int = MAX_LENGTH_SPREAD
) -> list[list[int]]:
    """Indices of ``lengths`` in batches of at most ``batch_size``, sorted by length, each batch's lengths
    within ``max_spread`` of its shortest."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if groups and len(groups[-1]) < batch_size and lengths[i] - lengths[groups[-1][0]] <= max_spread:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _is_slot(tail: str) -> bool:
    from model.engines.label_bias import _SLOT

    return bool(_SLOT.search(tail))


# -- conversion into the cache -------------------------------------------------------------------------


def _files_digest(folder: Path) -> str:
    """Identity of a local model folder: its JSON files whole, its weight files by size and their first
    and last MiB (a full hash of a multi-GB checkpoint at every engine start would cost minutes)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(file.name.encode())
        if file.suffix == ".json":
            digest.update(file.read_bytes())
        elif file.suffix in (".safetensors", ".bin"):
            size = file.stat().st_size
            digest.update(str(size).encode())
            with file.open("rb") as fh:
                digest.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                digest.update(fh.read(1 << 20))
    return digest.hexdigest()


def converted_model_dir(config: EngineConfig) -> Path:
    """Where the converted model for ``config`` lives: keyed by base, adapter digest, compute type and
    the CTranslate2 version (its model format is versioned with it)."""
    from etl.paths import cache_dir
    from model.embedded import EMBEDDED_NAME, embedded_model_dir, resolve_model_and_adapter
    from model.engines.base import _adapter_fingerprint

    base, adapter = resolve_model_and_adapter(config.model, config.adapter_path)
    if base in ("", EMBEDDED_NAME):
        base_key = f"embedded:{embedded_model_dir().name}"
    elif Path(base).expanduser().is_dir():
        base_key = f"folder:{_files_digest(Path(base).expanduser())}"
    else:
        base_key = f"hub:{base}"
    adapter_key = _adapter_fingerprint(adapter) if adapter else "none"
    version = importlib.metadata.version("ctranslate2")
    key = hashlib.sha256(
        json.dumps([base_key, adapter_key, config.compute_type, version]).encode()
    ).hexdigest()[:16]
    name = config.model if config.model in ("embedded", "rexdrug-smol") else Path(base).name or "model"
    if adapter and config.model != "rexdrug-smol":
        name += "+" + Path(adapter).name
    return cache_dir() / "models" / "ct2" / f"{name}-{config.compute_type}-{key}"


def is_converted(folder: Path) -> bool:
    return (folder / _MARKER).is_file()


def ensure_converted_model(config: EngineConfig, force: bool = False) -> Path:
    """Merge the adapter into the base and convert it with CTranslate2 once (atomic, locked)."""
    from model.embedded import build_once

    def build(tmp: Path) -> tuple[Path, dict]:
        eos_ids = _merge_and_convert(config, tmp / "merged", tmp / "model")
        shutil.rmtree(tmp / "merged")
        return tmp / "model", {
            "model": config.model,
            "adapter_path": config.adapter_path,
            "compute_type": config.compute_type,
            "ctranslate2": importlib.metadata.version("ctranslate2"),
            "eos_token_ids": eos_ids,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    what = f"{config.model} for CTranslate2 ({config.compute_type})"
    return build_once(converted_model_dir(config), _MARKER, build, what=what, force=force)


def _merge_and_convert(config: EngineConfig, merged: Path, out: Path) -> list[int]:
    """The base with its LoRA merged (float32, peft) saved to ``merged``, converted into ``out``; returns
    the ids that end generation (the generation config's, as transformers' generate stops on them)."""
    import ctranslate2
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model.embedded import resolve_model_and_adapter, resolve_model_path

    if not config.allow_download:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base, adapter = resolve_model_and_adapter(config.model, config.adapter_path)
    path, local_only = resolve_model_path(base, allow_network=config.allow_download)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local_only, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        if not os.path.isdir(adapter):
            raise ValueError(f"adapter folder not found: {adapter}")
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.save_pretrained(merged)
    tokenizer.save_pretrained(merged)
    eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    eos_ids = sorted({*([eos] if isinstance(eos, int) else (eos or [])), tokenizer.eos_token_id} - {None})
    del model
    ctranslate2.converters.TransformersConverter(str(merged), low_cpu_mem_usage=True).convert(
        str(out), quantization=config.compute_type
    )
    tokenizer.save_pretrained(out)  # the engine reads the tokenizer (and chat template) from here
    return eos_ids
