"""The streaming PubMed parser on real NLM samples and hand-made edge cases."""

from __future__ import annotations

import gzip
import io
import json
import time
from pathlib import Path

import pyarrow as pa
import pytest

from etl.pubmed.parser import Record, iter_records, parse_to_tables
from schemas.articles import ARTICLES, DELETIONS, INGEST_ERRORS

DATA = Path(__file__).resolve().parent / "data" / "pubmed"
NLM = DATA / "nlm"
EFETCH = DATA / "efetch"
HANDMADE = DATA / "handmade"


def _records(source, name="f.xml") -> list[Record]:
    return list(iter_records(source, name))


def _by_kind(records, kind):
    return [r.row for r in records if r.kind == kind]


# --- real NLM samples ---------------------------------------------------------------------------------


def test_update_file_counts_match_readme():
    tables = parse_to_tables(NLM / "pubmed20n1016.xml", "pubmed20n1016.xml")
    assert tables["articles"].num_rows == 10
    assert tables["deletions"].num_rows == 218
    assert tables["errors"].num_rows == 0
    deletions = tables["deletions"].to_pylist()
    assert deletions[0]["pmid"] == "30834443" and deletions[0]["pmid_version"] == 1
    assert deletions[-1]["pmid"] == "31840735"
    # deletions come after the articles in the load order of the file
    assert deletions[0]["record_position"] == 10
    assert [d["record_position"] for d in deletions] == list(range(10, 228))


@pytest.mark.parametrize(
    ("path", "every", "reports"),
    [
        # 10 articles + 218 deletions: a report after every 100 records and one at the end
        (NLM / "pubmed20n1016.xml", 100, [(100, 0), (200, 0), (228, 0)]),
        (NLM / "pubmed20n1016.xml", 228, [(228, 0), (228, 0)]),  # the end reports even on a boundary
        # 2 articles, then the malformed part: 1 error row
        (Path(__file__).resolve().parent / "data" / "warehouse" / "bad" / "malformed.xml", 1000, [(3, 1)]),
    ],
)
def test_parse_reports_its_progress_in_records(path, every, reports):
    seen: list[tuple[int, int]] = []
    tables = parse_to_tables(
        path, path.name, lambda n, errors: seen.append((n, errors)), progress_every=every
    )
    assert seen == reports
    assert sum(t.num_rows for t in tables.values()) == reports[-1][0]


def test_gzip_update_sample_and_first_record_fields():
    tables = parse_to_tables(NLM / "pubmed22n1115.xml.gz", "pubmed22n1115.xml.gz")
    assert (tables["articles"].num_rows, tables["deletions"].num_rows, tables["errors"].num_rows) == (
        28,
        48,
        0,
    )
    articles = tables["articles"].to_pylist()
    assert len({a["pmid"] for a in articles}) == 28
    assert all(a["record_type"] == "article" and a["pmid"].isdigit() for a in articles)
    assert sum(1 for a in articles if a["abstract"] is None) == 2  # README: 2 records without Abstract


def test_first_record_of_plain_update_file():
    first = _by_kind(_records(NLM / "pubmed20n1016.xml"), "article")[0]
    assert first["pmid"] == "10075408"
    assert (
        first["title"]
        == "A twisted tale: the origin and evolution of motility and chemotaxis in prokaryotes."
    )
    assert first["journal"] == "Microbiology (Reading, England)"
    assert first["journal_iso"] == "Microbiology (Reading, Engl.)"
    assert first["pub_year"] == 1999 and first["pub_date"] == "1999-02"
    assert first["doi"] == "10.1099/13500872-145-2-279"
    assert first["date_revised"] == "2019-12-16"
    assert first["citation_status"] == "MEDLINE"
    archaea = first["mesh_headings"][0]
    assert archaea["ui"] == "D001105" and archaea["name"] == "Archaea" and archaea["major"] is False
    assert archaea["qualifiers"][0] == {"ui": "Q000235", "name": "genetics", "major": True}


