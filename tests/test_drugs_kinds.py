"""What is a drug: every KB entry's kind, the candidate rule over kinds, abbreviations that invent no drug.

Hand-made cases with hand-decided expectations (the guideline of schemas/drugs.py ``KINDS``): elements,
metabolites, biomarkers, pollutants, lipids and nutrients are not drugs; brand names, salts, research
codes, regimens, hormones and vitamins given as medicines are.
"""

from __future__ import annotations

import pytest

from etl.candidates import candidate_decision, sentence_rows
from etl.drugs import Mention, default_matcher
from etl.drugs.build import Entity, kind_from_sources, load_curated_kinds
from schemas.drugs import KINDS


@pytest.fixture(scope="module")
def matcher():
    return default_matcher()


def kinds(matcher, text, **kw):
    return [(m.surface, m.kind) for m in matcher.find(text, **kw)]


# ------------------------------------------------------------------------------------- kinds of the KB
@pytest.mark.parametrize(
    "text, expected",
    [
        # elements (a materials paper: "fluorine atoms ... sulfur atoms of MoS2")
        ("fluorine", "other_substance"),
        ("sulfur", "other_substance"),
        ("copper", "other_substance"),
        ("gold", "other_substance"),
        # endogenous metabolites and cofactors
        ("coenzyme A", "other_substance"),
        ("succinyl-CoA", "other_substance"),
        ("lactate", "other_substance"),
        # nutrients, supplements, sugars, amino acids
        ("astaxanthin", "other_substance"),
        ("sucrose", "other_substance"),
        ("tyrosine", "other_substance"),
        # pollutants, reagents, lipids
        ("bisphenol A", "other_substance"),
        ("aminoantipyrine", "other_substance"),
        ("ethyl methanesulfonate", "other_substance"),
        ("sn-glycero-3-phosphoethanolamine", "other_substance"),
        ("alginate", "other_substance"),
        # biomarkers
        ("rheumatoid factor", "not_drug"),
        # drugs: generic, salt, brand, research code (vocabulary and by shape)
        ("cisplatin", "drug"),
        ("imatinib mesylate", "drug"),
        ("Herceptin", "drug"),
        ("AZD9291", "drug"),
        ("PF-4708671", "drug"),
        ("physostigmine", "drug"),
        # hormones and vitamins given as medicines stay drugs
        ("estradiol", "drug"),
        ("testosterone", "drug"),
        ("cholecalciferol", "drug"),
        ("folic acid", "drug"),
        # an element that is a medicine in abstracts (curated), a food component that is one too (curated)
        ("lithium", "drug"),
        ("caffeine", "drug"),
        # regimens and classes
        ("FOLFOX", "regimen"),
        ("R-CHOP", "regimen"),
        ("taxanes", "class"),
    ],
)
def test_kind_of_entry(matcher, text, expected):
    found = matcher.find(text)
    assert [m.surface for m in found] == [text]
    assert found[0].kind == expected
    assert matcher.entry(found[0].id).kind == expected


def test_every_entry_has_a_known_kind(matcher):
    assert {e.kind for e in matcher.kb.entries.values()} == set(KINDS)


def _entity(**kw):
    return Entity(id="X", preferred_name=kw.pop("name", "Xylomab"), **kw)


