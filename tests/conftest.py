"""Session-wide test setup: nothing is written into the working tree.

Every test session gets its own temporary folder and a temporary SQLite MLflow store,
exported as MLFLOW_TRACKING_URI before any test imports mlflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="crs_ml_tests_"))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_DIR / 'mlflow.db'}"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """A temporary folder shared by the whole test session."""
    return _SESSION_DIR


@pytest.fixture(scope="session")
def tracking_uri() -> str:
    return os.environ["MLFLOW_TRACKING_URI"]


# per-patient keys are salted with a per-session salt kept outside the store
os.environ.setdefault("CRS_ML_SALT_FILE", str(_SESSION_DIR / "salt"))
