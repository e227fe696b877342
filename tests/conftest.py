"""Fixtures shared by tests/test_determinism.py and tests/test_soak.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_runs import run_to_completion


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory) -> Path:
    """One uninterrupted tiny `wsss run` with 1 thread (tiny_runs.TINY), made once per test session:
    the run that the determinism and soak tests compare theirs with."""
    return run_to_completion(tmp_path_factory.mktemp("reference") / "run", threads=1)
