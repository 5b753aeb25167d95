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

from model.prompting import DDI_TEMPLATES, NER_TEMPLATES, PromptConfig, build_messages, format_target
from schemas.answer import DDI_LABELS as _ANSWER_LABELS
from schemas.answer import DDI_TASK, DDI_TYPES, DRUGCOMB_TASK, no_comb_answer
from training.data import load_drugcomb, resolve_data_file, split_train_dev

TASKS = (DRUGCOMB_TASK, DDI_TASK, "ner")
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
    limit_per_task: int | None = None

    def validate(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if not 0.0 <= self.zh_fraction <= 1.0:
            raise ValueError("zh_fraction must be in [0, 1]")


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
    for r in train:
        lang = "zh" if rng.random() < config.zh_fraction else "en"
        prompt = PromptConfig(variant=f"taiyi_{lang}", context=config.context)
        nary.append(
            _row(
                DRUGCOMB_TASK,
                lang,
                build_messages(r.sentence, r.paragraph, prompt),
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
    rows = []
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
            answer = json.dumps(pairs or no_comb_answer(), ensure_ascii=False)
            user = DDI_TEMPLATES[lang].replace("{sentence}", sentence).replace("{drugs}", "; ".join(drugs))
            rows.append(_row(DDI_TASK, lang, user, f"<answer>{answer}</answer>", rec.get("id", n)))
    return rows


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
        rows += chosen[: config.limit_per_task] if config.limit_per_task else chosen
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
