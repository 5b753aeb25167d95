"""DDI13 on the official corpus: the DDIExtraction 2013 XML read from its zip, and a scorer on the
official candidate-pair set for predictions written as drug *names*.

Reader.  ``read_official(zip_path, split)`` streams the XML members of ``DDICorpus-2013.zip``
(``DDICorpus/Test/Test for DDI Extraction task/{DrugBank,MedLine}/*.xml`` for ``test``,
``DDICorpus/Train/{DrugBank,MedLine}/*.xml`` for ``train``) with a hardened lxml parser (no DTD, no
network, no entity expansion; a document carrying a DOCTYPE is refused) into sentence records::

    {"id": sentence id, "doc_id", "sentence": text,
     "entities": [{"id", "text", "type", "offsets": [(start, end), ...]}],
     "pairs": [{"id", "e1", "e2", "ddi": bool, "type": effect|mechanism|advise|int|None}]}

Offsets: DDI13 writes ``charOffset="a-b"`` with an *inclusive* end, and a discontinuous mention as
``"a-b;c-d"``.  Records hold Python half-open spans, ``(a, b + 1)``, so ``sentence[start:end]`` is the
mention part; the entity ``text`` of a discontinuous mention is its parts joined by a space.  A bad
member (not XML, DOCTYPE, malformed offset, a pair naming an unknown entity) becomes an error row ``{"id": member, "reason"}`` and the
reading goes on.

Scorer.  A model writes names, the official evaluation counts mention pairs.  ``score_official``
maps each predicted unordered name pair (names normalized with ``normalize_drug_name``) to *every*
candidate pair of that sentence whose two entity texts normalize to those two names, so a name pair
covering repeated mentions hits all their mention pairs, as the official evaluation counts them.  A
mention pair keeps the first type predicted for it.  A predicted name pair that maps to no candidate
pair is a false positive (of its type, and of detection), counted separately as ``unmapped``.
Gold positive pairs whose two mentions have the same normalized name can never be written as a name
pair; they stay false negatives and are counted as ``gold_unreachable_by_names``.  A pair with
``ddi="true"`` but no known type (one in Train) is kept with ``type`` None: not a scored positive.

String pairs.  ``score_string_pairs`` is the second reading, the one zero-shot LLM papers report on this
corpus (e.g. the ZeroShotRE evaluation of GPT-4-turbo and o1): per sentence, the *set* of typed
unordered pairs of lowercased, whitespace-collapsed strings, gold and predicted, compared exactly; a
pair predicted with two types is two relations (one may be right), repeated mentions count once, and a
gold pair whose two strings are equal can never be predicted (counted as ``gold_self_pairs``).

``name_oracle(sentences)`` scores the gold answer itself written as names: the ceiling of any
name-writing model under this mapping (repeated mentions make some name pairs cover negative mention
pairs too), reported next to every official score.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from model.evaluation.ddi import predicted_pairs, prf
from model.evaluation.matching import normalize_drug_name
from schemas.answer import DDI_TYPES

log = logging.getLogger(__name__)

SPLITS = {
    "test": (
        "DDICorpus/Test/Test for DDI Extraction task/DrugBank/",
        "DDICorpus/Test/Test for DDI Extraction task/MedLine/",
    ),
    "train": ("DDICorpus/Train/DrugBank/", "DDICorpus/Train/MedLine/"),
}
_OFFSET = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
MAX_MEMBER_BYTES = 16 * 1024 * 1024  # the largest DDI13 document is ~270 KB: anything huge is refused


@dataclass
class OfficialCorpus:
    sentences: list[dict]
    errors: list[dict] = field(default_factory=list)  # {"id": zip member, "reason"}
    split: str = "test"


def default_zip() -> Path:
    from etl.paths import data_path

    return Path(data_path("ddi13", "DDICorpus-2013.zip"))


def read_official(zip_path: str | Path | None = None, split: str = "test") -> OfficialCorpus:
    """All sentence records of one split of the official corpus (see module doc)."""
    errors: list[dict] = []
    sentences = list(iter_official(zip_path, split, errors))
    return OfficialCorpus(sentences, errors, split)


def iter_official(
    zip_path: str | Path | None = None, split: str = "test", errors: list[dict] | None = None
) -> Iterator[dict]:
    """Sentence records, member by member; bad members are appended to ``errors`` (never raised)."""
    if split not in SPLITS:
        raise ValueError(f"DDI13 split must be one of {', '.join(SPLITS)}, got {split!r}")
    path = Path(zip_path) if zip_path else default_zip()
    if not path.is_file():
        raise ValueError(f"DDI13 corpus zip not found: {path}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not a zip file: {path} ({exc})") from exc
    with archive:
        members = sorted(n for n in archive.namelist() if _in_split(n, SPLITS[split]))
        if not members:
            raise ValueError(f"{path} holds no XML documents under {' or '.join(SPLITS[split])}")
        for name in members:
            try:
                size = archive.getinfo(name).file_size
                if size > MAX_MEMBER_BYTES:
                    raise ValueError(f"member of {size:,} bytes exceeds {MAX_MEMBER_BYTES:,}")
                yield from parse_document(archive.read(name))
            except (ValueError, KeyError) as exc:
                log.warning("DDI13 member %s skipped: %s", name, exc)
                if errors is not None:
                    errors.append({"id": name, "reason": str(exc)})


def _in_split(name: str, prefixes: tuple[str, ...]) -> bool:
    # only the documents directly in the folders (no .DS_Store, no __MACOSX copies)
    return name.endswith(".xml") and any(
        name.startswith(p) and "/" not in name[len(p) :] and not name[len(p) :].startswith(".")
        for p in prefixes
    )


def _parser():
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_document(data: bytes) -> list[dict]:
    """Sentence records of one DDI13 XML document.  Raises ``ValueError`` on a bad document."""
    from lxml import etree

    upper = data.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise ValueError("document declares a DOCTYPE/ENTITY (refused: no DTDs, no entities)")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from exc
    if root.tag != "document":
        raise ValueError(f"root element is <{root.tag}>, expected <document>")
    doc_id = root.get("id") or ""
    return [_sentence(s, doc_id) for s in root.iter("sentence")]


def _sentence(node, doc_id: str) -> dict:
    sid, text = node.get("id"), node.get("text")
    if not sid or text is None:
        raise ValueError(f"sentence without id/text in document {doc_id!r}")
    entities = []
    for e in node.iter("entity"):
        offsets = parse_offsets(e.get("charOffset", ""), len(text))
        entities.append(
            {
                "id": e.get("id"),
                "text": e.get("text") or " ".join(text[a:b] for a, b in offsets),
                "type": e.get("type"),
                "offsets": offsets,
            }
        )
    known = {e["id"] for e in entities}
    pairs = []
    for p in node.iter("pair"):
        e1, e2 = p.get("e1"), p.get("e2")
        if e1 not in known or e2 not in known:
            raise ValueError(f"pair {p.get('id')} refers to unknown entities {e1!r}, {e2!r}")
        ddi = (p.get("ddi") or "").strip().lower() == "true"
        rtype = (p.get("type") or "").strip().lower() or None
        if ddi and rtype not in DDI_TYPES:
            # one Train pair says ddi="true" without a type: kept as an untyped DDI, never a scored positive
            log.warning(
                "DDI13 pair %s: ddi=true with unknown type %r (kept untyped)", p.get("id"), p.get("type")
            )
            rtype = None
        pairs.append({"id": p.get("id"), "e1": e1, "e2": e2, "ddi": ddi, "type": rtype if ddi else None})
    return {"id": sid, "doc_id": doc_id, "sentence": text, "entities": entities, "pairs": pairs}


def parse_offsets(value: str, text_len: int | None = None) -> list[tuple[int, int]]:
    """``"a-b;c-d"`` (inclusive ends) -> ``[(a, b + 1), (c, d + 1)]`` (half-open).  Raises ValueError."""
    spans = []
    for part in value.split(";"):
        m = _OFFSET.match(part)
        if not m:
            raise ValueError(f"bad charOffset {value!r}")
        start, end = int(m.group(1)), int(m.group(2)) + 1
        if end <= start or (text_len is not None and end > text_len):
            raise ValueError(f"charOffset {value!r} outside the sentence (length {text_len})")
        spans.append((start, end))
    return spans


# --- corpus statistics and labels ----------------------------------------------------------------------


def corpus_counts(sentences: Iterable[dict]) -> dict:
    docs, n_sent, n_pairs = set(), 0, 0
    types: Counter = Counter()
    untyped = 0
    for s in sentences:
        docs.add(s["doc_id"])
        n_sent += 1
        n_pairs += len(s["pairs"])
        types.update(p["type"] for p in s["pairs"] if p["type"])
        untyped += sum(1 for p in s["pairs"] if p["ddi"] and not p["type"])
    positive = sum(types.values())
    return {
        "documents": len(docs),
        "sentences": n_sent,
        "pairs": n_pairs,
        "positive": positive,
        "negative": n_pairs - positive - untyped,
        "ddi_without_type": untyped,
        **{t: types[t] for t in DDI_TYPES},
    }


def official_label(counts: dict, split: str = "test", subset: bool = False) -> str:
    name = "DDIExtraction 2013 test" if split == "test" else f"DDIExtraction 2013 {split}"
    part = " subset" if subset else ""
    return (
        f"ddi13-official ({name}{part}: {counts['sentences']:,} sentences, {counts['pairs']:,} candidate "
        f"pairs, {counts['positive']:,} positive; mention-pair micro P/R/F1, names mapped to mentions)"
    )


# --- scoring -------------------------------------------------------------------------------------------


def name_index(sentence: dict) -> dict[str, str]:
    """{entity id: normalized entity text} of one sentence record."""
    return {e["id"]: normalize_drug_name(e["text"]) for e in sentence["entities"]}


def map_name_pair(sentence: dict, a: str, b: str, names: dict[str, str] | None = None) -> list[str]:
    """Ids of every candidate pair of ``sentence`` whose two entity texts normalize to names {a, b}."""
    names = names if names is not None else name_index(sentence)
    key = {normalize_drug_name(a), normalize_drug_name(b)}
    if len(key) != 2:
        return []
    return [p["id"] for p in sentence["pairs"] if {names[p["e1"]], names[p["e2"]]} == key]


def gold_as_names(sentence: dict) -> dict:
    """The gold positives of a sentence record written as a name prediction ``{"id", "relations"}``."""
    text = {e["id"]: e["text"] for e in sentence["entities"]}
    return {
        "id": sentence["id"],
        "relations": [
            {"type": p["type"], "ent_sets": [text[p["e1"]], text[p["e2"]]]}
            for p in sentence["pairs"]
            if p["type"]
        ],
    }


def string_key(text: str) -> str:
    """A drug string as the string-pair reading compares it: lowercased, whitespace collapsed."""
    return " ".join(str(text).lower().split())


def gold_string_pairs(sentence: dict) -> set[tuple[str, frozenset]]:
    """{(type, {a, b})} of a sentence record's positive pairs, as lowercased strings."""
    text = {e["id"]: string_key(e["text"]) for e in sentence["entities"]}
    return {(p["type"], frozenset((text[p["e1"]], text[p["e2"]]))) for p in sentence["pairs"] if p["type"]}


