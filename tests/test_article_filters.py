"""Sweep filters (etl/article_filters.py): which current articles are split and extracted, recorded in
``sweep_runs``; the bundled combination-therapy profile on the demo data."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from etl.article_filters import ArticleFilters
from etl.config import load_config
from etl.warehouse import connect_readonly
from schemas.articles import ARTICLES

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "data" / "sweep"
PROFILE = ROOT / "configs" / "profiles" / "combination_therapy.yaml"


def art(
    pmid, abstract="text", languages=("eng",), ptypes=("Journal Article",), mesh=(), chemicals=(), year=2020
):
    return {
        "pmid": pmid,
        "pmid_version": 1,
        "record_type": "article",
        "abstract": abstract,
        "languages": list(languages),
        "publication_types": list(ptypes),
        "pub_year": year,
        "source_file": "f",
        "record_position": 0,
        "mesh_headings": [{"ui": ui, "name": name, "major": False, "qualifiers": []} for ui, name in mesh],
        "chemicals": [{"ui": ui, "name": name, "registry_number": None} for ui, name in chemicals],
    }


ARTS = [
    art("1"),
    art("2", abstract=None),
    art("3", abstract="   "),
    art("4", languages=("ger",)),
    art("5", ptypes=("Journal Article", "Review")),
    art("6", ptypes=("Editorial",)),
    art("7", mesh=[("D004359", "Drug Therapy, Combination")]),
    art("8", chemicals=[("D017239", "Paclitaxel")]),
    art("9", year=None),
    art("10", year=1999, languages=()),
]


def kept(filters: ArticleFilters) -> list[str]:
    con = duckdb.connect()
    con.register("current_articles", pa.Table.from_pylist(ARTS, schema=ARTICLES))
    predicate, params = filters.sql("a")
    return [
        r[0]
        for r in con.execute(
            f"SELECT pmid FROM current_articles a WHERE {predicate} ORDER BY pmid::INT", params
        ).fetchall()
    ]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (ArticleFilters(), ["1", "4", "5", "6", "7", "8", "9", "10"]),  # default: an abstract
        (ArticleFilters(has_abstract=False), [str(i) for i in range(1, 11)]),
        (ArticleFilters(languages=["ENG"]), ["1", "5", "6", "7", "8", "9"]),  # case-insensitive; 10 has none
        (ArticleFilters(publication_types=["review"]), ["5"]),
        (ArticleFilters(exclude_publication_types=["Editorial", "Review"]), ["1", "4", "7", "8", "9", "10"]),
        # MeSH headings and chemicals, by name or UI
        (ArticleFilters(mesh=["drug therapy, combination", "D017239"]), ["7", "8"]),
        (ArticleFilters(min_year=2000), ["1", "4", "5", "6", "7", "8", "9"]),  # 9: no year, kept by default
        (ArticleFilters(min_year=2000, keep_unknown_year=False), ["1", "4", "5", "6", "7", "8"]),
        (ArticleFilters(max_year=1999), ["9", "10"]),
        (
            ArticleFilters(
                languages=["eng"],
                exclude_publication_types=["Editorial"],
                min_year=2020,
                max_year=2020,
                keep_unknown_year=False,
            ),
            ["1", "5", "7", "8"],
        ),
    ],
)
def test_filters(filters, expected):
    filters.validate()
    assert kept(filters) == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["filters.min_year=2020", "filters.max_year=2010"], "before filters.min_year"),
        (['filters.languages=[""]'], "non-empty strings"),
    ],
)
def test_filter_configuration_errors(overrides, message):
    from jobs.sweep import SweepConfig

    with pytest.raises(ValueError, match=message):
        load_config(SweepConfig, None, ["source=demo", *overrides])


def test_combination_therapy_profile_on_the_demo_data(tmp_path):
    """What the README says the profile keeps of `make demo`'s articles: 55 of the 56 with an abstract
    (it drops a Published Erratum), checked against the rule applied in Python to the same rows."""
    from etl.paths import data_path
    from etl.pubmed.envelope import envelope_tables, parse_file_envelope
    from etl.warehouse import WarehouseLayout, refresh_duckdb, write_file_partitions
    from jobs.sweep import DEMO_BASELINE, DEMO_UPDATE, SweepConfig

    config = load_config(SweepConfig, PROFILE, ["source=demo"])
    assert "drug therapy, combination" in config.entrez.term
    layout = WarehouseLayout(tmp_path / "wh")
    for order, parts in enumerate((DEMO_BASELINE, DEMO_UPDATE)):
        path = data_path(*parts)
        write_file_partitions(
            layout, path.name, envelope_tables(parse_file_envelope(str(path), path.name, order, 0))
        )
    refresh_duckdb(layout.root)
    predicate, params = config.filters.sql("a")
    with connect_readonly(layout.root) as con:
        rows = con.execute(
            "SELECT pmid, abstract, languages, publication_types FROM current_articles"
        ).fetchall()
        kept_sql = {
            r[0]
            for r in con.execute(f"SELECT pmid FROM current_articles a WHERE {predicate}", params).fetchall()
        }
    excluded = {t.lower() for t in config.filters.exclude_publication_types}
    kept_py = {
        pmid
        for pmid, abstract, langs, ptypes in rows
        if (abstract or "").strip()
        and "eng" in [x.lower() for x in langs or []]
        and not excluded & {p.lower() for p in ptypes or []}
    }
    with_abstract = sum(bool((r[1] or "").strip()) for r in rows)
    assert kept_sql == kept_py
    assert (len(rows), with_abstract, len(kept_sql)) == (60, 56, 55)


@pytest.mark.spark
def test_filters_leave_articles_for_a_wider_sweep_and_are_recorded(spark, tmp_path):
    from jobs.sweep import SweepConfig, run_sweep

    warehouse = tmp_path / "wh"
    base = [
        f"warehouse={warehouse}",
        "source=files",
        f"inputs={json.dumps([str(FIXTURES / 'baseline')])}",
        "engine.kind=rule_all_drugs",
    ]
    narrow = run_sweep(
        load_config(SweepConfig, None, [*base, 'filters.publication_types=["Review"]']), spark=spark
    )
    assert (narrow.n_articles, narrow.n_filtered, narrow.n_candidates) == (
        0,
        5,
        0,
    )  # the fixtures are no reviews
    wide = run_sweep(load_config(SweepConfig, None, base), spark=spark)
    assert (wide.n_articles, wide.n_filtered) == (5, 0) and wide.n_combinations > 0
    with connect_readonly(warehouse) as con:
        rows = con.execute("SELECT filters, n_filtered FROM sweep_runs ORDER BY started_at").fetchall()
    recorded = [json.loads(f) for f, _ in rows]
    assert [r["articles"]["publication_types"] for r in recorded] == [["Review"], []]
    assert [n for _, n in rows] == [5, 0] and recorded[0]["entrez_term"] is None
