"""Evaluation: how good a risk score is, with honest intervals.

Discrimination, calibration and sample-size statistics (``metrics``); person-level bootstrap
(``resampling``); one validation slice with intervals (``performance``); censored,
competing-risk metrics at a horizon (``censored``: IPCW AUROC and Brier, Aalen-Johansen
calibration); decision curves,
thresholds and alert metrics (``utility``); feature drift against the training fingerprint
(``drift``); external validation of a model bundle (``validate``) with its comparisons to the
published baselines and subgroups (``comparisons``); and the statistics of site recalibration
(``recalibration``: fitting and testing the map; writing the new bundle is the bundle
module's job, the page the reporting room's).

May import: the core, ingest and features. A model is used through its interface
(``predict_proba``, ``predict_margin``), never imported from modeling.
"""

from crs_ml.lazy import exports_getattr

_EXPORTS = {
    "ValidationResult": "validate",
    "censored_metrics": "censored",
    "drift_table": "drift",
    "fit_recalibration": "recalibration",
    "model_settings": "validate",
    "performance": "performance",
    "recalibrate_cohort": "recalibration",
    "validate_cohort": "validate",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports_getattr(__name__, _EXPORTS)
