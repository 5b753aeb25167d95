"""The nightly sweep: PubMed in, a warehouse of normalized drug combinations out.

Stages (each a pure function from ``etl/`` or ``model/`` wired here with ``mapInArrow``):

    ingest -> refresh -> sentences -> candidates -> extract -> combinations -> commit -> kb -> refresh

Tasks (``SweepConfig.tasks``, ``schemas.answer.SWEEP_TASKS``): ``combinations`` (the default: DrugComb
sets, the ``combinations`` tables) and ``interactions`` (DDI13 drug pairs, the ``interactions`` table,
asked with a ``ddi`` prompt whose hints are the candidate sentence's stored drug mentions).  Each task is
its own model + prompt, so it has its own extraction keys, candidates, checkpoints (the digest names the
task) and rows in ``extractions``/``extraction_errors``; a candidate sentence is one extraction item per
task, and the run's counts (``n_candidates``, ``n_extracted``, ...) count items of every task.

Crash safety: every stage of a run writes under ``<warehouse>/_staging/<run_id>/``; nothing is visible
in the warehouse until the commit stage, which first drops a ``_COMMITTING`` marker (everything is
staged), then moves each staged dataset into ``<table>/run_id=<run_id>/`` (one atomic rename each) and
finally appends the run to the ``sweep_runs`` ledger.  On start, a staged run without the marker is
discarded (its work is redone: the same inputs give the same rows) and one with the marker is rolled
forward, so a sweep killed at any point and started again leaves the same tables as an uninterrupted
run: no duplicates, no loss.  Ingestion has its own per-file idempotency (``jobs/ingest.py``).

Resuming extraction: the discarded work is cheap to redo except the extraction (the engine reads every
candidate), so each extract task writes its partition's rows, once the partition is complete, to a
checkpoint beside the run folders (``_staging/_checkpoints/extractions/<config digest>/part-*.parquet``,
``etl/checkpoints.py``; temp file, fsync, rename: a file under its final name is a whole partition).
The next run takes a candidate from a checkpoint instead of the engine only when the checkpoint was
written under the same engine and prompt configuration and batch size (the folder's digest), for the
same extraction key and the same candidate row (its digest: sentence, offsets, abstract, mentions), and
holds a final answer; the rows keep their ``extracted_at`` and get the new run's id.  So a sweep killed
after k of n partitions sends only the other n - k to the engine, and its tables equal an uninterrupted
run's; ``n_resumed`` in the summary and ``sweep_runs`` says how many were taken.  The commit removes
every checkpoint once the run is in the ledger (a kill just before that leaves checkpoints of sentences
no later run selects again; the next commit removes them).

Incremental: a candidate sentence is extracted only when its key (pmid, pmid version, sentence text
hash, model id, prompt version) has no final row in the ``extractions`` table yet; a new model or
prompt version adds rows beside the old ones.  A row whose status is retryable
(``schemas.extraction.RETRYABLE_STATUSES``: the engine or the input failed, the model never answered)
is not final: the next sweep extracts that sentence again and adds a row beside the failed one
(history keeps both; ``current_extractions`` shows the latest, a final row before any failure).  A run
whose extractions all failed is committed with status "failed" in ``sweep_runs``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from etl.article_filters import ArticleFilters
from etl.candidates import SelectorConfig
from etl.config import deep_merge, from_dict, to_dict
from etl.pubmed.entrez import EntrezConfig, default_until, parse_day
from etl.warehouse import (
    RUNS_TABLE,
    SENTENCES_TABLE,
    STAGING,
    SWEEP_TABLE_SCHEMAS,
    WarehouseLayout,
    connect_readonly,
    final_extraction_sql,
    refresh,
    sql_string,
    write_parquet_atomic,
    writer_lock,
)
from jobs.progress import partition_id
from model.engines.base import EngineConfig
from model.prompting import PromptConfig, ddi_prompt_config, prompt_version
from schemas.answer import RETRYABLE_STATUSES, SWEEP_COMBINATIONS, SWEEP_INTERACTIONS, SWEEP_TASKS
from schemas.extraction import CANDIDATES, EXTRACTION_ERRORS, EXTRACTIONS, SWEEP_RUNS, SWEEP_SENTENCES
from schemas.spark import conform

log = logging.getLogger(__name__)

DEFAULT_MODEL = "rexdrug-smol"  # the embedded extraction model (SmolLM2-135M + our bundled LoRA)
COMMIT_MARKER = "_COMMITTING"
# The sweep's tables and views are declared in the warehouse catalog (etl/warehouse.py), beside the
# article ones, so that every command's refresh keeps them: SWEEP_TABLE_SCHEMAS, SWEEP_TABLES, SWEEP_VIEWS.


def _embedded_default_prompt() -> PromptConfig:
    """The prompt the default model (``rexdrug-smol``) was trained with, read from its training record."""
    from model.embedded import bundled_prompt_config

    return bundled_prompt_config(DEFAULT_MODEL, fallback=PromptConfig(variant="compact", hints=True))


@dataclass
class InteractionsConfig:
    """The ``interactions`` task's model: the sweep's ``engine`` with the settings in ``engine`` changed
    (any ``EngineConfig`` key: ``model``, ``adapter_path``, ``kind``, ``sampling``...; empty: the sweep's
    own engine) and its prompt, a ``ddi`` variant (the variant decides the task)."""

    engine: dict[str, Any] = field(default_factory=dict)
    prompt: PromptConfig = field(default_factory=ddi_prompt_config)


@dataclass(frozen=True)
class TaskPlan:
    """One sweep task as it runs: its name (``schemas.answer.SWEEP_TASKS``), engine and prompt, and the
    model id and prompt version its rows carry (the task's part of the extraction key)."""

    name: str
    engine: EngineConfig
    prompt: PromptConfig

    @property
    def identity(self) -> tuple[str, str]:
        return resolve_model_identity(self.engine, self.prompt)


@dataclass
class SweepConfig:
    """Everything a sweep needs; the defaults here are the only defaults (YAML and CLI override)."""

    warehouse: Path = Path("warehouse")
    source: str = "files"  # "files" | "entrez" | "demo"
    inputs: list[str] = field(default_factory=list)  # files or folders (source "files")
    input_kind: str = "auto"  # "baseline" | "update" | "file" | "auto" (NLM's folder names)
    # source "entrez": first day, YYYY-MM-DD or YYYY/MM/DD; unset: the day after the last committed
    # Entrez sweep's window (the nightly form, jobs/nightly.py)
    since: str | None = None
    until: str | None = None  # last day (default: yesterday)
    datetype: str = "both"  # "edat" (new records) | "mdat" (revised records) | "pdat" | "both" (edat + mdat)
    # E-utilities settings (email, api_key, tool, base_url, batch_size, ...), as `rexdrug ingest` takes
    # them; NCBI_EMAIL / NCBI_API_KEY from the environment when unset
    entrez: EntrezConfig = field(default_factory=EntrezConfig)
    # The embedded default: rexdrug-smol (SmolLM2-135M + our LoRA adapter) with the prompt it was
    # trained on.  For the released RexDrug weights use prompt.variant=rexdrug (configs/model/).
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(model=DEFAULT_MODEL))
    prompt: PromptConfig = field(default_factory=_embedded_default_prompt)
    extract_partitions: int = 0  # 0: Spark's default parallelism
    batch_size: int = 16  # sentences per engine call
    threads_per_task: int = 0  # torch threads per extraction task; 0: cores / concurrent tasks
    max_candidates: int | None = None  # cap per run (the demo uses it); None: all
    master: str | None = None
    build_kb: bool = True
    # Combination rows below this confidence do not count in the KB the sweep builds (etl.kb's
    # min_confidence_sql, the one filter).  0.0 keeps every row, rows without a confidence too: on the
    # real-PubMed dev set no threshold raised rexdrug-smol's precision (data/realpm, issue 17).
    min_confidence: float = 0.0
    # which sentences go to the model (etl.candidates.SelectorConfig): "drugs" (>= 2 distinct drugs) or
    # "evidence" (also a co-administration cue or combination context); see the README for what each costs
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    # which articles are split and extracted (has abstract, languages, publication types, MeSH, years);
    # recorded with entrez.term in sweep_runs.filters
    filters: ArticleFilters = field(default_factory=ArticleFilters)
    progress_interval_s: float = 15.0  # the extract stage's progress line on stderr, from the driver
    # what the model is asked per candidate sentence (schemas.answer.SWEEP_TASKS): "combinations" (DrugComb
    # sets: the combinations tables) and/or "interactions" (DDI13 drug pairs: the interactions table)
    tasks: list[str] = field(default_factory=lambda: [SWEEP_COMBINATIONS])
    # the interactions task's engine settings and prompt (default: the sweep's engine, the ddi prompt)
    interactions: InteractionsConfig = field(default_factory=InteractionsConfig)

    def validate(self) -> None:
        if self.source not in ("files", "entrez", "demo"):
            raise ValueError(f"source must be files, entrez or demo, not {self.source!r}")
        if self.source == "files" and not self.inputs:
            raise ValueError("source 'files' needs at least one input file or folder (--input)")
        if self.source == "entrez":
            if self.since:
                since, until = self.entrez_window()
                if until < since:
                    raise ValueError(f"until ({until}) is before since ({since})")
            elif self.until:
                parse_day(self.until, "until")
            self.entrez.resolved()  # no email: a configuration error now, not after Spark has started
        if self.input_kind not in ("baseline", "update", "file", "auto"):
            raise ValueError(f"input_kind must be baseline, update, file or auto, not {self.input_kind!r}")
        if self.datetype not in ("edat", "mdat", "pdat", "both"):
            raise ValueError(f"datetype must be edat, mdat, pdat or both, not {self.datetype!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0 < self.progress_interval_s <= 3600:
            raise ValueError("progress_interval_s must be in (0, 3600] seconds")
        if self.max_candidates is not None and self.max_candidates < 0:
            raise ValueError("max_candidates must be >= 0")
        from etl.kb import validate_min_confidence

        validate_min_confidence(self.min_confidence)
        self.selector.validate()
        self.filters.validate()
        self.engine.validate()
        self.prompt.validate()
        self._validate_tasks()

    def _validate_tasks(self) -> None:
        known = ", ".join(SWEEP_TASKS)
        if not self.tasks:
            raise ValueError(f"tasks must name at least one task ({known})")
        unknown = [t for t in self.tasks if t not in SWEEP_TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) in tasks: {', '.join(map(repr, unknown))}; known: {known}")
        repeated = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if repeated:
            raise ValueError(f"tasks names {', '.join(repeated)} more than once")
        self.interactions_engine()  # a wrong interactions.engine key is an error even when the task is off
        for plan in self.task_plans():
            if plan.prompt.task != SWEEP_TASKS[plan.name]:
                key = "prompt" if plan.name == SWEEP_COMBINATIONS else f"{plan.name}.prompt"
                raise ValueError(
                    f"{key}.variant={plan.prompt.variant} asks for the {plan.prompt.task} task, but it is "
                    f"the {plan.name} task's prompt (the variant decides the task: "
                    + (
                        "interactions need variant ddi)"
                        if plan.name == SWEEP_INTERACTIONS
                        else "for interactions add interactions to tasks; they take interactions.prompt)"
                    )
                )

    def interactions_engine(self) -> EngineConfig:
        """The interactions task's engine: the sweep's engine with ``interactions.engine`` over it."""
        merged = deep_merge(to_dict(self.engine), self.interactions.engine)
        return from_dict(EngineConfig, merged, path="interactions.engine")

    def task_plans(self) -> list[TaskPlan]:
        """The configured tasks in the sweep's order (``SWEEP_TASKS``), each with its engine and prompt."""
        plans = []
        for name in SWEEP_TASKS:
            if name not in self.tasks:
                continue
            if name == SWEEP_COMBINATIONS:
                plans.append(TaskPlan(name, self.engine, self.prompt))
            else:
                plans.append(TaskPlan(name, self.interactions_engine(), self.interactions.prompt))
        return plans

    def entrez_window(self) -> tuple[date, date]:
        """The E-utilities window [since, until] as dates (until defaults to yesterday)."""
        since = parse_day(self.since, "since")
        until = parse_day(self.until, "until") if self.until else default_until()
        return since, until

    @property
    def entrez_datetypes(self) -> tuple[str, ...]:
        return ("edat", "mdat") if self.datetype == "both" else (self.datetype,)

    def prompt_warning(self) -> str | None:
        """Why the prompt may not suit the model: another LLM left on rexdrug-smol's trained prompt."""
        from model.embedded import BUNDLED_ADAPTERS

        if self.engine.kind.startswith("rule_") or self.engine.model in BUNDLED_ADAPTERS:
            return None
        if self.prompt != _embedded_default_prompt():
            return None
        return (
            f"engine.model={self.engine.model} is prompted with {DEFAULT_MODEL}'s training prompt "
            f"({prompt_version(self.prompt)}); set prompt.variant (e.g. rexdrug for the released RexDrug "
            "weights) to the format your model was trained on"
        )


@dataclass
class SweepSummary:
    run_id: str
    warehouse: str
    model_id: str | None  # the combinations task's (None when the run has no combinations task)
    prompt_version: str | None
    n_input_files: int = 0
    n_articles: int = 0
    n_sentences: int = 0
    n_candidates: int = 0
    n_skipped: int = 0
    n_extracted: int = 0
    n_combinations: int = 0
    n_errors: int = 0
    n_retried: int = 0  # candidates extracted again because their earlier extraction failed
    n_failed: int = 0  # extractions of this run that got no answer (retried by the next sweep)
    n_filtered: int = 0  # new articles that the filters left out (not split, not extracted)
    n_resumed: int = 0  # extractions taken from the checkpoints of an interrupted run (in n_extracted too)
    status: str = "committed"  # "failed": there were extractions and every one of them failed;
    # "up_to_date": a nightly Entrez sweep whose window an earlier run already covered (nothing ran)
    kb_drug_sets: int | None = None  # None: the KB was not rebuilt (build_kb=false)
    tasks: list[str] = field(default_factory=lambda: [SWEEP_COMBINATIONS])
    n_interactions: int = 0
    interactions_model_id: str | None = None
    interactions_prompt_version: str | None = None
    kb_interaction_pairs: int | None = None  # the KB's interactions section (None: not rebuilt)
    window_since: str | None = None  # source "entrez": the window fetched
    window_until: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    recovered_runs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class StageTimer:
    """Wall time per stage, logged as the sweep goes (the progress a person sees on stderr)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        log.info("stage %s ...", stage)
        pause_point(stage)
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
        log.info("stage %s done in %.1fs", stage, elapsed)


def pause_point(stage: str, count: int | None = None) -> None:
    """Crash-test hook: with REXDRUG_PAUSE_AT_STAGE=<stage>, write this process's pid to
    REXDRUG_PAUSE_MARKER and hang there.

    Points that are reached repeatedly pass ``count`` (how often so far) and pause once it reaches
    REXDRUG_PAUSE_AFTER (default 1): "extract-checkpoint" is reached in an extract task after each
    partition's checkpoint, so REXDRUG_PAUSE_AFTER=2 stops a one-core sweep after its second partition.
    The kill -9 recovery tests use it to stop a real sweep process at a known point (the pid names the
    process that paused: a Spark Python worker for points inside a task); unset, it is a no-op.
    """
    import os

    if os.environ.get("REXDRUG_PAUSE_AT_STAGE") != stage:
        return
    if count is not None and count < int(os.environ.get("REXDRUG_PAUSE_AFTER") or 1):
        return
    marker = os.environ.get("REXDRUG_PAUSE_MARKER")
    if marker:
        tmp = Path(f"{marker}.{os.getpid()}.tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(marker)  # the test never reads a marker without its pid
    log.warning("paused at stage %s for a crash test", stage)
    while True:
        time.sleep(1)


# --------------------------------------------------------------------------------------------------
# staging, commit and recovery


def recover_staging(layout: WarehouseLayout) -> list[str]:
    """Discard runs that never reached commit; finish the ones that did (roll forward)."""
    root = layout.root / STAGING
    recovered: list[str] = []
    if not root.is_dir():
        return recovered
    # "_checkpoints" (and any other "_" folder) is no run: it outlives the runs (etl/checkpoints.py)
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        marker = run_dir / COMMIT_MARKER
        if marker.exists():
            log.warning("finishing the commit of interrupted run %s", run_dir.name)
            _commit_staged(layout, run_dir.name, json.loads(marker.read_text()))
            recovered.append(run_dir.name)
        else:
            log.warning("discarding uncommitted staged run %s (its work is redone)", run_dir.name)
            shutil.rmtree(run_dir)
    return recovered


def _commit_staged(layout: WarehouseLayout, run_id: str, run_row: dict[str, Any]) -> None:
    """Move staged datasets into place (idempotent: a rename already done is skipped), then ledger."""
    for name in [SENTENCES_TABLE, *SWEEP_TABLE_SCHEMAS]:
        src = layout.staged(run_id, name)
        dest = layout.table_dir(name) / f"run_id={run_id}"
        if src.exists() and not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            src.rename(dest)
            pause_point("commit-rename")  # between two renames: the worst moment to die
    ledger_dir = layout.table_dir(RUNS_TABLE)
    ledger_dir.mkdir(parents=True, exist_ok=True)
    ledger_file = ledger_dir / f"run-{run_id}.parquet"
    if not ledger_file.exists():
        row = dict(run_row)
        for key in ("started_at", "finished_at"):
            if isinstance(row.get(key), str):
                row[key] = datetime.fromisoformat(row[key])
        for key in ("window_since", "window_until"):
            if isinstance(row.get(key), str):
                row[key] = date.fromisoformat(row[key])
        write_parquet_atomic(pa.Table.from_pylist([row], schema=SWEEP_RUNS), ledger_file)
    # the run's extractions are committed: no checkpoint is needed any more (a kill before this line
    # leaves checkpoints whose sentences the next run no longer selects; its commit removes them)
    shutil.rmtree(layout.checkpoints, ignore_errors=True)
    shutil.rmtree(layout.staging(run_id), ignore_errors=True)


def _dataset_exists(path: Path) -> bool:
    return path.is_dir() and any(path.rglob("*.parquet"))


# --------------------------------------------------------------------------------------------------
# worker-side functions (run inside Spark's Python workers; must be importable and picklable)

_RUNNER_CACHE: dict[str, Any] = {}
_ENGINE_CACHE: dict[str, Any] = {}


def _cached_runner(engine_cfg: EngineConfig, prompt_cfg: PromptConfig, threads: int):
    """One runner per engine and prompt per Python worker process, created on first use and kept across
    tasks; the runners of two sweep tasks on the same engine share one engine (one model in memory)."""
    key = json.dumps([to_dict(engine_cfg), to_dict(prompt_cfg)], sort_keys=True)
    runner = _RUNNER_CACHE.get(key)
    if runner is None:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        runner = build_runner(engine_cfg, prompt_cfg, engines=_ENGINE_CACHE)
        _RUNNER_CACHE[key] = runner
    return runner


def build_runner(engine_cfg: EngineConfig, prompt_cfg: PromptConfig, engines: dict[str, Any] | None = None):
    """The extraction runner of an engine and a prompt; with ``engines`` (engine config JSON -> engine),
    an engine built before for the same configuration is reused."""
    from etl.drugs import default_matcher
    from model.engines import create_engine
    from model.extraction import ExtractionRunner

    matcher = default_matcher()
    key = json.dumps(to_dict(engine_cfg), sort_keys=True)
    engine = engines.get(key) if engines is not None else None
    if engine is None:
        engine = create_engine(engine_cfg, matcher=matcher)
        if engines is not None:
            engines[key] = engine
    return ExtractionRunner(engine, prompt_cfg, matcher=matcher)


def make_extract_fn(
    engine_cfg: EngineConfig,
    prompt_cfg: PromptConfig,
    batch_size: int,
    threads: int,
    run_id: str,
    progress_dir: str | None = None,
    checkpoint_dir: str | None = None,
):
    """``mapInArrow`` function of the extract stage; with ``progress_dir``, each task writes its counts
    there after every batch (``jobs.progress``: the driver polls them); with ``checkpoint_dir``, each
    task writes its partition's rows there once the partition is done (``etl.checkpoints``)."""

    def extract(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from etl.checkpoints import CheckpointWriter, committed_checkpoints
        from model.extraction import extraction_rows

        runner = _cached_runner(engine_cfg, prompt_cfg, threads)
        partition = partition_id()
        counts = {"done": 0, "errors": 0}
        checkpoint = CheckpointWriter(checkpoint_dir) if checkpoint_dir is not None else None

        def run(chunk: list[dict[str, Any]], read: list[dict[str, Any]]) -> Iterator[pa.RecordBatch]:
            """Extract ``chunk`` (conformed rows); ``read`` are the same rows as the task read them, whose
            digests key the checkpoint (the driver digests the candidates file's rows when it resumes)."""
            rows = extraction_rows(chunk, runner, run_id)
            if progress_dir is not None:
                from jobs.progress import write_status

                counts["done"] += len(rows)
                counts["errors"] += sum(
                    r["parse_status"] in RETRYABLE_STATUSES or r["parse_status"] is None for r in rows
                )
                write_status(progress_dir, partition, counts["done"], counts["errors"])
            table = pa.Table.from_pylist(rows, schema=EXTRACTIONS)
            if checkpoint is not None:
                checkpoint.add(read, table)
            yield from table.to_batches()

        try:
            pending: list[dict[str, Any]] = []
            pending_read: list[dict[str, Any]] = []
            for batch in batches:
                # the candidates stage's rows, checked against their schema (a missing column fails loudly)
                pending.extend(conform(pa.Table.from_batches([batch]), CANDIDATES).to_pylist())
                pending_read.extend(batch.to_pylist())
                while len(pending) >= batch_size:
                    chunk, pending = pending[:batch_size], pending[batch_size:]
                    read, pending_read = pending_read[:batch_size], pending_read[batch_size:]
                    yield from run(chunk, read)
            if pending:
                yield from run(pending, pending_read)
            if checkpoint is not None and checkpoint.commit() is not None:
                pause_point("extract-checkpoint", count=len(committed_checkpoints(checkpoint_dir)))
        finally:
            if checkpoint is not None:
                checkpoint.abort()  # a partition that did not finish leaves no checkpoint

    return extract


def make_sentences_fn(selector: SelectorConfig | None = None, progress_dir: str | None = None):
    """``mapInArrow`` function of the sentence stage (``selector`` decides the candidates); with
    ``progress_dir``, each task writes how many articles it has split after every batch (``jobs.progress``)."""

    def sentences(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from etl.candidates import sentence_table
        from etl.drugs import default_matcher

        matcher = default_matcher()
        partition, done = partition_id(), 0
        for batch in batches:
            articles = pa.Table.from_batches([batch])
            hashes = {
                (p, v): h
                for p, v, h in zip(
                    *(articles.column(c).to_pylist() for c in ("pmid", "pmid_version", "abstract_hash"))
                )
            }
            sentences = sentence_table(articles, matcher=matcher, selector=selector)
            keys = zip(sentences.column("pmid").to_pylist(), sentences.column("pmid_version").to_pylist())
            sentences = sentences.append_column(
                "abstract_hash", pa.array([hashes[k] for k in keys], pa.string())
            )
            yield from conform(sentences, SWEEP_SENTENCES).to_batches()
            if progress_dir is not None:
                from jobs.progress import write_status

                done += batch.num_rows
                write_status(progress_dir, partition, done, 0)

    return sentences


def make_combinations_fn(which: int):
    """``which`` selects (combinations, combination_drugs, errors) from the one pure function."""

    def combos(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from etl.combinations import build_combination_tables
        from etl.drugs import normalize

        for batch in batches:
            tables = build_combination_tables(pa.Table.from_batches([batch]), normalize)
            yield from tables[which].to_batches()

    return combos


def make_interactions_fn(which: int, engine_kind: str):
    """``which`` selects (interactions, errors) from the one pure function (the interactions task)."""

    def interactions(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from etl.combinations import build_interaction_tables
        from etl.drugs import normalize

        for batch in batches:
            tables = build_interaction_tables(pa.Table.from_batches([batch]), normalize, engine_kind)
            yield from tables[which].to_batches()

    return interactions


# --------------------------------------------------------------------------------------------------
# driver


def resolve_model_identity(engine_cfg: EngineConfig, prompt_cfg: PromptConfig) -> tuple[str, str]:
    """The model id and prompt version stored with every row, known before any model is loaded."""
    from model.engines import engine_model_id

    return engine_model_id(engine_cfg), prompt_version(prompt_cfg)


def run_sweep(config: SweepConfig, spark=None) -> SweepSummary:
    """Run every stage once, the KB build included, under the warehouse's one writer lock: a second
    sweep, an ingest or a KB build on the same warehouse fails fast (``WarehouseBusy``) meanwhile."""
    config.validate()
    warning = config.prompt_warning()
    if warning:
        log.warning(warning)
    layout = WarehouseLayout(config.warehouse)
    with writer_lock(layout, "sweep"):
        return _run_sweep_locked(config, layout, spark)


def _run_sweep_locked(config: SweepConfig, layout: WarehouseLayout, spark) -> SweepSummary:
    from jobs.ingest import run_ingest
    from jobs.spark import get_spark, literal_path
    from schemas.spark import to_spark

    recovered = recover_staging(layout)
    plans = config.task_plans()
    identities = [plan.identity for plan in plans]  # (model id, prompt version) per task
    by_task = dict(zip((plan.name for plan in plans), identities))
    model_id, prompt_ver = by_task.get(SWEEP_COMBINATIONS, (None, None))
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    summary = SweepSummary(
        run_id,
        str(layout.root),
        model_id,
        prompt_ver,
        recovered_runs=recovered,
        tasks=[plan.name for plan in plans],
    )
    summary.interactions_model_id, summary.interactions_prompt_version = by_task.get(
        SWEEP_INTERACTIONS, (None, None)
    )
    timer = StageTimer()
    started = datetime.now(UTC)
    if config.source == "entrez":
        from jobs.nightly import resolve_window

        window = resolve_window(config.since, config.until, layout.root)
        if window is None:
            summary.status = "up_to_date"
            log.info(
                "up to date: an earlier sweep covered the E-utilities window up to %s",
                config.until or "yesterday",
            )
            return summary
        config = dataclasses.replace(config, since=window[0].isoformat(), until=window[1].isoformat())
        summary.window_since, summary.window_until = config.since, config.until
        log.info("E-utilities window %s .. %s", config.since, config.until)
    spark = spark or get_spark("rexdrug-sweep", master=config.master)
    staging = layout.staging(run_id)
    staging.mkdir(parents=True, exist_ok=True)

    with timer("ingest"):
        inputs, kind = resolve_inputs(config, layout)
        ingest = run_ingest(
            spark,
            inputs,
            layout.root,
            kind,
            run_id,
            refresh_database=False,
            progress_interval_s=config.progress_interval_s,
        )
        summary.n_input_files = ingest.files

    with timer("refresh"):  # the sentences and candidates stages read the current views
        refresh(layout)

    with timer("sentences"):
        new_articles, summary.n_filtered = _export_new_articles(layout, staging, config.filters)
        summary.n_articles = new_articles.num_rows
        if summary.n_filtered:
            log.info(
                "%d new article(s) left out by the filters (they stay in current_articles)",
                summary.n_filtered,
            )
        if summary.n_articles:
            from jobs.progress import StatusFileProgress

            progress_dir = staging / "work" / "sentences_progress"
            with StatusFileProgress(
                progress_dir,
                summary.n_articles,
                label="sentences",
                unit="articles",
                interval_s=config.progress_interval_s,
            ):
                (
                    spark.read.parquet(literal_path(staging / "work" / "new_articles.parquet"))
                    # one file of one row group is one task: spread it over every executor
                    .repartition(sentence_tasks(summary.n_articles, spark.sparkContext.defaultParallelism))
                    .mapInArrow(
                        make_sentences_fn(config.selector, str(progress_dir)), to_spark(SWEEP_SENTENCES)
                    )
                    .write.parquet(str(layout.staged(run_id, SENTENCES_TABLE)))
                )
            summary.n_sentences = spark.read.parquet(
                literal_path(layout.staged(run_id, SENTENCES_TABLE))
            ).count()

    with timer("candidates"):
        selected = []  # (plan, its candidates file, how many to extract), per task
        for plan, (task_model, task_prompt) in zip(plans, identities):
            path, n_candidates, n_skipped, n_retried = _select_candidates(
                layout, run_id, task_model, task_prompt, config.max_candidates, task=plan.name
            )
            summary.n_candidates += n_candidates
            summary.n_skipped += n_skipped
            summary.n_retried += n_retried
            if n_retried:
                log.info(
                    "%d %s candidate(s) whose earlier extraction failed are extracted again",
                    n_retried,
                    plan.name,
                )
            selected.append((plan, path, n_candidates))

    with timer("extract"):
        if summary.n_candidates:
            frames, n_todo_total, todo = [], 0, []
            for plan, path, n_candidates in selected:
                if not n_candidates:
                    continue
                checkpoints = layout.extract_checkpoints(extraction_config_digest(config, plan))
                todo_path, resumed_path, n_todo, n_resumed = _resume_extractions(path, checkpoints, run_id)
                summary.n_resumed += n_resumed
                if n_resumed:
                    log.info(
                        "%d of %d %s candidate(s) taken from the checkpoints of an interrupted run; %d to extract",
                        n_resumed,
                        n_candidates,
                        plan.name,
                        n_todo,
                    )
                if n_todo:
                    todo.append((plan, todo_path, n_todo, checkpoints))
                if resumed_path is not None:
                    frames.append(
                        spark.read.schema(to_spark(EXTRACTIONS)).parquet(literal_path(resumed_path))
                    )
                n_todo_total += n_todo
            parallelism = spark.sparkContext.defaultParallelism
            parts = [max(1, min(config.extract_partitions or parallelism, n)) for _, _, n, _ in todo]
            # the tasks' partitions run in one Spark stage: the threads are shared out over all of them
            threads = config.threads_per_task or (_default_threads(spark, sum(parts)) if parts else 1)
            for (plan, todo_path, _, checkpoints), n_parts in zip(todo, parts):
                extract = make_extract_fn(
                    plan.engine,
                    plan.prompt,
                    config.batch_size,
                    threads,
                    run_id,
                    progress_dir=str(staging / "work" / "extract_progress"),
                    checkpoint_dir=str(checkpoints),
                )
                frames.insert(
                    0,
                    spark.read.parquet(literal_path(todo_path))
                    .repartition(n_parts, "extraction_key")
                    .mapInArrow(extract, to_spark(EXTRACTIONS)),
                )
            extracted = _union(frames)
            from jobs.progress import StatusFileProgress

            with StatusFileProgress(
                staging / "work" / "extract_progress", n_todo_total, interval_s=config.progress_interval_s
            ):
                extracted.write.parquet(str(layout.staged(run_id, "extractions")))
            summary.n_extracted = spark.read.parquet(
                literal_path(layout.staged(run_id, "extractions"))
            ).count()
            summary.n_failed, first_failure = _count_failed(spark, layout.staged(run_id, "extractions"))
            if summary.n_failed:
                log.log(
                    logging.ERROR if summary.n_failed == summary.n_extracted else logging.WARNING,
                    "%d of %d extractions failed (the next sweep retries them), e.g. %s",
                    summary.n_failed, summary.n_extracted, first_failure,
                )  # fmt: skip
            if summary.n_extracted and summary.n_failed == summary.n_extracted:
                summary.status = "failed"

    with timer("combinations"):
        if summary.n_extracted:
            _relation_tables(spark, layout, run_id, plans, identities, summary)

    with timer("commit"):
        shutil.rmtree(staging / "work", ignore_errors=True)  # intermediate files, not tables
        run_row = {
            "run_id": run_id,
            "status": summary.status,
            "source": config.source,
            "model_id": summary.model_id,
            "prompt_version": summary.prompt_version,
            "n_articles": summary.n_articles,
            "n_sentences": summary.n_sentences,
            "n_candidates": summary.n_candidates,
            "n_skipped": summary.n_skipped,
            "n_extracted": summary.n_extracted,
            "n_combinations": summary.n_combinations,
            "n_errors": summary.n_errors,
            "n_retried": summary.n_retried,
            "n_failed": summary.n_failed,
            "stage_seconds": [{"stage": k, "seconds": v} for k, v in timer.seconds.items()],
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "window_since": summary.window_since,
            "window_until": summary.window_until,
            "datetype": config.datetype if config.source == "entrez" else None,
            "n_filtered": summary.n_filtered,
            "n_resumed": summary.n_resumed,
            "filters": json.dumps(
                {
                    "entrez_term": config.entrez.term if config.source == "entrez" else None,
                    "articles": config.filters.record(),
                },
                sort_keys=True,
            ),
            "tasks": summary.tasks,
            "n_interactions": summary.n_interactions,
            "interactions_model_id": summary.interactions_model_id,
            "interactions_prompt_version": summary.interactions_prompt_version,
        }
        (staging / COMMIT_MARKER).write_text(json.dumps(run_row))
        _commit_staged(layout, run_id, run_row)

    try:
        if config.build_kb:
            from jobs.kb import build_and_store_kbs

            with timer("kb"):  # still under the lock: no writer can change the warehouse in between
                combination_kb, interaction_kb = build_and_store_kbs(
                    layout.root, min_confidence=config.min_confidence, refresh_database=False
                )
                summary.kb_drug_sets = combination_kb.num_rows
                summary.kb_interaction_pairs = interaction_kb.num_rows
    finally:
        with timer("refresh"):  # the second and last refresh of the run: committed tables and the KB
            refresh(layout)
    summary.stage_seconds = timer.seconds
    return summary


def extraction_config_digest(config: SweepConfig, plan: TaskPlan) -> str:
    """What decides an extraction of ``plan``'s task besides its candidate row: a checkpoint is reused
    under the same only.  The task is part of it, so one task's rows never resume another's."""
    from etl.checkpoints import config_digest

    model_id, prompt_ver = plan.identity
    return config_digest(
        {
            "task": plan.name,
            "engine": to_dict(plan.engine),
            "prompt": to_dict(plan.prompt),
            "batch_size": config.batch_size,
            "model_id": model_id,
            "prompt_version": prompt_ver,
        }
    )


def _union(frames: list):
    """One DataFrame of every frame's rows (by column name)."""
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _relation_tables(spark, layout: WarehouseLayout, run_id: str, plans, identities, summary) -> None:
    """The combinations stage: each task's relation tables from its own extraction rows (its model id and
    prompt version), and the error rows of every task in one ``extraction_errors`` dataset."""
    from pyspark.sql import functions as F

    from jobs.spark import literal_path
    from schemas.spark import to_spark

    extractions = spark.read.parquet(literal_path(layout.staged(run_id, "extractions")))
    errors = []
    for plan, (task_model, task_prompt) in zip(plans, identities):
        rows = extractions.where((F.col("model_id") == task_model) & (F.col("prompt_version") == task_prompt))
        if plan.name == SWEEP_COMBINATIONS:
            for which, name in enumerate(("combinations", "combination_drugs")):
                schema = SWEEP_TABLE_SCHEMAS[name]
                rows.mapInArrow(make_combinations_fn(which), to_spark(schema)).write.parquet(
                    str(layout.staged(run_id, name))
                )
            errors.append(rows.mapInArrow(make_combinations_fn(2), to_spark(EXTRACTION_ERRORS)))
        else:
            schema = SWEEP_TABLE_SCHEMAS[SWEEP_INTERACTIONS]
            rows.mapInArrow(make_interactions_fn(0, plan.engine.kind), to_spark(schema)).write.parquet(
                str(layout.staged(run_id, SWEEP_INTERACTIONS))
            )
            errors.append(
                rows.mapInArrow(make_interactions_fn(1, plan.engine.kind), to_spark(EXTRACTION_ERRORS))
            )
    _union(errors).write.parquet(str(layout.staged(run_id, "extraction_errors")))

    def count(name: str) -> int:
        path = layout.staged(run_id, name)
        return spark.read.parquet(literal_path(path)).count() if path.exists() else 0

    summary.n_combinations = count("combinations")
    summary.n_interactions = count(SWEEP_INTERACTIONS)
    summary.n_errors = count("extraction_errors")


def _resume_extractions(
    candidates_path: Path, checkpoints: Path, run_id: str
) -> tuple[Path, Path | None, int, int]:
    """Split this run's candidates by the checkpoints of an interrupted run (``etl.checkpoints``).

    Returns the parquet of the candidates still to extract, the parquet of the resumed extraction rows
    (None when there are none), and both counts.  Without checkpoints nothing is read or written."""
    from etl.checkpoints import read_checkpoints, remove_temp_files, split_resumed

    remove_temp_files(checkpoints)  # a killed task's unfinished partition
    done = read_checkpoints(checkpoints)
    if not done.num_rows:
        return candidates_path, None, pq.read_metadata(candidates_path).num_rows, 0
    resumed, todo = split_resumed(pq.read_table(candidates_path), done, run_id)
    if not resumed.num_rows:
        return candidates_path, None, todo.num_rows, 0
    work = candidates_path.parent
    todo_path, resumed_path = work / "candidates_todo.parquet", work / "resumed_extractions.parquet"
    pq.write_table(todo, todo_path)
    pq.write_table(resumed, resumed_path)
    return todo_path, resumed_path, todo.num_rows, resumed.num_rows


ARTICLES_PER_SENTENCE_TASK = 2000  # bounded tasks: a lost executor redoes at most this many articles


def sentence_tasks(n_articles: int, parallelism: int) -> int:
    """Tasks of the sentence stage: every core busy, none with more than ARTICLES_PER_SENTENCE_TASK."""
    return max(1, min(n_articles, max(parallelism, -(-n_articles // ARTICLES_PER_SENTENCE_TASK))))


def _count_failed(spark, extractions: Path) -> tuple[int, str | None]:
    """Extractions with a retryable status (or none at all) and one of their reasons."""
    from pyspark.sql import functions as F

    from jobs.spark import literal_path

    status = F.col("parse_status")
    failed = spark.read.parquet(literal_path(extractions)).where(
        status.isNull() | status.isin(sorted(RETRYABLE_STATUSES))
    )
    n = failed.count()
    first = failed.select("error").first() if n else None
    return n, (first["error"] if first else None)


def _default_threads(spark, parts: int) -> int:
    import os

    cores = os.cpu_count() or 1
    concurrent = max(1, min(parts, spark.sparkContext.defaultParallelism))
    return max(1, cores // concurrent)


def _export_new_articles(layout: WarehouseLayout, staging: Path, filters=None) -> tuple[pa.Table, int]:
    """Current articles with an abstract whose sentences are not in the warehouse yet and that pass
    ``filters`` (``etl.article_filters.ArticleFilters``); also how many new ones the filters left out."""
    from etl.article_filters import ArticleFilters

    predicate, params = (filters or ArticleFilters()).sql("a")
    new = """FROM current_articles a
             WHERE a.abstract IS NOT NULL AND length(trim(a.abstract)) > 0
               AND NOT EXISTS (SELECT 1 FROM sentences s
                               WHERE s.pmid = a.pmid AND s.pmid_version = a.pmid_version
                                 AND s.abstract_hash = md5(a.abstract))"""
    with connect_readonly(layout.root) as con:
        n_new = con.execute(f"SELECT count(*) {new}").fetchall()[0][0]
        table = con.sql(
            f"""SELECT a.pmid, a.pmid_version, a.title, a.abstract, a.chemicals, a.mesh_headings,
                       md5(a.abstract) AS abstract_hash
                {new} AND {predicate}
                ORDER BY a.pmid, a.pmid_version""",
            params=params,
        ).to_arrow_table()
    if table.num_rows:
        (staging / "work").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, staging / "work" / "new_articles.parquet")
    return table, n_new - table.num_rows


def _select_candidates(
    layout: WarehouseLayout,
    run_id: str,
    model_id: str,
    prompt_ver: str,
    cap: int | None,
    task: str = SWEEP_COMBINATIONS,
) -> tuple[Path, int, int, int]:
    """Candidate sentences of current articles not yet extracted with this model and prompt (``task``'s).

    A sentence counts as extracted only when it has a final row (the model answered); one whose
    extractions all failed (retryable statuses) is a candidate again.  Returns the staged parquet path,
    the number of candidates to extract, the number skipped because they were extracted before and,
    among the candidates, the number being retried.  Sentences come from the warehouse and from this
    run's stage.
    """
    staged_sentences = layout.staged(run_id, SENTENCES_TABLE)
    out = layout.staging(run_id) / "work" / task / "candidates.parquet"  # one folder per task
    out.parent.mkdir(parents=True, exist_ok=True)
    sources = ["SELECT * FROM current_sentences"]
    if _dataset_exists(staged_sentences):
        # relative to the warehouse (the connection's file_search_path): its folder name is no glob
        staged_glob = (staged_sentences.relative_to(layout.root) / "**" / "*.parquet").as_posix()
        sources.append(f"SELECT * FROM read_parquet({sql_string(staged_glob)})")
    keyed = f"""
        SELECT s.*, sha1(concat_ws('|', s.pmid, s.pmid_version, s.text_hash, $model_id, $prompt)) AS extraction_key
        FROM ({" UNION ALL BY NAME ".join(sources)}) s
        WHERE s.is_candidate"""
    todo = f"""
        SELECT k.* FROM ({keyed}) k
        WHERE NOT EXISTS (SELECT 1 FROM extractions e
                          WHERE e.extraction_key = k.extraction_key AND {final_extraction_sql("e")})"""
    limit = f" LIMIT {int(cap)}" if cap is not None else ""
    select = f"""
        SELECT t.extraction_key, t.pmid, t.pmid_version, t.sentence_index,
               t.start::INTEGER AS sentence_start, t."end"::INTEGER AS sentence_end,
               t.text AS sentence_text, t.text_hash, t.mentions,
               a.abstract AS context,
               $model_id AS model_id, $prompt AS prompt_version
        FROM ({todo}) t JOIN current_articles a USING (pmid, pmid_version)
        ORDER BY t.pmid, t.pmid_version, t.sentence_index{limit}"""
    params = {"model_id": model_id, "prompt": prompt_ver}
    with connect_readonly(layout.root) as con:
        n_keyed = con.execute(f"SELECT count(*) FROM ({keyed})", params).fetchone()[0]
        n_todo = con.execute(f"SELECT count(*) FROM ({todo})", params).fetchone()[0]
        con.execute(f"COPY ({select}) TO {sql_string(out.as_posix())} (FORMAT parquet)", params)
        n_retried = con.execute(
            """SELECT count(*) FROM read_parquet($path) c
               WHERE EXISTS (SELECT 1 FROM extractions e WHERE e.extraction_key = c.extraction_key)""",
            {"path": out.as_posix()},
        ).fetchone()[0]
    n = min(n_todo, cap) if cap is not None else n_todo
    return out, n, n_keyed - n_todo, n_retried


def resolve_inputs(config: SweepConfig, layout: WarehouseLayout) -> tuple[list[Path], str]:
    """The XML files (or folders) to ingest and their NLM kind ("auto": from NLM's folder names)."""
    if config.source == "demo":
        from etl.paths import data_path

        return [data_path(*DEMO_BASELINE), data_path(*DEMO_UPDATE)], "auto"
    if config.source == "entrez":
        from jobs.ingest import land_entrez

        since, until = config.entrez_window()
        return land_entrez(config.entrez, since, until, config.entrez_datetypes, layout.root), "entrez"
    return [Path(p) for p in config.inputs], config.input_kind


# Real NLM records bundled for the demo (see data/pubmed/README.md): a 2026 baseline sample and the
# next update file's sample, which deletes and revises records.
DEMO_BASELINE = (
    "pubmed",
    "pmparser",
    "tests",
    "testthat",
    "pubmed_sample",
    "baseline",
    "pubmed26n1334.xml.gz",
)
DEMO_UPDATE = (
    "pubmed",
    "pmparser",
    "tests",
    "testthat",
    "pubmed_sample",
    "updatefiles",
    "pubmed26n1335.xml.gz",
)
