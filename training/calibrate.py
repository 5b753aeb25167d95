"""Calibrate a trained adapter's label decision on its dev split and store it with the adapter.

    rexdrug train calibrate --adapter runs/sft_smol            # a training output folder
    rexdrug train calibrate --adapter model/adapters/rexdrug-smol

Reads the adapter's ``rexdrug_training.json`` (written by ``rexdrug train sft``) for the base model, the
prompt and the seeded dev split, generates once over the dev split (``model.calibration``), searches the
label priors, checks them with a real biased run on the same split, and writes them under ``decision``
in ``rexdrug_training.json``: the transformers engine applies them whenever the adapter is loaded as a
bundled model (``engine.label_bias`` overrides; ``{}`` switches them off).  The summary goes to stdout.

    rexdrug train calibrate --adapter model/adapters/rexdrug-smol --confidence --cache static

fits the combination-confidence map instead (``model.confidence``): one run over the dev split as a
sweep runs the adapter (its label priors on), one (raw score, right?) pair per relation written (right:
its drug set is exactly a gold set), the raw scores saved to ``--scores`` (runs/, not committed), a
Platt map (or ``--method isotonic``) written to the adapter's ``confidence_calibration.json`` with
its reliability table.  ``--from-scores`` refits from a saved file without generating.

    rexdrug eval realpm --model rexdrug-smol --out runs/realpm_dev
    python -m training.calibrate --adapter model/adapters/rexdrug-smol --confidence \
        --realpm-outputs runs/realpm_dev/rexdrug-smol/outputs.jsonl

refits the map on the real-PubMed dev set instead (``data/realpm``: the sweep's candidate sentences of
unselected PubMed, relations as the sweep stores them), from that run's outputs without generating, and
reports the precision/recall of each ``min_confidence`` threshold under the refit map.

``python -m training.calibrate`` takes the same options (``add_arguments``) and runs the same code
(``run``).  Exit code 0, or 2 for a configuration error (no training record, no dev split).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from etl.config import from_dict

log = logging.getLogger(__name__)


def _provenance(adapter: Path) -> dict:
    from model.embedded import TRAINING_RECORD, read_training_record

    record = read_training_record(adapter)
    if record is None:
        raise ValueError(
            f"{adapter} has no {TRAINING_RECORD} (the training record names its prompt and dev split)"
        )
    return record


def _dev_split(provenance: dict, dev_limit: int | None):
    """(data config, dev records) of the split the adapter's training config held out."""
    from training.data import DataConfig, load_splits

    data = from_dict(DataConfig, provenance.get("config", {}).get("data", {}))
    if dev_limit:
        data.dev_limit = dev_limit
    data.validate()
    dev = load_splits(data).dev
    if not dev:
        raise ValueError("the adapter's training config holds out no dev split (data.dev_fraction = 0)")
    return data, dev


def _adapter_engine_config(
    adapter: Path, provenance: dict, *, model: str | None = None, label_bias: dict | None = None
):
    """The engine config that runs ``adapter``: the bundled model name when it is one (its shipped
    settings), else its base model with the adapter (and ``label_bias``)."""
    from model.embedded import BUNDLED_ADAPTERS
    from model.engines.base import EngineConfig

    bundled = {str(folder.resolve()): name for name, (_, folder) in BUNDLED_ADAPTERS.items()}
    if model is None and str(adapter.resolve()) in bundled:
        return EngineConfig(model=bundled[str(adapter.resolve())])
    base = model or provenance.get("config", {}).get("model", {}).get("name_or_path", "embedded")
    return EngineConfig(model=base, adapter_path=str(adapter), label_bias=label_bias or {})


def calibrate_adapter(
    adapter: Path,
    *,
    model: str | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 96,
    dev_limit: int | None = None,
    write: bool = True,
) -> dict:
    from model.calibration import collect_evidence, search_label_bias
    from model.embedded import TRAINING_RECORD
    from model.engines.base import SamplingConfig, engine_model_id
    from model.engines.transformers_engine import TransformersEngine
    from model.evaluation.run import evaluate_drugcomb
    from training.evaluate import dev_runner

    provenance = _provenance(adapter)
    data, dev = _dev_split(provenance, dev_limit)
    engine_config = _adapter_engine_config(adapter, provenance, model=model)
    engine_config.label_bias = {}  # measure the model itself, not a previously shipped decision
    engine_config.batch_size = batch_size
    engine_config.sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    engine_config.validate()
    engine = TransformersEngine(engine_config)
    runner = dev_runner(engine, data, dev)
    records = [r.raw for r in dev]

    started = time.perf_counter()
    evidence = collect_evidence(records, runner)
    result = search_label_bias(records, evidence)
    # The search simulates; a real biased run on the same split is what we store as its dev score.
    engine.label_bias = dict(result.label_bias)
    engine.model_id = engine_model_id(replace(engine_config, label_bias=dict(result.label_bias)))
    checked = evaluate_drugcomb(records, runner, progress=True).summary
    decision = {
        **result.as_dict(),
        "dev_f1_measured": checked["official"],
        "calibrated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if write:
        provenance["decision"] = decision
        path = adapter / TRAINING_RECORD
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(provenance, indent=2) + "\n")
        tmp.replace(path)
        log.info("wrote decision into %s", path)
    return decision


