"""Session-wide test setup: nothing is written into the working tree.

Every test session gets its own temporary folder and a temporary SQLite MLflow store,
exported as MLFLOW_TRACKING_URI before any test imports mlflow. Processes the tests start get
that folder as TMPDIR (a killed ``crs-ml score`` cannot remove its spill folder), and the folder
is deleted when the session ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="crs_ml_tests_"))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_DIR / 'mlflow.db'}"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
(_SESSION_DIR / "tmp").mkdir()
os.environ["TMPDIR"] = str(_SESSION_DIR / "tmp")  # for child processes (this one's is cached)


def pytest_sessionfinish(session, exitstatus) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """A temporary folder shared by the whole test session."""
    return _SESSION_DIR


@pytest.fixture(scope="session")
def tracking_uri() -> str:
    return os.environ["MLFLOW_TRACKING_URI"]


# per-patient keys are salted with a per-session salt kept outside the store
os.environ.setdefault("CRS_ML_SALT_FILE", str(_SESSION_DIR / "salt"))


@pytest.fixture(autouse=True)
def _variable_catalogue_restored():
    """Site variables a test registers (directly or through a config or a model bundle) are
    removed after it: the variable catalogue is process-wide and the tests share a process."""
    from crs_ml.variables import site_variables, unregister_variables

    before = set(site_variables())
    yield
    unregister_variables([name for name in site_variables() if name not in before])
