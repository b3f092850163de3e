"""Ingest: reading a cohort's input tables into the normalised :class:`~crs_ml.cohort.Cohort`.

Finding and reading tables (CSV / Parquet, column mapping; ``tables``), parsing cell values
(``values``), row checks and normalisation (``rows``, ``secondary_tables``), the whole load
(``load``) and the chunked load for large cohorts (``stream``), the bookkeeping of loading
problems behind ``crs-ml check`` (``problems``), and the one-table records of the MLflow model
input (``records``). Every rejected row is counted with its file, row, column and reason.

May import: the core (errors, config, cohort, files, variables, fingerprints). Nothing else.
"""

from crs_ml.lazy import exports_getattr

_EXPORTS = {
    "CheckReport": "problems",
    "CohortChunks": "stream",
    "Problem": "problems",
    "cohort_to_records": "records",
    "load_cohort": "load",
    "load_frames": "load",
    "records_to_cohort": "records",
    "synthetic_example": "records",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports_getattr(__name__, _EXPORTS)