@pytest.mark.parametrize(
    "entity, in_drugcomb, expected",
    [
        (_entity(is_regimen=True), False, ("regimen", "regimen")),
        (_entity(is_class=True), False, ("class", "class")),
        # DrugComb's dictionary outranks everything the registries say
        (_entity(unii="U", unii_tags={"DSC", "MI"}), True, ("drug", "drugcomb")),
        # an element by its formula or its MeSH tree, an ion by its DrugBank name; a radionuclide is not one
        (_entity(formula="Cu", unii_tags={"INN"}), False, ("other_substance", "element")),
        (_entity(mesh_trees={"D01.268.380.300"}), False, ("other_substance", "element")),
        (_entity(name="Calcium cation"), False, ("other_substance", "element")),
        (_entity(name="Yttrium Y-90", formula="Y"), False, ("drug", "default")),
        # a medicine page for patients beats the food registries (folic acid)
        (_entity(unii="U", unii_tags={"FCC", "INN"}, consumer_info=True), False, ("drug", "consumer_info")),
        (_entity(unii="U", unii_tags={"FCC", "INN"}), False, ("other_substance", "food_or_supplement")),
        (_entity(unii="U", unii_tags={"INN", "MI"}), False, ("drug", "drug_name")),
        (_entity(unii="U", unii_tags={"ORANGE BOOK"}), False, ("drug", "drug_name")),
        # catalogued only (Merck Index, hazardous substances, WHO-DD): a reagent or metabolite
        (
            _entity(unii="U", unii_tags={"MI", "HSDB", "WHO-DD"}),
            False,
            ("other_substance", "unii_no_drug_name"),
        ),
        # MeSH headings: biomarkers/enzymes are no drugs, carbohydrates other substances, drug trees drugs
        (_entity(mesh_trees={"D23.101.140.625", "D08.811.277"}), False, ("not_drug", "mesh_not_drug")),
        (_entity(mesh_trees={"D09.698"}), False, ("other_substance", "mesh_other_substance")),
        (_entity(mesh_trees={"D12.776.124.486.485.114.224.060"}), False, ("drug", "default")),
        (_entity(mesh_trees={"D03.633", "D13.695"}), False, ("drug", "default")),
        # chemical nomenclature with no drug name anywhere; a research code is no chemical name
        (_entity(name="6-phospho-D-gluconic acid"), False, ("other_substance", "chemical_name")),
        (_entity(name="alpha-D-Xylopyranose"), False, ("other_substance", "chemical_name")),
        (_entity(name="VCN-01"), False, ("drug", "default")),
    ],
)
def test_kind_from_sources(entity, in_drugcomb, expected):
    assert kind_from_sources(entity, in_drugcomb) == expected


def test_curated_kinds_are_valid_and_explained():
    rows = load_curated_kinds()
    assert rows and all(r["kind"] in KINDS and r["reason"].strip() for r in rows)


# -------------------------------------------------------------------------------- the candidate rule
def decide(matcher, sentence, abstract=None):
    """(is_candidate, n_distinct_drugs) of ``sentence`` read in ``abstract`` as the sweep reads it."""
    abstract = abstract or sentence
    rows = sentence_rows("1", 1, abstract, matcher)
    row = next(r for r in rows if r["text"] == sentence)
    return row["is_candidate"], row["n_distinct_drugs"]


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("The fluorine atoms of the side chains interact with the sulfur atoms of MoS2.", (False, 0)),
        ("It transfers coenzyme A from succinyl-CoA to acetoacetate.", (False, 0)),
        ("Astaxanthin content increased with sodium lactate in the medium.", (False, 0)),
        (
            "Environmental pollutants such as bisphenol A (BPA) and aminoantipyrine (AAP) were docked.",
            (False, 0),
        ),
        ("Rheumatoid factor levels did not change the response to certolizumab pegol.", (False, 1)),
        # a lipid of a liposome is no drug, whatever its short form
        ("Liposomes of 1,2-dioleoyl-sn-glycero-3-phosphoethanolamine (DOPE) carried cisplatin.", (False, 1)),
        ("Patients received cisplatin plus paclitaxel.", (True, 2)),
        ("Herceptin and imatinib mesylate were combined.", (True, 2)),
        ("AZD9291 with PF-4708671 inhibited growth.", (True, 2)),
        # hormones are drugs, but where nothing is given they name levels (read as other substances)
        ("Serum estradiol and testosterone were measured.", (False, 0)),
        ("Estradiol combined with progesterone was given.", (True, 2)),
        ("Insulin glargine and metformin were given.", (True, 2)),
        # one drug named twice: an entry and the entry named by its first word
        ("Certolizumab (certolizumab pegol) was effective.", (False, 1)),
        # a regimen and its own components are the components
        ("FOLFOX (oxaliplatin, leucovorin and fluorouracil) was given.", (True, 3)),
        # a class is counted apart
        ("Taxanes plus cisplatin were given.", (False, 1)),
    ],
)
def test_candidate_rule(matcher, sentence, expected):
    assert decide(matcher, sentence) == expected


