"""Drug layer tables: sentence rows with their drug mentions (``etl.candidates.sentence_table``).

The abstract (the LLM's context) is *not* stored per sentence row: it is joined back from the
articles table on (pmid, pmid_version) — ``abstract`` there is the exact string the ``start``/``end``
offsets index — so a 10-sentence abstract is stored once, not ten times.
"""

from __future__ import annotations

import pyarrow as pa

# What a drug-KB entry is (``etl.drugs.build.assign_kinds`` derives it from the sources' own fields):
#   drug             an approved or investigational drug, a biologic given as treatment, a hormone or
#                    vitamin used as a drug (estradiol, cholecalciferol), a research compound of DrugComb
#   regimen          a named multi-drug regimen (FOLFOX, R-CHOP)
#   class            a drug class or pharmacologic group ("PD-1 inhibitors", "Estrogens")
#   other_substance  a chemical that is not a drug in abstracts: elements, metabolites and cofactors,
#                    nutrients, lipids, reagents, materials, pollutants (sulfur, coenzyme A, bisphenol A)
#   not_drug         a biological entity that is measured or targeted, not given: biomarkers, enzymes,
#                    proteins (prostate-specific antigen, rheumatoid factor)
KINDS = ("drug", "regimen", "class", "other_substance", "not_drug")
# kinds that count towards a candidate sentence's distinct drugs (classes are counted apart)
DRUG_KINDS = ("drug", "regimen")

MENTION = pa.struct(
    [
        pa.field("start", pa.int32()),  # offsets in the sentence text: text[start:end] == surface
        pa.field("end", pa.int32()),
        pa.field("surface", pa.string()),
        pa.field("id", pa.string()),  # drug KB id (DrugBank > UNII > MeSH > RXD:...)
        pa.field("preferred_name", pa.string()),
        pa.field("is_class", pa.bool_()),
        pa.field("kind", pa.string()),  # KINDS: carried so later stages need not look the KB up again
    ]
)

SENTENCES = pa.schema(
    [
        pa.field("pmid", pa.string(), nullable=False),
        pa.field("pmid_version", pa.int32(), nullable=False),
        pa.field("sentence_index", pa.int32(), nullable=False),  # 0-based, in abstract order
        pa.field("start", pa.int32(), nullable=False),  # offsets in the article's abstract
        pa.field("end", pa.int32(), nullable=False),
        pa.field("text", pa.string(), nullable=False),  # abstract[start:end]
        pa.field("text_hash", pa.string(), nullable=False),  # sha1 of text (utf-8), hex
        pa.field("mentions", pa.list_(MENTION)),
        pa.field(
            "n_distinct_drugs", pa.int32(), nullable=False
        ),  # distinct DRUG_KINDS entries (see etl.candidates)
        pa.field("n_distinct_classes", pa.int32(), nullable=False),  # distinct class ids, counted apart
        pa.field("is_candidate", pa.bool_(), nullable=False),  # n_distinct_drugs >= 2: goes to the LLM
    ]
)
