"""Tracking: MLflow, the store of runs and models.

The embedded store and experiments (``store``); runs for training, validation and site
recalibration, and registering models (``runs``); the leaderboard of training runs
(``leaderboard``); the MLflow pyfunc model (``pyfunc``); model resolution, a URI, registry
alias or folder -> the bundle, in one place (``models``). mlflow is imported only inside
functions, so importing this room stays cheap.

May import: every room below. Not cli.
"""

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


def __getattr__(name: str):
    # public names load their module on first use, so importing the room stays cheap
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