class _NoComponents:
    """Stands in for the matcher's KB lookup: entries without regimen components."""

    def entry(self, entry_id):
        return type("E", (), {"components": ()})()


def _m(surface, entry_id, name=None, kind="drug"):
    return Mention(0, len(surface), surface, entry_id, name or surface, kind == "class", kind)


@pytest.mark.parametrize(
    "mentions, expected",
    [
        # a misspelling read as another entry is the same drug (one edit in a long name)
        ([_m("certolizumab", "A"), _m("ceptolizumab", "B")], 1),
        ([_m("trastuzumab", "A"), _m("trastuzuamb", "B")], 1),  # adjacent swap
        # real different drugs stay apart, even with similar names
        ([_m("prednisone", "A"), _m("prednisolone", "B")], 2),
        ([_m("vincristine", "A"), _m("vinblastine", "B")], 2),
        ([_m("estriol", "A"), _m("estradiol", "B")], 2),
        ([_m("cisplatin", "A"), _m("carboplatin", "B")], 2),
        # other kinds do not count
        ([_m("cisplatin", "A"), _m("sulfur", "B", kind="other_substance")], 1),
        ([_m("cisplatin", "A"), _m("PSA", "B", kind="not_drug")], 1),
        ([_m("FOLFOX", "R", kind="regimen"), _m("bevacizumab", "B")], 2),
    ],
)
def test_one_drug_named_twice_counts_once(mentions, expected):
    assert candidate_decision(mentions, _NoComponents()).n_distinct_drugs == expected


# --------------------------------------------------------------------------- abbreviations invent no drug
def test_undefined_vocabulary_acronym_is_no_drug(matcher):
    # "HCTZ" is a vocabulary acronym of hydrochlorothiazide: read only where the article's MeSH chemicals
    # name the drug ...
    assert kinds(matcher, "HCTZ and MTX were given") == [("MTX", "drug")]  # MTX is a curated acronym
    hctz = matcher.find("hydrochlorothiazide")[0].id
    assert kinds(matcher, "HCTZ and MTX were given", evidence={hctz}) == [("HCTZ", "drug"), ("MTX", "drug")]
    # ... or the abstract defines it
    abstract = "We studied hydrochlorothiazide (HCTZ). HCTZ and amlodipine were given."
    assert decide(matcher, "HCTZ and amlodipine were given.", abstract) == (True, 2)
    # codes with a digit are names, not abbreviations: read without support
    assert kinds(matcher, "SN-38") == [("SN-38", "drug")]


def test_acronym_defined_as_something_else_is_no_drug(matcher):
    # MMC is the curated acronym of mitomycin C, but this abstract says what its MMC is
    abstract = (
        "A high-throughput microbial microdroplet culture (MMC) system was used. "
        "MMC with cisplatin selected fast-growing strains."
    )
    assert decide(matcher, "MMC with cisplatin selected fast-growing strains.", abstract) == (False, 1)
    assert kinds(matcher, "a microbial microdroplet culture (MMC) with MMC") == []
    # a drug in the long form is a definition of the drug, not of something else
    assert {m.surface for m in matcher.find("mitomycin C (MMC) and MMC")} == {"mitomycin C", "MMC"}
    assert {m.surface for m in matcher.find("low-dose methotrexate therapy (MTX); MTX")} == {
        "methotrexate",
        "MTX",
    }


