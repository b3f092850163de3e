"""Coded clinical data formats read into the :class:`~crs_ml.cohort.Cohort`: MEDS 0.4
(``meds``) and FHIR R4 bulk NDJSON (``fhir``), both through the shared code mappings and the
ordinary load (``assemble``). ``coded_format`` tells them from the contract's tables.

May import: the core and :mod:`crs_ml.ingest`'s public entry points.
"""

from crs_ml.lazy import exports_getattr

_EXPORTS = {
    "coded_format": "detect",
    "load_fhir": "fhir",
    "load_meds": "meds",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports_getattr(__name__, _EXPORTS)
