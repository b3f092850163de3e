import numpy as np
import pandas as pd

from crs_ml import fingerprints
from crs_ml.tracking import store as tracking


def test_salted_keys_stable_and_salt_dependent():
    ids = np.array(["007", "8", "007"], dtype=object)
    a = fingerprints.salted_keys(ids, "s1")
    assert a[0] == a[2] and a[0] != a[1]
    assert np.array_equal(a, fingerprints.salted_keys(ids, "s1"))
    assert not np.array_equal(a, fingerprints.salted_keys(ids, "s2"))
    assert all("007" not in k for k in a)


def test_salt_from_file_created_once(tmp_path, monkeypatch):
    monkeypatch.delenv(fingerprints.SALT_ENV, raising=False)
    monkeypatch.setenv(fingerprints.SALT_FILE_ENV, str(tmp_path / "salt"))
    first = fingerprints.salt()
    assert len(first) == 32 and fingerprints.salt() == first
    assert (tmp_path / "salt").read_text().strip() == first


def test_sqlite_artifacts_go_beside_the_database(tmp_path):
    uri = f"sqlite:///{tmp_path / 'x' / 'mlflow.db'}"
    assert tracking.sqlite_path(uri) == tmp_path / "x" / "mlflow.db"
    assert tracking.artifact_root(uri) == (tmp_path / "x" / "mlruns").as_uri()
    assert tracking.artifact_root("http://127.0.0.1:5000") is None


def test_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert tracking.resolve_tracking_uri("sqlite:///cfg.db") == "sqlite:///env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.resolve_tracking_uri("sqlite:///cfg.db") == "sqlite:///cfg.db"
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_feature_fingerprint_is_aggregates_only():
    import pandas as pd

    X = pd.DataFrame({"il6_max": [1.0, np.nan, 3.0, 5.0], "age_years": [50, 60, 70, 80]})
    fp = fingerprints.feature_fingerprint(X)
    assert fp["il6_max"]["share_measured"] == 0.75
    assert fp["il6_max"]["median"] == 3.0
    assert set(fp["age_years"]) == {"share_measured", "mean", "sd", "q25", "median", "q75"}


def test_dataset_digest_follows_content_not_counts():
    # two in-memory cohorts (no source files) with the same ids and the same row counts:
    # one laboratory value changed must change the digest; the same data must not
    import json

    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.ingest.load import load_frames
    from crs_ml.simulate import simulate_cohort

    tables = simulate_cohort(60, seed=3)

    def digest(frames):
        cohort = load_frames(frames)
        assert cohort.source is None
        _, y, meta = build_landmark_dataset(cohort, [12, 24])
        fp = fingerprints.data_fingerprint(cohort, y, meta)
        return fingerprints.dataset_digest(fp), fp

    first, fp = digest(tables)
    assert digest(simulate_cohort(60, seed=3))[0] == first
    changed = {**tables, "observations": tables["observations"].copy()}
    value = changed["observations"].loc[5, "value"]
    changed["observations"].loc[5, "value"] = str(float(value) + 1.0)  # values are text
    second, fp2 = digest(changed)
    assert second != first
    counts = ("n_landmark_rows", "per_landmark", "n_observations", "file_sha256")
    assert all(fp[k] == fp2[k] for k in counts)  # the old digest could not tell them apart
    text = json.dumps(fp)
    assert not any(pid in text for pid in tables["patients"]["patient_id"])


def test_pyfunc_output_replaces_exactly_the_gaps():
    """to_output keeps every column, its order, index and values; as_of becomes ISO text
    (None when missing) and exactly the number columns with a gap become objects with None
    at the gaps; the others keep their dtype."""
    from crs_ml.tracking.pyfunc import to_output

    t = pd.Timestamp("2026-03-01T08:00:00Z")
    scores = pd.DataFrame(
        {
            "patient_id": pd.Series(["a", "b", "c"], dtype=object),
            "as_of": pd.Series([t, pd.NaT, t], dtype="datetime64[ns, UTC]"),
            "risk": [0.1, np.nan, 0.3],
            "landmark_h": [24.0, 48.0, 72.0],
            "n": np.array([1, 2, 3], dtype=np.int64),
            "top_drivers": pd.Series(["x", None, "z"], dtype=object),
            "shap_a": [np.nan, np.nan, np.nan],
            "shap_b": [0.5, -0.5, 0.0],
        },
        index=pd.RangeIndex(3),
    )
    out = to_output(scores)
    assert list(out.columns) == list(scores.columns)
    assert out.index.equals(scores.index)
    assert out["as_of"].tolist() == ["2026-03-01T08:00:00Z", None, "2026-03-01T08:00:00Z"]
    for c in ("risk", "shap_a"):
        assert out[c].dtype == object
        expected = [None if np.isnan(v) else v for v in scores[c]]
        assert out[c].tolist() == expected
        assert all(type(v) in (float, type(None)) for v in out[c])
    for c in ("landmark_h", "n", "shap_b", "patient_id", "top_drivers"):
        pd.testing.assert_series_equal(out[c], scores[c])