def test_short_form_takes_its_long_forms_kind(matcher):
    # "alginate (ALG)": ALG is alginic acid, a material, wherever the abstract uses it
    abstract = (
        "Resiquimod was loaded into an alginate (ALG) hydrogel. "
        "ALG and resiquimod were injected peritumorally."
    )
    assert decide(matcher, "ALG and resiquimod were injected peritumorally.", abstract) == (False, 1)
    rows = sentence_rows("1", 1, abstract, matcher)
    assert [(m["surface"], m["kind"]) for m in rows[1]["mentions"]] == [
        ("ALG", "other_substance"),
        ("resiquimod", "drug"),
    ]


def test_rule_baselines_name_only_drugs_and_prompts_keep_the_trained_hints(matcher):
    from model.prompting import candidate_hints

    text = "Cisplatin with sulfur, coenzyme A and paclitaxel."
    assert candidate_hints(text, matcher, drugs_only=True) == ["Cisplatin", "paclitaxel"]
    # the prompt's hints are what rexdrug-smol was trained with: every non-class mention
    assert candidate_hints(text, matcher) == ["Cisplatin", "sulfur", "coenzyme A", "paclitaxel"]


# ------------------------------------------------------------------- lever 2: the evidence selector
@pytest.mark.parametrize(
    "abstract, sentence, expected_drugs, expected_evidence",
    [
        # a co-administration cue in the sentence
        (
            "Cisplatin combined with paclitaxel was active.",
            "Cisplatin combined with paclitaxel was active.",
            True,
            True,
        ),
        ("Cisplatin/paclitaxel was active.", "Cisplatin/paclitaxel was active.", True, True),
        ("Cisplatin + paclitaxel was active.", "Cisplatin + paclitaxel was active.", True, True),
        # no cue in the sentence, none in the abstract: a comparison
        (
            "We compared paclitaxel and sotorasib in KRAS cells. Both slowed growth.",
            "We compared paclitaxel and sotorasib in KRAS cells.",
            True,
            False,
        ),
        # a docking study: no cue, so no candidate for any selector (in_silico_needs_cue)
        (
            "We docked paclitaxel and sotorasib into KRAS. Both stabilised the protein.",
            "We docked paclitaxel and sotorasib into KRAS.",
            False,
            False,
        ),
        # no cue in the sentence, but the abstract is about a combination regimen
        (
            "Paclitaxel and carboplatin were given. The regimen was synergistic in vitro.",
            "Paclitaxel and carboplatin were given.",
            True,
            True,
        ),
        # a keywords line is never a candidate, for any selector: it lists terms, it states nothing
        (
            "Keywords: cisplatin, paclitaxel, combination therapy",
            "Keywords: cisplatin, paclitaxel, combination therapy",
            False,
            False,
        ),
        # fewer than two drugs: no selector makes a candidate
        ("Cisplatin combined with sulfur.", "Cisplatin combined with sulfur.", False, False),
    ],
)
def test_evidence_selector(matcher, abstract, sentence, expected_drugs, expected_evidence):
    from etl.candidates import SelectorConfig

    def candidate(selector):
        rows = sentence_rows("1", 1, abstract, matcher, selector=selector)
        return next(r for r in rows if r["text"] == sentence)["is_candidate"]

    assert candidate(None) is expected_drugs
    assert candidate(SelectorConfig(kind="drugs")) is expected_drugs
    assert candidate(SelectorConfig(kind="drugs", endogenous_needs_cue=False)) is expected_drugs
    assert candidate(SelectorConfig(kind="evidence")) is expected_evidence


def test_endogenous_needs_cue_can_be_switched_off(matcher):
    from etl.candidates import SelectorConfig

    text = "Serum estradiol and testosterone were measured."
    assert not sentence_rows("1", 1, text, matcher)[0]["is_candidate"]
    off = SelectorConfig(endogenous_needs_cue=False)
    assert sentence_rows("1", 1, text, matcher, selector=off)[0]["is_candidate"]
    assert matcher.entry(matcher.find("estradiol")[0].id).endogenous
    assert not matcher.entry(matcher.find("metformin")[0].id).endogenous


