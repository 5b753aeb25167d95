"""Candidate sentences: split abstracts, find drug mentions, keep sentences with >= 2 distinct drugs.

What counts (``candidate_decision``): mentions whose KB kind is a drug kind (``schemas.drugs.DRUG_KINDS``:
drug, regimen). Other substances and non-drugs (sulfur, coenzyme A, prostate-specific antigen) are kept
as mentions with their kind but never make a sentence a candidate; classes are counted apart. One drug
named twice counts once: the same entry, a regimen and its own components, a name and its misspelling
("certolizumab" / "ceptolizumab") and an entry whose name is the other's first word ("certolizumab" /
"certolizumab pegol") are one drug. Hormones, cytokines and mediators the body makes (the KB's
``endogenous`` flag: estradiol, insulin, TRH, IL-10) are drugs, but a sentence whose drugs are all
endogenous is mostly about levels and pathways, so it needs a co-administration cue in the sentence
("estradiol combined with progesterone"; ``SelectorConfig.endogenous_needs_cue``, on by default).

``sentence_table`` is a pure function over an Arrow batch of articles (``schemas.articles.ARTICLES``
columns pmid, pmid_version, abstract, chemicals) returning ``schemas.drugs.SENTENCES`` rows.

The article's MeSH chemical list is used as evidence (``DrugMatcher.evidence_from_chemicals``):
  * it enables ambiguous regimen acronyms flagged ``needs_evidence`` ("TC", "AC", "ICE") only when
    the indexers listed one of their components for this article;
  * when an alias has several readings in the KB, the one the chemical list names wins.
Abbreviations an abstract defines in one sentence ("buspirone (BU)") are read in all its sentences.
Which sentences with >= 2 drugs go to the model is the selector's choice (``SelectorConfig``):
  * ``drugs`` (default): all of them;
  * ``evidence``: only those with cheap evidence that they can state a combination — a co-administration
    cue in the sentence ("combined with", "plus", "with", "A/B", "A + B", "followed by", "synergy"), or
    combination-therapy context in the article (the abstract's words: "combination", "co-administered",
    "regimen", "synergistic"...; MeSH headings such as "Drug Therapy, Combination"); a "Keywords:" line is
    never a candidate. Measured (bench/bench_candidates.py --selector evidence): on the real-PubMed dev set
    it sends ~30% fewer sentences at the same gold-combination recall, on DrugComb it loses ~4% of the
    gold combination sentences of train, so it is off by default.
Either selector: the sentences of an abstract that describes a computational study (molecular docking,
molecular dynamics, RMSD, in silico: ``in_silico_needs_cue``) need a co-administration cue.
Sentence context (the abstract) is joined from the articles table, not stored per row (see
``schemas/drugs.py``). Titles are not split: offsets index the abstract only.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field, replace

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
    endogenous_only: bool = False  # every counted drug is a hormone/cytokine/mediator the body makes
    cue: bool = False  # the sentence has a co-administration cue (checked when ``endogenous_only``)
    endogenous_needs_cue: bool = False

    @property
    def is_candidate(self) -> bool:
        if self.n_distinct_drugs < MIN_DISTINCT_DRUGS:
            return False
        return not (self.endogenous_needs_cue and self.endogenous_only and not self.cue)


def candidate_decision(
    mentions, matcher, text: str | None = None, endogenous_needs_cue: bool = False
) -> CandidateDecision:
    """Distinct drug-kind entries and classes of a sentence's mentions (the candidate rule, module doc).

    A regimen counts as one drug, unless all its components are also named in the sentence
    ("TC (paclitaxel/carboplatin)" is two drugs, not three). With ``endogenous_needs_cue`` a sentence
    whose drugs are all the body's own hormones or mediators ("dopamine and thyrotropin-releasing
    hormone", "estrogen and testosterone levels") is a candidate only with a co-administration cue in
    ``text`` ("estradiol combined with progesterone")."""
    drug_mentions = [m for m in mentions if m.kind in DRUG_KINDS]
    classes = {m.id for m in mentions if m.kind == "class"}
    drugs = {m.id for m in drug_mentions}
    for d in list(drugs):
        comps = matcher.entry(d).components
        if comps and all(c in drugs for c in comps):
            drugs.discard(d)
    endogenous_only = bool(drugs) and all(getattr(matcher.entry(d), "endogenous", False) for d in drugs)
    cue = bool(endogenous_only and text and _SENTENCE_CUE_RE.search(text))
    return CandidateDecision(
        _count_one_per_drug(drugs, drug_mentions), len(classes), endogenous_only, cue, endogenous_needs_cue
    )


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
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = sorted((a, b), key=len)
    k = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[k:] == long_[k + 1 :]


# a sentence that speaks of giving something: treatment, dosing, routes, supplementation, drugs compared
# or combined ("A + B", "estrogen alone", "other antiviral drugs")
_ADMINISTRATION_RE = re.compile(
    r"\b(administ\w*|treat\w*|therap\w*|given|giv(?:e|es|ing)|dos(?:e|es|ed|ing|age)|inject\w*|infus\w*|"
    r"supplement\w*|receiv\w*|regimens?|pretreat\w*|premedicat\w*|replacement|exogenous|combin\w*|plus|"
    r"added|adjunct\w*|oral(?:ly)?|intravenous\w*|subcutaneous\w*|intramuscular\w*|topical\w*|"
    r"mg|µg|μg|mcg|IU|i\.[vpm]\.|s\.c\.|p\.o\.|alone|drugs?|monotherapy)\b|\w\s+\+\s+\w|\w\+\w",
    re.IGNORECASE,
)
# where a name of the body's own molecule names that molecule whatever the sentence says of giving: a
# measured level or a physiological role right around the mention ("serum progesterone", "17beta-estradiol
# levels", "insulin resistance", "release of norepinephrine", "glutathione peroxidase", "estrogen and/or
# progesterone receptor")
_ENDOGENOUS_BEFORE_RE = re.compile(
    r"\b(?:serum|plasma|blood|circulating|urinary|salivary|intracellular|extracellular|endogenous|"
    r"(?:release|reuptake|uptake|secretion|synthesis|biosynthesis|production|levels?|concentrations?|"
    r"metabolism|deficiency) of)\s+$",
    re.IGNORECASE,
)
_ENDOGENOUS_AFTER_RE = re.compile(
    r"^(?:\s*(?:,|and/or|and|or)\s+[\w-]+)*[\s-]*(?:levels?|concentrations?|receptors?|resistance|secretion|"
    r"release|signal(?:l)?ing|pathways?|synthesis|biosynthesis|production|deficiency|sensitivity|homeostasis|"
    r"metabolism|positive|producing|neurons?|peroxidase|reductase|synthase|synthetase|transferase|kinase|"
    r"transporters?|status|axis|(?!(?:dis|incr|decr)eases?\b|(?:c|ph|b)ases?\b)(?:[a-z]+-)?[a-z]+ases?)\b",
    re.IGNORECASE,
)
_LOOK_AROUND = 40  # characters of the sentence the local test reads on each side of the mention


def endogenous_reading(text: str, start: int, end: int) -> bool:
    """Whether the words around ``text[start:end]`` make it the body's own molecule (a level, a receptor,
    an enzyme, a physiological role), whatever the rest of the sentence says of giving it."""
    return bool(
        _ENDOGENOUS_BEFORE_RE.search(text[max(0, start - _LOOK_AROUND) : start])
        or _ENDOGENOUS_AFTER_RE.match(text[end : end + _LOOK_AROUND])
    )


def read_in_context(mentions, text: str, matcher) -> list:
    """The mentions as read in this sentence: an endogenous drug entry (a hormone, cytokine, mediator,
    vitamin or other molecule the body makes: insulin, progesterone, glutathione, dopamine) is a drug
    mention only where the sentence speaks of giving something (``_ADMINISTRATION_RE``) and the words
    right around it do not make it a level, receptor or enzyme (``endogenous_reading``); elsewhere it is
    read as another substance, so it neither makes a candidate nor joins a combination. The KB entry
    itself keeps its kind. Applied under ``SelectorConfig.endogenous_needs_cue`` (the one switch of the
    endogenous-drug policy)."""
    given = bool(_ADMINISTRATION_RE.search(text))
    out = []
    for m in mentions:
        if (
            m.kind in DRUG_KINDS
            and getattr(matcher.entry(m.id), "endogenous", False)
            and (not given or endogenous_reading(text, m.start, m.end))
        ):
            m = replace(m, kind="other_substance")
        out.append(m)
    return out


SELECTOR_KINDS = ("drugs", "evidence")
# a sentence that can state a co-administration: the cues of DrugComb's combination sentences
_SENTENCE_CUE_RE = re.compile(
    r"\b(combin\w*|plus|with|together with|in addition to|added to|addition of|add-on|co-?administ\w*|"
    r"concomitant\w*|concurrent\w*|regimens?|followed by|along with|synerg\w*|antagoni\w*|potentiat\w*|"
    r"adjuvant|cocktail|dual|triple|doublet|triplet)\b|\s\+\s|\w\+\w|[a-z0-9]/[a-zA-Z]",
    re.IGNORECASE,
)
# an article about combination therapy: its abstract's words
_ABSTRACT_CUE_RE = re.compile(
    r"\b(combin\w*|co-?administ\w*|concomitant\w*|synerg\w*|regimen\w*|add-on|plus)\b", re.IGNORECASE
)
# an abstract that describes a computational study: its drugs are ligands docked or simulated together,
# not given together ("both Paclitaxel and Sotorasib stabilize protein structures")
_IN_SILICO_RE = re.compile(
    r"\b(molecular docking|docking|docked|molecular dynamics|MD simulations?|RMSD|RMSF|in silico|"
    r"virtual screening)\b",
    re.IGNORECASE,
)
_KEYWORDS_LINE_RE = re.compile(r"^\s*(key\s*words?|abbreviations?)\s*[:.]", re.IGNORECASE)


@dataclass
class SelectorConfig:
    """Which sentences with >= 2 distinct drugs are candidates (module doc)."""

    kind: str = "drugs"  # "drugs" | "evidence"
    # a sentence whose drugs are all endogenous (hormones, cytokines, mediators) needs a co-administration
    # cue: on by default (measured: no DrugComb combination sentence lost, fewer hormone-level sentences)
    endogenous_needs_cue: bool = True
    # the sentences of an abstract that describes a computational study (docking, molecular dynamics,
    # in silico) need a co-administration cue: measured, no gold combination of DrugComb (2 such
    # paragraphs) or of the real-PubMed set (8 such sentences) is in one; the demo's docking paper was
    # its one KB entry
    in_silico_needs_cue: bool = True
    # MeSH descriptors that index an article as combination therapy (evidence selector)
    combination_mesh: list[str] = field(
        default_factory=lambda: [
            "Drug Therapy, Combination",
            "Antineoplastic Combined Chemotherapy Protocols",
            "Drug Synergism",
            "Drug Combinations",
            "Chemotherapy, Adjuvant",
            "Antiretroviral Therapy, Highly Active",
        ]
    )

    def validate(self) -> None:
        if self.kind not in SELECTOR_KINDS:
            raise ValueError(f"candidate selector must be one of {SELECTOR_KINDS}, not {self.kind!r}")


def article_combination_context(
    abstract: str | None, mesh_headings=None, config: SelectorConfig | None = None
) -> bool:
    """The article is about combination therapy: MeSH indexing or the abstract's own words."""
    config = config or SelectorConfig()
    names = {h.get("name") for h in mesh_headings or () if h}
    if names & set(config.combination_mesh):
        return True
    return bool(abstract and _ABSTRACT_CUE_RE.search(abstract))


