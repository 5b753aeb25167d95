"""Taiyi-style multi-task instruction data: DrugComb n-ary, DDI13 pairs, drug NER; English and Chinese.

Every row is an SFT prompt-completion conversation plus ``task`` and ``lang`` columns:

* ``drugcomb``: the ``taiyi_en`` / ``taiyi_zh`` prompt of ``model.prompting``; target = the answer.
* ``ddi``: DDI13 sentence-level pairs (``data/ddi13/train.jsonl``); target = ``<answer>`` JSON of
  ``{"type": EFFECT|MECHANISM|ADVISE|INT, "ent_set": [a, b]}`` (``other`` pairs are negatives, left
  out; a sentence without a positive pair answers NO_COMB) — the format the DDI rewards read.
* ``ner``: drug mentions of DrugComb sentences (the corpus spans); target = ``<answer>`` JSON list of names.

The two-stage schedule (Taiyi): stage 1 trains on the task data (DrugComb), stage 2 on all tasks; each
stage is one ``rexdrug train sft`` run with ``data.rows_file`` pointing at that stage's rows, stage 2
starting from stage 1's adapter (``model.adapter``).  See configs/training/multitask_*.yaml.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.prompting import (
    DDI_TEMPLATES,
    NER_TEMPLATES,
    VARIANTS,
    PromptConfig,
    build_messages,
    ddi_prompt_config,
    format_target,
)
from schemas.answer import DDI_LABELS as _ANSWER_LABELS
from schemas.answer import DDI_TASK, DDI_TYPES, DRUGCOMB_TASK, no_comb_answer
from training.data import candidate_drug_finder, load_drugcomb, resolve_data_file, split_train_dev

TASKS = (DRUGCOMB_TASK, DDI_TASK, "ner")
DDI_HINT_SOURCES = ("gold", "found", "mixed")
LANGS = ("en", "zh")
DDI_LABELS = dict(zip(DDI_TYPES, _ANSWER_LABELS))  # corpus type -> answer label


@dataclass
class MultitaskConfig:
    output: str = "runs/multitask/rows.jsonl"
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    zh_fraction: float = 0.5  # share of rows with the Chinese template (seeded per row)
    seed: int = 13
    drugcomb_file: str = "drugcomb/final_train_set.jsonl"
    dev_fraction: float = 0.1  # the same DrugComb dev hold-out as training.data (never in these rows)
    split_seed: int = 13
    ddi_file: str = "ddi13/train.jsonl"
    context: str = "sentence"  # DrugComb prompt context: abstract | sentence | window
    window: int = 1  # neighbouring sentences each side for context=window
    # The DrugComb n-ary rows' prompt: "taiyi" (taiyi_en / taiyi_zh by the row's language), or one
    # model.prompting variant in English for every row (e.g. "compact": the shipped rexdrug-smol's, so a
    # stage-2 run on top of it keeps its prompt); with drugcomb_hints the matcher's candidate drugs are
    # listed as the sweep lists them.
    drugcomb_prompt: str = "taiyi"
    drugcomb_hints: bool = False
    # DDI13 rows: the prompt's "Drugs:" line from the corpus' entities ("gold") or from the drug
    # matcher, as an end-to-end run and the sweep list them ("found"), or each row one of the two
    # (seeded, "mixed").  The target is always the corpus' positive pairs.
    ddi_hints: str = "gold"
    # Seeded samples: at most this many rows per task ({task: n}); for DDI, ddi_positive_share of them
    # (when set) from sentences with a positive pair.  limit_per_task keeps the first N (file order).
    samples: dict[str, int] = field(default_factory=dict)
    ddi_positive_share: float | None = None
    limit_per_task: int | None = None

    def validate(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if not 0.0 <= self.zh_fraction <= 1.0:
            raise ValueError("zh_fraction must be in [0, 1]")
        if self.drugcomb_prompt != "taiyi" and self.drugcomb_prompt not in VARIANTS:
            raise ValueError(
                f"drugcomb_prompt must be 'taiyi' or one of {', '.join(VARIANTS)}, got {self.drugcomb_prompt!r}"
            )
        if self.drugcomb_prompt == "rexdrug":
            raise ValueError(
                "drugcomb_prompt=rexdrug asks for reasoning; multi-task rows have answer targets only"
            )
        if self.ddi_hints not in DDI_HINT_SOURCES:
            raise ValueError(f"ddi_hints must be one of {DDI_HINT_SOURCES}, got {self.ddi_hints!r}")
        bad = sorted(k for k, v in self.samples.items() if k not in TASKS or not isinstance(v, int) or v < 1)
        if bad:
            raise ValueError(f"samples must map tasks of {TASKS} to positive counts, got {self.samples}")
        if self.ddi_positive_share is not None and not 0.0 <= self.ddi_positive_share <= 1.0:
            raise ValueError("ddi_positive_share must be in [0, 1] or null")


def _row(task: str, lang: str, user: list[dict] | str, target: str, source_id: Any) -> dict:
    prompt = user if isinstance(user, list) else [{"role": "user", "content": user}]
    return {
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": target}],
        "task": task,
        "lang": lang,
        "source_id": str(source_id),
    }


def drugcomb_rows(config: MultitaskConfig, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(n-ary rows, NER rows) from the DrugComb train part (dev held out as in training.data)."""
    train, _dev = split_train_dev(load_drugcomb(config.drugcomb_file), config.dev_fraction, config.split_seed)
    nary, ner = [], []
    finder = candidate_drug_finder() if config.drugcomb_hints else None
    for r in train:
        lang = "zh" if rng.random() < config.zh_fraction else "en"
        if config.drugcomb_prompt == "taiyi":
            prompt = PromptConfig(variant=f"taiyi_{lang}", context=config.context, window=config.window)
        else:
            lang = "en"
            prompt = PromptConfig(
                variant=config.drugcomb_prompt,
                hints=config.drugcomb_hints,
                context=config.context,
                window=config.window,
            )
        hints = finder(r.sentence) if finder else None
        nary.append(
            _row(
                DRUGCOMB_TASK,
                lang,
                build_messages(r.sentence, r.paragraph, prompt, hints),
                format_target(r.relations),
                r.doc_id,
            )
        )
        lang = "zh" if rng.random() < config.zh_fraction else "en"
        ner.append(
            _row(
                "ner",
                lang,
                NER_TEMPLATES[lang].format(sentence=r.sentence),
                f"<answer>{json.dumps(r.mentions, ensure_ascii=False)}</answer>",
                r.doc_id,
            )
        )
    return nary, ner


