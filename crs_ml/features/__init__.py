"""Features: ASTCT grading, at-risk sets at each landmark, and the landmark features.

ASTCT 2019 grades derived from vitals and support events (``grading``); who is at risk at
landmark L, their outcome over the horizon (complete cases, or censored and competing at
several horizons) and the attrition (``landmarks``); the feature
builder, which sees only data with time <= L (``builder``); and the feature catalogue, every
feature with its group, unit, meaning and monotone sign (``catalogue``).

May import: the core. Not ingest (features read a :class:`~crs_ml.cohort.Cohort`, whatever
made it).
"""

from crs_ml.lazy import exports_getattr

_EXPORTS = {
    "attrition_table": "landmarks",
    "build_features": "builder",
    "build_landmark_dataset": "landmarks",
    "derive_outcomes": "grading",
    "feature_catalogue": "catalogue",
    "feature_names": "catalogue",
    "grade_events": "grading",
    "horizon_status": "landmarks",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports_getattr(__name__, _EXPORTS)
