"""Site twins: one cohort written the way three sites write it loads to the same observations.

Site A writes canonical names and units with relative hours. Site B writes CRP in mg/dL,
temperature in degF, D-dimer in ng/mL DDU, fibrinogen in g/L, bilirubin in umol/L, IL-10 in
ng/L, clinical aliases, absolute times with and without a UTC offset, and brand names for
products. Site C writes LOINC codes (the canonical name where a variable has none), platelets,
WBC and ANC per uL, creatinine in umol/L, ALT and AST in ukat/L, fibrinogen in mg/L, its own
column names (mapped in the config), and its rows in another order. The simulator's messy style
writes the same unit variants (tests/data/test_simulate_markers.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crs_ml.config import DataConfig
from crs_ml.ingest.load import load_cohort
from crs_ml.variables import VARIABLES as CATALOGUE

VARIABLES = {  # canonical name: (low, high) of simulated values in the canonical unit
    "temperature": (36.0, 40.5), "il6": (2.0, 4000.0), "crp": (1.0, 250.0),
    "ferritin": (50.0, 9000.0), "ldh": (150.0, 900.0), "platelets": (20.0, 350.0),
    "creatinine": (0.5, 3.0), "sbp": (75.0, 150.0), "dbp": (40.0, 95.0),
    "heart_rate": (55.0, 150.0), "resp_rate": (10.0, 35.0), "spo2": (85.0, 100.0),
    "d_dimer": (0.2, 20.0), "fibrinogen": (60.0, 700.0), "inr": (0.9, 2.5),
    "alt": (8.0, 400.0), "ast": (10.0, 500.0), "bilirubin": (0.2, 6.0), "wbc": (0.1, 15.0),
    "anc": (0.01, 10.0), "ifng": (1.0, 3000.0), "il10": (1.0, 800.0), "mcp1": (100.0, 8000.0),
    "tnf_alpha": (2.0, 80.0), "il1b": (0.5, 20.0),
}  # fmt: skip
LOINC = {
    "temperature": "8310-5", "il6": "26881-3", "crp": "1988-5", "ferritin": "2276-4",
    "ldh": "2532-0", "platelets": "777-3", "creatinine": "2160-0", "sbp": "8480-6",
    "dbp": "8462-4", "heart_rate": "8867-4", "resp_rate": "9279-1", "spo2": "59408-5",
    "d_dimer": "48065-7", "fibrinogen": "3255-7", "inr": "6301-6", "alt": "1742-6",
    "ast": "1920-8", "bilirubin": "1975-2", "wbc": "6690-2", "anc": "751-8",
}  # fmt: skip
ALIASES_B = {"temperature": "Body temperature", "il6": "IL-6", "crp": "C-reactive protein",
             "platelets": "PLT", "heart_rate": "Pulse", "spo2": "O2 sat",
             "d_dimer": "D-dimer", "fibrinogen": "Fib", "inr": "PT-INR", "alt": "SGPT",
             "ast": "SGOT", "bilirubin": "Total bilirubin", "wbc": "Leukocytes",
             "anc": "Absolute neutrophil count", "ifng": "IFN-gamma", "il10": "IL-10",
             "mcp1": "CCL2", "tnf_alpha": "TNF-alpha", "il1b": "IL-1beta"}  # fmt: skip
PRODUCTS = {"axi-cel": "Yescarta", "tisa-cel": "Kymriah", "cilta-cel": "Carvykti"}
CANONICAL_UNIT = {"temperature": "degC", "il6": "pg/mL", "crp": "mg/L", "ferritin": "ng/mL",
                  "ldh": "U/L", "platelets": "10^9/L", "creatinine": "mg/dL", "sbp": "mmHg",
                  "dbp": "mmHg", "heart_rate": "/min", "resp_rate": "/min", "spo2": "%",
                  "d_dimer": "ug/mL FEU", "fibrinogen": "mg/dL", "inr": "ratio", "alt": "U/L",
                  "ast": "U/L", "bilirubin": "mg/dL", "wbc": "10^9/L", "anc": "10^9/L",
                  "ifng": "pg/mL", "il10": "pg/mL", "mcp1": "pg/mL", "tnf_alpha": "pg/mL",
                  "il1b": "pg/mL"}  # fmt: skip
#: site -> {variable: (unit written, factor from the canonical value)}
SITE_UNITS = {
    "b": {"crp": ("mg/dL", 0.1), "d_dimer": ("ng/mL DDU", 500.0), "fibrinogen": ("g/L", 0.01),
          "bilirubin": ("umol/L", 17.1), "il10": ("ng/L", 1.0)},
    "c": {"platelets": ("/uL", 1000.0), "creatinine": ("µmol/L", 88.4), "wbc": ("/uL", 1000.0),
          "anc": ("cells/uL", 1000.0), "alt": ("µkat/L", 1 / 60), "ast": ("ukat/L", 1 / 60),
          "fibrinogen": ("mg/L", 10.0)},
}  # fmt: skip


def site_units(obs: pd.DataFrame, site: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, units) of ``obs`` as ``site`` writes them (SITE_UNITS; canonical otherwise)."""
    value = obs["value"].to_numpy().copy()
    unit = obs["variable"].map(CANONICAL_UNIT).to_numpy().copy()
    for var, (u, factor) in SITE_UNITS[site].items():
        m = (obs["variable"] == var).to_numpy()
        value[m] = value[m] * factor
        unit[m] = u
    return value, unit


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.astype(str).to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)


