"""The OMOP CDM v5.4 twin of a simulated cohort: the same patients, rows and values, written as
CDM tables (a CSV or Parquet folder, or a DuckDB file), so the OMOP adapter can be tested
against the contract twin.

Written from the clean contract tables: ``person`` (one per infusion episode: the simulator
draws sex, age and disease independently for a person's re-infusions, which one CDM person
cannot hold, so each episode is its own CDM person and ``person_source_value`` carries the
simulator's person id that groups them), ``care_site`` (the sites), ``visit_occurrence`` (the
infusion admission, ``visit_source_value`` = patient id; ICU admissions), ``condition_occurrence``
(ICD-10-CM source codes), ``procedure_occurrence`` (CAR-T administration, CPT4 38228;
positive pressure), ``drug_exposure`` (the product's HCPCS Q code; treatments by ingredient,
the contract's detail in ``sig``, the route in ``route_source_value``), ``device_exposure``
(oxygen), ``measurement`` (labs and vitals by LOINC; censored results as
``operator_concept_id`` + ``value_as_number``), ``observation`` (CRS grade at the first grade
>= 3 time, or at infusion + 1 h below grade 3; loss to follow-up), ``death``, a ``concept``
table for every code used and a ``concept_ancestor`` table of the drugs (each its own
ancestor, as in the CDM). Codes without a shipped OMOP id get ids above 2,000,000,000 (the
CDM's range for local concepts).

Datetimes are naive UTC (the CDM has no time zones); infusion times are whole minutes and
results on the simulator's 36 s grid, so hours since infusion are recovered exactly.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from crs_ml.ingest.codes import code_map

__all__ = ["OMOP_FORMATS", "omop_tables", "write_omop"]

OMOP_FORMATS = ("csv", "parquet", "duckdb")
_EPOCH = pd.Timestamp("2019-01-01")
LOCAL_CONCEPT_BASE = 2_000_000_000
_DISEASE_CODE = {"LBCL": "C83.30", "B-ALL": "C91.00", "MCL": "C83.10", "MM": "C90.00",
                 "FL": "C82.90", "other": "C85.90"}  # fmt: skip
_PRODUCT_HCPCS = {"axi-cel": "Q2041", "tisa-cel": "Q2042", "brexu-cel": "Q2053",
                  "liso-cel": "Q2054", "ide-cel": "Q2055", "cilta-cel": "Q2056"}  # fmt: skip
_OPERATOR = {"<": 4171756, ">": 4172704}
_GENDER = {"F": 8532, "M": 8507}
#: event -> (table, vocabulary, code) used for it when its detail names no ingredient
_EVENT_CODE = {
    "tocilizumab": ("drug_exposure", "RxNorm", "612865"),
    "corticosteroid": ("drug_exposure", "RxNorm", "3264"),
    "vasopressor": ("drug_exposure", "RxNorm", "7512"),
    "vasopressin": ("drug_exposure", "RxNorm", "11149"),
    "antipyretic": ("drug_exposure", "RxNorm", "161"),
    "anakinra": ("drug_exposure", "RxNorm", "72435"),
    "oxygen_low_flow": ("device_exposure", "SNOMED", "336623009"),
    "oxygen_high_flow": ("device_exposure", "SNOMED", "426854004"),
    "positive_pressure": ("procedure_occurrence", "SNOMED", "428311008"),
    "icu_admission": ("visit_occurrence", "Visit", "ICU"),
}

#: a drug event's route_source_value (others intravenous)
_ROUTES = {"antipyretic": "oral", "anakinra": "subcutaneous"}


class _Concepts:
    """Concept ids of the codes used (shipped ids, else local ids), and the concept table."""

    def __init__(self):
        self.map = code_map()
        self.rows: dict[int, dict] = {}
        self._local: dict[tuple[str, str], int] = {}

    def id(self, vocab: str, code: str, name: str = "", domain: str = "") -> int:
        c = self.map.lookup(vocab, code)
        if c is not None and c.concept_id is not None:
            cid = c.concept_id
        else:
            cid = self._local.setdefault((vocab, code), LOCAL_CONCEPT_BASE + len(self._local) + 1)
        if cid not in self.rows:
            self.rows[cid] = {
                "concept_id": cid, "concept_name": (c.concept_name if c else "") or name or code,
                "domain_id": domain, "vocabulary_id": vocab, "concept_class_id": "",
                "standard_concept": "S", "concept_code": code,
                "valid_start_date": "1970-01-01", "valid_end_date": "2099-12-31",
                "invalid_reason": None,
            }  # fmt: skip
        return cid

    def drug_for(self, event: str, detail: str) -> int:
        """The ingredient named in ``detail`` when the code map has it, else the event's."""
        text = str(detail or "").lower()
        for c in self.map.of_kind("event"):
            if c.target == event and c.vocabulary_id == "RxNorm" and c.concept_name:
                if re.search(rf"\b{re.escape(c.concept_name.split(' (')[0].lower())}\b", text):
                    return self.id("RxNorm", c.concept_code, domain="Drug")
        _, vocab, code = _EVENT_CODE[event]
        return self.id(vocab, code, domain="Drug")

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows.values()))


