"""Extraction checkpoints (etl/checkpoints.py): what a killed sweep may reuse and what it must redo.

Hand-made candidate rows and extraction rows; the checkpoint files are real Parquet files in tmp_path.
The sweep-level proof (a real process killed after k partitions) is tests/test_sweep_resume.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.checkpoints import (
    CheckpointWriter,
    candidate_digest,
    committed_checkpoints,
    config_digest,
    read_checkpoints,
    remove_temp_files,
    split_resumed,
)
from schemas.extraction import EXTRACTION_CHECKPOINT, EXTRACTIONS

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def candidate(key: str, text: str = "A plus B.", context: str = "A plus B. Done.") -> dict:
    return {
        "extraction_key": key,
        "pmid": key.upper(),
        "pmid_version": 1,
        "sentence_index": 0,
        "sentence_start": 0,
        "sentence_end": len(text),
        "sentence_text": text,
        "text_hash": f"h-{text}",
        "mentions": [{"text": "A", "start": 0, "end": 1}],
        "context": context,
        "model_id": "m",
        "prompt_version": "p",
    }


def extraction(cand: dict, status: str | None = "ok", run_id: str = "killed-run") -> dict:
    return {
        "extraction_key": cand["extraction_key"],
        "pmid": cand["pmid"],
        "pmid_version": 1,
        "sentence_index": 0,
        "sentence_start": cand["sentence_start"],
        "sentence_end": cand["sentence_end"],
        "sentence_text": cand["sentence_text"],
        "text_hash": cand["text_hash"],
        "raw_output": None if status == "engine_error" else '{"ent_set": []}',
        "parse_status": status,
        "n_relations": 0,
        "relations": [],
        "error": "HTTP 503" if status == "engine_error" else None,
        "model_id": "m",
        "prompt_version": "p",
        "run_id": run_id,
        "extracted_at": T0,
    }


def write_partition(directory, cands: list[dict], statuses: list[str | None] | None = None):
    writer = CheckpointWriter(directory)
    statuses = statuses or ["ok"] * len(cands)
    writer.add(
        cands, pa.Table.from_pylist([extraction(c, s) for c, s in zip(cands, statuses)], schema=EXTRACTIONS)
    )
    return writer.commit()


def table(cands: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(cands)


def test_a_committed_partition_is_reused_for_its_candidates_only(tmp_path):
    a, b, c = candidate("a"), candidate("b", "B then C."), candidate("c", "C and D.")
    write_partition(tmp_path, [a, b])
    resumed, todo = split_resumed(table([a, b, c]), read_checkpoints(tmp_path), "new-run")
    assert resumed.column("extraction_key").to_pylist() == ["a", "b"]
    assert resumed.schema == EXTRACTIONS
    assert set(resumed.column("run_id").to_pylist()) == {"new-run"}  # committed under the new run
    assert resumed.column("extracted_at").to_pylist() == [T0, T0]  # when the model answered
    assert todo.column("extraction_key").to_pylist() == ["c"]


@pytest.mark.parametrize(
    ("changed", "why"),
    [
        ({"context": "A plus B. A new abstract."}, "the abstract the sentence is read with"),
        ({"mentions": [{"text": "B", "start": 7, "end": 8}]}, "the mentions that make the prompt's hints"),
        ({"sentence_end": 8}, "the sentence's span"),
        ({"hints": ["A"]}, "a column the candidate did not have"),
    ],
)
def test_a_changed_input_under_the_same_key_is_extracted_again(tmp_path, changed, why):
    old = candidate("a")
    write_partition(tmp_path, [old])
    new = {**old, **changed}
    assert candidate_digest(new) != candidate_digest(old), why
    resumed, todo = split_resumed(table([new]), read_checkpoints(tmp_path), "new-run")
    assert resumed.num_rows == 0 and todo.column("extraction_key").to_pylist() == ["a"]


def test_config_digest_names_the_configuration():
    base = {"engine": {"kind": "openai", "model": "x", "sampling": {"temperature": 0.0}}, "batch_size": 16}
    assert config_digest(base) == config_digest(dict(reversed(base.items())))  # order does not matter
    for other in (
        {**base, "batch_size": 8},
        {**base, "engine": {**base["engine"], "sampling": {"temperature": 0.7}}},
        {**base, "engine": {**base["engine"], "model": "y"}},
    ):
        assert config_digest(other) != config_digest(base)


def test_only_final_rows_are_reused(tmp_path):
    ok, failed, no_status = candidate("a"), candidate("b", "B then C."), candidate("c", "C and D.")
    write_partition(tmp_path, [ok, failed, no_status], ["invalid_json", "engine_error", None])
    resumed, todo = split_resumed(table([ok, failed, no_status]), read_checkpoints(tmp_path), "new-run")
    # the model answered "a" (unusable, but final: the same model would answer the same); "b" and "c"
    # never reached it and are extracted again, as the next sweep would retry them
    assert resumed.column("extraction_key").to_pylist() == ["a"]
    assert todo.column("extraction_key").to_pylist() == ["b", "c"]


def test_unfinished_partitions_leave_no_checkpoint(tmp_path):
    a = candidate("a")
    writer = CheckpointWriter(tmp_path)
    writer.add([a], pa.Table.from_pylist([extraction(a)], schema=EXTRACTIONS))
    assert committed_checkpoints(tmp_path) == [] and read_checkpoints(tmp_path).num_rows == 0
    writer.abort()  # the task failed or was cancelled
    assert list(tmp_path.iterdir()) == []
    # a kill -9 leaves the temp file: never read, removed before the next run
    killed = CheckpointWriter(tmp_path)
    killed.add([a], pa.Table.from_pylist([extraction(a)], schema=EXTRACTIONS))
    assert read_checkpoints(tmp_path).num_rows == 0
    assert remove_temp_files(tmp_path) == 1 and list(tmp_path.iterdir()) == []
    assert CheckpointWriter(tmp_path).commit() is None  # an empty partition writes nothing


def test_a_retried_task_replaces_its_partition_and_keys_are_read_once(tmp_path):
    a, b = candidate("a"), candidate("b", "B then C.")
    first = write_partition(tmp_path, [a, b])
    again = write_partition(tmp_path, [a, b])  # the same partition's second attempt
    assert first == again and committed_checkpoints(tmp_path) == [first]
    write_partition(tmp_path, [b])  # another run's partition holding "b" too
    assert sorted(read_checkpoints(tmp_path).column("extraction_key").to_pylist()) == ["a", "b"]


def test_an_unreadable_checkpoint_is_skipped_not_fatal(tmp_path, caplog):
    a, b = candidate("a"), candidate("b", "B then C.")
    write_partition(tmp_path, [a])
    (tmp_path / "part-0000broken.parquet").write_bytes(b"PAR1 not parquet")
    rows = read_checkpoints(tmp_path)
    assert rows.column("extraction_key").to_pylist() == ["a"]
    assert "unreadable extraction checkpoint" in caplog.text
    resumed, todo = split_resumed(table([a, b]), rows, "r")
    assert (resumed.num_rows, todo.column("extraction_key").to_pylist()) == (1, ["b"])


def test_checkpoint_file_carries_each_rows_input_digest(tmp_path):
    a = candidate("a")
    path = write_partition(tmp_path, [a])
    stored = pq.read_table(path)
    assert stored.schema.names == EXTRACTION_CHECKPOINT.names
    assert stored.column("input_sha").to_pylist() == [candidate_digest(a)]
