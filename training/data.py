"""Training examples from DrugComb: dev split, NO_COMB balancing, prompts, SFT and GRPO rows for trl.

* The official DrugComb release has train and test only; like the allenai baseline we hold out a seeded
  10% of train as the dev split (``dev_fraction``, ``split_seed``).  Test is never used for training.
* Prompts come from the one prompt builder, ``model.prompting`` (variants, hints, context mode); the
  candidate-drug hints come from the drug matcher (``etl.drugs``), as at inference, or from the
  corpus' own mention spans (``hints_source: spans``).
* Targets come from ``model.prompting.format_target``: answer only, or ``<think>`` + answer when the
  prompt asks for reasoning; the rationale comes from a traces JSONL (``training.traces``), or from the
  deterministic template teacher (``traces: template``).
* ``no_comb_ratio`` caps NO_COMB training sentences at that many per sentence with a combination
  (seeded sample); the dev split is never rebalanced, so dev numbers stay comparable.

SFT rows are trl's conversational prompt-completion format (``prompt``: system+user messages,
``completion``: one assistant message), so the loss covers the completion only.  GRPO rows carry the
``prompt`` plus the columns the rewards read (``gold``, ``sentence``, ``task``).
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.paths import data_path
from model.prompting import PromptConfig, build_messages, candidate_hints, format_target, prompt_version
from schemas.answer import DRUGCOMB_TASK

log = logging.getLogger(__name__)

HINT_SOURCES = ("matcher", "spans")
DRUGCOMB_TRAIN = "drugcomb/final_train_set.jsonl"
TEMPLATE_TRACES = "template"
MISSING_TRACE_POLICIES = ("drop", "template", "error")


@dataclass
class DataConfig:
    train_file: str = DRUGCOMB_TRAIN  # relative to data/, or a path
    dev_fraction: float = 0.1
    split_seed: int = 13
    prompt: PromptConfig = field(default_factory=PromptConfig)
    hints_source: str = "matcher"
    # Reasoning targets: a traces JSONL from `rexdrug train traces`, or "template"; None = answer only.
    traces: str | None = None
    missing_trace: str = "drop"  # a train sentence without an accepted trace: drop | template | error
    no_comb_ratio: float | None = None  # at most this many NO_COMB sentences per combination sentence
    sample_seed: int = 13
    limit: int | None = None  # first N training sentences (after split/balance), for quick runs
    dev_limit: int | None = None
    # Prebuilt SFT rows (JSONL of prompt/completion, e.g. `rexdrug train multitask`) instead of DrugComb.
    rows_file: str | None = None
    # Real-distribution sentences added to the DrugComb training split (round 4): a gold JSONL in DrugComb's
    # row format with a "split" field (``realpm/gold.jsonl``), its records of ``mix_split`` only (never
    # dev: dev is for choices), each ``mix_repeat`` times.  Prompts and hints are built exactly as for
    # DrugComb rows, i.e. as the sweep builds them (sentence, its abstract as context, matcher hints).
    mix_file: str | None = None
    mix_split: str = "train"
    mix_repeat: int = 1
    # DrugComb train sentences kept (a seeded sample, file order) next to the mix: a replay of the old
    # distribution so a short continued run does not forget it; None keeps all.
    replay: int | None = None

    def validate(self) -> None:
        if not 0.0 <= self.dev_fraction < 1.0:
            raise ValueError(f"data.dev_fraction must be in [0, 1), got {self.dev_fraction}")
        if self.hints_source not in HINT_SOURCES:
            raise ValueError(f"data.hints_source must be one of {HINT_SOURCES}, got {self.hints_source!r}")
        if self.missing_trace not in MISSING_TRACE_POLICIES:
            raise ValueError(f"data.missing_trace must be one of {MISSING_TRACE_POLICIES}")
        if self.no_comb_ratio is not None and self.no_comb_ratio < 0:
            raise ValueError(f"data.no_comb_ratio must be >= 0 or null, got {self.no_comb_ratio}")
        if self.mix_file and self.mix_split != "train":
            raise ValueError(
                f"data.mix_split must be 'train' (the dev split is for choices), got {self.mix_split!r}"
            )
        if self.mix_repeat < 1:
            raise ValueError(f"data.mix_repeat must be >= 1, got {self.mix_repeat}")
        for name in ("limit", "dev_limit", "replay"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"data.{name} must be positive or null")


@dataclass
class Record:
    """One DrugComb sentence: gold answer in the model's format (names as written in the sentence)."""

    doc_id: str
    sentence: str
    paragraph: str
    relations: list[dict]  # [{"type", "ent_set"}]; [] = no combination
    mentions: list[str]  # the corpus' annotated drug mentions, in sentence order
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def has_combination(self) -> bool:
        return bool(self.relations)


