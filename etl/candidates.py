"""Candidate sentences: split abstracts, find drug mentions, keep sentences with >= 2 distinct drugs.

``sentence_table`` is a pure function over an Arrow batch of articles (``schemas.articles.ARTICLES``
columns pmid, pmid_version, abstract, chemicals) returning ``schemas.drugs.SENTENCES`` rows.

The article's MeSH chemical list is used as evidence (``DrugMatcher.evidence_from_chemicals``):
  * it enables ambiguous regimen acronyms flagged ``needs_evidence`` ("TC", "AC", "ICE") only when
    the indexers listed one of their components for this article;
  * when an alias has several readings in the KB, the one the chemical list names wins.
Abbreviations an abstract defines in one sentence ("buspirone (BU)") are read in all its sentences.
Sentence context (the abstract) is joined from the articles table, not stored per row (see
``schemas/drugs.py``). Titles are not split: offsets index the abstract only.
"""

from __future__ import annotations

import hashlib
import logging

import pyarrow as pa

from etl.sentences import split_sentences
from schemas.drugs import SENTENCES

log = logging.getLogger(__name__)

MIN_DISTINCT_DRUGS = 2


def _count_distinct(mentions, matcher) -> tuple[int, int]:
    """(distinct drugs, distinct classes). A regimen counts as one drug, unless all its components are
    also named in the sentence ("TC (paclitaxel/carboplatin)" is two drugs, not three)."""
    drugs = {m.id for m in mentions if not m.is_class}
    classes = {m.id for m in mentions if m.is_class}
    for d in list(drugs):
        comps = matcher.entry(d).components
        if comps and all(c in drugs for c in comps):
            drugs.discard(d)
    return len(drugs), len(classes)


def sentence_rows(pmid: str, pmid_version: int, abstract: str | None, matcher, evidence=None) -> list[dict]:
    """The SENTENCES rows of one abstract (empty for a missing/blank abstract)."""
    rows = []
    if not abstract:
        return rows
    spans = split_sentences(abstract)
    found = [matcher.find(abstract[start:end], evidence=evidence) for start, end in spans]
    # short forms an abstract defines once ("ipsapirone (IPSA)") name the drug in its other sentences
    defs: dict = {}
    for (start, end), mentions in zip(spans, found):
        for sf, mention in matcher.abbreviations(abstract[start:end], mentions).items():
            defs.setdefault(sf, mention)
    for index, ((start, end), mentions) in enumerate(zip(spans, found)):
        text = abstract[start:end]
        if defs and any(sf in text for sf in defs):
            mentions = matcher.find(text, evidence=evidence, abbreviations=defs)
        n_drugs, n_classes = _count_distinct(mentions, matcher)
        rows.append({
            "pmid": pmid,
            "pmid_version": pmid_version,
            "sentence_index": index,
            "start": start,
            "end": end,
            "text": text,
            "text_hash": hashlib.sha1(text.encode("utf-8")).hexdigest(),
            "mentions": [
                {"start": m.start, "end": m.end, "surface": m.surface, "id": m.id,
                 "preferred_name": m.preferred_name, "is_class": m.is_class}
                for m in mentions
            ],
            "n_distinct_drugs": n_drugs,
            "n_distinct_classes": n_classes,
            "is_candidate": n_drugs >= MIN_DISTINCT_DRUGS,
        })
    return rows


def sentence_table(articles: pa.Table | pa.RecordBatch, matcher=None) -> pa.Table:
    """One SENTENCES row per abstract sentence of ``articles`` (a table or record batch)."""
    if matcher is None:
        from etl.drugs import default_matcher

        matcher = default_matcher()
    for col in ("pmid", "pmid_version", "abstract"):
        if col not in articles.schema.names:
            raise ValueError(f"sentence_table needs an articles column {col!r} (have {articles.schema.names})")
    pmids = articles.column("pmid").to_pylist()
    versions = articles.column("pmid_version").to_pylist()
    abstracts = articles.column("abstract").to_pylist()
    chemicals = (
        articles.column("chemicals").to_pylist() if "chemicals" in articles.schema.names else [None] * len(pmids)
    )
    rows: list[dict] = []
    for pmid, version, abstract, chems in zip(pmids, versions, abstracts, chemicals):
        evidence = matcher.evidence_from_chemicals(chems) if chems else None
        rows.extend(sentence_rows(pmid, version if version is not None else 1, abstract, matcher, evidence))
    return pa.Table.from_pylist(rows, schema=SENTENCES)
