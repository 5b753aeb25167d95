"""`rexdrug kb diff`: the KB as of a past run recomputed from the history, and the changes since then.

A tiny real warehouse folder (Parquet files in the sweep's layout + the DuckDB views), written run by
run without Spark.  Three nights:

- R1 (2026-01-01): articles 1 (A+B POS) and 2 (A+C POS).
- R2 (2026-01-02): article 3 with two sentences: A+B NEG and B+D POS.
- R3 (2026-01-03): article 2 deleted (A+C gone), article 4: A+B NEG.

KB after each night (hand-computed): R1 {A+B POS [1], A+C POS [2]}; R2 {A+B MIXED (1 POS, 1 NEG) [1,3],
A+C POS [2], B+D POS [3]}; R3 {A+B NEG (1 POS, 2 NEG) [1,3,4], B+D POS [3]}.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.kb import build_kb
from etl.warehouse import WarehouseLayout, connect_readonly, file_key, refresh
from jobs.cli import main
from jobs.kb_diff import Baseline, diff_kb, kb_as_of, kb_diff, resolve_baseline
from schemas.articles import ARTICLES, DELETIONS
from schemas.extraction import COMBINATIONS, EXTRACTIONS, SWEEP_RUNS, SWEEP_SENTENCES


def at(day: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, 2, minute, tzinfo=UTC)


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def write(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def night(
    warehouse: Path,
    run_id: str,
    day: int,
    articles: dict[str, list[tuple[str, list[str]]]],
    deleted: tuple[str, ...] = (),
    status: str = "ok",
    ingest: bool = True,
) -> None:
    """One committed run: ingest ``articles`` (pmid -> sentences as (label, drug ids)), delete ``deleted``,
    one sentence, extraction and combination per (label, drugs).  ``ingest=False``: the articles are
    already there and this run only extracts their sentences again (a retry); an extraction whose
    ``status`` is an engine failure has no combination."""
    layout = WarehouseLayout(warehouse)
    source = f"pubmed26n{day:04d}.xml"
    abstracts = {
        pmid: " ".join(f"sentence {pmid}.{i}." for i in range(len(s))) for pmid, s in articles.items()
    }
    write_articles = write if ingest else (lambda *a: None)
    write_articles(
        layout.root / "articles" / f"file_key={file_key(source)}" / "part-0.parquet",
        [
            {
                "pmid": pmid,
                "pmid_version": 1,
                "record_type": "article",
                "abstract": abstracts[pmid],
                "pub_year": 2000 + day,
                "source_file": source,
                "record_position": i,
                "file_order": day,
                "ingested_at": at(day, 1),
            }
            for i, pmid in enumerate(articles)
        ],
        ARTICLES,
    )
    if deleted:
        write(
            layout.root / "deletions" / f"file_key={file_key(source)}" / "part-0.parquet",
            [
                {
                    "pmid": pmid,
                    "source_file": source,
                    "record_position": 100 + i,
                    "file_order": day,
                    "ingested_at": at(day, 1),
                }
                for i, pmid in enumerate(deleted)
            ],
            DELETIONS,
        )
    sentences, extractions, combinations = [], [], []
    for pmid, items in articles.items():
        for index, (label, ids) in enumerate(items):
            text = f"sentence {pmid}.{index}."
            key = sha1(f"{pmid}|{index}")  # same sentence, model and prompt: same key in every run
            start = abstracts[pmid].index(text)
            if ingest:
                sentences.append(
                    {
                        "pmid": pmid,
                        "pmid_version": 1,
                        "sentence_index": index,
                        "start": start,
                        "end": start + len(text),
                        "text": text,
                        "text_hash": sha1(text),
                        "n_distinct_drugs": 2,
                        "n_distinct_classes": 0,
                        "is_candidate": True,
                        "abstract_hash": hashlib.md5(abstracts[pmid].encode()).hexdigest(),
                    }
                )
            base = {
                "extraction_key": key,
                "pmid": pmid,
                "pmid_version": 1,
                "sentence_index": index,
                "sentence_text": text,
                "text_hash": sha1(text),
                "model_id": "m",
                "prompt_version": "p",
                "run_id": run_id,
                "extracted_at": at(day, 5),
            }
            extractions.append({**base, "parse_status": status, "n_relations": int(status == "ok")})
            if status != "ok":
                continue
            combinations.append(
                {
                    **base,
                    "combination_id": key + "-0",
                    "relation_index": 0,
                    "label": label,
                    "drugs": [{"canonical_id": i, "preferred_name": i.lower(), "surface": i} for i in ids],
                    "drug_set_key": " + ".join(sorted(ids)),
                    "drug_set_ids": sorted(ids),
                    "n_drugs": len(ids),
                }
            )
    for name, rows, schema in (
        ("sentences", sentences, SWEEP_SENTENCES),
        ("extractions", extractions, EXTRACTIONS),
        ("combinations", combinations, COMBINATIONS),
    ):
        if rows:
            write(layout.root / name / f"run_id={run_id}" / "part-0.parquet", rows, schema)
    write(
        layout.root / "sweep_runs" / f"run-{run_id}.parquet",
        [
            {
                "run_id": run_id,
                "status": "committed",
                "source": "files",
                "started_at": at(day, 0),
                "finished_at": at(day, 10),
            }
        ],
        SWEEP_RUNS,
    )
    refresh(warehouse)


NIGHTS = [
    ("R1", 1, {"1": [("POS", ["A", "B"])], "2": [("POS", ["A", "C"])]}, ()),
    ("R2", 2, {"3": [("NEG", ["A", "B"]), ("POS", ["B", "D"])]}, ()),
    ("R3", 3, {"4": [("NEG", ["A", "B"])]}, ("2",)),
]


def summary(kb: pa.Table) -> dict[str, tuple]:
    return {r["drug_set_key"]: (r["consensus_label"], r["pmids"], r["n_mentions"]) for r in kb.to_pylist()}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> tuple[Path, dict[str, pa.Table]]:
    """The warehouse after R3, and the KB as build_kb computed it right after each night."""
    wh = tmp_path_factory.mktemp("kbdiff") / "wh"
    after = {}
    for run_id, day, articles, deleted in NIGHTS:
        night(wh, run_id, day, articles, deleted)
        with connect_readonly(wh) as con:
            after[run_id] = build_kb(con)
    return wh, after


def test_the_nightly_kbs_are_the_hand_computed_ones(warehouse):
    _, after = warehouse
    assert summary(after["R1"]) == {"A + B": ("POS", ["1"], 1), "A + C": ("POS", ["2"], 1)}
    assert summary(after["R2"]) == {
        "A + B": ("MIXED", ["1", "3"], 2),
        "A + C": ("POS", ["2"], 1),
        "B + D": ("POS", ["3"], 1),
    }
    assert summary(after["R3"]) == {"A + B": ("NEG", ["1", "3", "4"], 3), "B + D": ("POS", ["3"], 1)}


@pytest.mark.parametrize("run_id", ["R1", "R2", "R3"])
def test_kb_as_of_a_run_equals_the_kb_built_that_night(warehouse, run_id):
    wh, after = warehouse
    with connect_readonly(wh) as con:
        then = kb_as_of(con, resolve_baseline(con, run_id))
        # the connection is left as found: its current views see the whole history again
        assert con.execute("SELECT count(*) FROM current_articles").fetchall() == [(3,)]
    assert then.to_pylist() == after[run_id].to_pylist()


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        # what the latest run (R3) changed: A+B MIXED -> NEG with paper 4; A+C gone with its deleted paper
        (
            None,
            [
                ("changed", "A + B", "MIXED", "NEG", ["4"], [], True, True),
                ("removed", "A + C", "POS", None, [], ["2"], None, None),
            ],
        ),
        (
            "R1",
            [
                ("new", "B + D", None, "POS", ["3"], [], None, None),
                ("changed", "A + B", "POS", "NEG", ["3", "4"], [], True, True),
                ("removed", "A + C", "POS", None, [], ["2"], None, None),
            ],
        ),
        (
            "2026-01-02",
            [
                ("new", "B + D", None, "POS", ["3"], [], None, None),  # before that day's run: as of R1
                ("changed", "A + B", "POS", "NEG", ["3", "4"], [], True, True),
                ("removed", "A + C", "POS", None, [], ["2"], None, None),
            ],
        ),
        (
            "2025/12/31",
            [
                ("new", "A + B", None, "NEG", ["1", "3", "4"], [], None, None),  # before any run
                ("new", "B + D", None, "POS", ["3"], [], None, None),
            ],
        ),
        ("R3", []),
    ],
)
def test_changes_since(warehouse, since, expected):
    wh, _ = warehouse
    _, changes = kb_diff(wh, since)
    got = [
        (
            c["change"],
            c["drug_set_key"],
            c["previous_label"],
            c["consensus_label"],
            c["added_pmids"],
            c["removed_pmids"],
            c["label_changed"],
            c["evidence_changed"],
        )
        for c in changes
    ]
    assert got == expected


def test_evidence_change_without_label_change():
    before = [{"drug_set_key": "X", "consensus_label": "POS", "pmids": ["1"], "n_papers": 1, "n_mentions": 1}]
    more_sentences = [{**before[0], "n_mentions": 2}]
    (change,) = diff_kb(before, more_sentences)
    assert (change["change"], change["label_changed"], change["evidence_changed"]) == ("changed", False, True)
    assert (change["previous_n_mentions"], change["n_mentions"], change["added_pmids"]) == (1, 2, [])
    assert diff_kb(before, before) == []


def test_baseline_resolution(warehouse):
    wh, _ = warehouse
    with connect_readonly(wh) as con:
        assert resolve_baseline(con, None) == Baseline("R2", at(2, 10), ("R1", "R2"))
        assert resolve_baseline(con, "2026-01-01") == Baseline(None, None, ())
        assert resolve_baseline(con, "2026-01-04").run_id == "R3"
        with pytest.raises(ValueError, match="neither a run id"):
            resolve_baseline(con, "R9")


def test_cli(warehouse, capsys):
    wh, _ = warehouse
    assert main(["kb", "diff", "--warehouse", str(wh), "--since", "R1", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["change"], r["drug_set_key"]) for r in rows] == [
        ("new", "B + D"),
        ("changed", "A + B"),
        ("removed", "A + C"),
    ]
    assert main(["kb", "diff", "--warehouse", str(wh)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:4] == ["changed", "MIXED->NEG", "2->3", "2->3"]
    assert main(["kb", "diff", "--warehouse", str(wh), "--since", "yesterday-ish"]) == 2


def test_a_retry_by_a_later_run_is_not_in_the_earlier_state(tmp_path):
    """R1's extraction failed (engine down), R2 retried the same sentence: as of R1 there was nothing."""
    wh = tmp_path / "wh"
    night(wh, "R1", 1, {"1": [("POS", ["A", "B"])]}, status="engine_error")
    night(wh, "R2", 2, {"1": [("POS", ["A", "B"])]}, ingest=False)
    with connect_readonly(wh) as con:
        assert con.execute("SELECT count(*) FROM articles").fetchall() == [(1,)]
    _, changes = kb_diff(wh, "R1")
    assert [(c["change"], c["drug_set_key"], c["added_pmids"]) for c in changes] == [("new", "A + B", ["1"])]


def test_a_warehouse_without_sweeps_is_a_configuration_error(tmp_path):
    from etl.warehouse import refresh_duckdb

    refresh_duckdb(tmp_path / "wh")  # ingest-only: no sweep tables
    assert main(["kb", "diff", "--warehouse", str(tmp_path / "wh")]) == 2
    assert main(["kb", "diff", "--warehouse", str(tmp_path / "missing")]) == 2
