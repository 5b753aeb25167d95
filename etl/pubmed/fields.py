"""One small function per output field of a PubMed record.

Functions take the relevant element (``MedlineCitation``, ``PubmedData``, ``BookDocument``...) and
return plain Python values shaped like ``schemas.articles.ARTICLES``.  They never raise on a missing
element (``None``/``[]`` instead); :class:`RecordError` marks a record that cannot be kept at all
(no PMID, unreadable PMID version).
"""

from __future__ import annotations

import re

from etl.pubmed.text import element_text

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_YEAR = re.compile(r"\b(1[5-9]\d\d|2\d\d\d)\b")
# Abstract sections are joined into one text as paragraphs, one per line: "LABEL: text" when the
# section has a label, else the bare text.  Section order is the record's.
SECTION_SEPARATOR = "\n"


class RecordError(ValueError):
    """A record that cannot become a row (reported as an error row, parsing continues)."""

    def __init__(self, reason: str, pmid: str | None = None):
        super().__init__(reason)
        self.pmid = pmid


# --- identity -----------------------------------------------------------------------------------------


def pmid(owner: Node) -> str:
    """PMID text of the ``PMID`` child of ``owner`` (``MedlineCitation``/``BookDocument``)."""
    el = owner.get("PMID")
    value = el.text.strip() if el is not None and el.text else ""
    if not value:
        raise RecordError("record has no PMID")
    if not value.isdigit():
        raise RecordError(f"PMID {value!r} is not numeric", pmid=value)
    return value


def pmid_version(owner: Node) -> int:
    """``<PMID Version="2">`` -> 2; a missing attribute means version 1 (NLM's default)."""
    el = owner.get("PMID")
    raw = el.get("Version") if el is not None else None
    return parse_version(raw, pmid=el.text.strip() if el is not None and el.text else None)


def parse_version(raw: str | None, pmid: str | None = None) -> int:
    if raw is None or not raw.strip():
        return 1
    try:
        version = int(raw)
    except ValueError:
        raise RecordError(f"PMID version {raw!r} is not an integer", pmid=pmid) from None
    if version < 1:
        raise RecordError(f"PMID version {raw!r} is not positive", pmid=pmid)
    return version


# --- titles and abstracts -----------------------------------------------------------------------------


def title(article: Node) -> str | None:
    return element_text(article.get("ArticleTitle"))


def vernacular_title(article: Node) -> str | None:
    return element_text(article.get("VernacularTitle"))


def abstract_sections(abstract) -> list[dict]:
    """Each ``AbstractText`` as ``{label, nlm_category, text}`` (label/category ``None`` if absent)."""
    if abstract is None:
        return []
    sections = []
    for part in children(abstract, "AbstractText"):
        sections.append(
            {"label": part.get("Label") or None, "nlm_category": part.get("NlmCategory") or None,
             "text": element_text(part)}
        )  # fmt: skip
    return sections


def abstract_text(sections: list[dict]) -> str | None:
    """Sections joined as paragraphs (see ``SECTION_SEPARATOR``): "LABEL: text" or bare text."""
    paragraphs = []
    for section in sections:
        text = section["text"]
        if not text:
            continue
        label = section["label"]
        paragraphs.append(f"{label}: {text}" if label else text)
    return SECTION_SEPARATOR.join(paragraphs) or None


def other_abstracts(citation: Node) -> list[dict]:
    """``OtherAbstract`` (publisher translations, plain-language summaries) as ``{type, language, text}``."""
    result = []
    if citation.get("OtherAbstract") is None:
        return result
    for other in citation.all("OtherAbstract"):
        result.append(
            {"type": other.get("Type"), "language": other.get("Language"),
             "text": abstract_text(abstract_sections(other))}
        )  # fmt: skip
    return result


# --- journal and dates --------------------------------------------------------------------------------


def journal(article: Node) -> str | None:
    return element_text(child(article.get("Journal"), "Title"))


def journal_iso(article: Node) -> str | None:
    return element_text(child(article.get("Journal"), "ISOAbbreviation"))


def pub_date_parts(pub_date) -> tuple[int | None, str | None]:
    """``PubDate`` -> (year, "YYYY[-MM[-DD]]"), using ``MedlineDate`` ("1999 Jan-Feb") for the year."""
    if pub_date is None:
        return None, None
    year_text = _child_text(pub_date, "Year")
    if year_text is None:
        medline = _child_text(pub_date, "MedlineDate")
        m = _YEAR.search(medline or "")
        return (int(m.group(1)), m.group(1)) if m else (None, None)
    if not year_text.isdigit():
        m = _YEAR.search(year_text)
        return (int(m.group(1)), m.group(1)) if m else (None, None)
    year = int(year_text)
    month = month_number(_child_text(pub_date, "Month"))
    if month is None:
        return year, f"{year:04d}"
    day_text = _child_text(pub_date, "Day")
    if day_text and day_text.isdigit() and 1 <= int(day_text) <= 31:
        return year, f"{year:04d}-{month:02d}-{int(day_text):02d}"
    return year, f"{year:04d}-{month:02d}"


def month_number(text: str | None) -> int | None:
    """ "Feb", "02", "2", "February" -> 2; anything else -> None."""
    if not text:
        return None
    text = text.strip()
    if text.isdigit():
        value = int(text)
        return value if 1 <= value <= 12 else None
    return _MONTHS.get(text[:3].lower())