def _dt(ts) -> pd.Series:
    """Naive UTC datetimes as CDM text (``YYYY-MM-DD HH:MM:SS``); empty for NaT."""
    s = pd.Series(ts)
    return s.dt.strftime("%Y-%m-%d %H:%M:%S").where(s.notna(), None)


def _date(ts) -> pd.Series:
    s = pd.Series(ts)
    return s.dt.strftime("%Y-%m-%d").where(s.notna(), None)


def _number(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(value_as_number, operator concept id or 0) of clean contract value texts."""
    t = text.astype("str").str.strip()
    op = t.str[0].where(t.str[0].isin(["<", ">"]), "")
    num = pd.to_numeric(t.str.lstrip("<>"), errors="coerce").to_numpy("float64")
    return num, op.map(lambda o: _OPERATOR.get(o, 0)).to_numpy("int64")


def omop_tables(tables: dict[str, pd.DataFrame], seed: int = 0) -> dict[str, pd.DataFrame]:
    """The CDM tables of a clean simulated cohort (``simulate(...).tables``)."""
    cx = _Concepts()
    rng = np.random.default_rng([seed, 20_16])
    pts = tables["patients"].reset_index(drop=True)
    n = len(pts)
    pid = pts["patient_id"].astype("str").to_numpy(dtype=object)
    minutes = rng.integers(0, 5 * 365 * 1440, n)
    infusion = _EPOCH + pd.to_timedelta(minutes, unit="min")
    inf_of = dict(zip(pid, infusion, strict=True))
    person_id = np.arange(1, n + 1)
    person_of = dict(zip(pid, person_id, strict=True))
    sites = sorted(pts["site"].astype("str").unique())
    site_id = {s: i + 1 for i, s in enumerate(sites)}

    def at(ids, hours) -> pd.Series:
        base = pd.DatetimeIndex([inf_of[i] for i in ids])
        secs = np.round(np.asarray(hours, dtype="float64") * 3600.0)
        return pd.Series(base + pd.to_timedelta(secs, unit="s"))

    # person: born age_years + ~half a year before the infusion (completed years = age)
    age = pts["age_years"].to_numpy(dtype="float64")
    birth = infusion - pd.to_timedelta(np.round(age * 365.25 + 183).astype(int), unit="D")
    person = pd.DataFrame({
        "person_id": person_id,
        "gender_concept_id": pts["sex"].map(_GENDER).fillna(0).astype("int64"),
        "year_of_birth": birth.year, "month_of_birth": birth.month, "day_of_birth": birth.day,
        "birth_datetime": _dt(birth.normalize()), "race_concept_id": 0,
        "ethnicity_concept_id": 0, "location_id": None,
        "provider_id": None, "care_site_id": pts["site"].map(site_id).to_numpy(),
        "person_source_value": pts["person_id"].astype("str").to_numpy(dtype=object),
        "gender_source_value": pts["sex"].astype("str").to_numpy(dtype=object),
    })  # fmt: skip
    for i, (y, m, d) in enumerate(zip(birth.year, birth.month, birth.day, strict=True)):
        when = infusion[i]
        done = when.year - y - int((when.month, when.day) < (m, d))
        assert done == int(age[i]), "birth date must give the simulated age"
    care_site = pd.DataFrame({"care_site_id": list(site_id.values()), "care_site_name": sites,
                              "place_of_service_concept_id": 0,
                              "care_site_source_value": sites})  # fmt: skip
    visit = pd.DataFrame({
        "visit_occurrence_id": person_id, "person_id": person_id,
        "visit_concept_id": 9201,  # Inpatient Visit
        "visit_start_date": _date(infusion - pd.Timedelta(days=1)),
        "visit_start_datetime": _dt(infusion - pd.Timedelta(days=1)),
        "visit_end_date": _date(infusion + pd.Timedelta(days=14)),
        "visit_end_datetime": _dt(infusion + pd.Timedelta(days=14)),
        "visit_type_concept_id": 32817, "care_site_id": pts["site"].map(site_id).to_numpy(),
        "visit_source_value": pid,
    })  # fmt: skip
    disease_code = pts["disease"].astype("str").map(_DISEASE_CODE).fillna("C85.90")
    condition = pd.DataFrame({
        "condition_occurrence_id": person_id, "person_id": person_id, "condition_concept_id": 0,
        "condition_start_date": _date(infusion - pd.Timedelta(days=90)),
        "condition_start_datetime": _dt(infusion - pd.Timedelta(days=90)),
        "condition_type_concept_id": 32817, "condition_source_value": disease_code.to_numpy(),
    })  # fmt: skip
    cart = cx.id("CPT4", "38228", domain="Procedure")
    procedures = [pd.DataFrame({
        "procedure_occurrence_id": person_id, "person_id": person_id,
        "procedure_concept_id": cart, "procedure_date": _date(infusion),
        "procedure_datetime": _dt(infusion), "procedure_end_datetime": None,
        "procedure_type_concept_id": 32817, "visit_occurrence_id": person_id,
        "procedure_source_value": "38228",
    })]  # fmt: skip
    product = pts["product"].astype("str")
    has_product = product.isin(list(_PRODUCT_HCPCS)).to_numpy()
    drug_rows = [pd.DataFrame({
        "drug_exposure_id": person_id[has_product], "person_id": person_id[has_product],
        "drug_concept_id": [cx.id("HCPCS", _PRODUCT_HCPCS[p], domain="Drug")
                            for p in product[has_product]],
        "drug_exposure_start_date": _date(infusion[has_product]),
        "drug_exposure_start_datetime": _dt(infusion[has_product]),
        "drug_exposure_end_date": _date(infusion[has_product]),
        "drug_exposure_end_datetime": _dt(infusion[has_product]),
        "drug_type_concept_id": 32817, "sig": None,
        "visit_occurrence_id": person_id[has_product],
        "drug_source_value": [_PRODUCT_HCPCS[p] for p in product[has_product]],
        "route_concept_id": 0, "route_source_value": "intravenous",
    })]  # fmt: skip

    # measurements
    obs = tables["observations"].reset_index(drop=True)
    o_ids = obs["patient_id"].astype("str").to_numpy(dtype=object)
    when = at(o_ids, obs["hours"])
    var_code = {}
    for v in obs["variable"].astype("str").unique():
        code = next(c for c in cx.map.of_kind("variable") if c.target == v)
        var_code[v] = (cx.id("LOINC", code.concept_code, domain="Measurement"), code.concept_code)
    num, op = _number(obs["value"])
    measurement = pd.DataFrame({
        "measurement_id": np.arange(1, len(obs) + 1),
        "person_id": [person_of[i] for i in o_ids],
        "measurement_concept_id": obs["variable"].map(lambda v: var_code[v][0]).to_numpy(),
        "measurement_date": _date(when), "measurement_datetime": _dt(when),
        "measurement_type_concept_id": 32817, "operator_concept_id": op,
        "value_as_number": num, "unit_concept_id": 0,
        "measurement_source_value": obs["variable"].map(lambda v: var_code[v][1]).to_numpy(),
        "unit_source_value": obs["unit"].astype("object").to_numpy(),
        "value_source_value": obs["value"].astype("str").to_numpy(dtype=object),
    })  # fmt: skip

    # events
    ev = tables["events"].reset_index(drop=True)
    ev = ev[ev["event"] != "death"].reset_index(drop=True)
    e_ids = ev["patient_id"].astype("str").to_numpy(dtype=object)
    start = at(e_ids, ev["hours"])
    end = at(e_ids, ev["end_hours"])
    table_of = ev["event"].map(lambda e: _EVENT_CODE[e][0])
    detail = ev["detail"].astype("object").where(ev["detail"].notna(), None)
    devices, icu = [], []
    next_id = n + 1
    for table, part in ev.groupby(table_of, sort=True):
        idx = part.index.to_numpy()
        k = np.arange(next_id, next_id + len(idx))
        next_id += len(idx)
        persons = [person_of[i] for i in e_ids[idx]]
        s, e, d = start[idx], end[idx], detail[idx].to_numpy(dtype=object)
        if table == "drug_exposure":
            ids = [cx.drug_for(name, dd) for name, dd in zip(part["event"], d, strict=True)]
            drug_rows.append(pd.DataFrame({
                "drug_exposure_id": k, "person_id": persons, "drug_concept_id": ids,
                "drug_exposure_start_date": _date(s).to_numpy(),
                "drug_exposure_start_datetime": _dt(s).to_numpy(),
                "drug_exposure_end_date": _date(e.fillna(s)).to_numpy(),
                "drug_exposure_end_datetime": _dt(e.fillna(s)).to_numpy(),
                "drug_type_concept_id": 32817, "sig": d, "visit_occurrence_id": None,
                "drug_source_value": part["event"].to_numpy(dtype=object),
                "route_concept_id": 0,
                "route_source_value": part["event"].map(_ROUTES).fillna("intravenous"),
            }))  # fmt: skip
        else:
            ids = [cx.id(*_EVENT_CODE[name][1:], domain="Device") for name in part["event"]]
            if table == "device_exposure":
                devices.append(pd.DataFrame({
                    "device_exposure_id": k, "person_id": persons, "device_concept_id": ids,
                    "device_exposure_start_date": _date(s).to_numpy(),
                    "device_exposure_start_datetime": _dt(s).to_numpy(),
                    "device_exposure_end_date": _date(e).to_numpy(),
                    "device_exposure_end_datetime": _dt(e).to_numpy(),
                    "device_type_concept_id": 32817, "device_source_value": d,
                }))  # fmt: skip
            elif table == "procedure_occurrence":
                procedures.append(pd.DataFrame({
                    "procedure_occurrence_id": k, "person_id": persons,
                    "procedure_concept_id": ids, "procedure_date": _date(s).to_numpy(),
                    "procedure_datetime": _dt(s).to_numpy(),
                    "procedure_end_datetime": _dt(e).to_numpy(),
                    "procedure_type_concept_id": 32817, "visit_occurrence_id": None,
                    "procedure_source_value": d,
                }))  # fmt: skip
            else:
                icu.append(pd.DataFrame({
                    "visit_occurrence_id": k, "person_id": persons, "visit_concept_id": ids,
                    "visit_start_date": _date(s).to_numpy(),
                    "visit_start_datetime": _dt(s).to_numpy(),
                    "visit_end_date": _date(s).to_numpy(), "visit_end_datetime": None,
                    "visit_type_concept_id": 32817, "care_site_id": None,
                    "visit_source_value": d,
                }))  # fmt: skip

    # death and outcomes
    oc = tables["outcomes"].reset_index(drop=True)
    oc_ids = oc["patient_id"].astype("str").to_numpy(dtype=object)
    ev_death = tables["events"][tables["events"]["event"] == "death"]
    died = oc[oc["death_hours"].notna()]
    cause = dict(zip(ev_death["patient_id"].astype("str"), ev_death["detail"], strict=False))
    dt = at(died["patient_id"].astype("str").to_numpy(dtype=object), died["death_hours"])
    deaths = pd.DataFrame({
        "person_id": [person_of[i] for i in died["patient_id"].astype("str")],
        "death_date": _date(dt).to_numpy(), "death_datetime": _dt(dt).to_numpy(),
        "death_type_concept_id": 32817, "cause_concept_id": 0,
        "cause_source_value": [cause.get(i) for i in died["patient_id"].astype("str")],
    })  # fmt: skip
    grade_id = cx.id("SNOMED", "1290005006", domain="Observation")
    fu_id = cx.id("SNOMED", "399307001", domain="Observation")
    g3 = oc["grade3_hours"].to_numpy(dtype="float64")
    grade_time = at(oc_ids, np.where(np.isfinite(g3), g3, 1.0))
    fu = oc[oc["followup_hours"].notna()]
    fu_time = at(fu["patient_id"].astype("str").to_numpy(dtype=object), fu["followup_hours"])
    observation = pd.DataFrame({
        "observation_id": np.arange(1, len(oc) + len(fu) + 1),
        "person_id": [person_of[i] for i in oc_ids] + [person_of[i] for i in
                                                        fu["patient_id"].astype("str")],
        "observation_concept_id": [grade_id] * len(oc) + [fu_id] * len(fu),
        "observation_date": pd.concat([_date(grade_time), _date(fu_time)]).to_numpy(),
        "observation_datetime": pd.concat([_dt(grade_time), _dt(fu_time)]).to_numpy(),
        "observation_type_concept_id": 32817,
        "value_as_number": np.concatenate([oc["crs_max_grade"].to_numpy("float64"),
                                           np.full(len(fu), np.nan)]),
        "value_as_string": list(oc["label_definition"].astype("object")) + [None] * len(fu),
    })  # fmt: skip
    out = {
        "person": person, "care_site": care_site,
        "visit_occurrence": pd.concat([visit, *icu], ignore_index=True),
        "condition_occurrence": condition,
        "procedure_occurrence": pd.concat(procedures, ignore_index=True),
        "drug_exposure": pd.concat(drug_rows, ignore_index=True),
        "device_exposure": pd.concat(devices, ignore_index=True) if devices else None,
        "measurement": measurement, "observation": observation, "death": deaths,
        "concept": cx.table(),
    }  # fmt: skip
    drugs = out["concept"].loc[out["concept"]["domain_id"] == "Drug", "concept_id"]
    out["concept_ancestor"] = pd.DataFrame({  # every concept is its own ancestor in the CDM
        "ancestor_concept_id": drugs.to_numpy(), "descendant_concept_id": drugs.to_numpy(),
        "min_levels_of_separation": 0, "max_levels_of_separation": 0,
    })  # fmt: skip
    return {k: v for k, v in out.items() if v is not None}


def write_omop(tables: dict[str, pd.DataFrame], out: str | Path, fmt: str = "csv",
               seed: int = 0) -> dict[str, Path]:  # fmt: skip
    """Write the OMOP twin: ``csv`` / ``parquet`` (one file per table in the folder ``out``)
    or ``duckdb`` (one database file ``out``, tables in schema ``main``)."""
    if fmt not in OMOP_FORMATS:
        raise ValueError(f"OMOP format must be one of {OMOP_FORMATS}, got {fmt!r}")
    cdm = omop_tables(tables, seed)
    out = Path(out)
    if fmt == "duckdb":
        import duckdb

        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.unlink()
        con = duckdb.connect(str(out))
        try:
            for name, frame in cdm.items():
                con.register("frame", _typed(frame))
                con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM frame')
                con.unregister("frame")
        finally:
            con.close()
        return {name: out for name in cdm}
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in cdm.items():
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            _typed(frame).to_parquet(path, index=False)
        paths[name] = path
    return paths


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Datetime text as timestamps (as a database holds them); all-empty columns as text."""
    f = frame.copy()
    for c in f.columns:
        if c.endswith("_datetime"):
            f[c] = pd.to_datetime(f[c], format="%Y-%m-%d %H:%M:%S")
        elif c.endswith("_date"):
            f[c] = pd.to_datetime(f[c], format="%Y-%m-%d").dt.date
        elif f[c].isna().all():
            f[c] = f[c].astype("object").astype("string")
    return f


def _sql_type(series: pd.Series) -> str:
    if pd.api.types.is_integer_dtype(series.dtype):
        return "BIGINT"
    if pd.api.types.is_float_dtype(series.dtype):
        return "NUMERIC"
    return "TEXT"


def load_postgres(tables: dict[str, pd.DataFrame], url: str, schema: str = "public") -> None:
    """Load the OMOP twin into PostgreSQL (``url`` without a password: libpq reads
    ``PGPASSWORD`` or ``~/.pgpass``) with COPY; datetime columns become ``timestamp`` (no time
    zone, as in the CDM), ``*_date`` columns ``date``. For tests and benchmarks."""
    import io

    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conninfo = {"host": u.host, "port": u.port, "user": u.username, "dbname": u.database}
    cdm = omop_tables(tables) if "patients" in tables else tables
    with psycopg.connect(**{k: v for k, v in conninfo.items() if v is not None}) as con:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for name, frame in cdm.items():
            cols = []
            for c in frame.columns:
                kind = ("TIMESTAMP" if c.endswith("_datetime") else
                        "DATE" if c.endswith("_date") else _sql_type(frame[c]))  # fmt: skip
                cols.append(f'"{c}" {kind}')
            con.execute(f'DROP TABLE IF EXISTS "{schema}"."{name}"')
            con.execute(f'CREATE TABLE "{schema}"."{name}" ({", ".join(cols)})')
            buf = io.StringIO()
            frame.to_csv(buf, index=False, header=False)
            with con.cursor().copy(
                f'COPY "{schema}"."{name}" FROM STDIN WITH (FORMAT csv)'
            ) as copy:
                copy.write(buf.getvalue())
            if "person_id" in frame.columns and name != "person":
                con.execute(f'CREATE INDEX ON "{schema}"."{name}" (person_id)')
        con.commit()
