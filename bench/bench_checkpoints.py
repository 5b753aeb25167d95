"""What the extract stage's checkpoints cost a task, against the rule engine the tests sweep with.

    .venv/bin/python bench/bench_checkpoints.py [--n 2000] [--batch 16] [--repeat 3]

Realistic candidate rows: the sentences of the DrugComb test paragraphs, each with its whole paragraph
as context, run through ``rule_all_drugs`` (the fastest
engine there is; an LLM takes 100-1000x longer per sentence, so the share printed here is an upper
bound).  Measured in the same process: the extraction rows alone, then the same with every batch also
written to a checkpoint (``etl.checkpoints.CheckpointWriter``: the candidate digests, the Parquet
stream, fsync and rename at the end), and the driver's ``read_checkpoints`` + ``split_resumed`` for a
rerun that finds all of them done.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa


def candidates(n: int) -> list[dict]:
    import hashlib

    from etl.paths import data_path
    from etl.sentences import split_sentences
    from model.evaluation.drugcomb import read_jsonl

    rows = []
    for record in read_jsonl(data_path("drugcomb", "final_test_set.jsonl")):
        paragraph = record.get("paragraph") or record.get("sentence") or ""
        for start, end in split_sentences(paragraph):
            text = paragraph[start:end]
            key = hashlib.sha1(f"{len(rows)}|{text}".encode()).hexdigest()
            rows.append(
                {
                    "extraction_key": key,
                    "pmid": str(len(rows)),
                    "pmid_version": 1,
                    "sentence_index": 0,
                    "sentence_start": 0,
                    "sentence_end": len(text),
                    "sentence_text": text,
                    "text_hash": hashlib.md5(text.encode()).hexdigest(),
                    "mentions": None,
                    "context": paragraph,
                    "model_id": "rule:all_drugs",
                    "prompt_version": "p",
                }
            )
            if len(rows) == n:
                return rows
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from etl.checkpoints import CheckpointWriter, read_checkpoints, split_resumed
    from jobs.sweep import build_runner, extraction_rows
    from model.engines.base import EngineConfig
    from model.prompting import PromptConfig
    from schemas.extraction import EXTRACTIONS

    cands = candidates(args.n)
    runner = build_runner(EngineConfig(kind="rule_all_drugs"), PromptConfig())
    chunks = [cands[i : i + args.batch] for i in range(0, len(cands), args.batch)]

    def extract(writer: CheckpointWriter | None) -> float:
        start = time.perf_counter()
        for chunk in chunks:
            table = pa.Table.from_pylist(extraction_rows(chunk, runner, "bench"), schema=EXTRACTIONS)
            if writer is not None:
                writer.add(chunk, table)
        if writer is not None:
            writer.commit()
        return time.perf_counter() - start

    extract(None)  # warm the matcher and the engine
    plain, checkpointed = float("inf"), float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):  # alternated, best of each: a shared machine's load hits both alike
            plain = min(plain, extract(None))
            checkpointed = min(checkpointed, extract(CheckpointWriter(tmp)))
        start = time.perf_counter()
        resumed, todo = split_resumed(pa.Table.from_pylist(cands), read_checkpoints(tmp), "rerun")
        resume = time.perf_counter() - start
    print(f"{len(cands)} candidates, batches of {args.batch}, rule_all_drugs")
    print(
        f"extract without checkpoint: {plain:.3f}s; with checkpoint: {checkpointed:.3f}s "
        f"(ratio {checkpointed / plain:.3f}; {1000 * (checkpointed - plain) / len(cands):.2f} ms per sentence)"
    )
    print(
        f"rerun: {resumed.num_rows} resumed, {todo.num_rows} to extract, in {resume:.3f}s "
        f"({resume / plain:.3f} of the rule extraction's time)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
