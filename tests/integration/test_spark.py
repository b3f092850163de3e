"""Scoring with Spark: groupBy(patient_id).applyInPandas with the same MLflow pyfunc model.

Needs pyspark (requirements-spark.lock) and Java 17: run with `make test-spark`.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest
from conftest_scoring import logged, new_patients, setup

from crs_ml.ingest.records import cohort_to_records, records_to_cohort
from crs_ml.scoring.score import score

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    # the Python workers must run this interpreter (the one with crs_ml and the model's deps)
    os.environ.update({k: sys.executable for k in saved})
    session = (
        SparkSession.builder.master("local[2]")
        .appName("crs-ml-scoring-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def exported(session_dir, tmp_path_factory):
    import mlflow

    logged(session_dir)
    out = tmp_path_factory.mktemp("spark_model")
    return mlflow.artifacts.download_artifacts("models:/crs-severity@champion", dst_path=str(out))


def test_spark_apply_in_pandas_matches_the_python_function(spark, exported, session_dir):
    new = new_patients(session_dir)
    records = cohort_to_records(new.cohort, list(new.cohort.patients["patient_id"][:16]))
    expected = score(setup(session_dir).bundle, records_to_cohort(records))
    columns = list(expected.columns)
    model_path = str(exported)
    import mlflow

    # the schema a Spark user takes: the model's own output signature (short horizons included)
    schema = mlflow.pyfunc.load_model(model_path).metadata.get_output_schema().as_spark_schema()
    assert schema.fieldNames() == columns

    def score_group(pdf: pd.DataFrame) -> pd.DataFrame:
        import mlflow

        global _CRS_MODEL  # noqa: PLW0603 - one load per Python worker
        try:
            model = _CRS_MODEL
        except NameError:
            model = _CRS_MODEL = mlflow.pyfunc.load_model(model_path)
        return model.predict(pdf)[columns]

    sdf = spark.createDataFrame(records.astype({"value": str, "unit": str}).fillna(
        {"value": "", "unit": ""}))  # fmt: skip
    got = (
        sdf.groupBy("patient_id")
        .applyInPandas(score_group, schema=schema)
        .toPandas()
        .set_index("patient_id")
        .loc[list(expected["patient_id"])]
        .reset_index()
    )
    assert len(got) == len(expected)
    assert list(got["status"]) == list(expected["status"])
    np.testing.assert_allclose(got["risk"], expected["risk"], rtol=0, atol=1e-9)
    shap = [c for c in columns if c.startswith("shap_")]
    np.testing.assert_allclose(got[shap].to_numpy(float), expected[shap].to_numpy(float),
                               rtol=0, atol=1e-9)  # fmt: skip
    assert list(got["top_drivers"]) == list(expected["top_drivers"])
    windows = [c for c in columns if c.startswith("risk_") and c.endswith("h")]
    assert windows, "the champion has short-horizon windows"
    np.testing.assert_allclose(got[windows].to_numpy(float), expected[windows].to_numpy(float),
                               rtol=0, atol=1e-9)  # fmt: skip
    for c in columns:
        if c.startswith("top_drivers_"):
            assert list(got[c]) == list(expected[c]), c