@pytest.fixture(scope="module")
def canonical() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(20240301)
    n = 20
    ids = [f"{i:03d}" for i in range(1, n + 1)]
    infusion = pd.Timestamp("2024-03-01T08:00:00", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 90 * 24, n), unit="h"
    )
    patients = pd.DataFrame(
        {
            "patient_id": ids,
            "infusion_time": infusion,
            "product": rng.choice(list(PRODUCTS), n),
            "age_years": rng.integers(25, 80, n).astype(str),
        }
    )
    rows = []
    for pid in ids:
        for var, (lo, hi) in VARIABLES.items():
            hours = np.unique(rng.integers(-8 * 4, 96 * 4, 4)) / 4.0  # quarter hours
            for h in hours:
                rows.append((pid, h, var, float(np.round(rng.uniform(lo, hi), 3))))
    obs = pd.DataFrame(rows, columns=["patient_id", "hours", "variable", "value"])
    return patients, obs


def site_a(folder: Path, patients, obs) -> None:
    write_csv(folder / "patients.csv", patients.drop(columns="infusion_time"))
    out = obs.assign(unit=obs["variable"].map(CANONICAL_UNIT), value=obs["value"].map(repr))
    write_csv(folder / "observations.csv", out)


def site_b(folder: Path, patients, obs) -> None:
    # absolute times: odd rows naive (= UTC), even rows in UTC+02:00
    inf = patients.set_index("patient_id")["infusion_time"]
    start = inf.loc[obs["patient_id"]].reset_index(drop=True)
    when = start + pd.to_timedelta(obs["hours"], unit="h").reset_index(drop=True)
    naive = when.dt.strftime("%Y-%m-%dT%H:%M:%S")
    shifted = (when + pd.Timedelta(hours=2)).dt.strftime("%Y-%m-%dT%H:%M:%S+02:00")
    time = np.where(np.arange(len(obs)) % 2 == 0, shifted, naive)
    value, unit = site_units(obs, "b")
    temp = (obs["variable"] == "temperature").to_numpy()
    value[temp] = value[temp] * 9 / 5 + 32
    unit[temp] = "°F"
    out = pd.DataFrame(
        {
            "patient_id": obs["patient_id"],
            "time": time,
            "variable": obs["variable"].map(lambda v: ALIASES_B.get(v, v)),
            "value": [repr(float(v)) for v in value],
            "unit": unit,
        }
    )
    pats = patients.assign(
        infusion_time=patients["infusion_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        product=patients["product"].map(PRODUCTS),
    )
    write_csv(folder / "patients.csv", pats)
    write_csv(folder / "observations.csv", out)


C_MAPPING = {
    "patients": {"MRN": "patient_id"},
    "observations": {"MRN": "patient_id", "t_rel": "hours", "loinc": "variable",
                     "result": "value", "units": "unit"},
}  # fmt: skip


def site_c(folder: Path, patients, obs) -> None:
    value, unit = site_units(obs, "c")
    out = pd.DataFrame(
        {
            "MRN": obs["patient_id"],
            "t_rel": obs["hours"].map(repr),
            "loinc": obs["variable"].map(lambda v: LOINC.get(v, v)),
            "result": [repr(float(v)) for v in value],
            "units": unit,
        }
    ).sample(frac=1.0, random_state=3)
    pats = patients.drop(columns="infusion_time").rename(columns={"patient_id": "MRN"})
    write_csv(folder / "patients.csv", pats)
    write_csv(folder / "observations.csv", out)


@pytest.fixture(scope="module")
def twins(canonical, tmp_path_factory):
    patients, obs = canonical
    root = tmp_path_factory.mktemp("twins")
    site_a(root / "a", patients, obs)
    site_b(root / "b", patients, obs)
    site_c(root / "c", patients, obs)
    return (
        load_cohort(root / "a"),
        load_cohort(root / "b"),
        load_cohort(root / "c", DataConfig(column_mapping=C_MAPPING)),
    )


def assert_same_observations(left: pd.DataFrame, right: pd.DataFrame, rows: bool) -> None:
    cols = ["patient_id", "hours", "variable", "censored", "out_of_range"]
    cols += ["source_row"] if rows else []
    pd.testing.assert_frame_equal(left[cols], right[cols], check_exact=True)
    np.testing.assert_allclose(right["value"], left["value"], rtol=1e-9, atol=0)


def test_the_three_sites_load_cleanly(twins, canonical):
    _, obs = canonical
    for cohort in twins:
        assert cohort.report.usable
        assert cohort.report.n_errors == 0 and cohort.report.n_warnings == 0
        assert len(cohort.rejected) == 0
        assert len(cohort.observations) == len(obs)
        # every catalogue variable is in the twins, so every unit variant above is exercised
        assert set(cohort.observations["variable"]) == set(CATALOGUE) == set(VARIABLES)


def test_site_b_units_aliases_and_absolute_times_match_the_canonical_twin(twins):
    a, b, _ = twins
    assert_same_observations(a.observations, b.observations, rows=True)
    assert b.patients["product"].tolist() == a.patients["product"].tolist()


def test_site_c_loinc_codes_counts_and_umol_match_the_canonical_twin(twins):
    a, _, c = twins
    assert_same_observations(a.observations, c.observations, rows=False)
    pd.testing.assert_frame_equal(a.patients, c.patients)


def test_twins_are_not_trivially_equal(canonical, tmp_path):
    """The comparison can fail: a site that mislabels mg/dL as mg/L differs by a factor 10."""
    patients, obs = canonical
    site_a(tmp_path / "a", patients, obs)
    wrong = obs.assign(
        value=np.where(obs["variable"] == "crp", obs["value"] / 10, obs["value"]),
    )
    site_a(tmp_path / "w", patients, wrong)
    a, w = load_cohort(tmp_path / "a"), load_cohort(tmp_path / "w")
    with pytest.raises(AssertionError):
        assert_same_observations(a.observations, w.observations, rows=True)
