"""CPU generation throughput of the embedded model: single-stream vs batched, and sentences/s end to end.

  .venv/bin/python bench/bench_generation.py [--batch 8 16] [--cache dynamic static] [--tokens 48]

Prints aggregate generated tokens/s for batch size 1 (baseline: dynamic KV cache, same process) and for
each batch size x cache kind, their ratios (target >= 4x), twice: with the prompt's prefill in the time
(what a user waits for) and for the decode phase alone (what batching can amortise; prefill of ~300
prompt tokens is compute-bound on 2 cores and costs about as much as 48 decoded tokens), and end-to-end
sentences/s through ExtractionRunner (prompt, generate, parse) with the best batched setting.
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


def decode_tokens_per_second(engine, batch, sampling) -> float:
    """Aggregate tokens/s of the decode phase alone: a full run minus a prefill-plus-one-token run of the
    same prompts (prefill is compute-bound on CPU and batching cannot amortise it; decode it can)."""
    first = SamplingConfig(max_new_tokens=1)
    _, t1, s1 = tokens_per_second(engine, batch, first)
    _, tn, sn = tokens_per_second(engine, batch, sampling)
    return (tn - t1) / (sn - s1) if sn > s1 else 0.0


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
    single_decode = sum(decode_tokens_per_second(baseline, [m], sampling) for m in prompts[:args.singles]) / args.singles
    print(f"single-stream (dynamic cache): {single_tps:7.1f} tok/s with prefill ({single_tokens} tokens, "
          f"{single_s:.1f}s); decode only {single_decode:7.1f} tok/s")
    best = (0.0, None, None, 0.0)
    for cache, engine in engines.items():
        for size in args.batch:
            tps, tokens, seconds = tokens_per_second(engine, prompts[:size], sampling)
            decode = decode_tokens_per_second(engine, prompts[:size], sampling)
            print(f"batched x{size:<3} {cache:>7} cache: {tps:7.1f} tok/s with prefill = {tps / single_tps:.2f}x single; "
                  f"decode only {decode:7.1f} tok/s = {decode / single_decode:.2f}x single ({tokens} tokens, {seconds:.1f}s)")
            best = max(best, (tps, cache, size, decode), key=lambda b: b[0])
    print(f"best batched/single: {best[0] / single_tps:.2f}x with prefill, {best[3] / single_decode:.2f}x decode only "
          f"(x{best[2]}, {best[1]} cache; target >= 4x)")
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