def test_evidence_selector_reads_mesh_indexing(matcher):
    from etl.candidates import SelectorConfig

    abstract = "We gave paclitaxel and sotorasib to KRAS mice."
    headings = [{"ui": "D004359", "name": "Drug Therapy, Combination", "major": False, "qualifiers": []}]
    rows = sentence_rows(
        "1", 1, abstract, matcher, selector=SelectorConfig(kind="evidence"), mesh_headings=headings
    )
    assert rows[0]["is_candidate"]


def test_selector_config_is_validated():
    import pyarrow as pa

    from etl.candidates import SelectorConfig, sentence_table

    with pytest.raises(ValueError, match="selector"):
        SelectorConfig(kind="llm").validate()
    table = pa.table({"pmid": ["1"], "pmid_version": pa.array([1], pa.int32()), "abstract": ["x"]})
    with pytest.raises(ValueError, match="selector"):
        sentence_table(table, selector=SelectorConfig(kind="nope"))


@pytest.mark.parametrize(
    "text,name,kind",
    [
        ("Serum insulin and glucose were higher in the early group.", "insulin", "other_substance"),
        ("Patients were treated with insulin and metformin.", "insulin", "drug"),
        (
            "The impact of resistin on progesterone secretion was determined.",
            "progesterone",
            "other_substance",
        ),
        ("Estradiol 2 mg daily was given for 12 weeks.", "Estradiol", "drug"),
        ("Insulin glargine was administered subcutaneously.", "Insulin glargine", "drug"),
        ("Metformin lowered glucose.", "Metformin", "drug"),  # not endogenous: read as a drug anywhere
    ],
)
def test_endogenous_drugs_are_drugs_only_where_something_is_given(matcher, text, name, kind):
    from etl.candidates import read_in_context

    mentions = read_in_context(matcher.find(text), text, matcher)
    assert {m.surface: m.kind for m in mentions}[name] == kind


# --------------------------------------------------------------- the body's own molecules (endogenous flag)
@pytest.mark.parametrize(
    "entity, in_drugcomb, expected",
    [
        # hormones, cytokines, autacoids: endogenous whatever else the sources say
        (_entity(mesh_trees={"D06.472.699.587"}, consumer_info=True), False, True),  # insulin
        (_entity(mesh_trees={"D12.644.276.374"}), True, True),  # a cytokine DrugComb lists
        # natural molecules: glutathione, an enzyme, an amino acid, a nucleoside, a catecholamine, heme
        (_entity(mesh_trees={"D12.644.456.448"}), False, True),
        (_entity(mesh_trees={"D08.811.277.450.642"}), False, True),
        (_entity(mesh_trees={"D12.125.070.577"}), False, True),
        (_entity(mesh_trees={"D13.570.685.705", "D03.383.742.680.705"}), False, True),
        (_entity(mesh_trees={"D02.092.311.342"}), False, True),
        (_entity(mesh_trees={"D23.767.727.640.587"}), False, True),
        # ... unless the sources say it is used as a medicine: a patient medicine page, DrugComb's dictionary
        (_entity(mesh_trees={"D13.570.230.855"}), True, False),  # a nucleoside analogue (gemcitabine)
        (_entity(mesh_trees={"D02.092.311.461"}, consumer_info=True), False, False),  # epinephrine
        # other oligopeptides and synthetic chemicals are not flagged
        (_entity(mesh_trees={"D12.644.456.100"}), False, False),
        (_entity(mesh_trees={"D02.455.426.392"}), False, False),
        (_entity(), False, False),
    ],
)
def test_is_endogenous(entity, in_drugcomb, expected):
    from etl.drugs.build import is_endogenous

    assert is_endogenous(entity, in_drugcomb) is expected


