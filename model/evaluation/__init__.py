"""Evaluation: the one n-ary set matcher (`matching`), the DrugComb scorers (`drugcomb`), DDI13 (`ddi`)."""