def test_legacy_medline_citation_set():
    tables = parse_to_tables(NLM / "medline16n0902-excerpt.xml.gz", "medline16n0902.xml.gz")
    articles = tables["articles"].to_pylist()
    assert [a["pmid"] for a in articles][:1] == ["17942999"]
    assert len(articles) == 3
    assert tables["deletions"].to_pylist()[0]["pmid"] == "26432306"
    first = articles[0]
    assert first["abstract"].startswith("PURPOSE: An auditory electrophysiological study")
    assert first["abstract_sections"][0]["nlm_category"] == "OBJECTIVE"
    assert "\nMETHODS: Mismatch negativity" in first["abstract"]


def test_book_article_is_kept_as_book():
    (row,) = _by_kind(_records(EFETCH / "sample_article_20301577.xml"), "article")
    assert row["record_type"] == "book"
    assert row["pmid"] == "20301577"
    assert row["title"] == "CACNA1C-Related Disorders"
    assert row["journal"] == "GeneReviews®"
    assert row["abstract"].startswith(
        "CLINICAL CHARACTERISTICS: The clinical manifestations of CACNA1C-related"
    )
    assert row["date_revised"] == "2024-12-19"


def test_mathml_in_real_efetch_record_keeps_words():
    (row,) = _by_kind(_records(EFETCH / "pubmed6.xml"), "article")
    assert "maximal oxygen uptake ( V.O2max ) 67.6" in row["abstract"]
    assert "(VMLSS) more accurate" in row["abstract"]  # <sub>V</sub>MLSS


def test_structured_abstract_seven_sections():
    (row,) = _by_kind(_records(EFETCH / "38534005.xml"), "article")
    sections = row["abstract_sections"]
    assert len(sections) == 7
    labels = [s["label"] for s in sections]
    paragraphs = row["abstract"].split("\n")
    assert len(paragraphs) == 7
    assert all(p.startswith(f"{label}: ") for p, label in zip(paragraphs, labels))


def test_empty_efetch_result_yields_nothing():
    assert _records(EFETCH / "37909814.xml") == []


def test_source_kinds_agree(tmp_path):
    path = NLM / "pubmed22n1115.xml.gz"
    raw = path.read_bytes()
    from_path = parse_to_tables(path, "x")["articles"]
    from_bytes = parse_to_tables(raw, "x")["articles"]
    from_fileobj = parse_to_tables(io.BytesIO(raw), "x")["articles"]
    plain = tmp_path / "renamed.xml"  # gzip is detected by content, not by name
    plain.write_bytes(raw)
    from_misnamed = parse_to_tables(plain, "x")["articles"]
    unzipped = parse_to_tables(gzip.decompress(raw), "x")["articles"]
    assert from_path.equals(from_bytes) and from_path.equals(from_fileobj)
    assert from_path.equals(from_misnamed) and from_path.equals(unzipped)


def test_tables_conform_to_schemas():
    tables = parse_to_tables(HANDMADE / "edge_cases.xml", "edge_cases.xml")
    assert tables["articles"].schema.equals(ARTICLES)
    assert tables["deletions"].schema.equals(DELETIONS)
    assert tables["errors"].schema.equals(INGEST_ERRORS)
    assert tables["articles"].column("file_order").null_count == tables["articles"].num_rows
    empty = parse_to_tables(EFETCH / "37909814.xml", "empty.xml")
    assert all(t.num_rows == 0 for t in empty.values())
    assert empty["articles"].schema.equals(ARTICLES)


# --- hand-made edge cases -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edge_records():
    return _records(HANDMADE / "edge_cases.xml", "edge_cases.xml")


def test_edge_record_sequence(edge_records):
    kinds = [(r.kind, r.row.get("pmid"), r.row["record_position"]) for r in edge_records]
    assert kinds == [
        ("article", "90000001", 0),
        ("article", "90000002", 1),
        ("article", "90000001", 2),
        ("article", "90000002", 3),
        ("article", "90000003", 4),
        ("error", None, 5),
        ("deletion", "90000004", 6),
        ("deletion", "90000005", 7),
    ]


def test_inline_markup_spacing(edge_records):
    first = edge_records[0].row
    assert first["title"] == "Synergy of cisplatin and 5-FU in H2O-rich media."
    assert (
        first["abstract_sections"][0]["text"] == "Patients treated with cisplatin and gemcitabine at 10-3 M."
    )
    assert first["keywords"] == ["drug synergy", "combination therapy"]
    assert "withcisplatin" not in first["abstract"]


