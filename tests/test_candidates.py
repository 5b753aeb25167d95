"""sentence_table: articles (Arrow) -> SENTENCES rows with mentions and the candidate flag."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest

from etl.candidates import sentence_table
from schemas.articles import ARTICLES
from schemas.drugs import SENTENCES
from schemas.spark import conform


def articles(rows):
    base = {"record_type": "article", "source_file": "t.xml", "record_position": 0}
    table = pa.Table.from_pylist(
        [{**base, **r} for r in rows],
        schema=pa.schema(
            [
                f
                for f in ARTICLES
                if f.name
                in {
                    "pmid",
                    "pmid_version",
                    "record_type",
                    "title",
                    "abstract",
                    "chemicals",
                    "source_file",
                    "record_position",
                }
            ]
        ),
    )
    return conform(table, ARTICLES)


ABSTRACT = (
    "Cisplatin plus gemcitabine was compared with carboplatin alone. Patients had toxicity. "
    "A PD-1 inhibitor and a taxane were also tried. Paclitaxel/carboplatin (TC) was given."
)


@pytest.fixture(scope="module")
def table():
    return sentence_table(
        articles(
            [
                {
                    "pmid": "1",
                    "pmid_version": 1,
                    "title": "t",
                    "abstract": ABSTRACT,
                    "chemicals": [{"ui": "D017239", "name": "Paclitaxel", "registry_number": "P88XT4IS4D"}],
                },
                {"pmid": "2", "pmid_version": 2, "title": "no abstract", "abstract": None, "chemicals": None},
                {
                    "pmid": "3",
                    "pmid_version": 1,
                    "title": "t",
                    "abstract": "Patients got TC. Cholesterol and TC rose.",
                    "chemicals": [],
                },
            ]
        )
    )


def test_schema_and_rows(table):
    assert table.schema == SENTENCES
    rows = table.to_pylist()
    assert [(r["pmid"], r["sentence_index"]) for r in rows] == [
        ("1", 0),
        ("1", 1),
        ("1", 2),
        ("1", 3),
        ("3", 0),
        ("3", 1),
    ]


def test_offsets_hash_and_mentions(table):
    for r in table.to_pylist():
        abstract = ABSTRACT if r["pmid"] == "1" else "Patients got TC. Cholesterol and TC rose."
        assert abstract[r["start"] : r["end"]] == r["text"]
        assert r["text_hash"] == hashlib.sha1(r["text"].encode()).hexdigest()
        for m in r["mentions"]:
            assert r["text"][m["start"] : m["end"]] == m["surface"]


def test_candidates_count_distinct_drugs_and_classes_apart(table):
    rows = {(r["pmid"], r["sentence_index"]): r for r in table.to_pylist()}
    first = rows[("1", 0)]
    assert first["n_distinct_drugs"] == 3 and first["is_candidate"]
    assert not rows[("1", 1)]["is_candidate"] and rows[("1", 1)]["mentions"] == []
    classes = rows[("1", 2)]
    assert (
        classes["n_distinct_drugs"] == 0
        and classes["n_distinct_classes"] == 2
        and not classes["is_candidate"]
    )
    # TC is accepted on article 1 (its MeSH chemicals list paclitaxel); the regimen is not counted on
    # top of its own components
    tc = rows[("1", 3)]
    assert [m["surface"] for m in tc["mentions"]] == ["Paclitaxel", "carboplatin", "TC"]
    assert tc["n_distinct_drugs"] == 2 and tc["is_candidate"]


def test_ambiguous_acronym_needs_mesh_evidence(table):
    rows = [r for r in table.to_pylist() if r["pmid"] == "3"]
    assert all(r["mentions"] == [] for r in rows)


def test_record_batch_input_and_missing_column():
    batch = articles(
        [{"pmid": "9", "pmid_version": 1, "abstract": "Aspirin and clopidogrel.", "chemicals": None}]
    ).to_batches()[0]
    out = sentence_table(batch)
    assert out.num_rows == 1 and out.column("is_candidate").to_pylist() == [True]
    with pytest.raises(ValueError, match="abstract"):
        sentence_table(pa.table({"pmid": ["1"], "pmid_version": [1]}))


@pytest.mark.spark
def test_runs_in_spark_map_in_arrow(spark):
    from schemas.spark import to_spark

    arts = articles([{"pmid": "1", "pmid_version": 1, "abstract": ABSTRACT, "chemicals": []}])
    df = spark.createDataFrame(arts.select(["pmid", "pmid_version", "abstract"]).to_pandas())

    def fn(batches):
        for b in batches:
            yield from sentence_table(pa.Table.from_batches([b])).to_batches()

    out = df.mapInArrow(fn, to_spark(SENTENCES)).collect()
    assert len(out) == 4 and sum(r["is_candidate"] for r in out) == 2


def test_abbreviation_defined_in_one_sentence_counts_in_the_next():
    out = sentence_table(
        articles(
            [
                {
                    "pmid": "9",
                    "pmid_version": 1,
                    "title": "t",
                    "chemicals": [],
                    "abstract": "The agonists buspirone (BU) and ipsapirone (IPSA) were studied. BU and IPSA acted additively.",
                }
            ]
        )
    )
    second = out.to_pylist()[1]
    assert [(m["surface"], m["preferred_name"]) for m in second["mentions"]] == [
        ("BU", "Buspirone"),
        ("IPSA", "Ipsapirone"),
    ]
    assert second["is_candidate"]


def test_research_codes_are_candidate_drugs():
    out = sentence_table(
        articles(
            [
                {
                    "pmid": "10",
                    "pmid_version": 1,
                    "title": "t",
                    "chemicals": [],
                    "abstract": "PF-4708671 potentiated selumetinib.",
                }
            ]
        )
    )
    row = out.to_pylist()[0]
    assert row["n_distinct_drugs"] == 2 and row["mentions"][0]["id"] == "RXD:CODE:PF4708671"


@pytest.mark.parametrize(
    "abstract, expected",
    [
        # a docking study (the demo's): its drugs are ligands, not a combination given
        (
            (
                "We used molecular docking of pollutants. Both paclitaxel and sotorasib stabilize the protein. "
                "Paclitaxel combined with sotorasib bound the pocket."
            ),
            [False, False, True],  # the first has no two drugs; the third has a co-administration cue
        ),
        ("RMSD analyses were run. Paclitaxel and sotorasib stabilize the protein.", [False, False]),
        # the same sentence in a clinical abstract is a candidate, as before
        ("Patients were treated. Paclitaxel and sotorasib stabilized the disease.", [False, True]),
    ],
)
def test_in_silico_abstracts_need_a_co_administration_cue(abstract, expected):
    rows = sentence_table(
        articles([{"pmid": "7", "pmid_version": 1, "title": "t", "chemicals": [], "abstract": abstract}])
    )
    assert [r["is_candidate"] for r in rows.to_pylist()] == expected


def test_the_in_silico_rule_can_be_switched_off():
    from etl.candidates import SelectorConfig

    abstract = "RMSD analyses were run. Paclitaxel and sotorasib stabilize the protein."
    rows = sentence_table(
        articles([{"pmid": "7", "pmid_version": 1, "title": "t", "chemicals": [], "abstract": abstract}]),
        selector=SelectorConfig(in_silico_needs_cue=False),
    )
    assert [r["is_candidate"] for r in rows.to_pylist()] == [False, True]
