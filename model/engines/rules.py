"""Rule baselines behind the engine interface, so every model is always scored next to them.

They read the item a prompt was built for (``model.items.Prompt``: the target sentence and the hint
names the prompt lists; never the prompt text), look up drugs with the drug matcher (``etl.drugs.default_matcher()``; class mentions like "antibiotics" are skipped) and
answer in the model's format, so the parser and scorer are exactly those used for models.

* ``rule_no_comb``   - always "no combination".
* ``rule_all_drugs`` - all distinct drugs found in the sentence form one POS set (>= 2 drugs).
* ``rule_cue``       - ours: a combination is predicted only when the sentence carries a
  co-administration cue (combined with, plus, in combination, regimen, "/" or "+" between drugs,
  co-administration...) and no contrast cue without one (versus, compared with, or, alone); the
  label comes from outcome cues: harm (toxicity, adverse, antagonism, risk...) -> NEG, benefit
  (improved, effective, synergy, response...) -> POS, neither -> COMB.
* ``rule_ddi_all_pairs`` - the DDI13 baseline: every pair of the given drugs (the prompt's hints,
  which the ``ddi`` prompt fills with the corpus entities; the matcher's drugs when there are none)
  labelled EFFECT, the most frequent DDI type.

Every rule answers a ``ddi`` prompt (``Prompt.task``: the sweep's ``interactions`` task) the way
``rule_ddi_all_pairs`` does, so a sweep with both tasks runs end to end without a model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from itertools import combinations

from model.answer_schema import NO_COMB_ANSWER
from model.engines.base import Engine, EngineResult, SamplingConfig
from model.items import Prompt
from model.prompting import candidate_hints, unique_names
from schemas.answer import COMB, DDI_EFFECT, DDI_TASK, DRUGCOMB_TASK, NEG, POS

_NO_COMB_TEXT = f"<answer>{json.dumps(NO_COMB_ANSWER)}</answer>"

_COMBINATION_CUES = re.compile(
    r"\b(combin\w*|plus|together with|in addition to|added to|addition of|add-on|coadminist\w*|"
    r"co-administ\w*|concomitant\w*|concurrent\w*|regimens?|followed by|with)\b|\s[+/]\s|\w/\w",
    re.IGNORECASE,
)
_CONTRAST_CUES = re.compile(
    r"\b(versus|vs\.?|compared (?:with|to)|or|alone|monotherapy|than)\b", re.IGNORECASE
)
_STRONG_COMBINATION = re.compile(
    r"\b(combin\w*|plus|coadminist\w*|co-administ\w*|concomitant\w*)\b|\s\+\s", re.IGNORECASE
)
_HARM_CUES = re.compile(
    r"\b(toxicit\w*|adverse|antagoni\w*|(?:increased|higher) risk|risk of|interaction\w*|"
    r"contraindicat\w*|fatal|death|hepatotox\w*|nephrotox\w*|avoid\w*|worse|reduced efficacy|"
    r"did not improve|no benefit|not improve|failed)\b",
    re.IGNORECASE,
)
_BENEFIT_CUES = re.compile(
    r"\b(improv\w*|effective\w*|efficac\w*|synerg\w*|benefi\w*|respon\w*|remission|superior|"
    r"enhanc\w*|well[- ]tolerated|promising|potent\w*|prolong\w*|surviv\w*|active|activity)\b",
    re.IGNORECASE,
)


# The confidence of a rule's combination rows (``model.confidence``): a rule has no probabilities, so
# each one gets a constant, its measured share of right relations (drug set exactly a gold set, any
# label) on the DrugComb dev split the bundled model's confidence is calibrated on (137 sentences:
# all_drugs 62 of 137 relations, cue 48 of 84; `training.calibrate.rule_accuracy`).  DrugComb's
# sentences are pre-selected from combination abstracts: on unselected PubMed the rules are far less
# precise (issue 17: all_drugs 0.16 exact precision on 160 real candidate sentences), so these are to be
# re-measured on the real-PubMed dev set.  no_comb and ddi_all_pairs never write a combination row.
RULE_CONFIDENCE: dict[str, float | None] = {
    "rule_all_drugs": 0.45,
    "rule_cue": 0.57,
    "rule_no_comb": None,
    "rule_ddi_all_pairs": None,
}
# The confidence of a rule's interaction rows (a ``ddi`` prompt, answered with every pair of the given
# drugs): the share of all pairs of DDI13's given entities that are an interacting pair (any type) on the
# training split of the processed copy (data/ddi13/train.jsonl: 3,307 of 20,078 pairs, 0.165; EFFECT
# right as well: 1,309, 0.065).  With the matcher's drugs instead of the corpus entities (the sweep) it
# is an upper bound.
RULE_DDI_CONFIDENCE = 0.16


def _answer(label: str, names: list[str]) -> str:
    return "<answer>" + json.dumps([{"type": label, "ent_set": names}], ensure_ascii=False) + "</answer>"


class _RuleEngine(Engine):
    name = "rule"

    def __init__(self, matcher=None):
        self._matcher = matcher
        self.model_id = f"rule:{self.name}"

    @property
    def matcher(self):
        if self._matcher is None:
            try:
                from etl.drugs import default_matcher
            except ImportError as exc:  # the drug matcher package is required by these baselines
                raise ValueError(
                    f"rule baselines need the drug matcher etl.drugs.default_matcher ({exc})"
                ) from exc
            self._matcher = default_matcher()
        return self._matcher

    def relation_confidence(
        self, label_logprobs: dict[str, float] | None, position: int = 0, task: str = DRUGCOMB_TASK
    ) -> float | None:
        """The rule's documented constant, whatever the relation: ``RULE_CONFIDENCE`` for a combination,
        ``RULE_DDI_CONFIDENCE`` for an interaction (every rule answers a ddi prompt with all pairs)."""
        return RULE_DDI_CONFIDENCE if task == DDI_TASK else RULE_CONFIDENCE[f"rule_{self.name}"]

    def complete(
        self, prompts: Sequence[Prompt], sampling: SamplingConfig | None = None
    ) -> list[EngineResult]:
        """One answer per prompt, from its item (an item without a target sentence is an item error)."""
        out = []
        for prompt in prompts:
            sentence = prompt.item.sentence
            if not isinstance(sentence, str) or not sentence.strip():
                out.append(EngineResult("", "the item has no target sentence"))
                continue
            hints = list(prompt.hints)
            answer = (
                self.pairs_answer(sentence, hints)
                if prompt.task == DDI_TASK
                else self.answer_item(sentence, hints)
            )
            out.append(EngineResult(answer))
        return out

    def generate(self, batch: list[list[dict]], sampling: SamplingConfig | None = None) -> list[EngineResult]:
        raise TypeError(
            f"{self.model_id} answers items, not prompt text: call complete() with model.items.Prompt"
        )

    def drugs(self, sentence: str) -> list[str]:
        """Distinct drug-kind mentions, as written, in order of appearance."""
        return candidate_hints(sentence, self.matcher, drugs_only=True)

    def answer_item(self, sentence: str, hints: list[str]) -> str:
        """The answer for an item (its sentence and the prompt's hints); the DrugComb rules read the
        sentence only."""
        return self.answer(sentence)

    def pairs_answer(self, sentence: str, hints: list[str]) -> str:
        """The DDI13 all-pairs answer: every pair of the given drugs (the prompt's hints; the matcher's
        drugs when there are none) labelled EFFECT, the most frequent DDI13 type."""
        names = unique_names(hints) or self.drugs(sentence)
        if len(names) < 2:
            return _NO_COMB_TEXT
        rows = [{"type": DDI_EFFECT, "ent_set": [a, b]} for a, b in combinations(names, 2)]
        return "<answer>" + json.dumps(rows, ensure_ascii=False) + "</answer>"

    def answer(self, sentence: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class NoCombRule(_RuleEngine):
    name = "no_comb"

    def answer(self, sentence: str) -> str:
        return _NO_COMB_TEXT


class AllDrugsRule(_RuleEngine):
    name = "all_drugs"

    def answer(self, sentence: str) -> str:
        names = self.drugs(sentence)
        return _answer(POS, names) if len(names) >= 2 else _NO_COMB_TEXT


class CueRule(_RuleEngine):
    name = "cue"

    def answer(self, sentence: str) -> str:
        names = self.drugs(sentence)
        if len(names) < 2 or not _COMBINATION_CUES.search(sentence):
            return _NO_COMB_TEXT
        if _CONTRAST_CUES.search(sentence) and not _STRONG_COMBINATION.search(sentence):
            return _NO_COMB_TEXT
        if _HARM_CUES.search(sentence):
            return _answer(NEG, names)
        if _BENEFIT_CUES.search(sentence):
            return _answer(POS, names)
        return _answer(COMB, names)


class DDIAllPairsRule(_RuleEngine):
    name = "ddi_all_pairs"
    label = DDI_EFFECT  # the most frequent DDI13 type (train and test)

    def answer_item(self, sentence: str, hints: list[str]) -> str:
        return self.pairs_answer(sentence, hints)

    def answer(self, sentence: str) -> str:
        return self.answer_item(sentence, [])


RULES = {
    "rule_all_drugs": AllDrugsRule,
    "rule_no_comb": NoCombRule,
    "rule_cue": CueRule,
    "rule_ddi_all_pairs": DDIAllPairsRule,
}