def ddi_rows(config: MultitaskConfig, rng: random.Random) -> list[dict]:
    """DDI13 train rows; ``positive`` (a sentence with a positive pair) is kept for sampling."""
    rows = []
    finder = candidate_drug_finder() if config.ddi_hints != "gold" else None
    path = resolve_data_file(config.ddi_file)
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                drugs = [e["entity"] for e in rec.get("entities", [])]
                pairs = [
                    {"type": DDI_LABELS[rel["type"]], "ent_set": list(rel["ent_sets"])}
                    for rel in rec.get("relations", [])
                    if rel.get("type") in DDI_LABELS
                ]
                sentence = rec["context"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a DDI13 record ({exc})") from exc
            lang = "zh" if rng.random() < config.zh_fraction else "en"
            found = config.ddi_hints == "found" or (config.ddi_hints == "mixed" and rng.random() < 0.5)
            text = " ".join(sentence.split())  # as eval ddi and the sweep read the sentence
            if found:
                drugs = finder(text)
            answer = json.dumps(pairs or no_comb_answer(), ensure_ascii=False)
            if lang == "en":  # the request eval ddi and the sweep send (model.prompting's ddi variant)
                user = build_messages(text, None, ddi_prompt_config(), drugs)
            else:
                user = (
                    DDI_TEMPLATES[lang].replace("{sentence}", sentence).replace("{drugs}", "; ".join(drugs))
                )
            row = _row(DDI_TASK, lang, user, f"<answer>{answer}</answer>", rec.get("id", n))
            row["positive"] = bool(pairs)
            rows.append(row)
    return rows


def sample_rows(
    rows: list[dict], n: int, rng: random.Random, positive_share: float | None = None
) -> list[dict]:
    """A seeded sample of ``n`` rows (all when fewer), ``positive_share`` of them with ``positive`` set."""
    if n >= len(rows):
        return list(rows)
    if positive_share is None:
        return rng.sample(rows, n)
    pos = [r for r in rows if r.get("positive")]
    neg = [r for r in rows if not r.get("positive")]
    n_pos = min(len(pos), round(n * positive_share))
    n_neg = min(len(neg), n - n_pos)
    return rng.sample(pos, n_pos) + rng.sample(neg, n_neg)


def build_multitask_rows(config: MultitaskConfig) -> tuple[list[dict], dict[str, int]]:
    """All rows of the selected tasks, shuffled (seeded), with per-task/language counts."""
    config.validate()
    rng = random.Random(config.seed)
    by_task: dict[str, list[dict]] = {}
    if DRUGCOMB_TASK in config.tasks or "ner" in config.tasks:
        nary, ner = drugcomb_rows(config, rng)
        by_task[DRUGCOMB_TASK], by_task["ner"] = nary, ner
    if DDI_TASK in config.tasks:
        by_task[DDI_TASK] = ddi_rows(config, rng)
    rows = []
    for task in config.tasks:
        chosen = by_task[task]
        if task in config.samples:
            share = config.ddi_positive_share if task == DDI_TASK else None
            chosen = sample_rows(chosen, config.samples[task], rng, share)
        rows += chosen[: config.limit_per_task] if config.limit_per_task else chosen
    for row in rows:
        row.pop("positive", None)
    rng.shuffle(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[f"{r['task']}/{r['lang']}"] = counts.get(f"{r['task']}/{r['lang']}", 0) + 1
    return rows, counts


def write_rows(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_rows(path: str | Path) -> list[dict]:
    """SFT rows (prompt/completion) from a JSONL written by ``write_rows``; extra columns dropped."""
    rows = []
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"rows file not found: {p}")
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    rows.append({"prompt": row["prompt"], "completion": row["completion"]})
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ValueError(f"{p}:{n}: not an SFT row ({exc})") from exc
    return rows