def has_combination_evidence(sentence: str, article_context: bool) -> bool:
    """Cheap evidence that a sentence with >= 2 drugs can state a combination (the evidence selector)."""
    if _KEYWORDS_LINE_RE.search(sentence):
        return False
    return article_context or bool(_SENTENCE_CUE_RE.search(sentence))


def sentence_rows(
    pmid: str,
    pmid_version: int,
    abstract: str | None,
    matcher,
    evidence=None,
    selector: SelectorConfig | None = None,
    mesh_headings=None,
) -> list[dict]:
    """The SENTENCES rows of one abstract (empty for a missing/blank abstract)."""
    rows = []
    if not abstract:
        return rows
    selector = selector or SelectorConfig()
    selective = selector.kind == "evidence"
    context = article_combination_context(abstract, mesh_headings, selector) if selective else True
    in_silico = selector.in_silico_needs_cue and bool(_IN_SILICO_RE.search(abstract))
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
        if selector.endogenous_needs_cue:
            mentions = read_in_context(mentions, text, matcher)
        decision = candidate_decision(
            mentions, matcher, text, endogenous_needs_cue=selector.endogenous_needs_cue
        )
        rows.append(
            {
                "pmid": pmid,
                "pmid_version": pmid_version,
                "sentence_index": index,
                "start": start,
                "end": end,
                "text": text,
                "text_hash": hashlib.sha1(text.encode("utf-8")).hexdigest(),
                "mentions": [m.as_row() for m in mentions],
                "n_distinct_drugs": decision.n_distinct_drugs,
                "n_distinct_classes": decision.n_distinct_classes,
                # a keywords/abbreviations line lists terms and states nothing: never a candidate
                "is_candidate": decision.is_candidate
                and not _KEYWORDS_LINE_RE.search(text)
                and (not selective or has_combination_evidence(text, context))
                and (not in_silico or bool(_SENTENCE_CUE_RE.search(text))),
            }
        )
    return rows


