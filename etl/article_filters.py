"""Which articles a sweep reads: filters applied before the sentence stage, recorded in the run ledger.

An article that a filter leaves out is not split or extracted (it stays in ``articles`` and
``current_articles``); a later sweep with wider filters picks it up, since it still has no sentences.
Matching is case-insensitive; list filters keep an article that has any of the values.  For the
E-utilities source, narrowing the fetch itself is ``entrez.term`` (a PubMed query); these filters apply
to NLM files and E-utilities alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ArticleFilters:
    has_abstract: bool = True  # sentences come from the abstract: an article without one has none
    languages: list[str] = field(default_factory=list)  # NLM codes (eng, fre, ger, ...); empty: any
    publication_types: list[str] = field(default_factory=list)  # keep any of these; empty: any
    exclude_publication_types: list[str] = field(default_factory=list)  # drop any of these
    mesh: list[str] = field(default_factory=list)  # MeSH heading or chemical, by name or UI; empty: any
    min_year: int | None = None
    max_year: int | None = None
    keep_unknown_year: bool = True  # an article without a publication year passes the year bounds

    def validate(self) -> None:
        if self.min_year is not None and self.max_year is not None and self.max_year < self.min_year:
            raise ValueError(
                f"filters.max_year ({self.max_year}) is before filters.min_year ({self.min_year})"
            )
        for name in ("languages", "publication_types", "exclude_publication_types", "mesh"):
            values = getattr(self, name)
            if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
                raise ValueError(f"filters.{name} must be a list of non-empty strings, got {values!r}")

    def record(self) -> dict[str, Any]:
        """What the ledger stores: the settings as given."""
        return asdict(self)

    def sql(self, alias: str = "a") -> tuple[str, dict[str, Any]]:
        """A SQL predicate over ``current_articles`` rows named ``alias`` and its named parameters."""
        clauses, params = ["true"], {}

        def lowered(values: list[str]) -> list[str]:
            return sorted({v.strip().lower() for v in values})

        if self.has_abstract:
            clauses.append(f"{alias}.abstract IS NOT NULL AND length(trim({alias}.abstract)) > 0")
        if self.languages:
            params["f_languages"] = lowered(self.languages)
            clauses.append(
                f"list_has_any(list_transform({alias}.languages, lambda x: lower(x)), $f_languages)"
            )
        if self.publication_types:
            params["f_ptypes"] = lowered(self.publication_types)
            clauses.append(
                f"list_has_any(list_transform({alias}.publication_types, lambda x: lower(x)), $f_ptypes)"
            )
        if self.exclude_publication_types:
            params["f_xptypes"] = lowered(self.exclude_publication_types)
            clauses.append(
                "NOT coalesce(list_has_any("
                f"list_transform({alias}.publication_types, lambda x: lower(x)), $f_xptypes), false)"
            )
        if self.mesh:
            params["f_mesh"] = lowered(self.mesh)
            terms = " || ".join(
                f"coalesce(list_transform({alias}.{column}, lambda m: lower(m.{key})), [])"
                for column in ("mesh_headings", "chemicals")
                for key in ("name", "ui")
            )
            clauses.append(f"list_has_any({terms}, $f_mesh)")
        for bound, op in (("min_year", ">="), ("max_year", "<=")):
            value = getattr(self, bound)
            if value is not None:
                params[f"f_{bound}"] = int(value)
                unknown = "true" if self.keep_unknown_year else "false"
                clauses.append(f"coalesce({alias}.pub_year {op} $f_{bound}, {unknown})")
        return " AND ".join(f"({c})" for c in clauses), params
