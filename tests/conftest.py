"""Shared test fixtures: one SparkSession per test run, data folder helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
TEST_DATA = TESTS_DIR / "data"


@pytest.fixture(scope="session")
def spark():
    """The one local SparkSession of the test run (starting Spark costs seconds; share it)."""
    from jobs.spark import get_spark

    session = get_spark("rexdrug-tests", master="local[2]")
    yield session
    session.stop()


@pytest.fixture
def test_data() -> Path:
    return TEST_DATA
