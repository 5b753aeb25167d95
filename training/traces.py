"""Multi-agent reasoning traces (RexDrug): a generator writes the ``<think>`` rationale, a reviewer grades it.

* The **generator** sees the sentence, the abstract and the gold answer, and writes the four-section
  rationale ([1] clinical scenario, [2] candidate drugs and regimen focus, [3] combination reasoning and
  clinical effect, [4] extraction-oriented summary) without writing the answer itself.
* The **reviewer** scores six criteria 0-5 (format, medical correctness, semantic fidelity, consistency
  with gold, naturalness, usefulness) and returns JSON ``{"scores": {...}, "feedback": "..."}``.
* A trace passes only if every score >= ``pass_score`` (4); otherwise the generator tries again with the
  reviewer's feedback, at most ``max_attempts`` (3) times; failures are written as ``rejected`` rows
  (never used for training) and counted.

Both agents run on any engine of ``model.engines`` (OpenAI-compatible server for a strong teacher, vLLM,
transformers).  Offline, the ``template`` teacher writes a deterministic rationale from the gold answer
and the drug matcher, and the ``checks`` reviewer scores it with mechanical checks; every row says which
teacher and reviewer produced it, so template traces are never mistaken for model-written ones.

Output: JSONL, one row per sentence, appended as it goes; a rerun skips sentences already written.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from model.engines import EngineConfig, SamplingConfig, create_engine
from model.prompting import THINK_SECTIONS
from schemas.answer import COMB, NEG, POS, no_comb_answer

log = logging.getLogger(__name__)

CRITERIA = (
    "format",
    "medical_correctness",
    "semantic_fidelity",
    "consistency_with_gold",
    "naturalness",
    "usefulness",
)
TEMPLATE = "template"
CHECKS = "checks"
LABEL_WORDS = {
    POS: "a favourable effect",
    NEG: "an unfavourable effect (harm or loss of efficacy)",
    COMB: "no clear judgement of the effect",
}
_SECTION = re.compile(r"(?:^|(?<=\s))\[(\d)\]")
_CUES = re.compile(
    r"\b(combin\w*|plus|together with|in addition to|added to|co-?administ\w*|concomitant\w*|"
    r"versus|vs\.?|compared (?:with|to)|alone|or|followed by|with)\b",
    re.IGNORECASE,
)


class TraceRecord(Protocol):
    doc_id: str
    sentence: str
    paragraph: str
    relations: list[dict]
    mentions: list[str]


@dataclass
class AgentConfig:
    kind: str = TEMPLATE  # "template" / "checks" (offline), or "engine"
    engine: EngineConfig = field(default_factory=EngineConfig)
    sampling: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(max_new_tokens=512, temperature=0.7, top_p=0.9)
    )

    def validate(self) -> None:
        if self.kind not in (TEMPLATE, CHECKS, "engine"):
            raise ValueError(f"agent kind must be template, checks or engine, got {self.kind!r}")


@dataclass
class TraceConfig:
    output: str = "traces/drugcomb_train.jsonl"
    train_file: str = "drugcomb/final_train_set.jsonl"
    dev_fraction: float = 0.1  # traces are written for the train part only (dev stays untouched)
    split_seed: int = 13
    generator: AgentConfig = field(default_factory=AgentConfig)
    reviewer: AgentConfig = field(default_factory=lambda: AgentConfig(kind=CHECKS))
    max_attempts: int = 3
    pass_score: int = 4
    batch_size: int = 8
    limit: int | None = None

    def validate(self) -> None:
        if self.generator.kind == CHECKS:
            raise ValueError("generator.kind 'checks' is a reviewer; use template or engine")
        if self.reviewer.kind == TEMPLATE:
            raise ValueError("reviewer.kind must be checks or engine")
        if not 1 <= self.max_attempts <= 10:
            raise ValueError("max_attempts must be in 1..10")
        if not 0 <= self.pass_score <= 5:
            raise ValueError("pass_score must be in 0..5")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


# --- the template teacher and the mechanical reviewer ----------------------------------------------------


def template_rationale(record: TraceRecord, candidates: Sequence[str] | None = None) -> str:
    """Deterministic four-section rationale from the gold answer (TEMPLATE, not model-written)."""
    drugs = list(dict.fromkeys(candidates or record.mentions))
    scenario = _first_sentence(record.paragraph) or record.sentence
    cues = list(dict.fromkeys(m.group(0).lower() for m in _CUES.finditer(record.sentence)))
    s1 = [f"- Study context: {_clip(scenario, 160)}"]
    s2 = [f"- Drugs named in the target sentence: {', '.join(drugs) if drugs else 'none found'}."]
    if cues:
        s2.append(f"- Wording that links or separates them: {', '.join(repr(c) for c in cues[:4])}.")
    if record.relations:
        s3 = [
            f"- {' + '.join(r['ent_set'])}: given together; the sentence reports {LABEL_WORDS.get(r['type'], 'an effect')}."
            for r in record.relations
        ]
        others = [d for d in drugs if not any(d in r["ent_set"] for r in record.relations)]
        if others:
            s3.append(f"- {', '.join(others)}: not part of a reported combination here.")
        s4 = [
            f"- {len(record.relations)} combination(s) to extract, with their drugs as written in the sentence."
        ]
    else:
        s3 = [
            (
                "- No two drugs are reported as given together with an outcome in this sentence "
                "(they are listed, compared, alternatives or background)."
            )
        ]
        s4 = ["- Nothing to extract: no combination."]
    bodies = [s1, s2, s3, s4]
    return "\n".join(
        f"[{i}] {title}\n" + "\n".join(body) for i, (title, body) in enumerate(zip(THINK_SECTIONS, bodies), 1)
    )


def check_rationale(think: str, record: TraceRecord) -> tuple[dict[str, int], str]:
    """Mechanical review (``checks``): scores 0-5 per criterion from verifiable properties, plus feedback.

    format: the four sections in order; consistency_with_gold: every gold drug is discussed; fidelity:
    no drug that is absent from the sentence and the abstract; leak: no JSON answer or answer tags;
    the judgement criteria (medical correctness, naturalness, usefulness) cannot be checked
    mechanically and get a neutral 4 when the text is non-trivial.
    """
    problems: list[str] = []
    markers = [int(m.group(1)) for m in _SECTION.finditer(think)]
    fmt = 5 if markers[:4] == [1, 2, 3, 4] else (2 if set(markers) >= {1, 2, 3, 4} else 0)
    if fmt < 5:
        problems.append("use the four sections [1]..[4] in order")
    low = think.lower()
    gold_drugs = {d for r in record.relations for d in r["ent_set"]}
    missing = sorted(d for d in gold_drugs if d.lower() not in low)
    consistency = 5 if not missing else max(0, 5 - 2 * len(missing))
    if missing:
        problems.append(f"discuss {', '.join(missing)}")
    leaked = bool(re.search(r"<\s*/?\s*answer|\"ent_set\"|\[\s*\{", think))
    if leaked:
        problems.append("do not write the JSON answer or answer tags in the reasoning")
    text = (record.sentence + " " + record.paragraph).lower()
    foreign = [d for d in record.mentions if d.lower() in low and d.lower() not in text]
    fidelity = 0 if leaked else (5 if not foreign else 3)
    substantive = 4 if len(think.split()) >= 15 else 2
    if substantive < 4:
        problems.append("the reasoning is too short")
    scores = {
        "format": fmt,
        "medical_correctness": substantive,
        "semantic_fidelity": fidelity,
        "consistency_with_gold": consistency,
        "naturalness": substantive,
        "usefulness": substantive,
    }
    return scores, "; ".join(problems) or "ok"


# --- engine agents: prompts and reply parsing -----------------------------------------------------------


def generator_messages(record: TraceRecord, feedback: str | None = None) -> list[dict]:
    sections = "\n".join(f"[{i}] {t}" for i, t in enumerate(THINK_SECTIONS, 1))
    gold = json.dumps(record.relations or no_comb_answer(), ensure_ascii=False)
    user = (
        "Write the reasoning that leads from the target sentence to its drug-combination annotation.\n"
        f"Use exactly these four sections, each followed by short bullet points starting with '- ':\n{sections}\n"
        "Rules: reason from the text (who is treated, which drugs, how they are used together, what effect is "
        "reported); stay consistent with the gold annotation but do NOT write it out: no JSON, no <answer> "
        "tags, no mention of an annotation. 100-200 words. Reply with the four sections only.\n\n"
        f"Target sentence: {record.sentence}\n"
        f"Context paragraph: {record.paragraph}\n"
        f"Gold annotation (for you only; labels: POS favourable, NEG unfavourable, COMB unclear, "
        f"NO_COMB none): {gold}"
    )
    if feedback:
        user += f"\n\nA reviewer rejected your previous reasoning. Fix these points: {feedback}"
    return [
        {"role": "system", "content": "You are an expert clinical pharmacologist and annotator."},
        {"role": "user", "content": user},
    ]


def reviewer_messages(record: TraceRecord, think: str) -> list[dict]:
    gold = json.dumps(record.relations or no_comb_answer(), ensure_ascii=False)
    criteria = ", ".join(CRITERIA)
    user = (
        "Review a reasoning text written for a drug-combination extraction example. Score each criterion "
        f"from 0 (bad) to 5 (excellent): {criteria}. format = four sections [1]..[4] in order with bullet "
        "points; medical_correctness = pharmacology and clinical statements are right; semantic_fidelity = "
        "nothing invented beyond the sentence and context; consistency_with_gold = the reasoning supports "
        "exactly the gold annotation without writing it out; naturalness = fluent and concise; usefulness = "
        "would teach a model to extract the right combinations.\n"
        'Reply with JSON only: {"scores": {"format": n, ...}, "feedback": "what to fix"}\n\n'
        f"Target sentence: {record.sentence}\nContext paragraph: {record.paragraph}\nGold annotation: {gold}\n"
        f"Reasoning to review:\n{think}"
    )
    return [{"role": "user", "content": user}]


def clean_generated(text: str) -> str:
    """The rationale body: inside <think> when the teacher used tags, answer/JSON tails removed."""
    m = re.search(r"<think>(.*?)(?:</think>|$)", text, re.DOTALL | re.IGNORECASE)
    body = m.group(1) if m else text
    body = re.split(r"<\s*answer\s*>", body, flags=re.IGNORECASE)[0]
    start = _SECTION.search(body)
    return (body[start.start() :] if start else body).strip()


def parse_review(text: str) -> tuple[dict[str, int] | None, str]:
    """Scores (all six criteria, ints 0-5) and feedback from a reviewer reply; (None, reason) when unusable."""
    m = re.search(r"\{.*\}", text or "", re.DOTALL)
    if not m:
        return None, "reviewer reply holds no JSON object"
    try:
        data = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None, "reviewer reply is not valid JSON"
    raw = data.get("scores", data) if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return None, "reviewer JSON has no scores"
    scores: dict[str, int] = {}
    for c in CRITERIA:
        value = raw.get(c, raw.get(c.replace("_", " ")))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 5:
            return None, f"reviewer score {c!r} missing or out of 0-5"
        scores[c] = int(value)
    feedback = data.get("feedback") if isinstance(data, dict) else ""
    return scores, str(feedback or "")


# --- the loop --------------------------------------------------------------------------------------------


class TraceAgents:
    """Generator + reviewer with feedback rounds; writes one JSONL row per sentence."""

    def __init__(self, config: TraceConfig, *, generator_engine=None, reviewer_engine=None):
        config.validate()
        self.config = config
        self.generator_engine = generator_engine
        self.reviewer_engine = reviewer_engine
        if config.generator.kind == "engine" and generator_engine is None:
            self.generator_engine = create_engine(config.generator.engine)
        if config.reviewer.kind == "engine" and reviewer_engine is None:
            same = config.reviewer.engine == config.generator.engine and self.generator_engine is not None
            self.reviewer_engine = self.generator_engine if same else create_engine(config.reviewer.engine)

    @property
    def teacher_id(self) -> str:
        return (
            TEMPLATE
            if self.config.generator.kind == TEMPLATE
            else getattr(self.generator_engine, "model_id", "?")
        )

    @property
    def reviewer_id(self) -> str:
        return (
            CHECKS if self.config.reviewer.kind == CHECKS else getattr(self.reviewer_engine, "model_id", "?")
        )

    def generate(self, records: Sequence[TraceRecord], feedback: Sequence[str | None]) -> list[str]:
        if self.config.generator.kind == TEMPLATE:
            return [template_rationale(r) for r in records]
        results = self.generator_engine.generate(
            [generator_messages(r, f) for r, f in zip(records, feedback)], self.config.generator.sampling
        )
        return [clean_generated(r.text) for r in results]

    def review(self, records: Sequence[TraceRecord], thinks: Sequence[str]) -> list[tuple[dict | None, str]]:
        if self.config.reviewer.kind == CHECKS:
            return [check_rationale(t, r) for r, t in zip(records, thinks)]
        replies = self.reviewer_engine.generate(
            [reviewer_messages(r, t) for r, t in zip(records, thinks)], self.config.reviewer.sampling
        )
        return [parse_review(reply.text) for reply in replies]

    def passes(self, scores: dict[str, int] | None) -> bool:
        return scores is not None and all(scores[c] >= self.config.pass_score for c in CRITERIA)

    def run_batch(self, records: Sequence[TraceRecord]) -> list[dict]:
        """Rows for a batch: each sentence accepted within ``max_attempts`` or rejected (last attempt kept)."""
        pending = list(range(len(records)))
        feedback: list[str | None] = [None] * len(records)
        rows: list[dict | None] = [None] * len(records)
        history: list[list[dict]] = [[] for _ in records]
        for attempt in range(1, self.config.max_attempts + 1):
            if not pending:
                break
            batch = [records[i] for i in pending]
            thinks = self.generate(batch, [feedback[i] for i in pending])
            reviews = self.review(batch, thinks)
            still = []
            for i, think, (scores, note) in zip(pending, thinks, reviews):
                history[i].append({"attempt": attempt, "scores": scores, "feedback": note})
                ok = bool(think.strip()) and self.passes(scores)
                if ok or attempt == self.config.max_attempts:
                    rows[i] = self._row(records[i], think, scores, note, attempt, ok, history[i])
                else:
                    feedback[i] = note or "improve every criterion scored below the threshold"
                    still.append(i)
            pending = still
        return [r for r in rows if r is not None]

    def _row(self, record, think, scores, note, attempts, ok, history) -> dict:
        return {
            "doc_id": record.doc_id,
            "status": "accepted" if ok else "rejected",
            "think": think,
            "attempts": attempts,
            "scores": scores,
            "feedback": note,
            "history": history,
            "teacher": self.teacher_id,
            "reviewer": self.reviewer_id,
            "template": self.config.generator.kind == TEMPLATE,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def run(self, records: Sequence[TraceRecord], output: str | Path | None = None) -> dict[str, Any]:
        """Write rows for the records not yet in ``output`` (resumable); return counts."""
        out = Path(output or self.config.output)
        done = already_written(out)
        todo = [r for r in records if r.doc_id not in done]
        if self.config.limit is not None:
            todo = todo[: self.config.limit]
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_file() and out.stat().st_size and not out.read_bytes().endswith(b"\n"):
            with out.open("a", encoding="utf-8") as fh:  # a torn last row stays on its own line
                fh.write("\n")
        counts = {
            "skipped_existing": len(records) - len([r for r in records if r.doc_id not in done]),
            "accepted": 0,
            "rejected": 0,
            "attempts": 0,
        }
        from tqdm import tqdm

        with (
            out.open("a", encoding="utf-8") as fh,
            tqdm(total=len(todo), desc="traces", unit="sent", disable=None) as bar,
        ):
            for start in range(0, len(todo), self.config.batch_size):
                chunk = todo[start : start + self.config.batch_size]
                for row in self.run_batch(chunk):
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    counts[row["status"]] += 1
                    counts["attempts"] += row["attempts"]
                fh.flush()
                bar.update(len(chunk))
        log.info(
            "traces: %(accepted)d accepted, %(rejected)d rejected (dropped from training), "
            "%(skipped_existing)d already written",
            counts,
        )
        return counts


def already_written(path: Path) -> set[str]:
    """doc_ids of the rows already in a traces file; a torn last line (crash mid-write) is ignored."""
    done: set[str] = set()
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                done.add(str(json.loads(line)["doc_id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def _first_sentence(text: str) -> str:
    m = re.match(r"(.+?[.!?])(\s|$)", text.strip(), re.DOTALL)
    return (m.group(1) if m else text).strip()


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"