@pytest.mark.parametrize(
    "name, endogenous",
    [
        ("glutathione", True),
        ("dopamine", True),
        ("norepinephrine", True),
        ("thymidine", True),
        ("heme", True),
        ("lysozyme", True),
        ("IL-18", True),
        ("IFN-gamma", True),
        ("hepcidin", True),
        ("estrogen", True),
        ("vitamin D", True),
        ("folic acid", True),
        ("progesterone", True),
        # curated back: synthetic drugs and medicines filed in those branches
        ("dobutamine", False),
        ("hemin", False),
        ("urokinase", False),
        ("cisplatin", False),
        ("gemcitabine", False),
        ("metformin", False),
        ("epinephrine", False),
    ],
)
def test_endogenous_entries_of_the_kb(matcher, name, endogenous):
    found = matcher.find(name)
    assert [m.surface for m in found] == [name]
    assert matcher.entry(found[0].id).endogenous is endogenous


def test_curated_endogenous_flags_are_valid_and_explained():
    from etl.drugs.build import load_curated_endogenous

    rows = load_curated_endogenous()
    assert rows and all(r["endogenous"] in ("0", "1") and r["reason"].strip() for r in rows)


@pytest.mark.parametrize(
    "text, name, kind",
    [
        # a level, a receptor, an enzyme or a physiological role is the body's molecule even in a
        # sentence that speaks of treatment (the realpm dev sentences that made these false drug mentions)
        (
            "Serum progesterone and 17beta-estradiol levels were measured before, during, and after treatment.",
            "17beta-estradiol",
            "other_substance",
        ),
        (
            "Serum progesterone and 17beta-estradiol levels were measured before, during, and after treatment.",
            "progesterone",
            "other_substance",
        ),
        (
            "Patients with estrogen and/or progesterone receptor positive tumors were treated.",
            "estrogen",
            "other_substance",
        ),
        ("Methylglyoxal administration in rats with insulin resistance.", "insulin", "other_substance"),
        (
            "The concomitant administration of cocaine disrupts the reuptake of norepinephrine.",
            "norepinephrine",
            "other_substance",
        ),
        ("Treatment also increased the glutathione peroxidase activity.", "glutathione", "other_substance"),
        ("Treatment lowered thymidine phosphorylase expression.", "thymidine", "other_substance"),
        # no word of giving at all
        ("The microplate was coated with dopamine to immobilize the antigen.", "dopamine", "other_substance"),
        ("Folic acid also serves as a substrate at pH 4.5.", "Folic acid", "other_substance"),
        # given: a drug ("+" and "alone" say so too)
        ("Dopamine was infused at 5 µg/kg/min.", "Dopamine", "drug"),
        ("Lithium + folic acid reversed these alterations.", "folic acid", "drug"),
        ("Cyproterone acetate yields no better results than estrogen alone.", "estrogen", "drug"),
        ("Patients received interferon-gamma three times weekly.", "interferon-gamma", "drug"),
        ("Insulin-induced hypoglycaemia was treated with glucagon.", "Insulin", "drug"),
        # not endogenous: a drug named with a level word stays a drug (rule 1 of the guideline)
        ("Plasma cisplatin levels were measured.", "cisplatin", "drug"),
    ],
)
def test_endogenous_reading_around_the_mention(matcher, text, name, kind):
    from etl.candidates import read_in_context

    mentions = read_in_context(matcher.find(text), text, matcher)
    assert {m.surface: m.kind for m in mentions}[name] == kind


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Saccharomyces cerevisiae", "not_drug"),  # the model organism (curated)
        ("fibronectin", "not_drug"),  # an extracellular-matrix protein (curated)
    ],
)
def test_curated_not_drugs(matcher, text, expected):
    found = matcher.find(text)
    assert [m.surface for m in found] == [text]
    assert found[0].kind == expected
