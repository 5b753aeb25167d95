"""The ingest Spark job: PubMed XML files -> articles/deletions/errors Parquet datasets -> DuckDB views.

One row per source file -> one Spark partition per file (one task per file) -> ``mapInArrow`` with the
pure per-file stage ``etl.pubmed.envelope.envelope_batches`` -> three partitioned Parquet datasets.

Idempotence and crash safety (why the steps run in this order):

1. Under the warehouse's writer lock (the one ``ingest``, ``sweep`` and ``kb build`` share: a second
   writer fails fast), leftovers of a killed Spark job (``.spark-staging-*``, ``_temporary``) are
   removed; they are never read anyway (views read ``file_key=*/*.parquet`` only).
2. Each input is hashed and given its identity (``source_identity``: NLM's file name, the landed path
   under ``raw/``, else the name and the content digest); a file whose (identity, sha256) is already in
   the ledger is skipped unless ``force``.  A changed NLM file replaces its rows, with a warning.
3. The files about to be (re)written are first *removed* from the ledger (atomic rewrite), so a run that
   is killed from here on leaves them unledgered and the next run ingests them again.
4. Spark writes each dataset with dynamic partition overwrite, partitioned by ``file_key``: only the
   partitions of this run's files are replaced, through Spark's commit protocol, so retried or
   speculative task attempts never duplicate rows, and re-ingesting a file replaces its rows.
5. Partitions of this run's files that the new parse left empty (a file that no longer has deletions,
   say) are deleted: dynamic overwrite only touches partitions that receive rows.
6. The ledger rows of this run are added (atomic rewrite), then the DuckDB database is rebuilt with the
   whole warehouse catalog (the sweep's and the KB's views too), verified and renamed into place.

A kill -9 anywhere leaves, at worst, some of this run's partitions replaced and some not, with the
files not in the ledger; the next run redoes them, converging on the same tables as an uninterrupted run.
The warehouse must be a filesystem path that the driver and the executors both see (local disk for
local[*], a shared mount on a cluster).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from etl.pubmed.envelope import envelope_batches
from etl.warehouse import (
    ARTICLES_TABLE,
    DELETIONS_TABLE,
    ERRORS_TABLE,
    WarehouseLayout,
    file_key,
    ledger_upsert,
    ledger_without,
    read_ledger,
    refresh,
    write_parquet_atomic,
    writer_lock,
)
from schemas.articles import ENVELOPE, INGEST_INPUT, INGEST_LEDGER, PARTITION_COLUMN

log = logging.getLogger(__name__)

SOURCE_KINDS = ("auto", "baseline", "update", "entrez", "file")
XML_SUFFIXES = (".xml", ".xml.gz")
# NLM's own folder names for its two file series.
_KIND_BY_PARENT = {"baseline": "baseline", "updatefiles": "update"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATASETS = (
    ("article", ARTICLES_TABLE, "n_articles"),
    ("deletion", DELETIONS_TABLE, "n_deletions"),
    ("error", ERRORS_TABLE, "n_errors"),
)


@dataclass(frozen=True)
class IngestFile:
    """One resolved input file."""

    path: Path
    source_file: str  # the name rows carry: the NLM file name, "entrez/…" for landed responses, else the name
    source_kind: str
    file_order: int
    sha256: str
    key: str  # the file's identity in the warehouse (partition and ledger key), see ``source_identity``


@dataclass
class IngestSummary:
    run_id: str
    warehouse: str
    files: int = 0
    ingested: int = 0
    skipped: int = 0
    articles: int = 0
    deletions: int = 0
    errors: int = 0
    files_with_errors: list[str] = field(default_factory=list)
    incomplete_files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders searched recursively for ``*.xml`` / ``*.xml.gz``.  Sorted, deduplicated."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(XML_SUFFIXES))
            if not found:
                log.warning("no *.xml / *.xml.gz files under %s", path)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"input {path} does not exist")
    unique = {p.resolve(): None for p in files}
    return list(unique)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def is_nlm_file_name(name: str) -> bool:
    """NLM's own baseline/update file names (``pubmedYYnNNNN.xml[.gz]``), unique across its series."""
    from etl.pubmed.nlm import NAME_RE

    return NAME_RE.match(name) is not None


