"""PubMed acquisition (NLM files, E-utilities) and the streaming PubMed XML parser.

Submodules are imported explicitly (``etl.pubmed.parser``, ``etl.pubmed.nlm``, ``etl.pubmed.entrez``):
nothing is imported or opened here.
"""
