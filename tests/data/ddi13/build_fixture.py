"""Rebuild DDICorpus-fixture.zip from src/ (see README.md); deterministic member order and timestamps."""

from __future__ import annotations

import zipfile
from pathlib import Path

HERE = Path(__file__).parent
MEMBERS = {
    "DDICorpus/Test/Test for DDI Extraction task/DrugBank/Fixture_ddi.xml": "src/test_drugbank.xml",
    "DDICorpus/Test/Test for DDI Extraction task/MedLine/900.xml": "src/test_medline.xml",
    "DDICorpus/Train/DrugBank/Fixture_train.xml": "src/train_drugbank.xml",
    "DDICorpus/Test/Test for DrugNER task/MedLine/900.xml": "src/test_medline.xml",
}


def build(path: Path = HERE / "DDICorpus-fixture.zip") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for member, source in MEMBERS.items():
            z.writestr(zipfile.ZipInfo(member, (2015, 9, 28, 9, 54, 0)), (HERE / source).read_bytes())
        z.writestr(
            zipfile.ZipInfo(
                "DDICorpus/Test/Test for DDI Extraction task/DrugBank/.DS_Store", (2015, 9, 28, 9, 54, 0)
            ),
            b"\x00\x00\x00\x01Bud1",
        )
    return path


if __name__ == "__main__":
    print(build())
