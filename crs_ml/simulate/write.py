"""Rendering the simulated cohort as input files: the clean and the messy style.

Clean: relative ``hours``, canonical variable names and units, values at display
precision; IL-6 outside the assay range as the lab reports it (``<1.5``, ``>5000``).

Messy: the SAME rows and values (same seed), written the way real site extracts look
(per-site conventions in SiteParams, rates in DirtParams):

* sites with ``absolute_times``: ``time`` (ISO 8601, UTC) instead of ``hours``, with
  patients.infusion_time (whole minutes; times on a 36 s grid, so hours are recovered exactly);
* site units: CRP mg/dL and temperature degF (B), platelets /uL and creatinine umol/L (C);
* names: aliases (``IL-6``, ``Temp``, ...) or LOINC codes; products as brand names at B;
* thousands separators (``1,240``) for ferritin and per-uL platelets at some sites;
* a few rows without unit (canonical unit only, so the assumed unit is right);
* extra rows, none replacing a real result: text results (``Hemolyzed``, ``QNS``, ``---``) of
  a sample redrawn 0.5-2 h later; exact duplicate rows; conflicting duplicates (same
  patient, time and variable, another lab value, e.g. a re-run) written BEFORE the true row,
  so the loader's default ``last_row`` rule keeps the true value (labs only: never the
  temperature or sbp that drive the labels).

Nothing in the messy style is a structural error of the data contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crs_ml.simulate.kinetics import DECIMALS as CORE_DECIMALS
from crs_ml.simulate.markers import MARKER_DECIMALS
from crs_ml.simulate.params import SimulationParams
from crs_ml.variables import VARIABLES

TABLES = ("patients", "observations", "events", "outcomes", "truth", "truth_horizons")
ALIAS = {
    "temperature": "Temp", "il6": "IL-6", "crp": "CRP", "ferritin": "Ferritin", "ldh": "LDH",
    "platelets": "PLT", "creatinine": "Creat", "sbp": "SBP", "dbp": "DBP", "heart_rate": "HR",
    "resp_rate": "RR", "spo2": "SpO2",
    "d_dimer": "D-dimer", "fibrinogen": "Fib", "inr": "PT-INR", "alt": "SGPT", "ast": "SGOT",
    "bilirubin": "Tbili", "wbc": "WBC", "anc": "ANC", "ifng": "IFN-g", "il10": "IL-10",
    "mcp1": "MCP-1", "tnf_alpha": "TNFa", "il1b": "IL-1b",
}  # fmt: skip
BRAND = {
    "axi-cel": "Yescarta", "tisa-cel": "Kymriah", "liso-cel": "Breyanzi",
    "brexu-cel": "Tecartus", "ide-cel": "Abecma", "cilta-cel": "Carvykti",
}  # fmt: skip
#: messy unit -> (factor, offset, decimals) from the canonical value; the decimals keep the
#: canonical value exact (the catalogue's conversion back gives it to rounding error)
UNIT_CONVERSION = {
    ("crp", "mg/dL"): (0.1, 0.0, 2),
    ("temperature", "degF"): (1.8, 32.0, 2),
    ("platelets", "/uL"): (1000.0, 0.0, 0),
    ("creatinine", "umol/L"): (88.4, 0.0, 3),
    ("d_dimer", "ng/mL DDU"): (500.0, 0.0, 0),  # ug/mL FEU x 1000 / 2 (FEU = 2 x DDU)
    ("d_dimer", "mg/L FEU"): (1.0, 0.0, 2),
    ("fibrinogen", "g/L"): (0.01, 0.0, 2),
    ("bilirubin", "umol/L"): (17.1, 0.0, 2),
    ("wbc", "/uL"): (1000.0, 0.0, 0),
    ("anc", "/uL"): (1000.0, 0.0, 0),
    ("alt", "IU/L"): (1.0, 0.0, 0),
    ("ast", "IU/L"): (1.0, 0.0, 0),
    ("il10", "ng/L"): (1.0, 0.0, 1),
}
TEXT_RESULTS = np.array(["Hemolyzed", "QNS", "---"], dtype=object)
#: vital signs: never text results or conflicting duplicates (they drive the labels)
VITAL_VARIABLES = ("temperature", "sbp", "dbp", "heart_rate", "resp_rate", "spo2")
_EPOCH_MINUTES = int(pd.Timestamp("2019-01-01").value // 60_000_000_000)


def _lookup(keys: np.ndarray, table: dict, dtype=object) -> np.ndarray:
    """``table[key]`` for every key (vectorised over the distinct keys)."""
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object))
    return np.array([table[u] for u in uniques], dtype=dtype)[codes]


def _obj(values) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object), dtype=object)


def _fmt(
    values: np.ndarray, decimals: np.ndarray, thousands: np.ndarray | None = None
) -> np.ndarray:
    """Numbers as text with per-row decimals (and optional thousands separators)."""
    out = np.empty(len(values), dtype=object)
    for d in np.unique(decimals):
        m = np.flatnonzero(decimals == d)
        if d == 0:
            out[m] = np.round(values[m]).astype(np.int64).astype(str).astype(object)
        else:
            f = f"{{:.{int(d)}f}}".format
            out[m] = [f(x) for x in values[m].tolist()]
    if thousands is not None and thousands.any():
        m = thousands & (np.abs(values) >= 1000)
        out[m] = [f"{v:,.0f}" for v in values[m].tolist()]
    return out


def _censored_text(values, censored, decimals, thousands=None) -> np.ndarray:
    out = _fmt(values, decimals, thousands)
    out[censored < 0] = [f"<{v:g}" for v in values[censored < 0].tolist()]
    out[censored > 0] = [f">{v:g}" for v in values[censored > 0].tolist()]
    return out


#: display precision (decimals) per variable: the core 12 and the markers
DECIMALS = {**CORE_DECIMALS, **MARKER_DECIMALS}
CANONICAL_UNIT = {v: VARIABLES[v].unit for v in DECIMALS}
#: LOINC-naming sites write the first LOINC code, or the canonical name when there is none
LOINC_NAME = {v: (VARIABLES[v].loinc or (v,))[0] for v in DECIMALS}


def render_clean(
    patients: pd.DataFrame,
    obs: pd.DataFrame,
    events: pd.DataFrame,
    outcomes: pd.DataFrame,
    truth: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    """Clean tables; ``obs``/``events`` carry ``patient_id`` and numeric values."""
    var = obs["variable"].to_numpy(dtype=object)
    dec = _lookup(var, DECIMALS, np.int64)
    observations = pd.DataFrame(
        {
            "patient_id": _obj(obs["patient_id"]),
            "hours": obs["hours"].to_numpy(dtype="float64"),
            "variable": _obj(var),
            "value": _obj(_censored_text(obs["value"].to_numpy(), obs["censored"].to_numpy(), dec)),
            "unit": _obj(_lookup(var, CANONICAL_UNIT)),
        }
    )
    ev = events[["patient_id", "hours", "end_hours", "event", "detail"]].reset_index(drop=True)
    return {
        "patients": patients.reset_index(drop=True),
        "observations": observations,
        "events": ev,
        "outcomes": outcomes.reset_index(drop=True),
        "truth": truth.reset_index(drop=True),
    }


def _iso(minutes0: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """ISO 8601 UTC text of infusion (whole minutes since epoch) + hours (36 s grid)."""
    ok = np.isfinite(hours)
    sec = minutes0[ok].astype(np.int64) * 60 + np.round(hours[ok] * 3600.0).astype(np.int64)
    out = np.full(len(hours), "", dtype=object)
    out[ok] = np.datetime_as_string(sec.astype("datetime64[s]"), unit="s").astype(object) + "Z"
    return out


def render_messy(
    clean: dict[str, pd.DataFrame],
    obs: pd.DataFrame,
    site_of: np.ndarray,
    params: SimulationParams,
    rng: np.random.Generator,
    marker_obs: pd.DataFrame | None = None,
    marker_rng: np.random.Generator | None = None,
) -> dict[str, pd.DataFrame]:
    """Messy tables from the clean ones (``obs``: numeric rows aligned with clean
    observations; ``site_of``: site index per patient row of clean patients). The marker rows
    (``marker_obs``, numeric, not in ``obs``) get their dirt from ``marker_rng``, so the core
    rows are written exactly as without them; in the file a patient's marker rows follow
    the patient's core rows."""
    sites = params.sites
    pts = clean["patients"]
    n = len(pts)
    infusion_min = _EPOCH_MINUTES + rng.integers(0, 5 * 365 * 1440, n)
    ids = pd.Index(pts["patient_id"].to_numpy(dtype=object))
    absolute = np.array([s.absolute_times for s in sites])

    # ---- observations ----
    frame = _messy_observations(obs, ids, site_of, params, rng, first_order=0)
    if marker_obs is not None and len(marker_obs):
        if marker_rng is None:
            raise ValueError("marker_obs needs its own marker_rng")
        extra = _messy_observations(
            marker_obs, ids, site_of, params, marker_rng, first_order=4 * len(obs) + 8
        )
        frame = pd.concat([frame, extra], ignore_index=True)
        frame = frame.sort_values(["_p", "_order"], kind="stable")
    frame = _times(frame, absolute[site_of], infusion_min)
    observations = frame[["patient_id", "time", "hours", "variable", "value", "unit"]]

    # ---- events ----
    ev = clean["events"]
    ef = ev.assign(_p=ids.get_indexer(ev["patient_id"].to_numpy(dtype=object)))
    ef = _times(ef, absolute[site_of], infusion_min, end=True)
    events = ef[["patient_id", "time", "hours", "end_time", "end_hours", "event", "detail"]]

    # ---- patients ----
    patients = pts.copy()
    ts = (infusion_min.astype(np.int64) * 60).astype("datetime64[s]")
    patients.insert(2, "infusion_time", np.datetime_as_string(ts, unit="s").astype(object) + "Z")
    brand = np.array([s.naming == "alias" and s.absolute_times for s in sites])[site_of]
    patients["product"] = np.where(
        brand, patients["product"].map(BRAND).fillna(patients["product"]), patients["product"]
    )
    return {
        "patients": patients.reset_index(drop=True),
        "observations": observations.reset_index(drop=True),
        "events": events.reset_index(drop=True),
        "outcomes": clean["outcomes"].copy(),
        "truth": clean["truth"].copy(),
    }


