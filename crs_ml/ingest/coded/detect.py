"""Telling a MEDS dataset or a FHIR bulk export from the contract's tables."""

from __future__ import annotations

from pathlib import Path

__all__ = ["coded_format"]


def coded_format(path) -> str | None:
    """``"meds"`` for a folder with ``data/*.parquet`` (and ``metadata/`` or a ``subject_id``
    column), ``"fhir"`` for NDJSON files of FHIR resources, else None."""
    from crs_ml.ingest.coded.fhir import is_fhir
    from crs_ml.ingest.coded.meds import is_meds

    p = Path(str(path))
    if not p.exists():
        return None
    if p.is_dir() and is_meds(p):
        return "meds"
    if is_fhir(p):
        return "fhir"
    return None
