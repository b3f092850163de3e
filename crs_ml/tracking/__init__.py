"""Tracking: MLflow, the store of runs and models.

The embedded store and experiments (``store``); runs for training, validation and site
recalibration, and registering models (``runs``); the leaderboard of training runs
(``leaderboard``); the MLflow pyfunc model (``pyfunc``); model resolution, a URI, registry
alias or folder -> the bundle, in one place (``models``). mlflow is imported only inside
functions, so importing this room stays cheap.

May import: every room below. Not cli.
"""

from crs_ml.lazy import exports_getattr

_EXPORTS = {
    "download_model": "models",
    "leaderboard": "leaderboard",
    "log_pyfunc_model": "pyfunc",
    "log_training_run": "runs",
    "log_validation_run": "runs",
    "open_model": "models",
    "register_model": "runs",
    "register_recalibrated": "runs",
    "resolve_model": "models",
    "setup_tracking": "store",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports_getattr(__name__, _EXPORTS)
