"""DrugComb records -> PubMed XML, so the whole sweep can be scored against DrugComb gold.

Each DrugComb record carries the abstract (``paragraph``) and its PubMed URL (``source``); we write
one ``PubmedArticle`` per distinct PMID with the paragraph as its abstract, in the NLM format our
parser reads.  The text is the dataset's (tokenized) paragraph, not NLM's original abstract, so that
gold character offsets stay meaningful.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from pathlib import Path

from lxml import etree

_PMID_IN_URL = re.compile(r"(\d+)/?\s*$")


def pmid_of(record: dict) -> str:
    """The PMID of a DrugComb record (from its ``source`` URL); a missing one is a data error."""
    match = _PMID_IN_URL.search(record.get("source") or "")
    if not match:
        raise ValueError(f"DrugComb record {record.get('doc_id')} has no PubMed URL in 'source'")
    return match.group(1)


def article_element(pmid: str, abstract: str, title: str = "") -> etree._Element:
    article = etree.Element("PubmedArticle")
    citation = etree.SubElement(article, "MedlineCitation", Status="MEDLINE", Owner="NLM")
    etree.SubElement(citation, "PMID", Version="1").text = pmid
    art = etree.SubElement(citation, "Article", PubModel="Print")
    journal = etree.SubElement(art, "Journal")
    etree.SubElement(journal, "Title").text = "DrugComb test set (converted)"
    etree.SubElement(art, "ArticleTitle").text = title
    abstract_el = etree.SubElement(art, "Abstract")
    etree.SubElement(abstract_el, "AbstractText").text = abstract
    etree.SubElement(art, "Language").text = "eng"
    return article


def write_pubmed_xml(records: Iterable[dict], path: Path) -> dict[str, str]:
    """Write the records' abstracts as a PubmedArticleSet file (``.gz`` suffix: gzipped).

    Returns {doc_id: pmid}.  Records sharing a PMID must share the paragraph (one abstract per PMID).
    """
    root = etree.Element("PubmedArticleSet")
    seen: dict[str, str] = {}
    doc_to_pmid: dict[str, str] = {}
    for record in records:
        pmid = pmid_of(record)
        doc_to_pmid[record["doc_id"]] = pmid
        if pmid in seen:
            if seen[pmid] != record["paragraph"]:
                raise ValueError(f"PMID {pmid} appears with two different paragraphs")
            continue
        seen[pmid] = record["paragraph"]
        root.append(article_element(pmid, record["paragraph"]))
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return doc_to_pmid