def sentence_table(
    articles: pa.Table | pa.RecordBatch, matcher=None, selector: SelectorConfig | None = None
) -> pa.Table:
    """One SENTENCES row per abstract sentence of ``articles`` (a table or record batch); ``selector``
    (default: every sentence with >= 2 distinct drugs) decides ``is_candidate``; the evidence selector
    reads the articles' ``mesh_headings`` column when there is one."""
    if selector is not None:
        selector.validate()
    if matcher is None:
        from etl.drugs import default_matcher

        matcher = default_matcher()
    for col in ("pmid", "pmid_version", "abstract"):
        if col not in articles.schema.names:
            raise ValueError(
                f"sentence_table needs an articles column {col!r} (have {articles.schema.names})"
            )
    pmids = articles.column("pmid").to_pylist()
    versions = articles.column("pmid_version").to_pylist()
    abstracts = articles.column("abstract").to_pylist()
    chemicals = (
        articles.column("chemicals").to_pylist()
        if "chemicals" in articles.schema.names
        else [None] * len(pmids)
    )
    mesh = (
        articles.column("mesh_headings").to_pylist()
        if "mesh_headings" in articles.schema.names and selector is not None and selector.kind == "evidence"
        else [None] * len(pmids)
    )
    rows: list[dict] = []
    for pmid, version, abstract, chems, headings in zip(pmids, versions, abstracts, chemicals, mesh):
        evidence = matcher.evidence_from_chemicals(chems) if chems else None
        rows.extend(
            sentence_rows(
                pmid, version if version is not None else 1, abstract, matcher, evidence, selector, headings
            )
        )
    return pa.Table.from_pylist(rows, schema=SENTENCES)
