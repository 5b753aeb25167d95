"""CPU generation throughput of the embedded model: single-stream vs batched, and sentences/s end to end.

  .venv/bin/python bench/bench_generation.py [--batch 8] [--tokens 48] [--sentences 8]

Prints aggregate generated tokens/s for batch size 1 (baseline, same process) and for --batch, their
ratio (target >= 4x), and end-to-end sentences/s through ExtractionRunner (prompt, generate, parse).
"""

from __future__ import annotations

import argparse
import json
import time

from etl.paths import data_path
from model.engines import EngineConfig, SamplingConfig, create_engine
from model.extraction import ExtractionRunner
from model.prompting import PromptConfig, build_messages


def tokens_per_second(engine, batch, sampling) -> tuple[float, int, float]:
    before = dict(engine.stats)
    started = time.perf_counter()
    engine.generate(batch, sampling)
    seconds = time.perf_counter() - started
    tokens = engine.stats["generated_tokens"] - before["generated_tokens"]
    return tokens / seconds, tokens, seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--sentences", type=int, default=8)
    ap.add_argument("--context", default="sentence", choices=("sentence", "window", "abstract"))
    args = ap.parse_args()
    with open(data_path("drugcomb", "final_test_set.jsonl"), encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh][: args.batch]
    prompt = PromptConfig(variant="rexdrug_answer_only", context=args.context)
    batch = [build_messages(r["sentence"], r["paragraph"], prompt) for r in records]
    sampling = SamplingConfig(max_new_tokens=args.tokens)
    engine = create_engine(EngineConfig(batch_size=args.batch))
    engine.generate(batch[:1], SamplingConfig(max_new_tokens=2))  # warm-up
    single_tps, single_tokens, single_s = 0.0, 0, 0.0
    for messages in batch:  # the same prompts one at a time: the baseline
        _, t, s = tokens_per_second(engine, [messages], sampling)
        single_tokens, single_s = single_tokens + t, single_s + s
    single_tps = single_tokens / single_s
    batched_tps, batched_tokens, batched_s = tokens_per_second(engine, batch, sampling)
    print(f"single-stream : {single_tps:7.1f} tok/s ({single_tokens} tokens, {single_s:.1f}s)")
    print(f"batched x{args.batch:<4}: {batched_tps:7.1f} tok/s ({batched_tokens} tokens, {batched_s:.1f}s)")
    print(f"ratio batched/single: {batched_tps / single_tps:.2f}x (target >= 4x)")
    items = [{"sentence": r["sentence"], "context": r["paragraph"]} for r in records[: args.sentences]]
    runner = ExtractionRunner(engine, prompt, sampling=sampling)
    started = time.perf_counter()
    rows = runner.run(items)
    seconds = time.perf_counter() - started
    print(f"end to end    : {len(rows) / seconds:.2f} sentences/s ({len(rows)} sentences, {seconds:.1f}s, "
          f"max_new_tokens={args.tokens}, context={args.context})")


if __name__ == "__main__":
    main()