def score_string_pairs(gold: Iterable[dict], pred: Iterable[dict]) -> dict:
    """Micro P/R/F1 (and per type) of predicted typed string pairs against each sentence's gold set.

    Sentences are joined on ``id``; predictions for sentences not in ``gold`` are counted, not scored.
    """
    pred_by_id: dict[str, dict] = {}
    for p in pred:
        pred_by_id.setdefault(str(p.get("id")), p)
    tp, fp, fn = Counter(), Counter(), Counter()
    self_pairs = 0
    gold_ids = set()
    for sent in gold:
        gold_ids.add(sent["id"])
        gold_set = gold_string_pairs(sent)
        self_pairs += sum(1 for _, pair in gold_set if len(pair) == 1)
        pairs, _ = predicted_pairs((pred_by_id.get(sent["id"]) or {}).get("relations") or [])
        predicted = {(rtype, frozenset((string_key(a), string_key(b)))) for rtype, a, b in pairs}
        predicted = {(t, pair) for t, pair in predicted if len(pair) == 2}
        for rtype, _ in predicted & gold_set:
            tp[rtype] += 1
        for rtype, _ in predicted - gold_set:
            fp[rtype] += 1
        for rtype, _ in gold_set - predicted:
            fn[rtype] += 1
    return {
        "micro": prf(sum(tp.values()), sum(fp.values()), sum(fn.values())),
        "per_type": {t: prf(tp[t], fp[t], fn[t]) for t in DDI_TYPES},
        "gold_self_pairs": self_pairs,
        "predictions_for_unknown_sentences": len(set(pred_by_id) - gold_ids),
    }


