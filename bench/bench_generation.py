"""CPU generation throughput of the embedded model: single-stream vs batched, and sentences/s end to end.

  .venv/bin/python bench/bench_generation.py [--batch 8 16] [--cache dynamic static] [--tokens 48]

Prints aggregate generated tokens/s for batch size 1 (baseline: dynamic KV cache, same process) and for
each batch size x cache kind, their ratios (target >= 4x), twice: with the prompt's prefill in the time
(what a user waits for) and for the decode phase alone (what batching can amortise; prefill of ~300
prompt tokens is compute-bound on 2 cores and costs about as much as 48 decoded tokens), and end-to-end
sentences/s through ExtractionRunner (prompt, generate, parse) with the best batched setting.

  .venv/bin/python bench/bench_generation.py --compare-engines [--sentences 100] [--priors off on]
      [--engines transformers ct2-float32 ct2-int8 ct2-int8_float32] [--out bench_engines.json]

Engine comparison (issue 15): the bundled rexdrug-smol (its shipped prompt, matcher hints) on the first N
DrugComb test sentences through ExtractionRunner, every engine on every chunk of ``--batch-size``
sentences in turn (the order rotating per chunk), so load from other processes falls on all engines
alike; then per engine: sentences/s and its ratio to transformers fp32 (same priors setting), how many
answers are identical to transformers' (raw text, and parsed relations), and the official DrugComb F1s
(``model.evaluation.run.score_drugcomb``, the ``rexdrug eval drugcomb`` scorer).  ``--priors off`` is
the raw comparison (engine.label_bias={}); ``on`` applies the shipped label priors.
"""

from __future__ import annotations

import argparse
import json
import sys
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


ENGINE_VARIANTS = {  # name -> EngineConfig overrides
    "transformers": {"kind": "transformers", "dtype": "float32"},
    "ct2-float32": {"kind": "ctranslate2", "compute_type": "float32"},
    "ct2-int8": {"kind": "ctranslate2", "compute_type": "int8"},
    "ct2-int8_float32": {"kind": "ctranslate2", "compute_type": "int8_float32"},
}
F1_KEYS = ("any_partial", "pos_partial", "any_exact", "pos_exact")


def compare_engines(args) -> dict:
    from etl.drugs import default_matcher
    from model.embedded import bundled_prompt_config
    from model.evaluation.run import drugcomb_items

    with open(data_path("drugcomb", "final_test_set.jsonl"), encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh][: args.sentences]
    prompt = bundled_prompt_config("rexdrug-smol")
    matcher = default_matcher()
    sampling = SamplingConfig(max_new_tokens=args.tokens)
    items = drugcomb_items(records)
    runners = {}
    variants = [(name, priors) for priors in args.priors for name in args.engines]
    variants += [tuple(v.split("/")) for v in args.also if tuple(v.split("/")) not in variants]
    for name, priors in variants:
        if name not in ENGINE_VARIANTS or priors not in ("off", "on"):
            raise SystemExit(f"--also wants ENGINE/off|on, got {name}/{priors}")
        config = EngineConfig(
            model="rexdrug-smol",
            batch_size=args.batch_size,
            threads=args.threads,
            label_bias={} if priors == "off" else None,
            **ENGINE_VARIANTS[name],
        )
        runner = ExtractionRunner(
            create_engine(config), prompt, matcher=matcher, sampling=sampling, chunk_size=args.chunk
        )
        runner.run(items[:2])  # warm-up (first-call allocations), not timed
        runners[(name, priors)] = runner
    results = {key: [] for key in runners}
    seconds = dict.fromkeys(runners, 0.0)
    keys = list(runners)
    for n, start in enumerate(range(0, len(items), args.chunk)):
        chunk = items[start : start + args.chunk]
        for key in keys[n % len(keys) :] + keys[: n % len(keys)]:  # rotate who runs first
            started = time.perf_counter()
            results[key].extend(runners[key].run(chunk))
            seconds[key] += time.perf_counter() - started
        print(
            f"chunk {n + 1}: {start + len(chunk)}/{len(items)} sentences, "
            + ", ".join(f"{k[0]}/{k[1]} {seconds[k]:.0f}s" for k in keys),
            file=sys.stderr,
            flush=True,
        )
        if start + len(chunk) < len(items):
            report_engines(records, runners, results, seconds, args, final=False)
    return report_engines(records, runners, results, seconds, args)


def report_engines(records, runners, results, seconds, args, *, final: bool = True) -> dict:
    """The comparison table over the sentences done so far (printed after every chunk: a run cut short
    still leaves its numbers)."""
    from model.evaluation.run import score_drugcomb

    done = min(len(v) for v in results.values())
    records = records[:done]
    results = {k: v[:done] for k, v in results.items()}
    items = records
    rows = []
    for (name, priors), runner in runners.items():
        base = results.get(("transformers", priors))
        evaluation = score_drugcomb(
            records,
            results[(name, priors)],
            model_id=runner.engine.model_id,
            prompt_version=runner.version,
            label_bias=runner.engine.label_bias or None,
            generation_seconds=seconds[(name, priors)],
        )
        mine = results[(name, priors)]
        row = {
            "engine": name,
            "priors": priors,
            "model_id": runner.engine.model_id,
            "sentences_per_second": len(mine) / seconds[(name, priors)],
            "f1": {k: evaluation.summary["official"][k] for k in F1_KEYS},
            "parse_failure_rate": evaluation.summary["parse_failure_rate"],
        }
        if base is not None:
            row["speedup"] = seconds[("transformers", priors)] / seconds[(name, priors)]
            row["identical_text"] = sum(a["raw_output"] == b["raw_output"] for a, b in zip(mine, base))
            row["identical_answer"] = sum(_answer(a) == _answer(b) for a, b in zip(mine, base))
        rows.append(row)
    report = {
        "sentences": len(items),
        "batch_size": args.batch_size,
        "chunk": args.chunk,
        "threads": args.threads,
        "max_new_tokens": args.tokens,
        "rows": rows,
    }
    print(
        f"{'' if final else '[partial] '}{len(items)} DrugComb test sentences, rexdrug-smol, batch {args.batch_size}, greedy, "
        f"<= {args.tokens} new tokens, threads {args.threads}"
    )
    print(
        "| engine | priors | sentences/s | x transformers | identical text | same answer | any-partial | "
        "pos-partial | any-exact | pos-exact | parse fail |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['priors']} | {r['sentences_per_second']:.3f} | {r.get('speedup', float('nan')):.2f} | "
            f"{r.get('identical_text', '-')}/{len(items)} | {r.get('identical_answer', '-')}/{len(items)} | "
            + " | ".join(f"{r['f1'][k]:.3f}" for k in F1_KEYS)
            + f" | {r['parse_failure_rate']:.0%} |"
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    **report,
                    "outputs": {f"{k[0]}/{k[1]}": [r["raw_output"] for r in v] for k, v in results.items()},
                },
                fh,
                indent=1,
            )
    return report


