"""Reading a built prompt back, for test engines that answer from the prompt text.

Production engines never parse prompts (the rule baselines read ``model.items.Prompt.item``); fake
LLM engines in the tests do, as a real model would read the fields of ``model.prompting.build_messages``.
"""

from __future__ import annotations

import re

_FIELD_PATTERNS = {
    "sentence": re.compile(r"^(?:Target sentence: |Sentence: |句子：)(.*)$", re.MULTILINE),
    "hints": re.compile(
        r"^(?:Candidate drugs in the sentence: |Drugs mentioned: |Drugs: |句中药物：)(.*)$", re.MULTILINE
    ),
}


def read_prompt_fields(messages: list[dict]) -> dict:
    """The target sentence and hint names of messages made by ``build_messages`` (inverse of it).

    Raises ``ValueError`` when the messages were not built there (no target sentence field).
    """
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    m = _FIELD_PATTERNS["sentence"].search(user)
    if not m:
        raise ValueError("messages hold no target sentence field (were they made by build_messages?)")
    h = _FIELD_PATTERNS["hints"].search(user)
    hints = [x.strip() for x in re.split(r"[;；]", h.group(1)) if x.strip()] if h else []
    return {"sentence": m.group(1), "hints": hints}
