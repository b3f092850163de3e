"""The model artifact: one folder that carries everything from features to calibrated risk.

Layout of a bundle folder::

    bundle.json      manifest: versions, model type, feature schema and catalogue, feature and
                     task configuration, Platt calibration, risk bands, training fingerprint,
                     training missingness and medians per feature (optional), SHA-256 of
                     every other file
    booster.ubj      the xgboost booster in xgboost's own format (xgboost models)
    estimator.skops  the fitted estimator (logistic regression and baselines), via skops
    additive.json    the additive model's knots, medians, scales and coefficients (additive)
    horizon_24h/     one bundle folder (this layout) per short horizon (task.windows_h), listed
                     under ``horizons`` in bundle.json (:mod:`crs_ml.modeling.horizons`); a
                     model without the key has no short horizons and scores as before
    stack.json       the stack's weights, Platt map and members (stack), with one
                     member_<name>.ubj per xgboost member (additive members inside stack.json)

Every model is a margin and a calibration map (``calibration`` in bundle.json): the calibrated
log-odds are ``slope * margin + intercept``. The margin is the raw booster margin (xgboost),
the blend of the members' calibrated log-odds ``sum_m w_m logit_m`` before the blend's Platt
map (stack; stack.json carries the same map), or the model's own log-odds with the identity
map (the other families). A site recalibration (:func:`write_recalibrated_bundle`) rewrites
only the map; SHAP contributions scale with the slope, so they still add up.

No file is a pickle. ``format_version`` in bundle.json is :data:`FORMAT_VERSION`
(:data:`FORMAT_CHANGES` says what each step changed). Loading checks the format version, the
crs_ml and xgboost major versions, that the installed feature code produces the same feature
schema, and that no file changed since it was written; the site-defined variables of the
training config (``config.variables``) are registered in the variable catalogue; each failure is a
:class:`~crs_ml.errors.ModelError` that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.config import FeatureConfig, declare_site_variables
from crs_ml.errors import ConfigError, InputError, ModelError
from crs_ml.features.builder import feature_catalogue
from crs_ml.modeling.completeness import impute_untrained_missing
from crs_ml.variables import CORE_VARIABLES

#: the intended-use sentence every product surface repeats (model card, ward board)
DECISION_SUPPORT = (
    "Decision support for clinicians monitoring CAR-T patients; not a replacement for "
    "clinical assessment and not validated for other therapies."
)

#: the format this crs_ml writes and reads; each step, what changed (an older model is refused
#: with the change and what to do)
FORMAT_VERSION = 2
FORMAT_CHANGES = {
    2: "its MLflow model is logged from code, without a pickled Python object",
}
MANIFEST = "bundle.json"
BOOSTER_FILE = "booster.ubj"
ESTIMATOR_FILE = "estimator.skops"
ADDITIVE_FILE = "additive.json"
#: the packages whose types a skops file in a model folder may hold
TRUSTED_PREFIXES = ("crs_ml.", "sklearn.", "numpy.", "scipy.")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Bundle:
    """A loaded model: predicts calibrated risk and margins from a feature matrix."""

    manifest: dict[str, Any]
    booster: Any = None  # xgboost.Booster for xgboost models
    estimator: Any = None  # sklearn-style estimator otherwise
    path: Path | None = None
    _cols: list[str] = field(default_factory=list)
    #: (Horizon, Bundle) per short horizon, shortest first (empty for older models)
    horizons: list = field(default_factory=list)

    @property
    def model_type(self) -> str:
        return self.manifest["model_type"]

    @property
    def feature_names(self) -> list[str]:
        return list(self.manifest["feature_names"])

    @property
    def platt_slope(self) -> float:
        return float(self.manifest["calibration"]["slope"])

    @property
    def platt_intercept(self) -> float:
        return float(self.manifest["calibration"]["intercept"])

    @property
    def training_inputs(self) -> dict[str, Any]:
        """Per feature, the share of training rows missing and the training median
        (:func:`crs_ml.modeling.completeness.training_inputs`); empty for bundles saved without them."""
        return dict(self.manifest.get("training_inputs") or {})

    @property
    def catalogue(self) -> pd.DataFrame:
        return pd.DataFrame(self.manifest["catalogue"])

    def fill_untrained_missing(self, X: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """``X`` in the model's column order, with each feature that was never missing in
        training set to its training median where missing (:func:`impute_untrained_missing`),
        and the (rows, features) mask of the values so filled. Every prediction (scoring,
        validation, recalibration, the board) goes through this rule, via
        :meth:`model_inputs`; scoring also uses the mask to name the filled inputs."""
        # a frame already in the model's order (one filled before) is not copied again, nor
        # are its columns looked up one by one
        if list(X.columns) == self.feature_names:
            ordered = X
        else:
            missing = [c for c in self.feature_names if c not in X.columns]
            if missing:
                raise ModelError(
                    f"feature matrix lacks {len(missing)} model features, e.g. {missing[:3]}"
                )
            ordered = X[self.feature_names]
        return impute_untrained_missing(ordered, self.feature_names, self.training_inputs)

    def model_inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        """:meth:`fill_untrained_missing` without the mask."""
        return self.fill_untrained_missing(X)[0]

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        """Dense float matrix of :meth:`model_inputs` (NaN = missing)."""
        return self.model_inputs(X).to_numpy(dtype=np.float64, na_value=np.nan)

    @property
    def identity_map(self) -> bool:
        """The calibration map is the identity (a family without a map of its own that no
        site recalibrated)."""
        return self.platt_slope == 1.0 and self.platt_intercept == 0.0

    def predict_margin(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds before the calibration map (module docstring): the raw booster margin
        (xgboost), the blend ``sum_m w_m logit_m`` of the members' calibrated log-odds
        (stack), the model's own log-odds (other families)."""
        if self.booster is not None:
            import xgboost as xgb

            dm = xgb.DMatrix(self.matrix(X), missing=np.nan, feature_names=self.feature_names)
            return self.booster.predict(dm, output_margin=True)
        if self.model_type == "stack":
            return self.estimator.blend_margin(self.model_inputs(X))
        if hasattr(self.estimator, "explain_logit"):  # additive model: exact log-odds
            return np.asarray(self.estimator.decision_function(self.model_inputs(X)), np.float64)
        p = np.clip(self.estimator.predict_proba(self.model_inputs(X))[:, 1], 1e-12, 1 - 1e-12)
        return np.log(p) - np.log1p(-p)

    def predict_logit(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated log-odds of grade >= 3 CRS within the horizon."""
        if self.model_type == "stack":  # the blend's Platt map is the bundle's (load_bundle)
            return self.estimator.decision_function(self.model_inputs(X))
        # with the identity map (slope 1, intercept 0) this is the margin bit for bit
        return self.platt_slope * self.predict_margin(X).astype(np.float64) + self.platt_intercept

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        from scipy.special import expit

        return expit(self.predict_logit(X))

    def horizon_risks(self, X: pd.DataFrame, risk=None) -> dict[str, np.ndarray]:
        """{risk column: risk} of each short horizon (shortest first) on features ``X``,
        capped from above by the longer horizons as scoring caps them (the longest by the
        day-14 ``risk``, this model's own when None; :mod:`crs_ml.modeling.horizons`). Empty
        for a model without short horizons."""
        from crs_ml.modeling.horizons import capped_risks

        if not self.horizons:
            return {}
        longest = self.predict_risk(X) if risk is None else np.asarray(risk, dtype=np.float64)
        parts = list(reversed(self.horizons))  # longest first
        capped = capped_risks(longest, [hb.predict_risk(X) for _, hb in parts])
        by_column = {h.column: r for (h, _), r in zip(parts, capped, strict=True)}
        return {h.column: by_column[h.column] for h, _ in self.horizons}


def save_bundle(
    model: Any,
    out_dir: str | Path,
    *,
    model_type: str,
    feature_names: list[str],
    catalogue: pd.DataFrame,
    config: dict[str, Any],
    fingerprint: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    extra_files: list[str] | tuple[str, ...] = (),
) -> Path:
    """Write a fitted model as a bundle folder; returns the folder. ``extra_files``: files
    already written inside the folder (relative paths) whose SHA-256 the manifest records."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = list(extra_files)
    calibration = {"method": "none", "slope": 1.0, "intercept": 0.0}
    if model_type == "xgboost":
        booster = model.booster_
        best = getattr(model, "best_iteration_", None)
        if best is not None and booster.num_boosted_rounds() > int(best) + 1:
            booster = booster[: int(best) + 1]
        booster.feature_names = list(feature_names)
        booster.save_model(str(out / BOOSTER_FILE))
        files.append(BOOSTER_FILE)
        calibration = {
            "method": "platt",
            "slope": float(model.platt_slope_),
            "intercept": float(model.platt_intercept_),
        }
    elif model_type == "additive":
        state = model.to_state()
        (out / ADDITIVE_FILE).write_text(json.dumps(state, indent=1, default=_json_default))
        files.append(ADDITIVE_FILE)
    elif model_type == "stack":
        from crs_ml.modeling.stack import save_stack

        files += save_stack(model, out)
        calibration = {
            "method": "stack+platt",
            "slope": float(model.platt_slope_),
            "intercept": float(model.platt_intercept_),
        }
    else:
        import skops.io as sio

        sio.dump(model, out / ESTIMATOR_FILE)
        files.append(ESTIMATOR_FILE)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_type": model_type,
        "versions": {
            "crs_ml": _version("crs_ml"),
            "xgboost": _version("xgboost"),
            "scikit-learn": _version("scikit-learn"),
        },
        "feature_names": list(feature_names),
        "catalogue": catalogue.to_dict(orient="records"),
        "config": config,
        "calibration": calibration,
        "fingerprint": fingerprint or {},
        **(extra or {}),
        "files_sha256": {name: _sha256(out / name) for name in files},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default))
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_bundle(path: str | Path, check_schema: bool = True) -> Bundle:
    """Load and verify a bundle folder (see the module docstring for the checks)."""
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ModelError(f"{folder} is not a crs_ml model folder (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{manifest_path} is not valid JSON ({exc}); re-export the model") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelError(_format_message(folder, manifest.get("format_version")))
    for name, expected in manifest.get("files_sha256", {}).items():
        f = folder / name
        if not f.is_file() or _sha256(f) != expected:
            raise ModelError(
                f"{folder}: file {name} is missing or changed since the model was saved "
                "(SHA-256 mismatch); do not edit model folders: re-export the model from MLflow"
            )
    features = manifest.get("config", {}).get("features")
    if isinstance(features, dict) and "variables" not in features:
        # saved before features came from every catalogue variable: the 12 variables it used
        features["variables"] = list(CORE_VARIABLES)
    trained = manifest["versions"]
    for package in ("crs_ml", "xgboost"):
        have = _version(package)
        if _major(trained.get(package, "?")) != _major(have):
            raise ModelError(
                f"{folder}: trained with {package} {trained.get(package)}, installed {have}; "
                f"install {package}=={trained.get(package)} (see requirements.lock) or re-train"
            )
    # the site-defined variables the model was trained with join this process's catalogue
    # (a different definition of the same name is refused)
    try:
        declare_site_variables(manifest.get("config", {}).get("variables"), str(manifest_path))
    except ConfigError as exc:
        raise ModelError(str(exc)) from None
    if check_schema:
        _check_schema(folder, manifest)
    bundle = Bundle(manifest=manifest, path=folder)
    if manifest["model_type"] == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(str(folder / BOOSTER_FILE))
        bundle.booster = booster
    elif manifest["model_type"] == "additive":
        from crs_ml.modeling.additive import AdditiveRiskModel

        state = json.loads((folder / ADDITIVE_FILE).read_text())
        bundle.estimator = AdditiveRiskModel.from_state(state)
    elif manifest["model_type"] == "stack":
        from crs_ml.modeling.stack import load_stack

        try:
            bundle.estimator = load_stack(folder, trusted_types=TRUSTED_PREFIXES)
        except TypeError as exc:
            raise ModelError(f"{folder}: {exc}") from exc
        # bundle.json's map is the blend's (a recalibrated copy writes it into both files)
        bundle.estimator.set_platt_map(bundle.platt_slope, bundle.platt_intercept)
    else:
        import skops.io as sio

        file = folder / ESTIMATOR_FILE
        listed = sio.get_untrusted_types(file=file)
        trusted = [t for t in listed if t.startswith(TRUSTED_PREFIXES)]
        untrusted = [t for t in listed if t not in trusted]
        if untrusted:
            raise ModelError(f"{folder}: estimator file holds untrusted types {untrusted}")
        bundle.estimator = sio.load(file, trusted=trusted)
    if manifest.get("horizons"):
        from crs_ml.modeling.horizons import Horizon

        for entry in manifest["horizons"]:
            try:
                horizon_h = float(manifest["config"].get("task", {}).get("horizon_h", 336.0))
                h = Horizon.of(float(entry["window_h"]), horizon_h)
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(f"{folder}: bundle.json horizons entry {entry!r} is not a "
                                 f"short horizon ({exc})") from exc  # fmt: skip
            if h.to_dict() != entry:
                raise ModelError(f"{folder}: bundle.json horizons entry {entry!r} differs from "
                                 f"the one its window makes ({h.to_dict()})")  # fmt: skip
            bundle.horizons.append((h, load_bundle(folder / h.folder, check_schema=False)))
    return bundle