def source_identity(path: Path, layout: WarehouseLayout, sha256: str) -> tuple[str, str]:
    """``(source_file, key)``: the name a file's rows carry and the identity its rows are stored under.

    Re-ingesting an identity replaces its rows; two identities never touch each other.

    - NLM's own files are identified by their name: NLM names are unique across baseline and updates,
      and a re-downloaded (or corrected) file replaces itself.
    - Files landed under the warehouse's ``raw/`` folder (E-utilities responses) by their path below it,
      since their bare names repeat from one sweep window to the next; they are never rewritten.
    - Any other file by its name *and content*: two exports both called ``pubmed_result.xml`` from two
      folders are two files, both kept, while ingesting the same file again is still a no-op.
    """
    path = path.resolve()
    if path.is_relative_to(layout.raw):
        name = path.relative_to(layout.raw).as_posix()
        return name, file_key(name)
    if is_nlm_file_name(path.name):
        return path.name, file_key(path.name)
    return path.name, file_key(path.name, sha256)


def infer_kind(path: Path, layout: WarehouseLayout) -> str:
    path = path.resolve()
    if path.is_relative_to(layout.entrez_raw):
        return "entrez"
    return _KIND_BY_PARENT.get(path.parent.name, "file")


# Load order of files outside NLM's numbered series: after every NLM file, then by the time the file was
# written (an E-utilities response landed later holds a later state of its records).  Landed files are
# never rewritten (the sweep resumes beside them), so their order is stable across runs.
_KIND_RANK = {"entrez": 1, "file": 2}
_RANK_UNIT = 10**17  # > any NLM order (YY*10^6 + 10^5 + NNNN) and > any mtime in microseconds


def nlm_file_order(source_file: str, kind: str) -> int:
    from etl.pubmed.nlm import file_order

    return int(file_order(Path(source_file).name, kind))


def load_order(path: Path, source_file: str, kind: str) -> int:
    """``file_order`` of a file: NLM's for baseline/update files, else kind rank then write time."""
    if kind in ("baseline", "update"):
        return nlm_file_order(source_file, kind)
    return _KIND_RANK[kind] * _RANK_UNIT + path.stat().st_mtime_ns // 1000


def resolve_inputs(
    inputs: Sequence[str | os.PathLike[str]], layout: WarehouseLayout, source_kind: str = "auto"
) -> list[IngestFile]:
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"source kind {source_kind!r} is not one of {', '.join(SOURCE_KINDS)}")
    resolved: dict[str, IngestFile] = {}
    for path in expand_inputs(inputs):
        kind = infer_kind(path, layout) if source_kind == "auto" else source_kind
        sha256 = sha256_file(path)
        source_file, key = source_identity(path, layout, sha256)
        item = IngestFile(path, source_file, kind, load_order(path, source_file, kind), sha256, key)
        previous = resolved.get(key)
        if previous is not None and previous.sha256 != item.sha256:
            raise ValueError(
                f"two different input files are both named {source_file!r} ({previous.path} and {path}); "
                "an NLM file name identifies its rows in the warehouse"
            )
        resolved.setdefault(key, item)  # the same content twice (two copies of one file): one file
    return sorted(resolved.values(), key=lambda f: (f.file_order, f.source_file, f.key))


def land_entrez(config, since, until, datetypes: Sequence[str], warehouse_dir) -> list[Path]:
    """Land an E-utilities window's efetch XML under WAREHOUSE/raw/entrez/<datetype>/ (resumable).

    ``config`` is an ``etl.pubmed.entrez.EntrezConfig`` (email, api_key, tool, base_url, batch_size...);
    one landing folder per date type (a folder's manifest belongs to one query).  Returns every file
    landed there so far, in order; the ones already ingested are skipped by the ledger.  Used by
    ``rexdrug ingest --source entrez`` and by the sweep.
    """
    from etl.pubmed.entrez import sweep

    files: list[Path] = []
    for datetype in datetypes:
        out_dir = WarehouseLayout(warehouse_dir).entrez_raw / datetype
        landed = sweep(config, since, until, datetype, out_dir)
        log.info(
            "E-utilities %s %s..%s: %d file(s) landed under %s", datetype, since, until, len(landed), out_dir
        )
        files.extend(landed)
    return files


def default_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


# ----------------------------------------------------------------------------------------------------
# Warehouse housekeeping
# ----------------------------------------------------------------------------------------------------


def warehouse_lock(layout: WarehouseLayout):
    """The warehouse's one writer lock (shared with the sweep and the KB build)."""
    return writer_lock(layout, "ingest")


def remove_spark_leftovers(layout: WarehouseLayout) -> None:
    for leftover in layout.progress("ingest").parent.glob("ingest-*"):  # status files of a killed ingest
        shutil.rmtree(leftover, ignore_errors=True)
    for _, spec, _ in _DATASETS:
        dataset = layout.dataset(spec)
        if not dataset.is_dir():
            continue
        for leftover in [*dataset.glob(".spark-staging-*"), dataset / "_temporary"]:
            if leftover.exists():
                log.info("removing leftover of an interrupted run: %s", leftover)
                shutil.rmtree(leftover, ignore_errors=True)


