"""The drug layer: an offline drug knowledge base, a fast dictionary matcher, a name normalizer.

Nothing is loaded at import time: ``default_matcher()`` loads the committed KB artifact
(``etl/drugs/kb/``) on first use and caches it for the process.
"""

from etl.drugs.kb import DrugEntry, DrugKB
from etl.drugs.matcher import DrugMatcher, Mention, default_kb, default_matcher
from etl.drugs.normalize import normalize

__all__ = ["DrugEntry", "DrugKB", "DrugMatcher", "Mention", "default_kb", "default_matcher", "normalize"]
