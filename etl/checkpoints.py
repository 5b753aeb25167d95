"""Per-partition checkpoints of the sweep's extract stage: a killed sweep does not redo finished work.

Extraction is the one expensive stage (an LLM reads every candidate sentence), and a run's staged work
is discarded when the run dies before its commit.  So each extract task, when its partition is done,
writes the partition's extraction rows to one checkpoint file *outside* the run's staging folder::

    <warehouse>/_staging/_checkpoints/extractions/<config digest>/part-<partition digest>.parquet

(``WarehouseLayout.extract_checkpoints``), streamed into a temp file beside it and renamed into place
after an fsync only once the partition's last row is written: a file under its final name is always a
complete partition.  The next run reads them before it sends anything to the engine: a candidate whose
checkpoint row matches it is taken from the checkpoint, the rest is extracted.  A committed run removes
every checkpoint (its rows are in the warehouse then).

What keys a checkpoint row, so that a changed input, model or configuration never reuses a stale one:

* the folder: ``config_digest`` of everything that decides the engine's answer besides the sentence
  (the whole engine and prompt configuration, the batch size, the model id and prompt version);
* the row's ``extraction_key`` (pmid, pmid version, sentence text hash, model id, prompt version) and
  its ``input_sha``: ``candidate_digest`` of the whole candidate row the engine read (sentence, its
  offsets, the abstract it was read with, the mentions that make the prompt's hints).  A candidate is
  taken from a checkpoint only when both match;
* only final rows are reused: a row with a retryable status (the engine failed, the model never
  answered) is extracted again, as the next sweep would.

Worker side: ``CheckpointWriter``; driver side: ``read_checkpoints`` and ``split_resumed``.  Pure Arrow
and files, no Spark.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl.warehouse import fsync_path
from schemas.answer import RETRYABLE_STATUSES
from schemas.extraction import EXTRACTION_CHECKPOINT, EXTRACTIONS

log = logging.getLogger(__name__)

CHECKPOINT_GLOB = "part-*.parquet"


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def config_digest(parts: Mapping[str, Any]) -> str:
    """Digest of the configuration that decides the answers (the checkpoint folder's name)."""
    return hashlib.sha256(_canonical_json(dict(parts)).encode("utf-8")).hexdigest()[:20]


def candidate_digest(candidate: Mapping[str, Any]) -> str:
    """Digest of one candidate row as the engine reads it (every column: a new one is covered too)."""
    return hashlib.sha256(_canonical_json(dict(candidate)).encode("utf-8")).hexdigest()


def _is_final(statuses: pa.ChunkedArray | pa.Array) -> pa.Array:
    retryable = pc.is_in(statuses, value_set=pa.array(sorted(RETRYABLE_STATUSES), pa.string()))
    return pc.and_(pc.is_valid(statuses), pc.invert(pc.fill_null(retryable, False)))


class CheckpointWriter:
    """One task's checkpoint: rows are streamed to a temp file; ``commit`` names it after its partition.

    ``add`` after every batch, ``commit`` once the partition's input is exhausted, ``abort`` (in a
    ``finally``) removes the temp file of a partition that did not finish.  The final name is the digest
    of the partition's extraction keys: a retried task attempt replaces its own file, never adds one.
    """

    # rows buffered before they are written as one row group (an engine batch is 16 rows: one row group
    # each would cost more than the digests)
    ROW_GROUP = 2048

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._keys = hashlib.sha256()
        self.path: Path | None = None
        self.rows = 0

    def add(self, candidates: list[dict[str, Any]], rows: pa.Table) -> None:
        """This batch's candidates and their extraction rows (``EXTRACTIONS``), in the same order."""
        if len(candidates) != rows.num_rows:
            raise ValueError(f"{len(candidates)} candidates but {rows.num_rows} extraction rows")
        if not rows.num_rows:
            return
        digests = pa.array([candidate_digest(c) for c in candidates], pa.string())
        if rows.schema != EXTRACTIONS:
            rows = rows.select(EXTRACTIONS.names).cast(EXTRACTIONS)
        table = pa.Table.from_arrays([*rows.columns, digests], schema=EXTRACTION_CHECKPOINT)
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._tmp = self.directory / f".part-{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp"
            self._writer = pq.ParquetWriter(self._tmp, EXTRACTION_CHECKPOINT)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.ROW_GROUP:
            self._flush()
        for key in rows.column("extraction_key").to_pylist():
            self._keys.update(key.encode("utf-8") + b"\n")
        self.rows += rows.num_rows

    def _flush(self) -> None:
        if self._pending and self._writer is not None:
            self._writer.write_table(pa.concat_tables(self._pending))
        self._pending, self._pending_rows = [], 0

    def commit(self) -> Path | None:
        """Close, fsync and rename the file into place; None when the partition had no rows."""
        if self._writer is None or self._tmp is None:
            return None
        self._flush()
        self._writer.close()
        self._writer = None
        fsync_path(self._tmp)
        target = self.directory / f"part-{self._keys.hexdigest()[:32]}.parquet"
        os.replace(self._tmp, target)
        fsync_path(self.directory, directory=True)
        self._tmp, self.path = None, target
        return target

    def abort(self) -> None:
        """Drop an uncommitted temp file (a failed or cancelled task): it is never read as a checkpoint."""
        self._pending, self._pending_rows = [], 0
        if self._writer is not None:
            try:
                self._writer.close()
            except (OSError, pa.ArrowException):
                pass
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def committed_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """The complete checkpoint files of a folder (temp files of unfinished partitions are not)."""
    directory = Path(directory)
    return sorted(directory.glob(CHECKPOINT_GLOB)) if directory.is_dir() else []


def remove_temp_files(directory: str | os.PathLike[str]) -> int:
    """Delete the temp files a killed task left behind (called under the writer lock, before a run)."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    leftovers = [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


def read_checkpoints(directory: str | os.PathLike[str]) -> pa.Table:
    """Every final row of the complete checkpoints in ``directory`` (``EXTRACTION_CHECKPOINT``), one per
    extraction key.  An unreadable file is skipped with a warning: its partition is extracted again."""
    tables = []
    for path in committed_checkpoints(directory):
        try:
            tables.append(pq.read_table(path, schema=EXTRACTION_CHECKPOINT))
        except (OSError, pa.ArrowException) as exc:
            log.warning(
                "ignoring unreadable extraction checkpoint %s (its sentences are extracted again): %s",
                path.name,
                exc,
            )
    if not tables:
        return EXTRACTION_CHECKPOINT.empty_table()
    rows = pa.concat_tables(tables)
    rows = rows.filter(_is_final(rows.column("parse_status")))
    # one row per key (two killed runs may both hold one): the first in file order
    _, first = _first_indices(rows.column("extraction_key").to_pylist())
    return rows.take(pa.array(first, pa.int64()))


def _first_indices(keys: Iterable[str]) -> tuple[set[str], list[int]]:
    seen: set[str] = set()
    first = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            first.append(i)
    return seen, first


def split_resumed(candidates: pa.Table, checkpoint: pa.Table, run_id: str) -> tuple[pa.Table, pa.Table]:
    """(extraction rows taken from ``checkpoint`` for this run, the candidates still to extract).

    A candidate is resumed when a final checkpoint row has its extraction key *and* its input digest;
    the resumed rows get this run's ``run_id`` (they are committed with it) and keep their
    ``extracted_at`` (when the model answered).  The remaining candidates keep their order.
    """
    if not checkpoint.num_rows or not candidates.num_rows:
        return EXTRACTIONS.empty_table(), candidates
    by_key = dict(zip(checkpoint.column("extraction_key").to_pylist(), range(checkpoint.num_rows)))
    known = pc.is_in(candidates.column("extraction_key"), value_set=checkpoint.column("extraction_key"))
    taken: list[int] = []
    resumed_keys: set[str] = set()
    shas = checkpoint.column("input_sha").to_pylist()
    for candidate in candidates.filter(known).to_pylist():
        row = by_key[candidate["extraction_key"]]
        if shas[row] == candidate_digest(candidate):
            taken.append(row)
            resumed_keys.add(candidate["extraction_key"])
    if not taken:
        return EXTRACTIONS.empty_table(), candidates
    resumed = checkpoint.take(pa.array(taken, pa.int64())).select(EXTRACTIONS.names)
    i = resumed.schema.get_field_index("run_id")
    resumed = resumed.set_column(
        i, resumed.schema.field(i), pa.array([run_id] * resumed.num_rows, pa.string())
    )
    done = pc.is_in(
        candidates.column("extraction_key"), value_set=pa.array(sorted(resumed_keys), pa.string())
    )
    return resumed.cast(EXTRACTIONS), candidates.filter(pc.invert(done))
