"""`rexdrug extract` as a real process on a JSONL file with good and bad lines (rule engine, no model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.extraction import input_problem

ROOT = Path(__file__).resolve().parents[1]
GOOD = "Cisplatin plus gemcitabine improved survival ."

# (line bytes, expected parse_status, a fragment of the reason) -- line numbers are 1-based, blank kept
LINES = [
    (json.dumps({"id": 1, "sentence": GOOD}).encode(), "ok", None),
    (
        json.dumps({"id": 2, "sentence": GOOD, "context": 42}).encode(),
        "input_error",
        "'context' must be a string",
    ),
    (json.dumps({"id": 3, "sentence": GOOD, "hints": 7}).encode(), "input_error", "'hints' must be a list"),
    (b'{"id": 4, "sentence": "caf\xe9 with cisplatin ."}', "input_error", "not UTF-8"),
    (b"", None, None),  # blank: skipped, no row
    (b'{"id": 6, "sentence": ', "input_error", "not JSON"),
    (b"[1, 2]", "input_error", "not a JSON object"),
    (
        json.dumps(
            {
                "id": 8,
                "sentence": "Docetaxel and cisplatin were combined .",
                "context": "Docetaxel and cisplatin were combined . It worked .",
                "hints": ["docetaxel", "cisplatin"],
            }
        ).encode(),
        "ok",
        None,
    ),
    (json.dumps({"id": 9, "sentence": 42}).encode(), "input_error", "'sentence' must be a non-empty string"),
    (
        json.dumps({"id": 10, "sentence": GOOD, "hints": ["cisplatin", 3]}).encode(),
        "input_error",
        "'hints' must be a list of strings",
    ),
]


def _extract(
    tmp_path: Path, lines: list[bytes], *extra: str
) -> tuple[subprocess.CompletedProcess, list[dict]]:
    src, out = tmp_path / "items.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs",
            "extract",
            "--input",
            str(src),
            "--output",
            str(out),
            "--model",
            "rule_all_drugs",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
        cwd=ROOT,
    )
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []
    return proc, rows


def test_bad_lines_become_error_rows_and_good_rows_are_written(tmp_path):
    proc, rows = _extract(tmp_path, [line for line, _, _ in LINES])
    assert proc.returncode == 0, proc.stderr
    expected = [(n, status, reason) for n, (_, status, reason) in enumerate(LINES, 1) if status]
    assert len(rows) == len(expected)
    for row, (n, status, reason) in zip(rows, expected):
        assert row["parse_status"] == status, (n, row)
        if status == "input_error":
            assert (
                row["line"] == n
                and row["parse_reason"].startswith(f"line {n}: ")
                and reason in row["parse_reason"]
            )
            assert row["parsed"] == [] and row["model_id"] == "rule:all_drugs"
    good = [r for r in rows if r["parse_status"] == "ok"]
    assert [r["id"] for r in good] == [1, 8] and all("line" not in r for r in good)
    assert [d["name"] for d in good[0]["parsed"][0]["drugs"]] == ["Cisplatin", "gemcitabine"]
    assert [r.get("id") for r in rows if r["parse_status"] == "input_error"] == [
        2,
        3,
        None,
        None,
        None,
        9,
        10,
    ]
    assert "7 of 9 input lines were bad input" in proc.stderr and "Traceback" not in proc.stderr


def test_with_hints_on_the_bad_hints_line_is_still_one_error_row(tmp_path):
    proc, rows = _extract(tmp_path, [LINES[0][0], LINES[2][0]], "--hints")
    assert proc.returncode == 0, proc.stderr
    assert [r["parse_status"] for r in rows] == ["ok", "input_error"]


def test_all_lines_bad_exits_1_with_the_error_rows_written(tmp_path):
    proc, rows = _extract(tmp_path, [LINES[1][0], LINES[3][0]])
    assert proc.returncode == 1
    assert [r["line"] for r in rows] == [1, 2] and "no line could be extracted" in proc.stderr


def test_missing_input_is_a_configuration_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs",
            "extract",
            "--input",
            str(tmp_path / "nope.jsonl"),
            "--model",
            "rule_no_comb",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2 and "input file not found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "item, problem",
    [
        ({"sentence": "A ."}, None),
        ({"sentence": "A .", "context": None, "hints": None}, None),
        ({"sentence": "A .", "context": "B .", "hints": ("x",)}, None),
        ({"sentence": "  "}, "'sentence' must be a non-empty string"),
        ({}, "'sentence' must be a non-empty string"),
        ({"sentence": "A .", "context": ["B"]}, "'context' must be a string or null, got list"),
        ({"sentence": "A .", "hints": "x"}, "'hints' must be a list of strings or null, got str"),
        ({"sentence": "A .", "hints": [None]}, "'hints' must be a list of strings"),
    ],
)
def test_input_problem(item, problem):
    assert input_problem(item) == problem