def _format_message(folder: Path, found: Any) -> str:
    if isinstance(found, int) and found > FORMAT_VERSION:
        return (
            f"{folder}: model format {found} is newer than format {FORMAT_VERSION}, the one this "
            "crs_ml reads; install the crs_ml version the model was trained with"
        )
    changes = "; ".join(
        f"format {v}: {text}"
        for v, text in FORMAT_CHANGES.items()
        if not isinstance(found, int) or v > found
    )
    return (
        f"{folder}: model format {found} is older than format {FORMAT_VERSION}, the one this "
        f"crs_ml reads ({changes}); re-export it: train it again with this crs_ml "
        "(crs-ml train --register) and export the new version (crs-ml export)"
    )


def _check_schema(folder: Path, manifest: dict[str, Any]) -> None:
    feature_cfg = FeatureConfig.model_validate(manifest["config"]["features"])
    current = list(feature_catalogue(feature_cfg)["name"])
    wanted = list(manifest["feature_names"])
    missing = [f for f in wanted if f not in current]
    if missing:
        raise ModelError(
            f"{folder}: the model was trained on features this version of crs_ml does not "
            f"build ({missing[:5]}); install the crs_ml version it was trained with "
            f"({manifest['versions']['crs_ml']}) or re-train"
        )


def write_recalibrated_bundle(
    source_dir, out_dir, slope: float, intercept: float, provenance: dict[str, Any] | None = None
) -> Path:
    """Copy a bundle folder and rewrite only its calibration map (and the file hashes); the
    site recalibration (:mod:`crs_ml.evaluation.recalibration`) fits the two numbers.

    The model files (booster, members, estimator) are copied unchanged; ``bundle.json`` gets
    the new map, the previous one under ``calibration.previous`` and ``provenance`` under
    ``recalibration``; a stack's ``stack.json`` gets the same map as the blend's Platt map.
    ``out_dir`` must not exist or be empty.
    """
    src, out = Path(source_dir), Path(out_dir)
    manifest = json.loads((src / MANIFEST).read_text())
    model_type = manifest.get("model_type")
    if not np.isfinite(slope) or not np.isfinite(intercept):
        raise ModelError(f"recalibration map slope {slope}, intercept {intercept} is not finite")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"output folder {out} is not empty", file=str(out))
    if out.exists():
        out.rmdir()
    shutil.copytree(src, out)
    previous = {k: v for k, v in manifest["calibration"].items() if k != "previous"}
    if model_type == "stack":
        from crs_ml.modeling.stack import STACK_FILE

        state = json.loads((out / STACK_FILE).read_text())
        state["platt_slope"], state["platt_intercept"] = float(slope), float(intercept)
        (out / STACK_FILE).write_text(json.dumps(state, indent=1))
    prefix = {"xgboost": "platt+", "stack": "stack+platt+"}.get(model_type, "")
    manifest["calibration"] = {
        "method": f"{prefix}site_{(provenance or {}).get('method', 'update')}",
        "slope": float(slope),
        "intercept": float(intercept),
        "previous": previous,
    }
    manifest["recalibration"] = provenance or {}
    manifest["files_sha256"] = {
        name: _sha256(out / name) for name in manifest.get("files_sha256", {})
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default))
    return out


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_model_folder(folder: str | Path) -> Bundle:
    """The bundle in a folder: a bundle folder itself, or an exported / downloaded MLflow model
    folder that carries one (the pyfunc's ``bundle`` artifact)."""
    import yaml

    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return load_bundle(folder)
    mlmodel = folder / "MLmodel"
    if mlmodel.is_file():
        spec = yaml.safe_load(mlmodel.read_text()) or {}
        artifacts = spec.get("flavors", {}).get("python_function", {}).get("artifacts", {})
        rel = artifacts.get("bundle", {}).get("path")
        if rel and (folder / rel / MANIFEST).is_file():
            return load_bundle(folder / rel)
        found = sorted(folder.glob(f"artifacts/**/{MANIFEST}"))
        if found:
            return load_bundle(found[0].parent)
        raise ModelError(f"{folder} is an MLflow model but not a crs_ml one (no model bundle)")
    raise ModelError(
        f"{folder} is neither a crs_ml model bundle ({MANIFEST}) nor an MLflow model folder "
        "(MLmodel); export one with `crs-ml export`"
    )
