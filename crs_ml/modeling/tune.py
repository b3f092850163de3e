"""Hyperparameter search for the xgboost model with Optuna, by nested cross-validation.

Outer folds by person hold out patients the search never sees; inside each outer training
fold an Optuna study scores each trial by inner cross-validation (by person). The outer
out-of-fold predictions of the per-fold winners give the reported, non-optimistic estimate.
A final study on all data picks the configuration written to YAML; its ``provenance``
records the data digest, so a later ``crs-ml train`` with it on the same data is flagged by
``crs-ml compare`` as selected on the data it reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.config import Config, config_to_yaml
from crs_ml.errors import ConfigError
from crs_ml.evaluation import metrics as M
from crs_ml.evaluation.verdict import tune_warnings
from crs_ml.fingerprints import data_fingerprint, dataset_digest
from crs_ml.modeling.estimators import make_model
from crs_ml.modeling.train import cross_validate, evaluate_predictions, person_folds, training_data

Progress = Callable[[str, int, int], None]


def suggest_params(trial) -> dict[str, Any]:
    """The search space (hist trees; early stopping picks the number of trees)."""
    return {
        "max_depth": trial.suggest_int("max_depth", 2, 6),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 30.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 30.0, log=True),
    }


@dataclass
class TuneResult:
    best_params: dict[str, Any]
    best_inner_auroc: float
    outer_metrics: dict[str, float]
    outer_params: list[dict[str, Any]]
    config: Config
    #: digest of the data the search saw (crs_ml.fingerprints.dataset_digest)
    dataset_digest: str
    #: the starting configuration's inner-CV AUROC on the final study's folds
    default_inner_auroc: float = float("nan")
    n_event_persons: int = 0
    #: the tuned configuration worse than the starting one, or too few events
    warnings: list[str] = field(default_factory=list)


def inner_cv_auroc(X, y, persons, cfg: Config, params, catalogue, inner_folds: int, seed: int):
    """Pooled out-of-fold AUROC of xgboost with ``params`` on the inner person folds that
    ``seed`` fixes (every trial and the starting configuration see the same folds)."""
    from crs_ml.modeling.estimators import make_model

    model_cfg = cfg.model.model_copy(update={"params": params, "type": "xgboost"})
    oof = cross_validate(
        X, y, persons, lambda: make_model(model_cfg, catalogue, seed), inner_folds, 1, seed
    )
    return M.auroc(y, oof[0])


def _study(
    X, y, persons, cfg: Config, catalogue, trials: int, inner_folds: int, seed: int, on_trial=None
):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial) -> float:
        params = {**cfg.model.params, **suggest_params(trial)}
        score = inner_cv_auroc(X, y, persons, cfg, params, catalogue, inner_folds, seed)
        if on_trial:
            on_trial(trial.number, params, score)
        return score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials, show_progress_bar=False)
    return study


def tune(
    cohort,
    cfg: Config,
    trials: int,
    outer_folds: int = 3,
    inner_folds: int = 3,
    progress: Progress | None = None,
    log_trial=None,
) -> TuneResult:
    """Nested CV search; ``log_trial(stage, number, params, auroc)`` records each trial."""
    if cfg.model.type != "xgboost":
        raise ConfigError(
            f"crs-ml tune searches xgboost hyperparameters, but model.type is "
            f"'{cfg.model.type}' (the default model is a stack): give --config "
            "configs/xgboost.yaml or another xgboost config"
        )
    X, y, meta, catalogue, persons = training_data(cohort, cfg)
    total = trials * (outer_folds + 1)
    done = [0]

    def tick(stage):
        def on_trial(number, params, score):
            done[0] += 1
            if log_trial:
                log_trial(stage, number, params, score)
            if progress:
                progress("tuning trials", done[0], total)

        return on_trial

    outer = person_folds(persons, y, outer_folds, 1, cfg.seed)[0]
    oof = np.full(len(y), np.nan)
    outer_params = []
    for k in range(outer_folds):
        test = outer == k
        study = _study(
            X.loc[~test],
            y[~test],
            persons[~test],
            cfg,
            catalogue,
            trials,
            inner_folds,
            cfg.seed + k,
            tick(f"outer{k}"),
        )
        params = {**cfg.model.params, **study.best_params}
        outer_params.append(params)
        model_cfg = cfg.model.model_copy(update={"params": params, "type": "xgboost"})
        model = make_model(model_cfg, catalogue, cfg.seed).fit(
            X.loc[~test], y[~test], groups=persons[~test]
        )
        oof[test] = model.predict_proba(X.loc[test])[:, 1]
    report = [h for h in cfg.cv.report_landmarks_h if h in set(cfg.task.landmarks_h)]
    outer_metrics = evaluate_predictions(
        y, oof[None, :], meta, report, cfg.cv.bootstrap, cfg.seed, cohort.truth
    )
    final = _study(X, y, persons, cfg, catalogue, trials, inner_folds, cfg.seed, tick("final"))
    best = {**cfg.model.params, **final.best_params}
    tuned = cfg.model_copy(deep=True)
    tuned.model = cfg.model.model_copy(update={"params": best, "type": "xgboost"})

    digest = dataset_digest(data_fingerprint(cohort, y, meta))
    default = inner_cv_auroc(X, y, persons, cfg, cfg.model.params, catalogue, inner_folds, cfg.seed)
    n_event_persons = int(pd.Series(y).groupby(np.asarray(persons)).max().sum())
    warnings = tune_warnings(final.best_value, default, n_event_persons)
    return TuneResult(
        best,
        float(final.best_value),
        outer_metrics,
        outer_params,
        tuned,
        digest,
        float(default),
        n_event_persons,
        warnings,
    )


def tuned_config_yaml(result: TuneResult, trials: int) -> str:
    """The winning configuration as YAML, with where and how it was selected."""
    cfg = result.config.model_copy(deep=True)
    cfg.provenance = {
        "selected_by": "crs-ml tune (nested CV)",
        "selected_on_dataset": result.dataset_digest,
        "trials": trials,
        "seed": cfg.seed,
        "nested_outer_auroc_all": result.outer_metrics.get("auroc_all"),
        "inner_auroc_tuned": result.best_inner_auroc,
        "inner_auroc_starting_config": result.default_inner_auroc,
        "warnings": list(result.warnings),
    }
    cfg.overrides = []
    return config_to_yaml(cfg)


def trials_frame(rows: list[tuple[str, int, dict, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"stage": s, "trial": n, "auroc_inner": a, **p} for s, n, p, a in rows])
