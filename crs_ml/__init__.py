"""crs_ml: early warning of severe cytokine release syndrome after CAR T-cell therapy.

``crs_ml.score(model, cohort, as_of=None)`` scores a cohort (:func:`crs_ml.scoring.score.score`).
Submodules are imported on first use, so ``import crs_ml`` itself costs nothing.
"""


def __getattr__(name: str):
    if name == "score":
        import importlib

        return importlib.import_module("crs_ml.scoring.score")
    raise AttributeError(f"module 'crs_ml' has no attribute {name!r}")
