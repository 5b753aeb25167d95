"""CPU generation throughput of the embedded model: single-stream vs batched, and sentences/s end to end.

  .venv/bin/python bench/bench_generation.py [--batch 8 16] [--cache dynamic static] [--tokens 48]

Prints aggregate generated tokens/s for batch size 1 (baseline: dynamic KV cache, same process) and for
each batch size x cache kind, their ratios (target >= 4x), and end-to-end sentences/s through
ExtractionRunner (prompt, generate, parse) with the best batched setting.
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
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 16], help="batch sizes to measure")
    ap.add_argument("--cache", nargs="+", default=["dynamic", "static"], choices=("dynamic", "static"),
                    help="KV cache kinds to measure batched")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--singles", type=int, default=8, help="prompts generated one at a time for the baseline")
    ap.add_argument("--sentences", type=int, default=16)
    ap.add_argument("--context", default="sentence", choices=("sentence", "window", "abstract"))
    args = ap.parse_args()
    with open(data_path("drugcomb", "final_test_set.jsonl"), encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh][: max(max(args.batch), args.singles, args.sentences)]
    prompt = PromptConfig(variant="rexdrug_answer_only", context=args.context)
    prompts = [build_messages(r["sentence"], r["paragraph"], prompt) for r in records]
    sampling = SamplingConfig(max_new_tokens=args.tokens)
    engines = {cache: create_engine(EngineConfig(batch_size=max(args.batch), cache=cache)) for cache in args.cache}
    baseline = engines.get("dynamic") or next(iter(engines.values()))
    for engine in engines.values():
        engine.generate(prompts[:2], SamplingConfig(max_new_tokens=2))  # warm-up
    single_tokens, single_s = 0, 0.0
    for messages in prompts[: args.singles]:  # one at a time, default cache: the baseline
        _, t, s = tokens_per_second(baseline, [messages], sampling)
        single_tokens, single_s = single_tokens + t, single_s + s
    single_tps = single_tokens / single_s
    print(f"single-stream (dynamic cache): {single_tps:7.1f} tok/s ({single_tokens} tokens, {single_s:.1f}s)")
    best = (0.0, None, None)
    for cache, engine in engines.items():
        for size in args.batch:
            tps, tokens, seconds = tokens_per_second(engine, prompts[:size], sampling)
            print(f"batched x{size:<3} {cache:>7} cache: {tps:7.1f} tok/s ({tokens} tokens, {seconds:.1f}s) "
                  f"= {tps / single_tps:.2f}x single")
            best = max(best, (tps, cache, size), key=lambda b: b[0])
    print(f"best batched/single: {best[0] / single_tps:.2f}x (x{best[2]}, {best[1]} cache; target >= 4x)")
    engine = engines[best[1]]
    items = [{"sentence": r["sentence"], "context": r["paragraph"]} for r in records[: args.sentences]]
    runner = ExtractionRunner(engine, prompt, sampling=sampling)
    started = time.perf_counter()
    rows = runner.run(items)
    seconds = time.perf_counter() - started
    print(f"end to end    : {len(rows) / seconds:.2f} sentences/s ({len(rows)} sentences, {seconds:.1f}s, "
          f"max_new_tokens={args.tokens}, context={args.context}, {best[1]} cache)")


if __name__ == "__main__":
    main()
