"""Reporting: figures, the validation report and the HTML pages.

Figures (``figures``: ROC, precision-recall, the one calibration figure, decision curve, SHAP
summary); the validation report and model card (``report``); self-contained HTML pages for the
validation and the recalibration (``html``). Nothing here talks to MLflow.

May import: every room below (core, ingest, features, evaluation, simulate, modeling). Not
scoring (same level) nor tracking.
"""

_EXPORTS = {
    "calibration_figure": "figures",
    "model_card": "report",
    "render_recalibration": "html",
    "render_report": "html",
    "write_report": "report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # public names load their module on first use, so importing the room stays cheap
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
