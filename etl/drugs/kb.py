"""Load the committed drug KB artifact (``etl/drugs/kb/*.parquet``) into plain lookup structures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.drugs import DRUG_KINDS

KB_DIR = Path(__file__).resolve().parent / "kb"


@dataclass(frozen=True, slots=True)
class DrugEntry:
    id: str
    preferred_name: str
    drugbank: str | None
    unii: str | None
    mesh: str | None
    is_class: bool
    is_regimen: bool
    components: tuple[str, ...]
    kind: str = "drug"  # schemas.drugs.KINDS
    endogenous: bool = False  # a hormone, cytokine or mediator the body makes (estradiol, insulin, IL-10)

    @property
    def is_drug(self) -> bool:
        """Counts as a drug of a candidate sentence (``schemas.drugs.DRUG_KINDS``)."""
        return self.kind in DRUG_KINDS


@dataclass(frozen=True, slots=True)
class AliasEntry:
    alias: str  # the curated/best spelling (case matters for case-sensitive aliases)
    id: str
    curated: bool
    case_sensitive: bool
    needs_evidence: bool  # matched in text only when the article's MeSH chemicals support it
    alt_ids: tuple[str, ...]  # other readings, chosen when the article's chemicals point to them


class DrugKB:
    """Entries by id and aliases by folded key (see ``etl.drugs.text.alias_key``).

    Aliases are held column-wise (``alias_row``: key -> row) and an ``AliasEntry`` is built only for
    the keys a lookup hits: building 100k objects up front would dominate the load time.
    """

    def __init__(
        self,
        entries: dict[str, DrugEntry],
        alias_row: dict[str, int],
        columns: dict[str, list],
        alts: dict[int, tuple[str, ...]],
        prefixes: set[str],
        provenance: dict,
    ):
        self.entries = entries
        self.alias_row = alias_row
        self._cols = columns
        self._alts = alts
        self.prefixes = (
            prefixes  # every proper token-prefix of an alias key ("imatinib" of "imatinib mesylate")
        )
        self.provenance = provenance
        self._by_mesh: dict[str, str] | None = None

    def alias_at(self, row: int) -> AliasEntry:
        c = self._cols
        return AliasEntry(
            c["alias"][row],
            c["id"][row],
            c["curated"][row],
            c["case_sensitive"][row],
            c["needs_evidence"][row],
            self._alts.get(row, ()),
        )

    def alias(self, key: str) -> AliasEntry | None:
        row = self.alias_row.get(key)
        return None if row is None else self.alias_at(row)

    def alias_items(self):
        """(key, AliasEntry) for every alias (tests, reports; not for the hot path)."""
        for key, row in self.alias_row.items():
            yield key, self.alias_at(row)

    @classmethod
    def load(cls, kb_dir: Path | str | None = None) -> DrugKB:
        kb_dir = Path(kb_dir or KB_DIR)
        paths = {name: kb_dir / f"{name}.parquet" for name in ("entities", "aliases", "prefixes")}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise ValueError(
                f"drug KB artifact incomplete ({', '.join(missing)} missing): run `rexdrug drugs build-kb`"
            )
        ents = pq.read_table(paths["entities"]).to_pydict()
        if "kind" not in ents or "endogenous" not in ents:
            raise ValueError(f"drug KB artifact {kb_dir} predates entry kinds: run `rexdrug drugs build-kb`")
        entries = {
            i: DrugEntry(i, n, db, un, me, bool(c), bool(r), tuple(comp or ()), k, bool(en))
            for i, n, db, un, me, c, r, comp, k, en in zip(
                ents["id"],
                ents["preferred_name"],
                ents["drugbank"],
                ents["unii"],
                ents["mesh"],
                ents["is_class"],
                ents["is_regimen"],
                ents["components"],
                ents["kind"],
                ents["endogenous"],
            )
        }
        table = pq.read_table(paths["aliases"])
        keys = table.column("key").to_pylist()
        columns = {
            "alias": table.column("alias").to_pylist(),
            "id": table.column("id").to_pylist(),
            "curated": pc.equal(table.column("source"), "curated").to_pylist(),
            "case_sensitive": table.column("case_sensitive").to_pylist(),
            "needs_evidence": table.column("needs_evidence").to_pylist(),
        }
        # alt_ids is empty for >99% of rows: convert only the non-empty ones (list columns are slow)
        rows_with_alt = pc.indices_nonzero(
            pc.fill_null(pc.list_value_length(table.column("alt_ids")), 0)
        ).to_pylist()
        alt_values = table.column("alt_ids").take(rows_with_alt).to_pylist()
        alts = {r: tuple(v) for r, v in zip(rows_with_alt, alt_values)}
        alias_row = {k: r for r, k in enumerate(keys)}
        prefixes = set(pq.read_table(paths["prefixes"]).column("prefix").to_pylist())
        prov_path = kb_dir / "provenance.json"
        provenance = json.loads(prov_path.read_text(encoding="utf-8")) if prov_path.exists() else {}
        return cls(entries, alias_row, columns, alts, prefixes, provenance)

    def by_mesh(self, mesh_id: str) -> str | None:
        """Entry id carrying this MeSH descriptor id (for the article-chemicals evidence)."""
        if self._by_mesh is None:
            self._by_mesh = {}
            for e in self.entries.values():
                if e.mesh:
                    self._by_mesh.setdefault(e.mesh, e.id)
        return self._by_mesh.get(mesh_id)
