"""Modeling: estimators, training, tuning, the model bundle and its explanations.

xgboost + Platt and the baselines behind one scikit-learn interface (``estimators``,
``baselines``, ``inner_splits``); the model bundle, the one folder that carries everything
from features to calibrated risk, read and written only here (``bundle``); cross-validated
training (``train``); nested-CV tuning (``tune``); exact SHAP in calibrated log-odds
(``explain``).

May import: the core, ingest, features, evaluation and simulate.
"""

from crs_ml.lazy import exports_getattr

_EXPORTS = {
    "Bundle": "bundle",
    "TrainResult": "train",
    "explain": "explain",
    "load_bundle": "bundle",
    "load_model_folder": "bundle",
    "make_model": "estimators",
    "save_bundle": "bundle",
    "train_model": "train",
    "write_recalibrated_bundle": "bundle",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports_getattr(__name__, _EXPORTS)