def ymd_date(el) -> str | None:
    """``<DateRevised><Year/><Month/><Day/></DateRevised>`` -> "YYYY-MM-DD" (or shorter if partial)."""
    if el is None:
        return None
    year = _child_text(el, "Year")
    if not year or not year.isdigit():
        return None
    month = month_number(_child_text(el, "Month"))
    if month is None:
        return year
    day = _child_text(el, "Day")
    if day and day.isdigit():
        return f"{int(year):04d}-{month:02d}-{int(day):02d}"
    return f"{int(year):04d}-{month:02d}"


# --- identifiers, lists -------------------------------------------------------------------------------


def doi(article: Node, pubmed_data) -> str | None:
    """DOI from ``PubmedData/ArticleIdList`` (authoritative), else ``Article/ELocationID``."""
    if pubmed_data is not None:
        for aid in descendants(pubmed_data, "ArticleIdList", "ArticleId"):
            if aid.get("IdType") == "doi" and aid.text and aid.text.strip():
                return aid.text.strip()
    if article.get("ELocationID") is not None:
        for loc in article.all("ELocationID"):
            if (
                loc.get("EIdType") == "doi"
                and loc.get("ValidYN", "Y") == "Y"
                and loc.text
                and loc.text.strip()
            ):
                return loc.text.strip()
    return None


def book_doi(book_document: Node) -> str | None:
    for aid in descendants(book_document.get("ArticleIdList"), "ArticleId"):
        if aid.get("IdType") == "doi" and aid.text and aid.text.strip():
            return aid.text.strip()
    return None


def languages(owner: Node) -> list[str]:
    return [t for t in (_text(el) for el in owner.all("Language")) if t]


def publication_types(owner: Node) -> list[str]:
    """``PublicationTypeList/PublicationType`` (articles) or ``PublicationType`` children (books)."""
    type_list = owner.get("PublicationTypeList")
    elements = (
        children(type_list, "PublicationType") if type_list is not None else owner.all("PublicationType")
    )
    return [t for t in (_text(el) for el in elements) if t]


def mesh_headings(citation: Node) -> list[dict]:
    headings = []
    for heading in descendants(citation.get("MeshHeadingList"), "MeshHeading"):
        descriptor = child(heading, "DescriptorName")
        if descriptor is None:
            continue
        qualifiers = [
            {"ui": q.get("UI"), "name": _text(q), "major": q.get("MajorTopicYN") == "Y"}
            for q in children(heading, "QualifierName")
        ]
        headings.append(
            {"ui": descriptor.get("UI"), "name": _text(descriptor),
             "major": descriptor.get("MajorTopicYN") == "Y", "qualifiers": qualifiers}
        )  # fmt: skip
    return headings


def chemicals(citation: Node) -> list[dict]:
    result = []
    for chem in descendants(citation.get("ChemicalList"), "Chemical"):
        substance = child(chem, "NameOfSubstance")
        registry = _text(child(chem, "RegistryNumber"))
        result.append(
            {"ui": substance.get("UI") if substance is not None else None, "name": _text(substance),
             "registry_number": registry if registry and registry != "0" else None}
        )  # fmt: skip
    return result


def keywords(owner: Node) -> list[str]:
    if owner.get("KeywordList") is None:
        return []
    return [
        t
        for kl in owner.all("KeywordList")
        for t in (element_text(el) for el in children(kl, "Keyword"))
        if t
    ]


def citation_status(citation: Node) -> str | None:
    return citation.el.get("Status")


def date_revised(owner: Node) -> str | None:
    return ymd_date(owner.get("DateRevised"))


# --- helpers ------------------------------------------------------------------------------------------


class Node:
    """An element with its first child per tag indexed once (many field lookups, one pass over children)."""

    __slots__ = ("_first", "el")

    def __init__(self, el):
        self.el = el
        # reversed: the first child of each tag wins
        self._first = {c.tag: c for c in reversed(el)} if el is not None else {}

    def get(self, tag: str):
        return self._first.get(tag)

    def all(self, tag: str) -> list:
        return children(self.el, tag)


# Child lookups loop over children in Python: lxml's ``find()``/``iterchildren(tag)`` build a path or
# tag matcher per call, which costs more than scanning the handful of children PubMed elements have.


def child(el, *tags: str):
    """``el/tags[0]/tags[1]/...`` (first match at each step) or ``None``."""
    for tag in tags:
        if el is None:
            return None
        for sub in el:
            if sub.tag == tag:
                el = sub
                break
        else:
            return None
    return el


def children(el, tag: str) -> list:
    """Every ``el/tag`` child, in document order (empty when ``el`` is ``None``)."""
    if el is None:
        return []
    return [sub for sub in el if sub.tag == tag]


def descendants(el, *tags: str) -> list:
    """Every ``el/tags[0]/.../tags[-1]`` element, in document order (empty when ``el`` is ``None``)."""
    found = children(el, tags[0])
    for tag in tags[1:]:
        found = [sub for parent in found for sub in parent if sub.tag == tag]
    return found


def _text(el) -> str | None:
    return element_text(el)


def _child_text(el, tag: str) -> str | None:
    found = child(el, tag)
    if found is None or not found.text:
        return None
    return found.text.strip() or None
