"""Token-level text folding shared by the KB builder, the matcher and the normalizer.

One rule for all three, so an alias built offline and a span read from an abstract fold to the
same key: words are runs of letters/digits (``\\w``); hyphens are dropped (so "5-FU" == "5 FU" and
"cisplatin-based" yields the token "cisplatin"); apostrophes and primes are dropped too (so
"5'-aza-2'-deoxycytidine" == "5-aza-2'-deoxycytidine" == "5-aza-2-deoxycytidine"); any other punctuation is its own token (so
"paclitaxel/carboplatin" is three tokens and neither drug swallows the other). Tokens are
NFKD-folded (accents dropped), lower-cased, Greek letters spelled out, and "alfa" read as "alpha".
"""

from __future__ import annotations

import re
import unicodedata

# \w already covers Greek letters and digits; underscores are rare enough in abstracts to ignore.
TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_HYPHENS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212\u00ad")
# Apostrophes/primes: chemical primes ("2'-deoxy") are written with ', \u2019 or \u2032 at random.
_SKIPPED = _HYPHENS | frozenset("'\u2019\u2032\u02b9")

_GREEK = {
    "α": "alpha",
    "β": "beta",
    "γ": "gamma",
    "δ": "delta",
    "ε": "epsilon",
    "ζ": "zeta",
    "η": "eta",
    "θ": "theta",
    "ι": "iota",
    "κ": "kappa",
    "λ": "lambda",
    "μ": "mu",
    "ν": "nu",
    "ξ": "xi",
    "ο": "omicron",
    "π": "pi",
    "ρ": "rho",
    "σ": "sigma",
    "ς": "sigma",
    "τ": "tau",
    "υ": "upsilon",
    "φ": "phi",
    "χ": "chi",
    "ψ": "psi",
    "ω": "omega",
    "µ": "mu",
}
# Spelling variants that name the same thing (INN "alfa" vs "alpha", BAN "-ph-" is not folded).
_TOKEN_SYNONYMS = {"alfa": "alpha"}


def fold_token(token: str) -> str:
    """Case/accent/Greek-insensitive form of one token (never empty for a non-empty token)."""
    if token.isascii():
        low = token.lower()
    else:
        low = "".join(_GREEK.get(ch, ch) for ch in token.lower())
        low = unicodedata.normalize("NFKD", low)
        low = "".join(ch for ch in low if not unicodedata.combining(ch)) or token.lower()
    return _TOKEN_SYNONYMS.get(low, low)


# Same tokens as TOKEN_RE minus the hyphens, for the fast path (ASCII text lower-cased in one call).
_FAST_TOKEN_RE = re.compile(r"\w+|[^\w\s\-\u2010-\u2014\u2212\u00ad'\u2019\u2032\u02b9]")


def token_arrays(text: str) -> tuple[list[int], list[int], list[str]]:
    """(starts, ends, folded tokens) of ``text``: the matcher's hot path, same tokens as ``tokenize``."""
    if text.isascii():
        spans = [m.span() for m in _FAST_TOKEN_RE.finditer(text)]
        low = text.lower()
        words = [low[s:e] for s, e in spans]
        if "alfa" in low:
            words = [_TOKEN_SYNONYMS.get(w, w) for w in words]
        return [s for s, _ in spans], [e for _, e in spans], words
    toks = tokenize(text)
    return [t[0] for t in toks], [t[1] for t in toks], [t[2] for t in toks]


def tokenize(text: str) -> list[tuple[int, int, str]]:
    """(start, end, folded token) for each token of ``text``; hyphens and apostrophes are skipped."""
    out = []
    for m in TOKEN_RE.finditer(text):
        tok = m.group()
        if tok in _SKIPPED:
            continue
        out.append((m.start(), m.end(), fold_token(tok)))
    return out


def alias_key(name: str) -> str:
    """The lookup key of a name: its folded tokens joined by one space ("" for no tokens)."""
    return " ".join(tok for _, _, tok in tokenize(unicodedata.normalize("NFKC", name)))


def singular(token: str) -> str | None:
    """A plural's singular for lookup ("taxanes" -> "taxane", "anthracyclines"); None if not plural-like."""
    if len(token) > 4 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return None