def check_targets(config: DataConfig) -> None:
    """SFT targets need a rationale exactly when the prompt asks for reasoning (GRPO needs none)."""
    if config.rows_file:
        return
    if config.prompt.reasoning and not config.traces:
        raise ValueError(
            f"prompt variant {config.prompt.variant!r} asks for reasoning, so training targets need a "
            "<think> rationale: set data.traces to a traces JSONL (rexdrug train traces) or 'template', "
            "or use prompt.variant=rexdrug_answer_only"
        )
    if not config.prompt.reasoning and config.traces:
        raise ValueError(f"data.traces is set but prompt variant {config.prompt.variant!r} has no reasoning")


def resolve_data_file(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_file():
        return path
    return data_path(*Path(name).parts)


def _read_records(path: Path, what: str, keep=None) -> list[Record]:
    """Records of a JSONL in DrugComb's row format, ``keep(n, row)`` choosing rows (it may raise
    ``ValueError``); a malformed line is a configuration error naming the file and line."""
    records: list[Record] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if keep is None or keep(n, row):
                    records.append(record_from_json(row))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a {what} ({exc})") from exc
    return records


def load_drugcomb(path: str | Path) -> list[Record]:
    """DrugComb JSONL (allenai format) -> records; a malformed line is a configuration error."""
    return _read_records(resolve_data_file(str(path)), "DrugComb record")


def record_from_json(row: dict) -> Record:
    spans = sorted(row["spans"], key=lambda s: s["start"])
    text = {s["span_id"]: s["text"] for s in row["spans"]}
    relations, seen = [], set()
    for rel in row.get("rels") or []:
        ids = sorted(set(rel["spans"]), key=lambda i: next(s["start"] for s in spans if s["span_id"] == i))
        key = (rel["class"], tuple(ids))
        if key in seen:
            continue
        seen.add(key)
        relations.append({"type": rel["class"], "ent_set": [text[i] for i in ids]})
    mentions = list(dict.fromkeys(s["text"] for s in spans))
    return Record(row["doc_id"], row["sentence"], row.get("paragraph") or "", relations, mentions, raw=row)


def split_train_dev(
    records: Sequence[Record], fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """Seeded hold-out of ``ceil(fraction * n)`` records as dev; both keep the file order."""
    if fraction <= 0:
        return list(records), []
    order = sorted(range(len(records)), key=lambda i: records[i].doc_id)  # independent of file order
    random.Random(seed).shuffle(order)
    dev_idx = set(order[: math.ceil(fraction * len(records))])
    train = [r for i, r in enumerate(records) if i not in dev_idx]
    dev = [r for i, r in enumerate(records) if i in dev_idx]
    return train, dev


def balance_no_comb(records: Sequence[Record], ratio: float | None, seed: int) -> list[Record]:
    """Keep every combination sentence and at most ``ratio`` NO_COMB sentences per one (seeded sample)."""
    if ratio is None:
        return list(records)
    positives = [r for r in records if r.has_combination]
    negatives = [r for r in records if not r.has_combination]
    keep_n = min(len(negatives), round(ratio * len(positives)))
    kept = {id(r) for r in random.Random(seed).sample(negatives, keep_n)}
    return [r for r in records if r.has_combination or id(r) in kept]


# --- hints and rationales --------------------------------------------------------------------------------

HintsFn = Callable[[Record], list[str]]


def hints_function(config: DataConfig) -> HintsFn | None:
    """Candidate-drug names for the prompt (None when hints are off)."""
    if not config.prompt.hints:
        return None
    if config.hints_source == "spans":
        return lambda record: list(record.mentions)
    finder = candidate_drug_finder()
    return lambda record: finder(record.sentence)


def drug_matcher(matcher=None):
    """The drug matcher candidate hints come from (``etl.drugs.default_matcher()`` unless one is given),
    loaded now: a missing matcher is a configuration error up front, not in the middle of a run."""
    if matcher is not None:
        return matcher
    try:
        from etl.drugs import default_matcher
    except ImportError as exc:
        raise ValueError(
            f"drug matcher unavailable (etl.drugs.default_matcher): {exc}; "
            "use data.hints_source=spans or prompt.hints=false"
        ) from exc
    return default_matcher()


def candidate_drug_finder(matcher=None) -> Callable[[str], list[str]]:
    """Sentence -> candidate drug names, exactly as the inference side lists them
    (``model.prompting.candidate_hints`` over the drug matcher), so hints match at test time."""
    matcher = drug_matcher(matcher)
    return lambda sentence: candidate_hints(sentence, matcher)


def load_traces(path: str | Path) -> dict[str, str]:
    """doc_id -> accepted rationale text, from a traces JSONL written by ``training.traces``."""
    traces: dict[str, str] = {}
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"traces file not found: {p}")
    bad: list[int] = []
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # e.g. a row torn by a crash mid-write: that sentence has no trace
                bad.append(n)
                continue
            if isinstance(row, dict) and row.get("status") == "accepted" and row.get("think"):
                traces[str(row["doc_id"])] = row["think"]
    if bad:
        log.warning("%s: %d unreadable line(s) skipped (first: line %d)", p, len(bad), bad[0])
    return traces


class Rationales:
    """Where ``<think>`` texts come from: a traces file, the template teacher, or both."""

    def __init__(self, config: DataConfig):
        self.config = config
        self.from_file: dict[str, str] = {}
        if config.traces and config.traces != TEMPLATE_TRACES:
            self.from_file = load_traces(config.traces)
        self.dropped = 0

    def think(self, record: Record, hints: Sequence[str] | None) -> str | None:
        if not self.config.traces:
            return None
        if self.config.traces == TEMPLATE_TRACES:
            return _template(record, hints)
        text = self.from_file.get(record.doc_id)
        if text is not None:
            return text
        if self.config.missing_trace == "template":
            return _template(record, hints)
        if self.config.missing_trace == "error":
            raise ValueError(f"no accepted trace for doc_id {record.doc_id} in {self.config.traces}")
        return None


def _template(record: Record, hints: Sequence[str] | None) -> str:
    from training.traces import template_rationale

    return template_rationale(record, candidates=hints)


# --- rows for trl ----------------------------------------------------------------------------------------


def prompt_messages(record: Record, prompt: PromptConfig, hints: Sequence[str] | None) -> list[dict]:
    return build_messages(record.sentence, record.paragraph, prompt, hints=hints)


def sft_row(record: Record, prompt: PromptConfig, hints: Sequence[str] | None, think: str | None) -> dict:
    return {
        "prompt": prompt_messages(record, prompt, hints),
        "completion": [{"role": "assistant", "content": format_target(record.relations, think=think)}],
    }


def grpo_row(record: Record, prompt: PromptConfig, hints: Sequence[str] | None) -> dict:
    return {
        "prompt": prompt_messages(record, prompt, hints),
        "gold": json.dumps(record.relations, ensure_ascii=False),
        "sentence": record.sentence,
        "doc_id": record.doc_id,
        "task": DRUGCOMB_TASK,
    }


@dataclass
class Splits:
    """Train/dev records after split, balancing and limits, with what was done to them."""

    train: list[Record]
    dev: list[Record]
    stats: dict[str, Any]


# Independent evaluation files (the data hold-out rule): no training row may come from them.
HOLDOUT_SOURCES = ("pubmed20n1016", "medline16n0902")


def load_mix(path: str | Path, split: str) -> list[Record]:
    """The ``split`` records of a gold JSONL in DrugComb's row format with ``split`` and ``source`` fields;
    a record of a hold-out file, or no record of that split, is a configuration error."""
    path = resolve_data_file(str(path))

    def keep(n: int, row: dict) -> bool:
        if row.get("split") != split:
            return False
        if any(str(row.get("source") or "").startswith(h) for h in HOLDOUT_SOURCES):
            raise ValueError(
                f"{path}:{n}: record {row.get('doc_id')!r} comes from hold-out file "
                f"{row['source']!r}, which is never trained on"
            )
        return True

    records = _read_records(path, "gold record", keep)
    if not records:
        raise ValueError(f"{path}: no records of split {split!r}")
    return records


def load_splits(config: DataConfig) -> Splits:
    records = load_drugcomb(config.train_file)
    train, dev = split_train_dev(records, config.dev_fraction, config.split_seed)
    balanced = balance_no_comb(train, config.no_comb_ratio, config.sample_seed)
    if config.limit:
        balanced = balanced[: config.limit]
    if config.dev_limit:
        dev = dev[: config.dev_limit]
    mix_stats: dict[str, Any] = {}
    if config.replay is not None and config.replay < len(balanced):
        kept = set(random.Random(config.sample_seed).sample(range(len(balanced)), config.replay))
        balanced = [r for i, r in enumerate(balanced) if i in kept]
        mix_stats["replay"] = len(balanced)
    if config.mix_file:
        mix = load_mix(config.mix_file, config.mix_split)
        mix_stats.update(
            {
                "mix_file": str(config.mix_file),
                "mix_split": config.mix_split,
                "mix_records": len(mix),
                "mix_no_comb": sum(not r.has_combination for r in mix),
                "mix_repeat": config.mix_repeat,
            }
        )
        balanced = balanced + mix * config.mix_repeat
    stats = {
        "source": str(config.train_file),
        "records": len(records),
        "train_before_balance": len(train),
        "train": len(balanced),
        "train_no_comb": sum(not r.has_combination for r in balanced),
        "dev": len(dev),
        "dev_no_comb": sum(not r.has_combination for r in dev),
        "prompt_version": prompt_version(config.prompt),
        **mix_stats,
    }
    return Splits(balanced, dev, stats)


def build_sft_rows(
    records: Sequence[Record], config: DataConfig, hints_fn: HintsFn | None = None
) -> tuple[list[dict], dict[str, int]]:
    """SFT rows and counts (``dropped_no_trace``: sentences without an accepted rationale)."""
    rationales = Rationales(config)
    rows, dropped = [], 0
    for record in records:
        hints = hints_fn(record) if hints_fn else None
        think = rationales.think(record, hints)
        if config.prompt.reasoning and think is None:
            dropped += 1
            continue
        rows.append(sft_row(record, config.prompt, hints, think))
    if dropped:
        log.warning("%d of %d sentences dropped: no accepted reasoning trace", dropped, len(records))
    return rows, {"rows": len(rows), "dropped_no_trace": dropped}


def build_grpo_rows(
    records: Sequence[Record], config: DataConfig, hints_fn: HintsFn | None = None
) -> list[dict]:
    return [grpo_row(r, config.prompt, hints_fn(r) if hints_fn else None) for r in records]


def to_dataset(rows: list[dict]):
    """A ``datasets.Dataset`` of the rows (imported lazily; it is slow to import)."""
    from datasets import Dataset

    if not rows:
        raise ValueError("no training rows were built (check data.limit, traces and the data file)")
    return Dataset.from_list(rows)
