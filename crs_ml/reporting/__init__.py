"""Reporting: figures, the validation report and the HTML pages.

Figures (``figures``: ROC, precision-recall, the one calibration figure, decision curve, SHAP
summary); the validation report and model card (``report``); self-contained HTML pages for the
validation and the recalibration (``html``). Nothing here talks to MLflow.

May import: every room below (core, ingest, features, evaluation, simulate, modeling). Not
scoring (same level) nor tracking.
"""

from crs_ml.lazy import exports_getattr

_EXPORTS = {
    "calibration_figure": "figures",
    "model_card": "report",
    "render_recalibration": "html",
    "render_report": "html",
    "write_report": "report",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports_getattr(__name__, _EXPORTS)