def _answer(result: dict) -> list:
    """A result's parsed relations as comparable data (label + drug names, in order)."""
    return [(p["label"], [d["name"] for d in p["drugs"]]) for p in result["parsed"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare-engines", action="store_true", help="transformers vs CTranslate2 (see above)")
    ap.add_argument("--engines", nargs="+", default=list(ENGINE_VARIANTS), choices=list(ENGINE_VARIANTS))
    ap.add_argument("--priors", nargs="+", default=["off"], choices=("off", "on"))
    ap.add_argument("--also", nargs="*", default=[], help="more ENGINE/PRIORS variants, e.g. ct2-int8/on")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--chunk", type=int, help="sentences per timed chunk (default 4 x batch, the runner's chunk)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="JSON report (with every engine's raw outputs)")
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 16], help="batch sizes to measure")
    ap.add_argument(
        "--cache",
        nargs="+",
        default=["dynamic", "static"],
        choices=("dynamic", "static"),
        help="KV cache kinds to measure batched",
    )
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--singles", type=int, default=8, help="prompts generated one at a time for the baseline")
    ap.add_argument("--sentences", type=int, default=16)
    ap.add_argument("--context", default="sentence", choices=("sentence", "window", "abstract"))
    args = ap.parse_args()
    if args.compare_engines:
        args.chunk = args.chunk or 4 * args.batch_size
        if args.tokens == 48 and "--tokens" not in sys.argv:
            args.tokens = 256  # the eval's budget (MODEL_CARD: <= 256 tokens)
        if args.sentences == 16 and "--sentences" not in sys.argv:
            args.sentences = 100
        compare_engines(args)
        return
    with open(data_path("drugcomb", "final_test_set.jsonl"), encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh][: max(max(args.batch), args.singles, args.sentences)]
    prompt = PromptConfig(variant="rexdrug_answer_only", context=args.context)
    prompts = [build_messages(r["sentence"], r["paragraph"], prompt) for r in records]
    sampling = SamplingConfig(max_new_tokens=args.tokens)
    engines = {
        cache: create_engine(EngineConfig(batch_size=max(args.batch), cache=cache)) for cache in args.cache
    }
    baseline = engines.get("dynamic") or next(iter(engines.values()))
    for engine in engines.values():
        engine.generate(prompts[:2], SamplingConfig(max_new_tokens=2))  # warm-up
    single_tokens, single_s = 0, 0.0
    for messages in prompts[: args.singles]:  # one at a time, default cache: the baseline
        _, t, s = tokens_per_second(baseline, [messages], sampling)
        single_tokens, single_s = single_tokens + t, single_s + s
    single_tps = single_tokens / single_s
    single_decode = (
        sum(decode_tokens_per_second(baseline, [m], sampling) for m in prompts[: args.singles]) / args.singles
    )
    print(
        f"single-stream (dynamic cache): {single_tps:7.1f} tok/s with prefill ({single_tokens} tokens, "
        f"{single_s:.1f}s); decode only {single_decode:7.1f} tok/s"
    )
    best = (0.0, None, None, 0.0)
    for cache, engine in engines.items():
        for size in args.batch:
            tps, tokens, seconds = tokens_per_second(engine, prompts[:size], sampling)
            decode = decode_tokens_per_second(engine, prompts[:size], sampling)
            print(
                f"batched x{size:<3} {cache:>7} cache: {tps:7.1f} tok/s with prefill = {tps / single_tps:.2f}x single; "
                f"decode only {decode:7.1f} tok/s = {decode / single_decode:.2f}x single ({tokens} tokens, {seconds:.1f}s)"
            )
            best = max(best, (tps, cache, size, decode), key=lambda b: b[0])
    print(
        f"best batched/single: {best[0] / single_tps:.2f}x with prefill, {best[3] / single_decode:.2f}x decode only "
        f"(x{best[2]}, {best[1]} cache; target >= 4x)"
    )
    engine = engines[best[1]]
    items = [{"sentence": r["sentence"], "context": r["paragraph"]} for r in records[: args.sentences]]
    runner = ExtractionRunner(engine, prompt, sampling=sampling)
    started = time.perf_counter()
    rows = runner.run(items)
    seconds = time.perf_counter() - started
    print(
        f"end to end    : {len(rows) / seconds:.2f} sentences/s ({len(rows)} sentences, {seconds:.1f}s, "
        f"max_new_tokens={args.tokens}, context={args.context}, {best[1]} cache)"
    )


if __name__ == "__main__":
    main()