# --- the confidence of combination rows (model.confidence) -------------------------------------------


def relation_outcomes(record: dict, result: dict) -> list[dict]:
    """Per parsed relation of one dev sentence: its label, raw score and whether it is right.

    A relation is right when its drug set is exactly a gold set of the sentence (any label): every
    drug it names resolves to an annotated mention and the resolved set equals a gold set.
    """
    from model.confidence import combination_score, logprobs_from_rows
    from model.evaluation.drugcomb import gold_relations, names_to_span_ids

    gold_sets = {tuple(g.drugs) for g in gold_relations(record)}
    evidence = result.get("relation_evidence") or [{}] * len(result["parsed"])
    out = []
    for index, (relation, ev) in enumerate(zip(result["parsed"], evidence)):
        ids, unresolved = names_to_span_ids(relation.get("drugs", []), record)
        logprobs = logprobs_from_rows(ev.get("label_logprobs"))
        out.append(
            {
                "doc_id": record["doc_id"],
                "relation_index": index,
                "label": relation["label"],
                "drugs": [d.get("name") for d in relation.get("drugs", [])],
                "score": combination_score(logprobs),
                "logprobs": logprobs,
                "correct": not unresolved and len(ids) >= 2 and tuple(sorted(ids)) in gold_sets,
            }
        )
    return out


def collect_confidence_scores(
    adapter: Path,
    *,
    batch_size: int = 16,
    max_new_tokens: int = 128,
    dev_limit: int | None = None,
    cache: str = "dynamic",
    threads: int | None = None,
    scores: Path | None = None,
) -> list[dict]:
    """Run the adapter as a sweep runs it (its shipped label priors on) over its dev split; one row per
    relation written (see ``relation_outcomes``).  With ``scores``, rows are appended to that file
    batch by batch, so a long CPU run that is stopped still leaves what it measured."""
    from model.engines.base import SamplingConfig
    from model.engines.transformers_engine import TransformersEngine
    from model.evaluation.run import drugcomb_items
    from training.evaluate import dev_runner

    provenance = _provenance(adapter)
    data, dev = _dev_split(provenance, dev_limit)
    engine_config = _adapter_engine_config(
        adapter, provenance, label_bias=(provenance.get("decision") or {}).get("label_bias")
    )
    engine_config.batch_size = batch_size
    engine_config.cache, engine_config.threads = cache, threads
    engine_config.sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    engine_config.validate()
    engine = TransformersEngine(engine_config)
    runner = dev_runner(engine, data, dev)
    runner.chunk_size = batch_size  # one engine batch per chunk: progress and partial results per batch
    records = [r.raw for r in dev]
    out: list[dict] = []
    sink = None
    if scores is not None:
        scores.parent.mkdir(parents=True, exist_ok=True)
        sink = scores.open("w", encoding="utf-8")
    try:
        done = 0
        for chunk in runner.iter_chunks(drugcomb_items(records)):
            rows = [
                row
                for rec, res in zip(records[done : done + len(chunk)], chunk)
                for row in relation_outcomes(rec, res)
            ]
            done += len(chunk)
            out.extend(rows)
            if sink is not None:
                sink.write("".join(json.dumps(r) + "\n" for r in rows))
                sink.flush()
            log.info("confidence: %d/%d dev sentences, %d relations", done, len(records), len(out))
    finally:
        if sink is not None:
            sink.close()
    return out