def remove_empty_partitions(layout: WarehouseLayout, summaries: Sequence[dict]) -> None:
    """Delete the old partition of a dataset in which a re-ingested file now has no rows."""
    for summary in summaries:
        for _, spec, count in _DATASETS:
            if summary[count] == 0:
                shutil.rmtree(layout.partition_of_key(spec, summary[PARTITION_COLUMN]), ignore_errors=True)


def warn_changed_contents(ledger: pa.Table, todo: Sequence[IngestFile]) -> None:
    """A file identified by its name (NLM's) that comes back with another content replaces its rows:
    legitimate for a re-downloaded or corrected file, but never silent."""
    ledgered = dict(zip(ledger[PARTITION_COLUMN].to_pylist(), ledger["content_sha256"].to_pylist()))
    for f in todo:
        old = ledgered.get(f.key)
        if old is not None and old != f.sha256:
            log.warning(
                "%s: content changed since it was ingested (sha256 %s, now %s from %s); its rows are replaced",
                f.source_file, old, f.sha256, f.path,
            )  # fmt: skip


# ----------------------------------------------------------------------------------------------------
# The job
# ----------------------------------------------------------------------------------------------------


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]ingest[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


@contextmanager
def _task_progress(spark, progress, description: str, total: int) -> Iterator[None]:
    """A bar of finished Spark tasks (one per file) for the job(s) started inside the block."""
    import threading

    sc = spark.sparkContext
    group = f"rexdrug-ingest-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, description)
    task = progress.add_task(description, total=total)
    stop = threading.Event()

    def poll() -> None:
        tracker = sc.statusTracker()
        while not stop.wait(0.5):
            done = 0
            for job_id in tracker.getJobIdsForGroup(group):
                job = tracker.getJobInfo(job_id)
                for stage_id in job.stageIds if job else ():
                    stage = tracker.getStageInfo(stage_id)
                    done += stage.numCompletedTasks if stage else 0
            progress.update(task, completed=min(done, total))

    poller = threading.Thread(target=poll, name="ingest-progress", daemon=True)
    poller.start()
    try:
        yield
        progress.update(task, completed=total)
    finally:
        stop.set()
        poller.join()
        sc.setLocalProperty("spark.jobGroup.id", None)


def _write_datasets(
    spark,
    files: list[IngestFile],
    layout: WarehouseLayout,
    ingested_at: datetime,
    progress,
    progress_interval_s: float = 15.0,
) -> list[dict]:
    """The Spark part: parse every file (one task each) and write the three datasets.

    While the files are parsed, each task writes its record count to a status file and the driver logs
    ``ingest: 52000 records parsed, 2100.0/s, 0 errors`` every ``progress_interval_s`` (``jobs.progress``;
    the bar counts whole files, and one baseline file is 30,000 records)."""
    from functools import partial

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from jobs.progress import StatusFileProgress, TaskStatus
    from schemas.spark import to_spark

    ingested_at_us = (ingested_at - _EPOCH) // timedelta(microseconds=1)
    rows = [(str(f.path), f.source_file, f.file_order, ingested_at_us, f.key) for f in files]
    # numSlices == number of rows: one partition, hence one task, per file.
    rdd = spark.sparkContext.parallelize(rows, numSlices=len(rows))
    inputs = spark.createDataFrame(rdd, schema=to_spark(INGEST_INPUT))
    status_dir = layout.progress(f"ingest-{uuid.uuid4().hex[:12]}")
    parse = partial(envelope_batches, on_progress=TaskStatus(status_dir))
    envelope = inputs.mapInArrow(parse, to_spark(ENVELOPE)).persist(StorageLevel.MEMORY_AND_DISK)
    # Parquet INT96 timestamps are legacy; write what the Arrow schema says (microseconds, UTC).
    timestamp_conf = "spark.sql.parquet.outputTimestampType"
    previous = spark.conf.get(timestamp_conf, None)
    spark.conf.set(timestamp_conf, "TIMESTAMP_MICROS")
    try:
        for kind, spec, _ in _DATASETS:
            # The first write parses the files (the envelope is cached for the next ones).
            verb = "parse + write" if kind == "article" else "write"
            columns = [F.col(f"{kind}.{f.name}").alias(f.name) for f in spec.schema] + [
                F.col(PARTITION_COLUMN)
            ]
            records = (
                StatusFileProgress(
                    status_dir, None, label="ingest", unit="records parsed", interval_s=progress_interval_s
                )
                if kind == "article"
                else contextlib.nullcontext()
            )
            with records, _task_progress(spark, progress, f"{verb} {spec.name}", len(files)):
                (
                    envelope.where(F.col("kind") == kind)
                    .select(*columns)
                    .write.mode("overwrite")
                    .option(
                        "partitionOverwriteMode", "dynamic"
                    )  # explicit: never rely on the session default
                    .partitionBy(PARTITION_COLUMN)
                    .parquet(str(layout.dataset(spec)))
                )
        summaries = [
            row.asDict()
            for row in envelope.where(F.col("kind") == "file").select("file.*", PARTITION_COLUMN).collect()
        ]
    finally:
        envelope.unpersist()
        shutil.rmtree(status_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # not empty: another run's (none under the writer lock)
            status_dir.parent.rmdir()
        if previous is None:
            spark.conf.unset(timestamp_conf)
        else:
            spark.conf.set(timestamp_conf, previous)
    return summaries


def _ledger_rows(
    files: list[IngestFile], summaries: list[dict], run_id: str, ingested_at: datetime
) -> pa.Table:
    by_key = {s[PARTITION_COLUMN]: s for s in summaries}
    missing = sorted(f.source_file for f in files if f.key not in by_key)
    if missing:  # every task emits a summary row last; a missing one means output was lost
        raise RuntimeError(f"the ingest job returned no summary for: {', '.join(missing)}")
    rows = []
    for f in files:
        s = by_key[f.key]
        rows.append(
            {
                "source_file": f.source_file,
                "source_kind": f.source_kind,
                "file_order": f.file_order,
                "content_sha256": f.sha256,
                "n_articles": s["n_articles"],
                "n_deletions": s["n_deletions"],
                "n_errors": s["n_errors"],
                "complete": s["complete"],
                "run_id": run_id,
                "ingested_at": ingested_at,
                PARTITION_COLUMN: f.key,
            }
        )
    return pa.Table.from_pylist(rows, schema=INGEST_LEDGER)


def run_ingest(
    spark,
    inputs: Sequence[str | os.PathLike[str]],
    warehouse_dir: str | os.PathLike[str],
    source_kind: str = "auto",
    run_id: str | None = None,
    *,
    force: bool = False,
    show_progress: bool = True,
    refresh_database: bool = True,
    progress_interval_s: float = 15.0,
) -> IngestSummary:
    """Ingest XML files (or folders of them) into the warehouse and refresh its DuckDB database.

    ``source_kind``: "baseline" | "update" | "entrez" | "file", or "auto" (NLM's folder names
    ``baseline/`` and ``updatefiles/``, the warehouse's ``raw/entrez/``, else "file").
    ``file_order``: NLM's load order for baseline/update files; entrez and other files come after
    every NLM file, ordered by the time they were written.
    ``refresh_database``: rebuild the DuckDB database (its whole catalog, sweep views included) at the
    end; the sweep, which refreshes once itself right after, passes False.
    Runs under the warehouse's writer lock: during a sweep or a KB build it fails fast (``WarehouseBusy``).
    """
    started = time.monotonic()
    layout = WarehouseLayout(warehouse_dir)
    run_id = run_id or default_run_id()
    summary = IngestSummary(run_id=run_id, warehouse=str(layout.root))
    ingested_at = datetime.now(UTC)  # one value for the whole run
    with warehouse_lock(layout), _progress(show_progress) as progress:
        remove_spark_leftovers(layout)
        files = resolve_inputs(inputs, layout, source_kind)
        summary.files = len(files)
        ledger = read_ledger(layout)
        known = set(zip(ledger[PARTITION_COLUMN].to_pylist(), ledger["content_sha256"].to_pylist()))
        todo = [f for f in files if force or (f.key, f.sha256) not in known]
        summary.skipped = len(files) - len(todo)
        if summary.skipped:
            log.info("%d file(s) already ingested with the same content: skipped", summary.skipped)
        warn_changed_contents(ledger, todo)
        if todo:
            # Unledger first: from here until the new ledger is written, these files count as not done.
            write_parquet_atomic(ledger_without(ledger, keys=[f.key for f in todo]), layout.ledger)
            log.info("ingesting %d file(s) into %s (run %s)", len(todo), layout.root, run_id)
            summaries = _write_datasets(spark, todo, layout, ingested_at, progress, progress_interval_s)
            remove_empty_partitions(layout, summaries)
            ledger_rows = _ledger_rows(todo, summaries, run_id, ingested_at)
            write_parquet_atomic(ledger_upsert(read_ledger(layout), ledger_rows), layout.ledger)
            summary.ingested = len(todo)
            summary.articles = sum(s["n_articles"] for s in summaries)
            summary.deletions = sum(s["n_deletions"] for s in summaries)
            summary.errors = sum(s["n_errors"] for s in summaries)
            summary.files_with_errors = sorted(s["source_file"] for s in summaries if s["n_errors"])
            summary.incomplete_files = sorted(s["source_file"] for s in summaries if not s["complete"])
        if refresh_database:
            refresh(layout)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary
