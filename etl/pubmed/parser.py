"""The one streaming parser for PubMed XML: NLM baseline/update files, efetch output, legacy MEDLINE.

``iter_records(source, source_file)`` yields :class:`Record` s -- ``("article", row)``,
``("deletion", row)`` or ``("error", row)`` -- whose rows are keyed like ``schemas.articles``
(ARTICLES, DELETIONS, INGEST_ERRORS; ``file_order``/``ingested_at`` are left to the ingest job).
``parse_to_tables`` collects them into Arrow tables conforming exactly to those schemas.

Formats: ``PubmedArticleSet`` (baseline/update files, efetch, PubMed "save as XML"), holding
``PubmedArticle``, ``PubmedBookArticle`` (kept, ``record_type="book"``: GeneReviews chapters and the
like have titles and abstracts worth mining) and ``DeleteCitation`` (one deletion row per PMID, with
its version); the legacy 2016 ``MedlineCitationSet`` (top-level ``MedlineCitation``, no PubmedData).

Positions: ``record_position`` is a 0-based counter over the rows this file produced, in document
order (each article/book, each deleted PMID and each record-level error takes one position), so
``(file_order, record_position)`` orders every event of the NLM load sequence.

Memory: ``lxml.etree.iterparse`` on the record tags only; each record is cleared once converted and
its already-converted preceding siblings are deleted from the root, so memory stays flat in file size.

Safety: the parser never loads DTDs (``load_dtd=False``), never touches the network
(``no_network=True``) and never expands entities (``resolve_entities=False``): no XXE, no
billion-laughs.  ``huge_tree`` stays **off** on purpose: libxml2's default limits (text node size,
nesting depth, entity amplification) are far above anything in real PubMed records -- the largest
records (hundreds of references) are well under 1 MB -- and they are a second line of defence against
hostile input.  Document size itself is not limited by them, so full-size NLM files parse fine.

Faults never stop a run and never lose good records: a truncated/corrupt gzip becomes an error row
(stage ``read``) after every complete record before it; malformed XML makes the parser re-read the
source with a textual record splitter, skip the records already converted, and parse the remaining
records one by one, so only the broken record(s) become error rows (stage ``xml``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple

import pyarrow as pa
from lxml import etree

from etl.pubmed import fields as F
from etl.pubmed.source import ByteStream, Source, open_source, split_records
from schemas.articles import ARTICLES, DELETIONS, INGEST_ERRORS
from schemas.spark import conform

log = logging.getLogger(__name__)

RecordKind = Literal["article", "deletion", "error"]
RECORD_TAGS = ("PubmedArticle", "PubmedBookArticle", "DeleteCitation", "MedlineCitation")
PUBMED_ROOTS = frozenset({"PubmedArticleSet", "MedlineCitationSet", "PubmedBookArticleSet"})

# Hardened options shared by the streaming parser and the per-record recovery parser.
PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
}


class Record(NamedTuple):
    kind: RecordKind
    row: dict


class _FileState:
    """Counters of one file's parse: next row position, good records kept, record elements consumed."""

    __slots__ = ("elements_done", "errors", "good", "position", "root_tag", "source_file")

    def __init__(self, source_file: str):
        self.source_file = source_file
        self.position = 0
        self.good = 0
        self.elements_done = 0
        self.errors = 0
        self.root_tag: str | None = None

    def next_position(self) -> int:
        pos = self.position
        self.position += 1
        return pos


# --- public API ---------------------------------------------------------------------------------------


def iter_records(source: Source, source_file: str) -> Iterator[Record]:
    """Stream the records of one PubMed XML source (path, bytes or binary file; gzip or plain)."""
    state = _FileState(source_file)
    try:
        stream = open_source(source)
    except OSError as exc:
        yield _file_error(state, "read", f"cannot open: {exc}")
        return
    try:
        yield from _parse_stream(stream, state)
    finally:
        stream.close()


def parse_to_tables(
    source: Source,
    source_file: str,
    on_progress: Callable[[int, int], None] | None = None,
    progress_every: int = 1000,
) -> dict[str, pa.Table]:
    """Parse one source into ``{"articles", "deletions", "errors"}`` tables conforming to the schemas.

    ``on_progress(records, errors)``: called with the counts so far after every ``progress_every``
    records and once at the end (a file of a baseline holds 30,000 records: the ingest's progress)."""
    columns = {
        "article": _Columns(ARTICLES),
        "deletion": _Columns(DELETIONS),
        "error": _Columns(INGEST_ERRORS),
    }
    n = errors = 0
    for kind, row in iter_records(source, source_file):
        columns[kind].append(row)
        n += 1
        errors += kind == "error"
        if on_progress is not None and n % progress_every == 0:
            on_progress(n, errors)
    if on_progress is not None:
        on_progress(n, errors)
    return {
        "articles": columns["article"].to_table(),
        "deletions": columns["deletion"].to_table(),
        "errors": columns["error"].to_table(),
    }


# --- streaming pass -----------------------------------------------------------------------------------


def _parse_stream(stream: ByteStream, state: _FileState) -> Iterator[Record]:
    context = etree.iterparse(stream.stream, events=("end",), tag=RECORD_TAGS, **PARSER_OPTIONS)
    try:
        for _, el in context:
            parent = el.getparent()
            if state.root_tag is None and parent is not None:
                state.root_tag = parent.tag
            if el.tag == "MedlineCitation" and parent is not None and parent.tag != "MedlineCitationSet":
                continue  # nested inside PubmedArticle: handled with its record
            yield from _convert(el, el.tag, state)
            state.elements_done += 1
            _release(el, parent)
        root = context.root
        if root is not None and root.tag not in PUBMED_ROOTS:
            yield _file_error(state, "xml", f"not PubMed XML: root element is <{root.tag}>")
    except etree.XMLSyntaxError as exc:
        if stream.fault is not None:  # the XML ended early because the gzip did
            yield _file_error(state, "read", stream.fault)
            return
        yield from _recover(stream, state, exc)
    except (OSError, EOFError) as exc:
        yield _file_error(state, "read", f"{type(exc).__name__}: {exc}")
        return
    if stream.fault is not None:  # decompression stopped early but the XML happened to close
        yield _file_error(state, "read", stream.fault)


def _release(el, parent) -> None:
    """Free a converted record and everything before it (constant memory on any file size)."""
    el.clear(keep_tail=False)
    if parent is not None:
        while el.getprevious() is not None:
            del parent[0]


# --- recovery after malformed XML ---------------------------------------------------------------------


def _recover(stream: ByteStream, state: _FileState, exc: etree.XMLSyntaxError) -> Iterator[Record]:
    reason = f"malformed XML: {exc}"
    if stream.reopen is None:
        yield _file_error(state, "xml", reason + " (source cannot be re-read; rest of file skipped)")
        return
    log.warning("%s: %s; resuming record by record", state.source_file, reason)
    errors_before = state.errors
    replay = stream.reopen()
    try:
        legacy = state.root_tag == "MedlineCitationSet" or (state.root_tag is None and _looks_legacy(stream))
        parser = etree.XMLParser(**PARSER_OPTIONS)
        for index, (tag, chunk) in enumerate(split_records(replay, legacy)):
            if index < state.elements_done:
                continue  # converted by the streaming pass already
            if chunk is None:
                yield _record_error(state, "xml", f"unterminated <{tag}> record")
                continue
            try:
                el = etree.fromstring(chunk, parser)
            except etree.XMLSyntaxError as record_exc:
                yield _record_error(
                    state, "xml", f"malformed <{tag}> record: {record_exc}", _sniff_pmid(chunk)
                )
                continue
            yield from _convert(el, tag, state)
            state.elements_done += 1
    finally:
        replay.close()
    if replay.fault is not None:
        yield _file_error(state, "read", replay.fault)
    elif state.errors == errors_before:  # the fault was between records (or in the envelope)
        yield _file_error(state, "xml", reason)


def _looks_legacy(stream: ByteStream) -> bool:
    probe = stream.reopen()
    try:
        return b"<MedlineCitationSet" in probe.read(8192)
    finally:
        probe.close()


def _sniff_pmid(chunk: bytes) -> str | None:
    start = chunk.find(b"<PMID")
    if start == -1:
        return None
    gt = chunk.find(b">", start)
    end = chunk.find(b"</PMID>", gt)
    if gt == -1 or end == -1:
        return None
    value = chunk[gt + 1 : end].strip()
    return value.decode("ascii", "replace") if value.isdigit() else None


# --- record conversion --------------------------------------------------------------------------------


def _convert(el, tag: str, state: _FileState) -> Iterator[Record]:
    """One record element -> its rows; a record that cannot be converted becomes one error row."""
    if tag == "DeleteCitation":
        yield from _deletions(el, state)
        return
    try:
        if tag == "PubmedArticle":
            row = article_row(F.child(el, "MedlineCitation"), F.child(el, "PubmedData"))
        elif tag == "MedlineCitation":
            row = article_row(el, None)
        else:
            row = book_row(F.child(el, "BookDocument"))
    except F.RecordError as exc:
        yield _record_error(state, "record", str(exc), exc.pmid)
        return
    except Exception as exc:  # noqa: BLE001 -- tolerant per record: an unexpected shape must not stop the file
        yield _record_error(state, "record", f"{type(exc).__name__}: {exc}", _pmid_or_none(el))
        return
    row["source_file"] = state.source_file
    row["record_position"] = state.next_position()
    state.good += 1
    yield Record("article", row)