def _messy_observations(
    obs: pd.DataFrame,
    ids: pd.Index,
    site_of: np.ndarray,
    params: SimulationParams,
    rng: np.random.Generator,
    first_order: int,
) -> pd.DataFrame:
    """Observation rows in the sites' conventions, with the dirt rows (``_p``: patient
    position; ``_order``: file order, from ``first_order``)."""
    dirt = params.dirt
    sites = params.sites
    o = obs.reset_index(drop=True)
    p_row = ids.get_indexer(o["patient_id"].to_numpy(dtype=object))
    s_row = site_of[p_row]
    var = o["variable"].to_numpy(dtype=object)
    value = o["value"].to_numpy(dtype="float64")
    cens = o["censored"].to_numpy()
    dec = _lookup(var, DECIMALS, np.int64)
    unit = _lookup(var, CANONICAL_UNIT)
    canonical_unit = np.ones(len(o), dtype=bool)
    for si, site in enumerate(sites):
        for v, u in site.units:
            m = (s_row == si) & (var == v)
            f, off, d = UNIT_CONVERSION[(v, u)]
            value = np.where(m, value * f + off, value)
            dec = np.where(m, d, dec)
            unit = np.where(m, u, unit)
            canonical_unit &= ~m
    thousands_site = np.array([s.name in dirt.thousands_sites for s in sites])[s_row]
    thousands = thousands_site & ((var == "ferritin") | (unit == "/uL"))
    text = _censored_text(value, cens, dec, thousands)
    naming = np.array([s.naming for s in sites], dtype=object)[s_row]
    name = np.where(naming == "alias", _lookup(var, ALIAS), var)
    name = np.where(naming == "loinc", _lookup(var, LOINC_NAME), name)
    unit = np.where(canonical_unit & (rng.random(len(o)) < dirt.missing_unit_rate), "", unit)
    frame = pd.DataFrame(
        {"patient_id": _obj(o["patient_id"]), "hours": o["hours"].to_numpy(dtype="float64"),
         "variable": _obj(name), "value": _obj(text), "unit": _obj(unit), "_p": p_row,
         "_order": first_order + np.arange(len(o)) * 4 + 2}
    )  # fmt: skip
    is_lab = ~np.isin(var, VITAL_VARIABLES)
    extra = []
    m = is_lab & (rng.random(len(o)) < dirt.text_result_rate)
    if m.any():
        t = frame[m].copy()
        t["hours"] = np.round(t["hours"] - rng.uniform(0.5, 2.0, int(m.sum())), 2)
        t["value"] = _obj(TEXT_RESULTS[rng.integers(0, 3, int(m.sum()))]).to_numpy()
        t["_order"] -= 2
        # a text row must not land on the time of another row of the same variable
        key = ["patient_id", "hours", "variable"]
        clash = t[key].merge(frame[key], on=key, how="left", indicator=True)["_merge"]
        extra.append(t[(clash == "left_only").to_numpy()])
    m = rng.random(len(o)) < dirt.exact_duplicate_rate
    if m.any():
        t = frame[m].copy()
        t["_order"] += 1
        extra.append(t)
    m = is_lab & (cens == 0) & (rng.random(len(o)) < dirt.conflicting_duplicate_rate)
    if m.any():
        k = int(m.sum())
        factor = np.where(
            rng.random(k) < 0.5, rng.uniform(0.8, 0.95, k), rng.uniform(1.05, 1.25, k)
        )
        t = frame[m].copy()
        t["value"] = _fmt(value[m] * factor + (dec[m] == 0) * np.sign(factor - 1), dec[m])
        t["_order"] -= 1
        extra.append(t)
    return pd.concat([frame, *extra], ignore_index=True).sort_values("_order", kind="stable")


def _times(frame, absolute_patient, infusion_min, end=False):
    """Replace ``hours`` (and ``end_hours``) by ISO ``time`` at absolute-time sites
    (``_p``: patient position of each row)."""
    frame = frame.copy()
    p = frame["_p"].to_numpy()
    abs_row = absolute_patient[p]
    mins = infusion_min[p]
    cols = [("hours", "time")] + ([("end_hours", "end_time")] if end else [])
    for hcol, tcol in cols:
        h = frame[hcol].to_numpy(dtype="float64")
        frame[tcol] = _obj(np.where(abs_row, _iso(mins, h), "")).to_numpy()
        frame[hcol] = np.where(abs_row, np.nan, h)
    return frame


def write_cohort(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """Write each table as ``<name>.csv`` in ``out_dir`` (created); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in TABLES:
        if name in tables and tables[name] is not None:
            path = out / f"{name}.csv"
            tables[name].to_csv(path, index=False)
            paths[name] = path
    return paths
