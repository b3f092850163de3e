"""The MLflow pyfunc model: raw records in, explained scores out.

Input is the one-table MLflow model input (README, "Scoring new admissions") (``record`` = patient, observation or
event, in relative hours; :mod:`crs_ml.ingest.records`); output is the scores table of
:func:`crs_ml.scoring.score.score`, with ``as_of`` as ISO 8601 text (empty for relative-hours input,
which is what this input always is). The model folder carries the bundle
(:mod:`crs_ml.modeling.bundle`) as the artifact ``bundle``, so a logged, registered, exported,
served or Spark-applied model all run the same code as the Python function.

The model is logged from code (MLflow's "models from code"): the thin file
:mod:`crs_ml.tracking.pyfunc_model` is copied into the model folder and, on load, imports
:class:`CrsSeverityModel` from the installed crs_ml and hands it to ``set_model``. So the
folder holds that file, the bundle (JSON, xgboost UBJ or skops) and MLflow's YAML and text
files: no pickled Python object.

Params (optional): ``as_of_hours`` (score everyone at that many hours since infusion instead
of at their latest observation) and ``strict`` (default True: a row that loading would reject
fails the request; False: it is left out and counted in the patient's message).

Malformed input (a missing column, an unknown record type, unparseable hours, an unknown unit
or event ...) raises :class:`mlflow.exceptions.MlflowException` with error code
``INVALID_PARAMETER_VALUE`` and a message naming the row, the column and the reason, so the
scoring server answers 400 with that message. Columns the signature requires (record,
patient_id, hours, variable, value) and the numeric type of hours / end_hours are checked by
MLflow's schema enforcement first, with its own message naming the column.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

#: the models-from-code file logged as the model (see the module docstring)
MODEL_CODE = str(Path(__file__).with_name("pyfunc_model.py"))

INPUT_COLUMNS = ["record", "patient_id", "hours", "variable", "value", "unit", "end_hours"]


def input_signature(
    feature_names: list[str] | None = None, horizons: list[dict] | None = None
) -> ModelSignature:
    """Signature of the one-table input (value: number or text) and of the scores table;
    ``horizons`` (the bundle manifest's) adds the short horizons' columns."""
    from mlflow.types.schema import AnyType

    from crs_ml.modeling.completeness import key_input_columns

    inputs = Schema(
        [
            ColSpec("string", "record"),
            ColSpec("string", "patient_id"),
            ColSpec("double", "hours"),
            ColSpec("string", "variable"),
            ColSpec(AnyType(), "value"),
            ColSpec("string", "unit", required=False),
            ColSpec("double", "end_hours", required=False),
        ]
    )
    outputs = None
    if feature_names is not None:
        outputs = Schema(
            [
                ColSpec("string", "patient_id"),
                ColSpec("string", "as_of", required=False),
                ColSpec("double", "hours_since_infusion", required=False),
                ColSpec("double", "landmark_h", required=False),
                ColSpec("string", "status"),
                ColSpec("double", "risk", required=False),
                ColSpec("string", "risk_band", required=False),
                ColSpec("double", "completeness", required=False),
                ColSpec("string", "completeness_band", required=False),
                ColSpec("string", "missing_inputs", required=False),
                *[ColSpec("double", c, required=False) for c in key_input_columns()],
                ColSpec("string", "top_drivers"),
                ColSpec("double", "base_value", required=False),
                *[ColSpec("double", f"shap_{f}", required=False) for f in feature_names],
                ColSpec("string", "message"),
                *_horizon_specs(feature_names, horizons or []),
            ]
        )
    params = ParamSchema(
        [ParamSpec("as_of_hours", "double", None), ParamSpec("strict", "boolean", True)]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def _horizon_specs(feature_names: list[str], horizons: list[dict]) -> list[ColSpec]:
    from crs_ml.modeling.horizons import Horizon
    from crs_ml.scoring.score import horizon_column_names

    names = horizon_column_names([Horizon(**h) for h in horizons], feature_names)
    return [ColSpec("string" if n.startswith("top_drivers_") else "double", n,
                    required=n.startswith("top_drivers_")) for n in names]  # fmt: skip


def to_output(scores: pd.DataFrame) -> pd.DataFrame:
    """The scores table in a JSON- and Spark-friendly form: as_of as ISO 8601 UTC text
    (``2026-03-01T08:00:00Z``) or None, and every missing number as None, so that the served
    response is strict JSON (``null``, never the bare ``NaN`` that browsers and Java parsers
    reject; an infinite number, which strict JSON has no word for either, is None too).
    Number columns with a missing value therefore have dtype object."""
    as_of = scores["as_of"]
    # ISO 8601 to the second by numpy (UTC values; what strftime gives, without its per-row
    # Python formatting); NaT -> None
    when = as_of.to_numpy(dtype="datetime64[ns]")
    text = np.char.add(np.datetime_as_string(when, unit="s"), "Z").astype(object)
    text[np.isnat(when)] = None
    at, blocks = [scores.columns.get_loc("as_of")], [text[:, None]]
    floats = np.flatnonzero([t.kind == "f" for t in scores.dtypes])
    if floats.size:  # one pass over the numbers finds the columns with a gap
        values = scores.iloc[:, floats].to_numpy(dtype=np.float64, na_value=np.nan)
        gaps = ~np.isfinite(values)
        gapped = np.flatnonzero(gaps.any(axis=0))
        if gapped.size:  # those columns as one block of objects (None for the gaps)
            block = values[:, gapped].astype(object)
            block[gaps[:, gapped]] = None
            blocks.append(block)
            at += list(floats[gapped])
    # the replaced columns set in place, by position, on a shallow copy (the others are
    # not copied, and the column order stays)
    out = scores.copy(deep=False)
    out.isetitem(at, pd.DataFrame(np.concatenate(blocks, axis=1), index=scores.index, dtype=object))
    return out


class CrsSeverityModel(PythonModel):
    """Scores the records of one or many patients with the bundled model."""

    def load_context(self, context):
        from crs_ml.modeling.bundle import load_bundle

        self.bundle = load_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from crs_ml.errors import InputError
        from crs_ml.ingest.records import records_to_cohort
        from crs_ml.scoring.score import score

        params = params or {}
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            cohort = records_to_cohort(frame, strict=bool(params.get("strict", True)))
            scores = score(self.bundle, cohort, as_of_hours=params.get("as_of_hours"))
        except InputError as exc:
            raise MlflowException(
                f"invalid input: {exc}", error_code=INVALID_PARAMETER_VALUE
            ) from None
        return to_output(scores)


def pip_requirements() -> list[str]:
    """Pinned requirements of the served model (those of this environment)."""
    pins = []
    for package in (
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
        "xgboost",
        "mlflow",
        "pyarrow",
        "pydantic",
        "pyyaml",
        "skops",
    ):
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:  # pragma: no cover
            pass
    return pins


def log_pyfunc_model(
    bundle_dir: str | Path, input_example: pd.DataFrame | None = None, name: str = "model"
):
    """Log the bundle as a pyfunc model from code in the active run; returns MLflow's ModelInfo.

    The input example defaults to :func:`crs_ml.ingest.records.synthetic_example` (two invented
    patients): never a training row.
    """
    import json

    import mlflow

    from crs_ml.ingest.records import synthetic_example

    manifest = json.loads((Path(bundle_dir) / "bundle.json").read_text())
    if input_example is None:
        input_example = synthetic_example()
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=MODEL_CODE,
        artifacts={"bundle": str(bundle_dir)},
        signature=input_signature(list(manifest["feature_names"]), manifest.get("horizons")),
        input_example=input_example,
        pip_requirements=pip_requirements(),
    )