def rule_accuracy(adapter: Path, kinds: tuple[str, ...] = ("rule_all_drugs", "rule_cue")) -> dict[str, dict]:
    """Share of each rule's relations on the adapter's dev split that are right (``relation_outcomes``):
    how the rules' constant confidences (``model.engines.rules.RULE_CONFIDENCE``) were measured."""
    from etl.drugs import default_matcher
    from model.engines import create_engine
    from model.engines.base import EngineConfig
    from model.evaluation.run import drugcomb_items
    from model.extraction import ExtractionRunner
    from training.data import DataConfig, load_splits

    data = from_dict(DataConfig, _provenance(adapter).get("config", {}).get("data", {}))
    data.validate()
    records = [r.raw for r in load_splits(data).dev]
    matcher = default_matcher()
    out = {}
    for kind in kinds:
        runner = ExtractionRunner(
            create_engine(EngineConfig(kind=kind), matcher=matcher), data.prompt, matcher=matcher
        )
        rows = [
            row
            for rec, res in zip(records, runner.run(drugcomb_items(records)))
            for row in relation_outcomes(rec, res)
        ]
        right = sum(1 for r in rows if r["correct"])
        out[kind] = {"relations": len(rows), "right": right, "accuracy": right / len(rows) if rows else None}
    return out


PLATT_PRIOR = 1.0  # precision of the Gaussian prior on (a - 1, b) of the shipped Platt map


def fit_confidence(rows: list[dict], *, method: str = "platt", bins: int = 5, folds: int = 5) -> tuple:
    """(calibration, report) from relation rows; rows without a score (no slot aligned) are counted."""
    from model.confidence import expected_calibration_error, fit_isotonic, fit_platt, reliability_table

    scored = [r for r in rows if r["score"] is not None]
    pairs = [(r["score"], bool(r["correct"])) for r in scored]
    positions = [r["relation_index"] for r in scored]

    def fit(which: list[int]):
        # Platt with a unit prior on the identity map (a few dozen dev relations must not make it a
        # step) and its own offset for later relations; isotonic on the score alone
        chosen = [pairs[i] for i in which]
        if method == "platt":
            return fit_platt(chosen, positions=[positions[i] for i in which], prior=PLATT_PRIOR)
        return fit_isotonic(chosen)

    calibration = fit(list(range(len(pairs))))
    calibrated = [(calibration.apply(s, positions[i]), y) for i, (s, y) in enumerate(pairs)]
    # out of sample: each pair mapped by a fit on the other folds (the in-sample table flatters a map
    # fitted on a few dozen relations)
    held_out = []
    for fold in range(folds):
        train = [i for i in range(len(pairs)) if i % folds != fold]
        if len({pairs[i][1] for i in train}) < 2:
            continue
        fold_fit = fit(train)
        held_out += [
            (fold_fit.apply(s, positions[i]), y) for i, (s, y) in enumerate(pairs) if i % folds == fold
        ]
    report = {
        "relations": len(rows),
        "scored": len(pairs),
        "unscored": len(rows) - len(pairs),
        "accuracy": sum(1 for _, y in pairs if y) / len(pairs),
        "reliability_raw": reliability_table(pairs, bins),
        "reliability_calibrated": reliability_table(calibrated, bins),
        f"reliability_{folds}fold": reliability_table(held_out, bins) if held_out else [],
        "ece_raw": expected_calibration_error(pairs, bins),
        "ece_calibrated": expected_calibration_error(calibrated, bins),
        f"ece_{folds}fold": expected_calibration_error(held_out, bins) if held_out else None,
    }
    return calibration, report