def test_pretty_printed_mathml_and_whitespace(edge_records):
    methods = edge_records[0].row["abstract_sections"][1]
    assert methods == {
        "label": "METHODS",
        "nlm_category": "METHODS",
        "text": "We measured V2 in two cohorts.",
    }


def test_structured_abstract_text_joins_labelled_paragraphs(edge_records):
    assert edge_records[0].row["abstract"] == (
        "BACKGROUND: Patients treated with cisplatin and gemcitabine at 10-3 M.\nMETHODS: We measured V2 in two cohorts."
    )


def test_other_fields(edge_records):
    row = edge_records[0].row
    assert row["doi"] == "10.0000/pubmeddata.1"  # PubmedData wins over ELocationID
    assert row["pub_date"] == "2023-02-07" and row["pub_year"] == 2023
    assert row["languages"] == ["eng", "fre"]
    assert row["publication_types"] == ["Journal Article", "Randomized Controlled Trial"]
    assert row["chemicals"] == [
        {"ui": "D002945", "name": "Cisplatin", "registry_number": "Q20Q21Q62J"},
        {"ui": "D000970", "name": "Antineoplastic Agents", "registry_number": None},
    ]
    assert row["mesh_headings"][0]["major"] is True
    assert row["mesh_headings"][0]["qualifiers"][0]["name"] == "administration & dosage"
    assert row["other_abstracts"] == [
        {"type": "Publisher", "language": "fre", "text": "Patients traités par cisplatine."}
    ]
    assert row["date_revised"] == "2024-03-05"


def test_no_abstract_and_medline_date(edge_records):
    row = edge_records[1].row
    assert row["abstract"] is None and row["abstract_sections"] == []
    assert row["pub_year"] == 1998 and row["pub_date"] == "1998"


def test_version_bump_and_duplicate_pmid_are_kept_distinct(edge_records):
    v1, v2 = edge_records[0].row, edge_records[2].row
    assert (v1["pmid"], v1["pmid_version"]) == ("90000001", 1)
    assert (v2["pmid"], v2["pmid_version"]) == ("90000001", 2)
    dup_a, dup_b = edge_records[1].row, edge_records[3].row
    assert dup_a["pmid"] == dup_b["pmid"] and dup_a["title"] != dup_b["title"]


def test_hand_made_book(edge_records):
    book = edge_records[4].row
    assert book["record_type"] == "book" and book["title"] == "ABC1-Related Disorders"
    assert book["journal"] == "Hand-made Reviews®" and book["doi"] == "10.0000/book.3"
    assert book["abstract"] == "SUMMARY: Treat with imatinib plus dasatinib."


def test_record_without_pmid_is_an_error_row(edge_records):
    error = edge_records[5].row
    assert error["stage"] == "record" and "no PMID" in error["reason"]
    assert error["records_before_fault"] == 5


def test_deletions_keep_versions(edge_records):
    assert [(r.row["pmid"], r.row["pmid_version"]) for r in edge_records[6:]] == [
        ("90000004", 1),
        ("90000005", 2),
    ]


# --- faults -------------------------------------------------------------------------------------------


def test_malformed_record_mid_file_is_skipped_and_parsing_goes_on():
    records = _records(HANDMADE / "malformed_mid.xml", "malformed_mid.xml")
    assert [(r.kind, r.row["pmid"]) for r in records] == [
        ("article", "91000001"),
        ("error", "91000002"),
        ("article", "91000003"),
        ("article", "91000004"),
        ("deletion", "91000009"),
    ]
    error = records[1].row
    assert error["stage"] == "xml" and error["records_before_fault"] == 1 and error["record_position"] == 1
    assert "mismatch" in error["reason"]


def test_non_seekable_stream_with_malformed_xml_keeps_what_it_had():
    class OneWay(io.RawIOBase):
        def __init__(self, data: bytes):
            self._buf = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            data = self._buf.read(len(b))
            b[: len(data)] = data
            return len(data)

    records = _records(OneWay((HANDMADE / "malformed_mid.xml").read_bytes()))
    assert [r.kind for r in records] == ["article", "error"]
    assert records[1].row["record_position"] is None and records[1].row["records_before_fault"] == 1


