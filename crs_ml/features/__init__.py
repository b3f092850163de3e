"""Features: ASTCT grading, at-risk sets at each landmark, and the landmark features.

ASTCT 2019 grades derived from vitals and support events (``grading``); who is at risk at
landmark L, their outcome over the horizon and the attrition (``landmarks``); the feature
builder, which sees only data with time <= L (``builder``); and the feature catalogue, every
feature with its group, unit, meaning and monotone sign (``catalogue``).

May import: the core. Not ingest (features read a :class:`~crs_ml.cohort.Cohort`, whatever
made it).
"""

_EXPORTS = {
    "attrition_table": "landmarks",
    "build_features": "builder",
    "build_landmark_dataset": "landmarks",
    "derive_outcomes": "grading",
    "feature_catalogue": "catalogue",
    "feature_names": "catalogue",
    "grade_events": "grading",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # public names load their module on first use, so importing the room stays cheap
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
