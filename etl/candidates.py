"""Candidate sentences: split abstracts, find drug mentions, keep sentences with >= 2 distinct drugs.

What counts (``candidate_decision``): mentions whose KB kind is a drug kind (``schemas.drugs.DRUG_KINDS``:
drug, regimen). Other substances and non-drugs (sulfur, coenzyme A, prostate-specific antigen) are kept
as mentions with their kind but never make a sentence a candidate; classes are counted apart. One drug
named twice counts once: the same entry, a regimen and its own components, a name and its misspelling
("certolizumab" / "ceptolizumab") and an entry whose name is the other's first word ("certolizumab" /
"certolizumab pegol") are one drug.

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
import re
from dataclasses import dataclass

import pyarrow as pa

from etl.sentences import split_sentences
from schemas.drugs import DRUG_KINDS, SENTENCES

log = logging.getLogger(__name__)

MIN_DISTINCT_DRUGS = 2
# a misspelling is one edit (substitution, insertion, deletion, swap) of a name this long or longer;
# shorter names differ by one letter as real drugs do ("estriol"/"estradiol" is two edits anyway)
_MISSPELLING_MIN_LEN = 8


@dataclass(frozen=True)
class CandidateDecision:
    n_distinct_drugs: int
    n_distinct_classes: int

    @property
    def is_candidate(self) -> bool:
        return self.n_distinct_drugs >= MIN_DISTINCT_DRUGS


def candidate_decision(mentions, matcher) -> CandidateDecision:
    """Distinct drug-kind entries and classes of a sentence's mentions (the candidate rule, module doc).

    A regimen counts as one drug, unless all its components are also named in the sentence
    ("TC (paclitaxel/carboplatin)" is two drugs, not three)."""
    drug_mentions = [m for m in mentions if m.kind in DRUG_KINDS]
    classes = {m.id for m in mentions if m.kind == "class"}
    drugs = {m.id for m in drug_mentions}
    for d in list(drugs):
        comps = matcher.entry(d).components
        if comps and all(c in drugs for c in comps):
            drugs.discard(d)
    return CandidateDecision(_count_one_per_drug(drugs, drug_mentions), len(classes))


def _count_one_per_drug(ids: set[str], mentions) -> int:
    """Distinct drugs among ``ids``, merging entries that are one drug written twice (module doc)."""
    names: dict[str, set[str]] = {}
    for m in mentions:
        if m.id in ids:
            names.setdefault(m.id, set()).update({_fold(m.surface), _fold(m.preferred_name)})
    groups: list[set[str]] = []  # union of entries whose names say they are the same drug
    for i in sorted(ids):
        merged = [g for g in groups if any(_same_drug(names.get(i, ()), names.get(j, ())) for j in g)]
        for g in merged:
            groups.remove(g)
        groups.append({i}.union(*merged))
    return len(groups)


def _fold(name: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", name.lower().replace("-", " ")).strip()


def _same_drug(a, b) -> bool:
    for x in a:
        for y in b:
            short, long_ = sorted((x, y), key=len)
            if len(short) >= 6 and " " not in short and long_.startswith(short + " "):
                return True  # "certolizumab" / "certolizumab pegol"
            if len(short) >= _MISSPELLING_MIN_LEN and _one_edit(x, y):
                return True  # "certolizumab" / "ceptolizumab"
    return False


def _one_edit(a: str, b: str) -> bool:
    """At most one substitution, insertion, deletion or adjacent swap between ``a`` and ``b``."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    k = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[k:] == long_[k + 1:]


def sentence_rows(pmid: str, pmid_version: int, abstract: str | None, matcher, evidence=None) -> list[dict]:
    """The SENTENCES rows of one abstract (empty for a missing/blank abstract)."""
    rows = []
    if not abstract:
        return rows
    spans = split_sentences(abstract)
    found = [matcher.find(abstract[start:end], evidence=evidence) for start, end in spans]
    # short forms an abstract defines once ("ipsapirone (IPSA)") name the drug in its other sentences
    # and those it defines as something else ("microdroplet culture (MMC)") are no KB acronym in any
    defs: dict = {}
    foreign: set[str] = set()
    for (start, end), mentions in zip(spans, found):
        for sf, mention in matcher.abbreviations(abstract[start:end], mentions).items():
            defs.setdefault(sf, mention)
        foreign |= matcher.foreign_short_forms(abstract[start:end], mentions)
    foreign -= defs.keys()
    for index, ((start, end), mentions) in enumerate(zip(spans, found)):
        text = abstract[start:end]
        if (defs and any(sf in text for sf in defs)) or (foreign and any(sf in text for sf in foreign)):
            mentions = matcher.find(text, evidence=evidence, abbreviations=defs, foreign=foreign)
        decision = candidate_decision(mentions, matcher)
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
                 "preferred_name": m.preferred_name, "is_class": m.is_class, "kind": m.kind}
                for m in mentions
            ],
            "n_distinct_drugs": decision.n_distinct_drugs,
            "n_distinct_classes": decision.n_distinct_classes,
            "is_candidate": decision.is_candidate,
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
