"""Scoring: new patients in, one row per patient out, with risk, band and drivers.

Per patient the as-of time, landmark and status (``statuses``); the scores with exact SHAP
(``score``); readable drivers (``drivers``); the chunked batch job behind ``crs-ml score``
(``batch``) and its bounded read-ahead worker (``pipeline``); the ward board and its figures (``board``, ``board_figures``). A model arrives
as a :class:`~crs_ml.modeling.bundle.Bundle`, a loaded model or a folder; MLflow URIs are resolved by :mod:`crs_ml.tracking.models` (``crs_ml.score`` does it).

May import: every room below (core, ingest, features, evaluation, simulate, modeling). Not
reporting (same level) nor tracking.
"""

from crs_ml.lazy import exports_getattr

_EXPORTS = {
    "STATUSES": "score",
    "as_bundle": "score",
    "board": "board",
    "render_board": "board",
    "score_records": "score",
    "score_to_file": "batch",
    "scores_table": "score",
    "status_counts": "score",
    "top_drivers": "drivers",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports_getattr(__name__, _EXPORTS)
