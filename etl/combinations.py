"""Extraction rows -> normalized combination and interaction rows (pure; no Spark, no model).

Input is a table of ``schemas.extraction.EXTRACTIONS`` (the parsed relations of each candidate
sentence); output is the ``COMBINATIONS`` and ``COMBINATION_DRUGS`` tables (the ``combinations``
task) or the ``INTERACTIONS`` table (the ``interactions`` task, DDI13 pairs), plus ``EXTRACTION_ERRORS``
rows for sentences whose model output could not be used; both tasks go through one relation path.  Drug names are normalized with the drug KB:
a regimen name (FOLFOX) becomes its components, so that the drug-set key of "FOLFOX + bevacizumab" is
the same as the one of its four drugs written out.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from schemas.answer import COMBINATION_LABELS, DDI_LABELS, USABLE_PARSE_STATUSES
from schemas.drugs import DRUG_KINDS
from schemas.extraction import (
    COMBINATION_DRUGS,
    COMBINATIONS,
    EXTRACTION_ERRORS,
    INTERACTIONS,
    SENTENCE_KEY,
)

Normalizer = Callable[[str], dict[str, Any]]

_PROVENANCE = ("model_id", "prompt_version", "run_id", "extracted_at")


def unnormalized_id(name: str) -> str:
    """Stable key for a name the KB lacks: casefolded, inner whitespace collapsed."""
    return "name:" + " ".join(name.casefold().split())


def _overlapping_mention(
    drug: dict[str, Any], mentions: list[dict[str, Any]] | None
) -> dict[str, Any] | None:
    start, end = drug.get("start"), drug.get("end")
    if start is None or end is None:
        return None
    for m in mentions or []:
        if m.get("id") and m["start"] < end and start < m["end"]:
            return m
    return None


def _drug_entries(drug: dict[str, Any], normalizer: Normalizer, mentions=None) -> list[dict[str, Any]]:
    """One parsed drug -> one or more normalized drug structs (several for a regimen).

    The name is normalized with the KB; when the KB alone cannot resolve it but the model's name sits
    on a drug the matcher found in the sentence (an abbreviation defined elsewhere in the abstract,
    say), the mention's drug is used (``matched_by="mention"``).
    """
    name = drug.get("name") or ""
    base = {
        "surface": name,
        "start": drug.get("start"),
        "end": drug.get("end"),
        "grounded": bool(drug.get("grounded")),
        "via_regimen": None,
    }
    norm = normalizer(name) or {}
    mention = _overlapping_mention(drug, mentions)
    # the matcher's reading of the sentence decides what the name is (an abbreviation the abstract defines
    # as a lipid is not the drug of the same letters); a name on no mention, the KB's
    base["kind"] = mention.get("kind") if mention is not None and mention.get("kind") else norm.get("kind")
    if norm.get("id") is None and mention is not None:
        via = normalizer(mention.get("preferred_name") or mention.get("surface") or "") or {}
        norm = (
            via
            if via.get("id")
            else {
                "id": mention["id"],
                "preferred_name": mention.get("preferred_name"),
                "is_class": mention.get("is_class"),
            }
        )
        norm = {**norm, "matched_by": "mention"}
    components = norm.get("components") or []
    if components:
        entries = []
        for comp in components:
            entries.append(
                {
                    **base,
                    "canonical_id": comp.get("id") or unnormalized_id(comp.get("preferred_name") or name),
                    "preferred_name": comp.get("preferred_name"),
                    "is_class": bool(comp.get("is_class")),
                    "normalized": comp.get("id") is not None,
                    "matched_by": comp.get("matched_by"),
                    "via_regimen": norm.get("preferred_name") or name,
                    "kind": comp.get("kind") or base["kind"],
                }
            )
        return entries
    normalized = norm.get("id") is not None
    return [
        {
            **base,
            "canonical_id": norm["id"] if normalized else unnormalized_id(name),
            "preferred_name": norm.get("preferred_name") if normalized else name,
            "is_class": bool(norm.get("is_class")),
            "normalized": normalized,
            "matched_by": norm.get("matched_by") or "unnormalized",
        }
    ]


def is_drug_member(entry: dict[str, Any]) -> bool:
    """Whether a normalized drug of a relation counts as a drug of the combination: its kind (from the
    matcher's mention it sits on, else from its KB entry, a research code included) is a drug kind.

    Left out: a class ("anthracyclines": DrugComb's entities are specific drugs), another substance or a
    non-drug ("iron", "coenzyme A"), and a name that is neither a KB entry nor on any drug the matcher
    found in the sentence (kind None: "prostate-specific antigen", "testerone", a name the model made
    up). Measured on the real-PubMed dev set, leaving the unknown names out raised rexdrug-smol's exact
    precision from 0.28 to 0.34 at one gold combination's recall. What is left out stays on the row
    (``non_drugs``) and in the extraction's raw output.
    """
    return entry.get("kind") in DRUG_KINDS


def drug_members(
    drugs: list[dict[str, Any]], normalizer: Normalizer, mentions=None
) -> tuple[list[dict[str, Any]], list[str]]:
    """(normalized drug members, names left out as known non-drugs) of one parsed relation's drugs."""
    entries = [entry for d in drugs for entry in _drug_entries(d, normalizer, mentions)]
    kept = [e for e in entries if is_drug_member(e)]
    dropped = [e["surface"] for e in entries if not is_drug_member(e)]
    return kept, list(dict.fromkeys(dropped))


def relation_confidence(relation: dict[str, Any]) -> float | None:
    """The confidence the extraction row's relation carries (model.confidence), or None.

    Only a finite number in [0, 1] is a confidence; anything else (an old row without the field, a
    corrupt value) stays null rather than passing a threshold it should not.
    """
    value = relation.get("confidence")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def combination_id(extraction_key: str, relation_index: int) -> str:
    return hashlib.sha1(f"{extraction_key}#{relation_index}".encode()).hexdigest()


def _usable_relations(
    extractions: pa.Table, normalizer: Normalizer, labels: tuple[str, ...], errors: list[dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], int, str, list[dict[str, Any]], list[str], list[str]]]:
    """The relations of ``labels`` whose drugs fold to >= 2 distinct canonical ids, one per relation:
    (extraction row, relation index, label, normalized drugs, non-drug names, sorted distinct ids).

    What is not usable becomes an error row in ``errors`` (the one error path of every task): an engine
    failure (stage "engine"), an unusable parse ("parse"), a relation with fewer than two distinct drugs
    ("normalize").  A relation of another label (NO_COMB) is skipped: the extraction row records that
    the sentence was read.
    """
    for row in extractions.to_pylist():
        if row.get("error"):
            errors.append(_error(row, "engine", row["error"]))
            continue
        if row.get("parse_status") not in USABLE_PARSE_STATUSES:
            errors.append(
                _error(row, "parse", f"{row.get('parse_status')}: {row.get('parse_reason') or ''}".strip())
            )
            continue
        for index, relation in enumerate(row.get("relations") or []):
            label = relation.get("label")
            if label not in labels:
                continue  # NO_COMB: nothing to store beyond the extraction row
            drugs, non_drugs = drug_members(relation.get("drugs") or [], normalizer, row.get("mentions"))
            set_ids = sorted({d["canonical_id"] for d in drugs})
            if len(set_ids) < 2:
                left_out = f"; not known drugs: {', '.join(non_drugs)}" if non_drugs else ""
                errors.append(
                    _error(
                        row,
                        "normalize",
                        f"relation {index} ({label}) has fewer than two distinct drugs: {set_ids}{left_out}",
                    )
                )
                continue
            yield row, index, label, drugs, non_drugs, set_ids


def _relation_fields(
    row: dict[str, Any], relation_index: int, drugs: list[dict[str, Any]], non_drugs
) -> dict:
    """The columns every relation row shares (combinations, interactions): sentence key, grounding and
    normalization summary, reasoning, parse status, confidence, provenance."""
    relation = row["relations"][relation_index]
    return {
        **{k: row.get(k) for k in SENTENCE_KEY},
        "relation_index": relation_index,
        "all_grounded": all(d["grounded"] for d in drugs),
        "all_normalized": all(d["normalized"] for d in drugs),
        "reasoning": row.get("think"),
        "parse_status": row.get("parse_status"),
        "non_drugs": non_drugs,
        "confidence": relation_confidence(relation),
        **{k: row.get(k) for k in _PROVENANCE},
    }


def build_combination_tables(
    extractions: pa.Table, normalizer: Normalizer
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Return (combinations, combination_drugs, errors) for a batch of extraction rows.

    A NO_COMB answer yields no combination row (the extraction row records that the sentence was
    read).  A relation whose drugs fold to fewer than two distinct canonical ids is not a combination
    and is reported as an error row (stage "normalize") rather than dropped silently.
    """
    combos: list[dict[str, Any]] = []
    exploded: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for row, index, label, drugs, non_drugs, set_ids in _usable_relations(
        extractions, normalizer, COMBINATION_LABELS, errors
    ):
        prov = {k: row.get(k) for k in _PROVENANCE}
        cid = combination_id(row["extraction_key"], index)
        set_key = " + ".join(set_ids)
        combos.append(
            {
                "combination_id": cid,
                **_relation_fields(row, index, drugs, non_drugs),
                "label": label,
                "drugs": drugs,
                "drug_set_key": set_key,
                "drug_set_ids": set_ids,
                "n_drugs": len(set_ids),
            }
        )
        for position, d in enumerate(drugs):
            exploded.append(
                {
                    "combination_id": cid,
                    "pmid": row["pmid"],
                    "pmid_version": row["pmid_version"],
                    "sentence_index": row["sentence_index"],
                    "label": label,
                    "drug_set_key": set_key,
                    "position": position,
                    **{k: d[k] for k in ("surface", "start", "end", "grounded", "canonical_id")},
                    **{k: d[k] for k in ("preferred_name", "is_class", "normalized", "via_regimen", "kind")},
                    **prov,
                }
            )
    return (
        _table(combos, COMBINATIONS),
        _table(exploded, COMBINATION_DRUGS),
        _table(errors, EXTRACTION_ERRORS),
    )


def build_interaction_tables(
    extractions: pa.Table, normalizer: Normalizer, engine_kind: str | None = None
) -> tuple[pa.Table, pa.Table]:
    """Return (interactions, errors) for a batch of extraction rows of the ``interactions`` task.

    The same path as combinations (``_usable_relations``: normalization, non-drugs left out, error rows),
    with DDI13's labels; an interaction is a pair, so a relation whose drugs fold to more than two
    distinct ids (three names, or a regimen's components) is an error row (stage "normalize") too.  The
    pair is stored in canonical order (by canonical id); each drug is the name the model wrote for it,
    the first one named directly when there is one (a regimen's component only otherwise).  An answer
    names a pair once: a later relation of the same extraction row whose drugs fold to a pair already
    stored ("GEMOX" and "oxaliplatin" after "gemcitabine" and "oxaliplatin") adds no row.
    ``engine_kind`` is the engine that answered (the sweep's configuration; rows do not carry it).
    """
    pairs: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    stored: set[tuple[str, str]] = set()
    for row, index, label, drugs, non_drugs, set_ids in _usable_relations(
        extractions, normalizer, DDI_LABELS, errors
    ):
        if len(set_ids) > 2:
            errors.append(
                _error(
                    row,
                    "normalize",
                    f"relation {index} ({label}) names {len(set_ids)} distinct drugs, an interaction is "
                    f"a pair: {set_ids}",
                )
            )
            continue
        pair_key = " + ".join(set_ids)
        if (row["extraction_key"], pair_key) in stored:
            continue
        stored.add((row["extraction_key"], pair_key))
        named: dict[str, dict[str, Any]] = {}
        for d in drugs:
            if d["canonical_id"] not in named or (
                named[d["canonical_id"]]["via_regimen"] and not d["via_regimen"]
            ):
                named[d["canonical_id"]] = d
        drug_a, drug_b = (named[i] for i in set_ids)
        pairs.append(
            {
                "interaction_id": combination_id(row["extraction_key"], index),
                **_relation_fields(row, index, [drug_a, drug_b], non_drugs),
                "interaction_type": label,
                "pair_key": pair_key,
                "drug_a": drug_a,
                "drug_b": drug_b,
                "parse_reason": row.get("parse_reason"),
                "engine_kind": engine_kind,
            }
        )
    return _table(pairs, INTERACTIONS), _table(errors, EXTRACTION_ERRORS)


def _error(row: dict[str, Any], stage: str, reason: str) -> dict[str, Any]:
    return {
        "extraction_key": row.get("extraction_key"),
        "pmid": row.get("pmid"),
        "pmid_version": row.get("pmid_version"),
        "sentence_index": row.get("sentence_index"),
        "stage": stage,
        "reason": reason,
        "raw_output": row.get("raw_output"),
        **{k: row.get(k) for k in _PROVENANCE},
    }


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    # from_pylist with the schema matches nested struct fields by name; missing keys become nulls.
    return pa.Table.from_pylist(rows, schema=schema)
