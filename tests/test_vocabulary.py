"""The task vocabulary has one owner, ``schemas/answer.py``: labels, parse and runner statuses.

A second declaration (a literal ``("POS", "COMB", "NEG")``, a status compared as ``"repaired"``, a
``"NO_COMB"`` dict key) drifts from the owner the day a label or status changes, so the scan below fails
on any string constant equal to a vocabulary word outside the owner (docstrings aside; the words inside
longer strings, e.g. prompt texts and SQL, are not declarations).  The scan reads the source with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from schemas import answer

ROOT = Path(__file__).resolve().parents[1]
OWNER = ROOT / "schemas" / "answer.py"
PACKAGES = ("schemas", "etl", "model", "training", "jobs")
# "ok" and the task names are left out: they are words of other vocabularies too (trace reviews; the
# benchmark, data folder and prompt variant names "drugcomb" and "ddi")
VOCABULARY = frozenset(
    answer.LABELS
    + answer.DDI_LABELS
    + answer.DDI_TYPES
    + tuple(s for s in answer.PARSE_STATUSES if s != answer.PARSE_OK)
    + answer.RUNNER_STATUSES
)


def vocabulary_literals(source: str) -> list[tuple[int, str]]:
    """(line, word) of every string constant of ``source`` that is a vocabulary word (docstrings skipped)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in VOCABULARY
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize(
    "source, expected",
    [
        ('LABELS = ("POS", "COMB", "NEG")\n', [(1, "POS"), (1, "COMB"), (1, "NEG")]),
        ('if status in ("ok", "repaired"):\n    pass\n', [(1, "repaired")]),
        ('x = {"NO_COMB": 0}\n', [(1, "NO_COMB")]),
        ('def f():\n    """POS"""\n    return "no POS here"\n', []),  # a docstring; a longer string
        ('TYPES = ("effect", "int")\n', [(1, "effect"), (1, "int")]),
    ],
)
def test_vocabulary_literals(source, expected):
    assert vocabulary_literals(source) == expected


def test_the_task_vocabulary_is_declared_once():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == OWNER:
                continue
            found += [
                f"{path.relative_to(ROOT)}:{line}: {word!r}"
                for line, word in vocabulary_literals(path.read_text(encoding="utf-8"))
            ]
    assert found == [], "use the names of schemas/answer.py:\n" + "\n".join(found)


def test_the_owners_names_are_the_ones_the_layers_use():
    from etl import combinations, report
    from model import answer_schema, parsing
    from model.engines import label_bias
    from model.evaluation import ddi
    from schemas import extraction

    assert answer_schema.LABELS is label_bias.LABELS is answer.LABELS and ddi.DDI_TYPES is answer.DDI_TYPES
    assert combinations.USABLE_PARSE_STATUSES is answer.USABLE_PARSE_STATUSES
    assert report.LABELS is answer.COMBINATION_LABELS
    assert combinations.SENTENCE_KEY is extraction.SENTENCE_KEY
    completions = (
        '<answer>[{"type": "NO_COMB", "ent_set": []}]</answer>',
        "<answer>[]</answer>",
        "",
        '<answer>[{"type": }]</answer>',
        "<answer>[1, 2]</answer>",
    )
    assert [parsing.parse_completion(t).status for t in completions] == list(answer.PARSE_STATUSES)
    assert answer.USABLE_PARSE_STATUSES < set(answer.PARSE_STATUSES)
    assert answer.RETRYABLE_STATUSES.isdisjoint(answer.PARSE_STATUSES)
