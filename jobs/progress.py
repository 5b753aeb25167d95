"""Progress of a Spark stage seen from the driver: one status file per partition, polled.

Spark's accumulators reach the driver only when a task ends, and one extraction task can run for half
an hour; so each task writes ``<dir>/part-<partition>.json`` (``{"done": n, "errors": k}``, replaced
atomically) after every batch, and the driver sums the files every ``interval_s`` seconds and logs
``extract: 120/601 sentences (20%), 2.1/s, ETA 3m50s, 3 errors`` on stderr.  A retried task attempt
overwrites its partition's file, so counts never double.  The folder lives in the run's staging area
(shared by driver and executors as the staged tables are).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Self

log = logging.getLogger(__name__)


def partition_id() -> int:
    """The Spark partition the calling task works on (0 outside a task)."""
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
    except ImportError:  # pragma: no cover - pyspark is a dependency
        context = None
    return context.partitionId() if context is not None else 0


class TaskStatus:
    """Task side, as a callback ``(done, errors)``: writes the calling task's status file (picklable, so
    it can be bound into a ``mapInArrow`` function: the ingest's per-file stage reports records with it)."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = str(directory)

    def __call__(self, done: int, errors: int) -> None:
        write_status(self.directory, partition_id(), done, errors)


def write_status(directory: str | os.PathLike[str], partition: int, done: int, errors: int) -> None:
    """Task side: this partition's counts so far (temp file + rename: the driver never reads half a file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"part-{partition:05d}.json"
    tmp = directory / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps({"done": done, "errors": errors}))
    os.replace(tmp, target)


def read_totals(directory: str | os.PathLike[str]) -> tuple[int, int]:
    """Driver side: (done, errors) summed over the partitions' files; unreadable files count as nothing."""
    done = errors = 0
    for path in Path(directory).glob("part-*.json"):
        try:
            status = json.loads(path.read_text())
            done += int(status.get("done", 0))
            errors += int(status.get("errors", 0))
        except (OSError, ValueError):
            continue  # vanished or being replaced: the next poll reads it
    return done, errors


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_line(label: str, unit: str, done: int, total: int | None, errors: int, elapsed_s: float) -> str:
    """``extract: 120/601 sentences (20%), 2.1/s, ETA 3m50s, 3 errors`` (no rate/ETA before the first item);
    with ``total`` None (not known in advance): ``ingest: 120 records parsed, 2.1/s, 0 errors``."""
    if total is None:
        parts = [f"{label}: {done} {unit}"]
    else:
        share = f" ({100 * done // total}%)" if total else ""
        parts = [f"{label}: {done}/{total} {unit}{share}"]
    if done and elapsed_s > 0:
        rate = done / elapsed_s
        parts.append(f"{rate:.1f}/s")
        if total is not None and total > done:
            parts.append(f"ETA {_duration((total - done) / rate)}")
    parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    return ", ".join(parts)


class StatusFileProgress:
    """Context manager: a driver thread that logs the summed status files every ``interval_s`` seconds
    and once more at the end."""

    def __init__(
        self,
        directory: Path,
        total: int | None,
        *,
        label: str = "extract",
        unit: str = "sentences",
        interval_s: float = 15.0,
    ):
        if interval_s <= 0:
            raise ValueError("progress interval must be > 0 seconds")
        self.directory, self.total, self.label, self.unit, self.interval_s = (
            directory,
            total,
            label,
            unit,
            interval_s,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self.lines: list[str] = []  # what was logged (the sweep's summary and tests read it)

    def report(self) -> str:
        done, errors = read_totals(self.directory)
        line = progress_line(self.label, self.unit, done, self.total, errors, time.monotonic() - self._start)
        self.lines.append(line)
        log.info("%s", line)
        return line

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.report()

    def __enter__(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=f"progress-{self.label}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.report()
