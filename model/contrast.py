"""Drug sets that the sentence itself sets against each other: "A versus B", "A was superior to B".

A combination is drugs given together as one intervention (data/realpm/README.md, the guideline).  A
sentence that compares drugs ("rezafungin versus caspofungin", "anastrozole was superior to
tamoxifen") names two drugs but no combination, and small models answer such sentences with a set of
both.  This module is the check the parser applies to every DrugComb relation (``Repair.CONTRASTED_SET``):

* the relation's drugs are taken in the order of their first mention in the sentence;
* two neighbours in that order are *contrasted* when every text segment between a mention of one and a
  mention of the other holds a comparison cue (``COMPARISON_CUES``) and no co-administration cue
  (``CO_ADMINISTRATION_CUES``): "A versus B" is contrasted, "A plus B versus A alone" is not (the
  segment between A and B is " plus "), nor is "A and B ... A versus B" (one segment joins them);
* two drugs that each name their own arm ("55 patients in the rezafungin group and 52 in the caspofungin
  group": the drug right before "group"/"arm"/"cohort", ``ARM_WORDS``) are contrasted too, wherever they
  stand ("the propofol + dexmedetomidine group" is one arm: only its last drug is next to the word);
* a relation with a contrasted pair is dropped.

Only neighbours are tested, and only the strong comparison words: "or" is not a cue here, because
"A or B with C" is how DrugComb's annotators write two combinations.  Measured on the gold answers
(each gold set parsed with ``drop_contrasted``): 0 of 209 DrugComb test relations and 0 of 1,039 train
relations dropped, and no gold set of the real-PubMed train or dev split; counting "or" as a cue would
drop 4 of 209 and 21 of 1,039.  On real PubMed it drops 15 of the all-drugs rule's 130 sets (all
wrong): precision 0.280 -> 0.311 on the train split, 0.275 -> 0.306 on dev, recall unchanged.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

Span = tuple[int, int]

# words that set drugs against each other (whole words, case-insensitive)
# ("compared with" is one cue: its "with" does not join the drugs)
COMPARISON_CUES = re.compile(
    r"\b(versus|vs|(?:compared|comparison|comparing|in comparison)(?: (?:with|to|of|between))?|than|"
    r"superior|inferior|non-?inferior\w*|instead|switch\w*|replac\w*)\b",
    re.IGNORECASE,
)
# words that put drugs together; one of them in a segment means the segment joins its two drugs
CO_ADMINISTRATION_CUES = re.compile(
    r"(\b(and|plus|with|combined|combination|combinations|together|added|addition|add-on|adjunct\w*|"
    r"co-?administ\w*|concomitant\w*|concurrent\w*|followed)\b|\+|/)",
    re.IGNORECASE,
)


# a drug directly followed by one of these names a treatment arm ("the rezafungin group", "-treated arm")
ARM_WORDS = re.compile(
    r"\s*(?:-?\s*(?:treated|based|containing|only|alone|monotherapy))?\s*(group|groups|arm|arms|cohort|cohorts)\b",
    re.IGNORECASE,
)


def arm_word(sentence: str, spans: Sequence[Span]) -> str | None:
    """The arm word right after a mention (of ``spans``) of a drug, or None."""
    for _start, end in spans:
        found = ARM_WORDS.match(sentence, end)
        if found:
            return found.group(1)
    return None


def segment_contrasts(segment: str) -> str | None:
    """The comparison cue of a text segment between two drug mentions, or None when the segment has
    none or also has a co-administration cue."""
    cue = COMPARISON_CUES.search(segment)
    if cue is None or CO_ADMINISTRATION_CUES.search(COMPARISON_CUES.sub(" ", segment)):
        return None
    return cue.group(0)


def _pair_contrast(sentence: str, first: Sequence[Span], second: Sequence[Span]) -> str | None:
    """The cue when every segment between a mention of ``first`` and one of ``second`` contrasts them;
    None when one segment joins them (or the mentions overlap: nothing stands between them)."""
    cue = None
    for a in first:
        for b in second:
            left, right = (a, b) if a[0] <= b[0] else (b, a)
            if left[1] > right[0]:
                return None
            found = segment_contrasts(sentence[left[1] : right[0]])
            if found is None:
                return None
            cue = cue or found
    return cue


def contrasted_pair(sentence: str, mentions: Sequence[Sequence[Span]]) -> tuple[int, int, str] | None:
    """``(i, j, cue)`` for the first pair of a relation's drugs that the sentence contrasts (neighbours
    split by a comparison, else the first two that each name an arm), or None.  ``mentions[k]`` are the character spans of drug k in ``sentence`` (every occurrence);
    a drug without a mention is skipped (the parser reports it as not in the sentence)."""
    placed = sorted((min(spans), k) for k, spans in enumerate(mentions) if spans)
    for (_, i), (_, j) in itertools.pairwise(placed):
        cue = _pair_contrast(sentence, mentions[i], mentions[j])
        if cue is not None:
            return i, j, cue
    arms = [(k, word) for _, k in placed if (word := arm_word(sentence, mentions[k]))]
    if len(arms) >= 2:
        (i, word), (j, _) = arms[0], arms[1]
        return i, j, word
    return None