def calibrate_confidence(
    adapter: Path,
    *,
    scores: Path,
    from_scores: bool = False,
    method: str = "platt",
    batch_size: int = 16,
    max_new_tokens: int = 128,
    dev_limit: int | None = None,
    cache: str = "dynamic",
    threads: int | None = None,
    write: bool = True,
) -> dict:
    """Collect (or read back) the dev relations' raw scores, fit the map, store it with the adapter."""
    from dataclasses import replace as dc_replace

    from model.confidence import write_confidence_calibration

    if from_scores:
        rows = [json.loads(line) for line in scores.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        rows = collect_confidence_scores(
            adapter,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            dev_limit=dev_limit,
            cache=cache,
            threads=threads,
            scores=scores,
        )
        log.info("wrote %d dev relations' raw scores to %s", len(rows), scores)
    calibration, report = fit_confidence(rows, method=method)
    calibration = dc_replace(
        calibration,
        fitted_on={
            **calibration.fitted_on,
            "split": "DrugComb dev split of the adapter's training record",
            "correct": "drug set equals a gold set exactly (any label)",
            "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    if write:
        path = write_confidence_calibration(adapter, calibration, {"report": report})
        log.info("wrote %s", path)
    return {**calibration.as_dict(), "report": report}


# --- the confidence map on the real-PubMed set (data/realpm) --------------------------------------------

MIN_CONFIDENCE_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def realpm_relation_outcomes(record: dict, result: dict, mentions: list[dict]) -> list[dict]:
    """Per parsed relation of one real-PubMed sentence, as the sweep stores it (``stored_relations``: its
    known drug members only): raw score, position, confidence the model wrote, and whether the stored
    drug set is exactly a gold set (any label).  Relations that store no combination (NO_COMB, fewer than
    two drug members) are left out: they make no combination row, so no row carries their confidence."""
    from model.confidence import combination_score, logprobs_from_rows, relations_with_evidence
    from model.evaluation.run import stored_relations
    from model.evaluation.sentences import gold_sets, predicted_sets

    gold = {g.drugs for g in gold_sets(record)}
    relations = relations_with_evidence(result)
    stored = stored_relations(relations, mentions)
    out = []
    for index, (relation, kept) in enumerate(zip(relations, stored)):
        rows = predicted_sets(record, [kept])
        if not rows:
            continue
        logprobs = logprobs_from_rows(relation.get("label_logprobs"))
        out.append(
            {
                "doc_id": record["doc_id"],
                "relation_index": index,
                "label": relation.get("label"),
                "drugs": sorted(map(str, rows[0].drugs)),
                "score": combination_score(logprobs),
                "logprobs": logprobs,
                "shipped_confidence": relation.get("confidence"),
                "correct": rows[0].drugs in gold,
            }
        )
    return out


def realpm_scores(
    outputs: Path, gold: Path | None = None, split: str = "dev"
) -> tuple[list[dict], list[dict], dict]:
    """(relation rows, gold records of the split, doc_id -> sweep view) from ``rexdrug eval realpm --out``'s
    ``outputs.jsonl`` of one model: every sentence the sweep sent to the model, its runner result."""
    from etl.drugs import default_matcher
    from etl.paths import data_path
    from model.evaluation.drugcomb import read_jsonl
    from model.evaluation.run import sweep_view
    from model.evaluation.sentences import select_split

    records = select_split(read_jsonl(gold or data_path("realpm", "gold.jsonl")), split)
    by_id = {r["doc_id"]: r for r in records}
    results = [
        json.loads(line) for line in Path(outputs).read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    unknown = [r["doc_id"] for r in results if r["doc_id"] not in by_id]
    if unknown:
        raise ValueError(
            f"{outputs}: {len(unknown)} outputs are not {split} sentences of the gold file "
            f"(first: {unknown[0]!r}); pass the --split they were run on"
        )
    matcher, cache = default_matcher(), {}
    views = {r["doc_id"]: sweep_view(r, matcher, cache) for r in records}
    rows = [
        row
        for res in results
        for row in realpm_relation_outcomes(by_id[res["doc_id"]], res, views[res["doc_id"]]["mentions"])
    ]
    return rows, records, {"results": results, "views": views}


def min_confidence_curve(
    rows: list[dict], records: list[dict], runs: dict, confidence_of, grid=MIN_CONFIDENCE_GRID
) -> list[dict]:
    """Exact-set precision/recall (any label) of the stored combinations whose confidence is >= each
    threshold: what ``sweep --min-confidence`` keeps in the KB.  ``confidence_of(row)`` gives a row's
    confidence; a threshold of 0 keeps every row."""
    from model.confidence import relations_with_evidence
    from model.evaluation.run import stored_relations
    from model.evaluation.sentences import score_sentences

    keep = {(r["doc_id"], r["relation_index"]): confidence_of(r) for r in rows}
    curve = []
    for t in grid:
        relations = {}
        for res in runs["results"]:
            stored = stored_relations(relations_with_evidence(res), runs["views"][res["doc_id"]]["mentions"])
            relations[res["doc_id"]] = [
                rel
                for i, rel in enumerate(stored)
                if (res["doc_id"], i) in keep and (t <= 0 or keep[(res["doc_id"], i)] >= t)
            ]
        c = score_sentences(records, relations)["combinations"]["any_exact"]
        curve.append(
            {
                "min_confidence": t,
                "precision": c["precision"],
                "recall": c["recall"],
                "f1": c["f1"],
                "predicted": c["n_pred"],
            }
        )
    return curve


def calibrate_realpm_confidence(
    adapter: Path,
    *,
    outputs: Path,
    gold: Path | None = None,
    split: str = "dev",
    method: str = "platt",
    write: bool = True,
) -> dict:
    """Refit the adapter's confidence map on the real-PubMed ``split`` from one ``eval realpm --out`` run
    of that adapter (its label priors and its shipped map on), report the ECE of the shipped map (out of
    sample: it was fitted elsewhere) and of the refit (in sample and 5-fold), and the precision/recall
    of each ``min_confidence`` under the refit map."""
    from dataclasses import replace as dc_replace

    from model.confidence import (
        expected_calibration_error,
        load_confidence_calibration,
        write_confidence_calibration,
    )

    rows, records, runs = realpm_scores(outputs, gold, split)
    scored = [r for r in rows if r["score"] is not None]
    if not scored:
        raise ValueError(f"{outputs}: no stored combination with a label distribution to fit on")
    shipped = load_confidence_calibration(adapter)
    before = {"ece_raw": expected_calibration_error([(r["score"], r["correct"]) for r in scored])}
    if shipped is not None:
        before["ece_shipped_map"] = expected_calibration_error(
            [(shipped.apply(r["score"], r["relation_index"]), r["correct"]) for r in scored]
        )
        before["shipped_fitted_on"] = shipped.fitted_on
    calibration, report = fit_confidence(rows, method=method)
    calibration = dc_replace(
        calibration,
        fitted_on={
            **calibration.fitted_on,
            "split": f"realpm {split} (data/realpm/gold.jsonl): the sweep's candidate "
            "sentences, relations as the sweep stores them",
            "correct": "stored drug set equals a gold set exactly (any label)",
            "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )

    def conf(map_):
        return lambda r: map_.apply(r["score"], r["relation_index"]) if r["score"] is not None else None

    curve = min_confidence_curve(rows, records, runs, conf(calibration))
    out = {
        **calibration.as_dict(),
        "before": before,
        "report": report,
        "min_confidence_curve": curve,
        "relations": len(rows),
        "right": sum(1 for r in rows if r["correct"]),
    }
    if write:
        path = write_confidence_calibration(
            adapter, calibration, {"report": report, "before": before, "min_confidence_curve": curve}
        )
        log.info("wrote %s", path)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rexdrug train calibrate`` and ``python -m training.calibrate`` (one parser)."""
    parser.add_argument(
        "--adapter", type=Path, required=True, help="adapter folder holding rexdrug_training.json"
    )
    parser.add_argument("--model", help="base model (default: the one in the training record)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dev-limit", type=int, help="only the first N dev sentences (quick checks)")
    parser.add_argument("--dry-run", action="store_true", help="print the decision, do not write it")
    parser.add_argument(
        "--confidence",
        action="store_true",
        help="fit the combination-confidence map (model.confidence) instead of the label priors",
    )
    parser.add_argument(
        "--scores",
        type=Path,
        default=Path("runs/confidence_dev_scores.jsonl"),
        help="--confidence: where the dev relations' raw scores are written (or read)",
    )
    parser.add_argument(
        "--from-scores", action="store_true", help="--confidence: refit from --scores, no generation"
    )
    parser.add_argument("--method", choices=["platt", "isotonic"], default="platt")
    parser.add_argument(
        "--cache",
        choices=["dynamic", "static"],
        default="dynamic",
        help="--confidence: KV cache of the generation (static is faster on CPU)",
    )
    parser.add_argument("--threads", type=int, help="--confidence: torch CPU threads")
    parser.add_argument(
        "--realpm-outputs",
        type=Path,
        help="--confidence: refit on the real-PubMed set from this `rexdrug eval realpm --out` "
        "outputs.jsonl of the adapter (no generation)",
    )
    parser.add_argument(
        "--gold", type=Path, help="--realpm-outputs: gold file (default data/realpm/gold.jsonl)"
    )
    parser.add_argument("--split", default="dev", help="--realpm-outputs: the split the outputs were run on")


def run(args: argparse.Namespace) -> dict:
    """The calibration the options ask for; its summary.  Raises ``ValueError`` on configuration errors."""
    if args.confidence and args.realpm_outputs:
        return calibrate_realpm_confidence(
            args.adapter,
            outputs=args.realpm_outputs,
            gold=args.gold,
            split=args.split,
            method=args.method,
            write=not args.dry_run,
        )
    if args.confidence:
        return calibrate_confidence(
            args.adapter,
            scores=args.scores,
            from_scores=args.from_scores,
            method=args.method,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            dev_limit=args.dev_limit,
            cache=args.cache,
            threads=args.threads,
            write=not args.dry_run,
        )
    return calibrate_adapter(
        args.adapter,
        model=args.model,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        dev_limit=args.dev_limit,
        write=not args.dry_run,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m training.calibrate``: the same options and code as ``rexdrug train calibrate``."""
    from training.common import tool_main

    return tool_main(__doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