def article_row(citation_el, pubmed_data) -> dict:
    """``MedlineCitation`` (+ optional ``PubmedData``) -> an ARTICLES row without file fields."""
    if citation_el is None:
        raise F.RecordError("PubmedArticle has no MedlineCitation")
    citation = F.Node(citation_el)
    pmid = F.pmid(citation)
    version = F.pmid_version(citation)
    article_el = citation.get("Article")
    if article_el is None:
        raise F.RecordError("MedlineCitation has no Article", pmid=pmid)
    article = F.Node(article_el)
    sections = F.abstract_sections(article.get("Abstract"))
    year, date = F.pub_date_parts(F.child(article.get("Journal"), "JournalIssue", "PubDate"))
    return {
        "pmid": pmid,
        "pmid_version": version,
        "record_type": "article",
        "title": F.title(article),
        "vernacular_title": F.vernacular_title(article),
        "abstract": F.abstract_text(sections),
        "abstract_sections": sections,
        "other_abstracts": F.other_abstracts(citation),
        "journal": F.journal(article),
        "journal_iso": F.journal_iso(article),
        "pub_year": year,
        "pub_date": date,
        "doi": F.doi(article, pubmed_data),
        "languages": F.languages(article),
        "publication_types": F.publication_types(article),
        "mesh_headings": F.mesh_headings(citation),
        "chemicals": F.chemicals(citation),
        "keywords": F.keywords(citation),
        "citation_status": F.citation_status(citation),
        "date_revised": F.date_revised(citation),
    }


def book_row(document_el) -> dict:
    """``PubmedBookArticle/BookDocument`` -> an ARTICLES row (``record_type="book"``).

    A book has no journal: ``journal`` holds the book title (e.g. "GeneReviews®") and ``title`` the
    chapter title (the book title when the record is a whole book).
    """
    if document_el is None:
        raise F.RecordError("PubmedBookArticle has no BookDocument")
    document = F.Node(document_el)
    pmid = F.pmid(document)
    version = F.pmid_version(document)
    book = document.get("Book")
    book_title = F.element_text(F.child(book, "BookTitle"))
    sections = F.abstract_sections(document.get("Abstract"))
    year, date = F.pub_date_parts(F.child(book, "PubDate"))
    return {
        "pmid": pmid,
        "pmid_version": version,
        "record_type": "book",
        "title": F.title(document) or book_title,
        "vernacular_title": F.vernacular_title(document),
        "abstract": F.abstract_text(sections),
        "abstract_sections": sections,
        "other_abstracts": F.other_abstracts(document),
        "journal": book_title,
        "journal_iso": None,
        "pub_year": year,
        "pub_date": date,
        "doi": F.book_doi(document),
        "languages": F.languages(document),
        "publication_types": F.publication_types(document),
        "mesh_headings": F.mesh_headings(document),
        "chemicals": F.chemicals(document),
        "keywords": F.keywords(document),
        "citation_status": None,
        "date_revised": F.date_revised(document),
    }


def _deletions(el, state: _FileState) -> Iterator[Record]:
    for pmid_el in F.children(el, "PMID"):
        pmid = (pmid_el.text or "").strip()
        try:
            if not pmid.isdigit():
                raise F.RecordError(f"DeleteCitation PMID {pmid!r} is not numeric", pmid=pmid or None)
            version = F.parse_version(pmid_el.get("Version"), pmid=pmid)
        except F.RecordError as exc:
            yield _record_error(state, "record", str(exc), exc.pmid)
            continue
        state.good += 1
        yield Record(
            "deletion",
            {"pmid": pmid, "pmid_version": version, "source_file": state.source_file,
             "record_position": state.next_position()},
        )  # fmt: skip


def _pmid_or_none(el) -> str | None:
    found = el.find(".//PMID")
    text = found.text.strip() if found is not None and found.text else ""
    return text if text.isdigit() else None


# --- error rows ---------------------------------------------------------------------------------------


def _record_error(state: _FileState, stage: str, reason: str, pmid: str | None = None) -> Record:
    state.errors += 1
    return Record(
        "error",
        {"source_file": state.source_file, "record_position": state.next_position(), "pmid": pmid,
         "stage": stage, "reason": reason, "records_before_fault": state.good},
    )  # fmt: skip


def _file_error(state: _FileState, stage: str, reason: str) -> Record:
    state.errors += 1
    return Record(
        "error",
        {"source_file": state.source_file, "record_position": None, "pmid": None, "stage": stage,
         "reason": reason, "records_before_fault": state.good},
    )  # fmt: skip


# --- columnar collection ------------------------------------------------------------------------------


class _Columns:
    """Rows appended as Python column lists, converted once per column to Arrow (no per-row Arrow)."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.names = [f.name for f in schema]
        self.data: dict[str, list] = {name: [] for name in self.names}

    def append(self, row: dict) -> None:
        get = row.get
        for name in self.names:
            self.data[name].append(get(name))

    def to_table(self) -> pa.Table:
        arrays = [pa.array(self.data[f.name], type=f.type) for f in self.schema]
        return conform(pa.Table.from_arrays(arrays, names=self.names), self.schema)
