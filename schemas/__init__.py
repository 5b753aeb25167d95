"""Table schemas, declared once as Arrow schemas; Spark schemas are derived (``schemas.spark.to_spark``).

Modules: ``articles`` (ingestion), ``drugs`` (knowledge base, mentions), ``extraction`` (sentences,
candidates, combinations, errors), ``kb`` (combination knowledge base).
"""