def test_truncated_gzip_keeps_records_before_the_cut():
    raw = (NLM / "pubmed22n1115.xml.gz").read_bytes()
    full = parse_to_tables(raw, "full")["articles"]
    cut = parse_to_tables(raw[: len(raw) // 2], "cut")
    n = cut["articles"].num_rows
    assert 0 < n < full.num_rows
    assert cut["articles"].column("pmid").to_pylist() == full.column("pmid").to_pylist()[:n]
    (error,) = cut["errors"].to_pylist()
    assert error["stage"] == "read" and "truncated" in error["reason"]
    assert error["records_before_fault"] == n and error["record_position"] is None


def test_gzip_missing_only_its_trailer_keeps_every_record():
    raw = (NLM / "pubmed22n1115.xml.gz").read_bytes()
    tables = parse_to_tables(raw[:-4], "no-trailer")
    assert tables["articles"].num_rows == 28 and tables["deletions"].num_rows == 48
    assert tables["errors"].num_rows == 1


def test_missing_file_and_non_pubmed_xml_are_error_rows(tmp_path):
    (missing,) = _records(tmp_path / "nope.xml.gz")
    assert missing.kind == "error" and missing.row["stage"] == "read"
    (other,) = _records(DATA / "eutils" / "esearch2.xml")
    assert other.kind == "error" and "eSearchResult" in other.row["reason"]
    (empty,) = _records(b"")
    assert empty.kind == "error" and empty.row["stage"] == "xml"


def test_xxe_is_not_resolved():
    (row,) = _by_kind(_records(HANDMADE / "xxe.xml"), "article")
    assert "root:" not in row["title"]
    assert row["title"] == "Leak: &xxe; &remote; end."


def test_billion_laughs_does_not_expand():
    start = time.perf_counter()
    records = _records(HANDMADE / "billion_laughs.xml")
    assert time.perf_counter() - start < 5
    text = json.dumps([r.row for r in records])
    assert "lollol" not in text
    assert len(text) < 10_000
    assert [r.kind for r in records] == ["error"]


def test_memory_released_as_records_stream():
    """Converted records are cleared and dropped from the root as the parse goes (constant memory)."""
    from etl.pubmed import parser as parser_module

    observed = []  # (siblings left before the record, children left in it, siblings held in the root)
    original = parser_module._release

    def spy(el, parent):
        original(el, parent)
        observed.append((el.getprevious() is not None, len(el), len(parent)))

    parser_module._release = spy
    try:
        records = _records(NLM / "pubmed22n1115.xml.gz")
    finally:
        parser_module._release = original
    assert len(observed) == 29  # 28 articles + 1 DeleteCitation
    assert not any(prev for prev, _, _ in observed)
    assert not any(children for _, children, _ in observed)
    # the root only ever holds the record at hand plus what the parser has read ahead
    assert max(held for _, _, held in observed) < 29
    assert len(records) == 28 + 48


def test_articles_table_round_trips_through_parquet(tmp_path):
    import pyarrow.parquet as pq

    table = parse_to_tables(NLM / "pubmed22n1115.xml.gz", "pubmed22n1115.xml.gz")["articles"]
    pq.write_table(table, tmp_path / "a.parquet")
    back = pq.read_table(tmp_path / "a.parquet")
    assert back.schema.equals(ARTICLES) and back.num_rows == 28
    assert isinstance(back.column("abstract_sections").type, pa.ListType)


# --- rexdrug parse ------------------------------------------------------------------------------------


def test_cli_parse_prints_one_json_object_per_record(capsys):
    from jobs.cli import main

    code = main(["parse", str(HANDMADE / "malformed_mid.xml"), str(NLM / "pubmed20n1016.xml")])
    out = capsys.readouterr().out.splitlines()
    objects = [json.loads(line) for line in out]
    assert code == 0
    assert [o["kind"] for o in objects[:5]] == ["article", "error", "article", "article", "deletion"]
    assert sum(o["kind"] == "deletion" for o in objects) == 1 + 218
    assert sum(o["kind"] == "article" for o in objects) == 3 + 10


def test_cli_parse_exit_1_when_a_file_fails_completely(capsys, tmp_path):
    from jobs.cli import main

    code = main(["parse", "--kind", "error", str(tmp_path / "missing.xml"), str(EFETCH / "38534005.xml")])
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [o["kind"] for o in objects] == ["error"]
