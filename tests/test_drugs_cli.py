"""`rexdrug drugs normalize|find` through the dispatcher (JSON lines on stdout)."""

from __future__ import annotations

import json

from jobs.cli import main


def run_cli(capsys, *argv):
    code = main(["drugs", *argv])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_normalize_prints_one_object_per_name_in_order(capsys):
    code, out = run_cli(capsys, "normalize", "Herceptin", "xyzzy", "FOLFOX")
    assert code == 0 and [o["name"] for o in out] == ["Herceptin", "xyzzy", "FOLFOX"]
    assert out[0]["preferred_name"] == "Trastuzumab" and out[1]["matched_by"] == "unnormalized"
    assert len(out[2]["components"]) == 3
    assert set(out[0]) == {
        "name",
        "id",
        "preferred_name",
        "ids",
        "is_class",
        "kind",
        "components",
        "matched_by",
    }


def test_find_text_and_file(capsys, tmp_path):
    text = "Paclitaxel/carboplatin vs gemcitabine+oxaliplatin."
    code, out = run_cli(capsys, "find", "--text", text)
    assert code == 0 and [o["surface"] for o in out] == [
        "Paclitaxel",
        "carboplatin",
        "gemcitabine",
        "oxaliplatin",
    ]
    assert all(text[o["start"] : o["end"]] == o["surface"] for o in out)
    f = tmp_path / "t.txt"
    f.write_text(text, encoding="utf-8")
    assert run_cli(capsys, "find", "--file", str(f))[1] == out


def test_find_missing_file_is_a_configuration_error(capsys, tmp_path):
    assert main(["drugs", "find", "--file", str(tmp_path / "nope.txt")]) == 2
