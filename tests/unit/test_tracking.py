import numpy as np

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
