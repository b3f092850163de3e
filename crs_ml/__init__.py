"""crs_ml: early warning of severe cytokine release syndrome after CAR T-cell therapy.

``crs_ml.score(model, cohort, as_of=None)`` scores a cohort: ``model`` is a bundle, a loaded
model, a model folder or an MLflow URI (resolved by :func:`crs_ml.tracking.models.resolve_model`,
then :func:`crs_ml.scoring.score.score`). ``crs_ml.scoring.score`` is also the module
:mod:`crs_ml.scoring.score` (``crs_ml.scoring.score.STATUSES``). Subpackages are imported on first use,
so ``import crs_ml`` itself costs nothing. The rooms and their order: docs/architecture.md.
"""

import types


class _ScoreModule(types.ModuleType):
    """:mod:`crs_ml.scoring.score`, callable as ``crs_ml.score(model, cohort, ...)``."""

    def __call__(self, model, *args, **kwargs):
        from crs_ml.tracking.models import resolve_model

        return self.score(resolve_model(model), *args, **kwargs)


def __getattr__(name: str):
    if name == "score":
        import importlib

        module = importlib.import_module("crs_ml.scoring.score")
        module.__class__ = _ScoreModule
        return module
    raise AttributeError(f"module 'crs_ml' has no attribute {name!r}")