def name_oracle(sentences: list[dict]) -> dict:
    """Micro/detection P/R/F1 of the gold itself written as names: the ceiling under the name mapping."""
    scores = score_official(sentences, [gold_as_names(s) for s in sentences])
    return {"micro": scores["micro"], "detection": scores["detection"]}


def score_official(gold: Iterable[dict], pred: Iterable[dict]) -> dict:
    """Micro P/R/F1 (typed, per type, detection) of name predictions on the official pair set.

    ``gold``: sentence records of ``read_official``; ``pred``: ``{"id": sentence id, "relations":
    [{"type", "ent_sets"|"ent_set": [names]}]}`` (types case-insensitive; non-DDI types ignored; sets
    of more than two names count as all their pairs, see ``model.evaluation.ddi.predicted_pairs``).
    """
    pred_by_id: dict[str, dict] = {}
    for p in pred:
        pred_by_id.setdefault(str(p.get("id")), p)
    tp, fp, fn = Counter(), Counter(), Counter()
    det = Counter()
    stats = Counter()
    gold_ids = set()
    for sent in gold:
        gold_ids.add(sent["id"])
        names = name_index(sent)
        record = pred_by_id.get(sent["id"])
        if record is None and sent["pairs"]:  # a sentence without candidate pairs needs no prediction
            stats["sentences_without_prediction"] += 1
        pairs, ignored = predicted_pairs((record or {}).get("relations") or [])
        stats["ignored_items"] += ignored
        predicted: dict[str, str] = {}  # mention pair id -> first predicted type
        for rtype, a, b in pairs:
            hits = map_name_pair(sent, a, b, names)
            if not hits:
                stats["unmapped"] += 1
                fp[rtype] += 1
                det["fp"] += 1
                continue
            stats["mapped_name_pairs"] += 1
            for pid in hits:
                if pid in predicted:
                    if predicted[pid] != rtype:
                        stats["conflicting_types_ignored"] += 1
                    continue
                predicted[pid] = rtype
        for pair in sent["pairs"]:
            g, p = pair["type"], predicted.get(pair["id"])
            if g and names[pair["e1"]] == names[pair["e2"]]:
                stats["gold_unreachable_by_names"] += 1
            if p is not None:
                if p == g:
                    tp[p] += 1
                else:
                    fp[p] += 1
            if g is not None and p != g:
                fn[g] += 1
            if p is not None and g is not None:
                det["tp"] += 1
            elif p is not None:
                det["fp"] += 1
            elif g is not None:
                det["fn"] += 1
    stats["predictions_for_unknown_sentences"] = len(set(pred_by_id) - gold_ids)
    return {
        "micro": prf(sum(tp.values()), sum(fp.values()), sum(fn.values())),
        "per_type": {t: prf(tp[t], fp[t], fn[t]) for t in DDI_TYPES},
        "detection": prf(det["tp"], det["fp"], det["fn"]),
        "unmapped_predicted_pairs": stats["unmapped"],
        "mapped_predicted_pairs": stats["mapped_name_pairs"],
        "conflicting_types_ignored": stats["conflicting_types_ignored"],
        "ignored_items": stats["ignored_items"],
        "gold_unreachable_by_names": stats["gold_unreachable_by_names"],
        "gold_sentences_without_prediction": stats["sentences_without_prediction"],
        "predictions_for_unknown_sentences": stats["predictions_for_unknown_sentences"],
    }
