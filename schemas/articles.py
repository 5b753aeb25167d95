"""Article warehouse tables (articles, deletions, ingest errors, ingest ledger) and the ingest job's
per-file envelope (``INGEST_INPUT`` in, ``ENVELOPE`` out: ``etl.pubmed.envelope``)."""

from __future__ import annotations

import pyarrow as pa

ABSTRACT_SECTION = pa.struct(
    [
        pa.field("label", pa.string()),
        pa.field("nlm_category", pa.string()),
        pa.field("text", pa.string()),
    ]
)

OTHER_ABSTRACT = pa.struct(
    [
        pa.field("type", pa.string()),
        pa.field("language", pa.string()),
        pa.field("text", pa.string()),
    ]
)

MESH_HEADING = pa.struct(
    [
        pa.field("ui", pa.string()),
        pa.field("name", pa.string()),
        pa.field("major", pa.bool_()),
        # qualifiers as written (name, ui, major), kept as a nested list
        pa.field(
            "qualifiers",
            pa.list_(
                pa.struct(
                    [
                        pa.field("ui", pa.string()),
                        pa.field("name", pa.string()),
                        pa.field("major", pa.bool_()),
                    ]
                )
            ),
        ),
    ]
)

CHEMICAL = pa.struct(
    [
        pa.field("ui", pa.string()),
        pa.field("name", pa.string()),
        pa.field("registry_number", pa.string()),
    ]
)

ARTICLES = pa.schema(
    [
        pa.field("pmid", pa.string(), nullable=False),
        pa.field("pmid_version", pa.int32(), nullable=False),
        pa.field("record_type", pa.string(), nullable=False),  # "article" | "book"
        pa.field("title", pa.string()),
        pa.field("vernacular_title", pa.string()),
        pa.field("abstract", pa.string()),
        pa.field("abstract_sections", pa.list_(ABSTRACT_SECTION)),
        pa.field("other_abstracts", pa.list_(OTHER_ABSTRACT)),
        pa.field("journal", pa.string()),
        pa.field("journal_iso", pa.string()),
        pa.field("pub_year", pa.int32()),
        pa.field("pub_date", pa.string()),  # as precise as the record allows: YYYY, YYYY-MM or YYYY-MM-DD
        pa.field("doi", pa.string()),
        pa.field("languages", pa.list_(pa.string())),
        pa.field("publication_types", pa.list_(pa.string())),
        pa.field("mesh_headings", pa.list_(MESH_HEADING)),
        pa.field("chemicals", pa.list_(CHEMICAL)),
        pa.field("keywords", pa.list_(pa.string())),
        pa.field("citation_status", pa.string()),
        pa.field("date_revised", pa.string()),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("record_position", pa.int64(), nullable=False),  # 0-based index among records of the file
        pa.field("file_order", pa.int64()),  # NLM load order of the source file (baseline < updates)
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)

DELETIONS = pa.schema(
    [
        pa.field("pmid", pa.string(), nullable=False),
        pa.field("pmid_version", pa.int32()),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("record_position", pa.int64(), nullable=False),
        pa.field("file_order", pa.int64()),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)

INGEST_ERRORS = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("record_position", pa.int64()),  # null when the fault is at file level
        pa.field("pmid", pa.string()),
        pa.field("stage", pa.string(), nullable=False),  # "read" | "xml" | "record" | "download" ...
        pa.field("reason", pa.string(), nullable=False),
        pa.field("records_before_fault", pa.int64()),  # how many good records were kept from this file
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)

# Every article dataset is partitioned by the file identity's key (etl.warehouse.file_key).
PARTITION_COLUMN = "file_key"

INGEST_LEDGER = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_kind", pa.string(), nullable=False),  # "baseline" | "update" | "entrez" | "file"
        pa.field("file_order", pa.int64()),
        pa.field("content_sha256", pa.string()),
        pa.field("n_articles", pa.int64()),
        pa.field("n_deletions", pa.int64()),
        pa.field("n_errors", pa.int64()),
        pa.field("complete", pa.bool_()),  # False when the file was truncated/malformed
        pa.field("run_id", pa.string()),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
        # The partition of the file's identity (etl.warehouse.file_key): NLM files are identified by
        # name, other files by name + content digest, landed E-utilities files by their path.
        pa.field("file_key", pa.string()),
    ]
)


# --- the ingest job's per-file envelope -----------------------------------------------------------------


def _relaxed(dtype: pa.DataType) -> pa.DataType:
    """The same type with every nested field nullable (an envelope row carries only one kind)."""
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _relaxed(f.type), nullable=True) for f in dtype])
    if pa.types.is_list(dtype):
        return pa.list_(pa.field(dtype.value_field.name, _relaxed(dtype.value_type), nullable=True))
    return dtype


def _struct_of(schema: pa.Schema) -> pa.StructType:
    return _relaxed(pa.struct(list(schema)))


FILE_SUMMARY = pa.struct(
    [
        pa.field("source_file", pa.string()),
        pa.field("n_articles", pa.int64()),
        pa.field("n_deletions", pa.int64()),
        pa.field("n_errors", pa.int64()),
        pa.field("complete", pa.bool_()),
    ]
)

# Input of the job: one row per source file (one Spark partition per row).
INGEST_INPUT = pa.schema(
    [
        pa.field("path", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("file_order", pa.int64()),
        pa.field("ingested_at_us", pa.int64()),  # microseconds since the epoch, UTC (one value per run)
        pa.field(PARTITION_COLUMN, pa.string()),  # the file identity's partition (``file_key``)
    ]
)

# Output of the per-file stage: each row is one article, deletion, error or file summary; ``kind`` names
# which, and the struct column of that name holds it (the others are null).
ENVELOPE_KINDS = ("article", "deletion", "error", "file")
ENVELOPE = pa.schema(
    [
        pa.field("kind", pa.string()),
        pa.field(PARTITION_COLUMN, pa.string()),
        pa.field("article", _struct_of(ARTICLES)),
        pa.field("deletion", _struct_of(DELETIONS)),
        pa.field("error", _struct_of(INGEST_ERRORS)),
        pa.field("file", FILE_SUMMARY),
    ]
)
