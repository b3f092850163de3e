"""What identifies the data of a run, without identifying anyone: fingerprints and salted keys.

A data fingerprint is counts, outcome rates, quantiles, file hashes and SHA-256 digests of whole
tables; its digest tells whether two runs saw the same data. Nothing here ever yields a patient
identifier or a raw row. Per-patient records are keyed by a salted hash whose salt lives outside
MLflow (:func:`salt`), so a shared tracking store alone cannot be joined back to patient
identifiers.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SALT_ENV = "CRS_ML_SALT"
SALT_FILE_ENV = "CRS_ML_SALT_FILE"
_DEFAULT_SALT_FILE = Path.home() / ".config" / "crs_ml" / "salt"


# --------------------------------------------------------------------------- salted keys
def salt() -> str:
    """The salt for per-patient keys: ``CRS_ML_SALT``, else a per-user file created once.

    The salt never goes into MLflow, so a shared tracking store alone cannot be joined back
    to patient identifiers.
    """
    value = os.environ.get(SALT_ENV)
    if value:
        return value
    path = Path(os.environ.get(SALT_FILE_ENV) or _DEFAULT_SALT_FILE)
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(16)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(value)
    try:
        os.link(tmp, path)  # first writer wins, even with concurrent processes
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def salted_keys(ids: pd.Series | np.ndarray, salt_value: str | None = None) -> np.ndarray:
    """SHA-256 of salt + id, first 16 hex digits: stable, not reversible without the salt."""
    s = salt() if salt_value is None else salt_value
    unique, inverse = np.unique(np.asarray(ids, dtype=object).astype(str), return_inverse=True)
    hashed = np.array(
        [hashlib.sha256(f"{s}:{u}".encode()).hexdigest()[:16] for u in unique], dtype=object
    )
    return hashed[inverse]


# --------------------------------------------------------------------------- fingerprints
def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_file_hashes(source: str | Path | None) -> dict[str, str]:
    """SHA-256 of every CSV/Parquet file of a cohort folder, by file name."""
    if source is None:
        return {}
    p = Path(source)
    files = sorted(p.glob("*.csv")) + sorted(p.glob("*.parquet")) if p.is_dir() else [p]
    return {f.name: file_sha256(f) for f in files if f.is_file()}


def feature_fingerprint(X: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per feature: share measured, mean, sd and quartiles (aggregates only)."""
    out: dict[str, dict[str, float]] = {}
    values = X.to_numpy(dtype=float)
    measured = ~np.isnan(values)
    with np.errstate(all="ignore"):
        means = np.nanmean(values, axis=0)
        sds = np.nanstd(values, axis=0)
        q = np.nanpercentile(values, [25, 50, 75], axis=0) if len(X) else np.full((3, 0), np.nan)
    for j, name in enumerate(X.columns):
        out[name] = {
            "share_measured": float(measured[:, j].mean()) if len(X) else float("nan"),
            "mean": _f(means[j]),
            "sd": _f(sds[j]),
            "q25": _f(q[0, j]),
            "median": _f(q[1, j]),
            "q75": _f(q[2, j]),
        }
    return out


def _f(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


#: the columns of each cohort table whose content the dataset digest covers (``source_row``
#: and other bookkeeping left out, so a reordered file with the same rows hashes the same
#: only through its file hash)
CONTENT_COLUMNS = {
    "patients": ("patient_id", "person_id", "infusion_time", "product", "age_years", "sex",
                 "disease", "site"),
    "observations": ("patient_id", "hours", "variable", "value", "censored"),
    "events": ("patient_id", "hours", "end_hours", "event", "detail"),
    "outcomes": ("patient_id", "crs_max_grade", "grade3_hours", "followup_hours",
                 "death_hours", "label_definition"),
}  # fmt: skip


def table_sha256(frame: pd.DataFrame | None, columns=None) -> str | None:
    """SHA-256 of a table's content (values of ``columns`` in row order, column names).

    One digest for the whole table, so identifiers that go into it cannot be read back.
    Categorical and text columns hash by value; None when there is no table.
    """
    if frame is None:
        return None
    cols = [c for c in (columns or frame.columns) if c in frame.columns]
    h = hashlib.sha256(",".join(cols).encode())
    h.update(str(len(frame)).encode())
    for c in cols:
        col = frame[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype(object)
        rows = pd.util.hash_pandas_object(col, index=False, categorize=False)
        h.update(rows.to_numpy(dtype=np.uint64).tobytes())
    return h.hexdigest()


def content_sha256(cohort, y: np.ndarray, meta: pd.DataFrame) -> dict[str, str | None]:
    """Content digests of the cohort tables and of the landmark rows (patient, landmark, y).

    Two cohorts with the same row counts (e.g. two simulated cohorts whose ids both run
    S1-000000, ...) differ here, also when neither came from a file.
    """
    out = {
        name: table_sha256(getattr(cohort, name, None), cols)
        for name, cols in CONTENT_COLUMNS.items()
    }
    rows = pd.DataFrame(
        {
            "patient_id": meta["patient_id"].astype(str).to_numpy(),
            "landmark_h": meta["landmark_h"].to_numpy(dtype=float),
            "y": np.asarray(y, dtype=np.int64),
        }
    )
    out["landmark_rows"] = table_sha256(rows)
    return out


def data_fingerprint(cohort, y: np.ndarray, meta: pd.DataFrame) -> dict[str, Any]:
    """Counts, outcome rates, file hashes and table digests of a cohort; never identifiers."""
    per_landmark = (
        pd.DataFrame({"landmark_h": meta["landmark_h"].to_numpy(), "y": y})
        .groupby("landmark_h")["y"]
        .agg(["size", "sum"])
    )
    products = cohort.patients["product"].astype(object).fillna("unknown").value_counts()
    sites = cohort.patients["site"].astype(object).fillna("unknown").value_counts()
    return {
        "n_patients": int(cohort.n_patients),
        "n_persons": int(cohort.patients["person_id"].nunique()),
        "n_observations": int(len(cohort.observations)),
        "n_events_rows": int(len(cohort.events)),
        "n_landmark_rows": int(len(y)),
        "n_positive_rows": int(np.sum(y)),
        "outcome_rate_rows": float(np.mean(y)) if len(y) else None,
        "per_landmark": {
            f"{float(h):g}": {"n": int(r["size"]), "events": int(r["sum"])}
            for h, r in per_landmark.iterrows()
        },
        "products": {str(k): int(v) for k, v in products.items()},
        "sites": {str(k): int(v) for k, v in sites.items()},
        "file_sha256": input_file_hashes(cohort.source),
        "content_sha256": content_sha256(cohort, y, meta),
        "label_definition": sorted(set(cohort.outcomes["label_definition"].astype(str)) - {""})
        if cohort.outcomes is not None and "label_definition" in cohort.outcomes
        else [],
    }


#: the fingerprint entries the dataset digest covers
DIGEST_KEYS = ("file_sha256", "content_sha256", "n_landmark_rows", "per_landmark")


def dataset_digest(fingerprint: dict[str, Any]) -> str:
    """A short digest of a fingerprint: runs on the same data share it.

    It covers the input files' hashes, the content of every cohort table and of the landmark
    rows (who is at risk at which landmark, with which outcome), so two cohorts that merely
    share patient ids or row counts get different digests; ``crs-ml compare`` pairs runs
    only when their digests are equal.
    """
    import json

    text = json.dumps({k: fingerprint.get(k) for k in DIGEST_KEYS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
