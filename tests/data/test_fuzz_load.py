"""Bad input never crashes ``load_cohort`` (issue 7, part 1).

Property (hypothesis, fixed seed): for random and adversarial tables written as CSV or Parquet
(wrong types, empty or header-only files, missing and extra columns, huge and negative numbers,
'NaN'/'inf' strings, unicode, times out of order, pre-1900 and far-future dates, duplicated
patients, rows for unknown patients, garbage in every column), ``load_cohort`` either returns a
Cohort that satisfies the contract of :mod:`crs_ml.cohort` or raises a
:class:`~crs_ml.errors.CrsMlError` whose message names the file (and row / column when it
gives them). Any other exception is a bug.

The number of generated cases is counted and printed at the end of the module (``-s``) and as a
line of the pytest summary.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crs_ml.cohort import (
    EVENT_COLUMNS,
    EVENT_NAMES,
    OBSERVATION_COLUMNS,
    PATIENT_COLUMNS,
    PRODUCTS,
    REJECTED_COLUMNS,
)
from crs_ml.errors import CrsMlError, InputError
from crs_ml.ingest.load import load_cohort
from crs_ml.ingest.tables import CONTRACT_COLUMNS
from crs_ml.variables import VARIABLES

CASES: Counter[str] = Counter()
FUZZ = settings(
    derandomize=True,
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------- cell strategies
ADVERSARIAL = [
    "", " ", "NaN", "nan", "-nan", "inf", "-inf", "+inf", "Infinity", "1e309", "-1e309",
    "1e308", "-1e308", "1.7976931348623157e308", "9" * 400, "-0", "0x1A", "1,240", "1.240,5",
    "12'345", "<1.5", ">5000", "<=0", "≥1e309", "<", ">", "<inf", ">nan", "< -3", "Hemolyzed",
    "QNS", "---", "N/A", "null", "None", "True", "\x00", "é", "🔥", "Ω", "ǅ", "\ufeff",
    "\u202e", "\u00a0", "1_000", "1e-400", "00012", "+5", ".", "-.", "1e", "NaT", "'quoted'",
    '"', "a,b", "line\nbreak", "cr\rlf", "\t", "=1+1", "2024-02-30", "1850-06-01T00:00",
    "0001-01-01", "9999-12-31T23:59:59", "2262-04-12T00:00:00", "1677-09-21", "2100-01-01",
    "2024-03-01T08:00:00+25:00", "2024-03-01T08:00:00Z", "2024-03-01 08:00", "1/2/2024",
    "-9223372036854775808", "18446744073709551616",
]  # fmt: skip
GARBAGE = st.one_of(
    st.sampled_from(ADVERSARIAL),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(max_size=10),
)
CANONICAL_UNITS = sorted({u for v in VARIABLES.values() for u in v.units})
VARIABLE_NAMES = sorted(
    {n for v in VARIABLES.values() for n in (v.name, *v.aliases, *v.loinc)} | {"unknown_lab"}
)
HOURS = st.floats(min_value=-2000, max_value=2000, allow_nan=False).map(lambda h: f"{h:.2f}")
TIMES = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda t: t.isoformat()
)
RECENT = st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2025, 1, 1)).map(
    lambda t: t.isoformat()
)
VALUES = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: f"{v:g}"),
    st.integers(min_value=-5, max_value=10**6).map(str),
)
PLAUSIBLE: dict[str, st.SearchStrategy[str]] = {
    "hours": HOURS,
    "end_hours": HOURS,
    "time": st.one_of(RECENT, TIMES),
    "end_time": st.one_of(RECENT, TIMES),
    "infusion_time": st.one_of(RECENT, TIMES, st.just("")),
    "variable": st.sampled_from(VARIABLE_NAMES),
    "value": VALUES,
    "unit": st.sampled_from(["", *CANONICAL_UNITS]),
    "event": st.sampled_from([*EVENT_NAMES, "Vasopressor", " TOCILIZUMAB ", "dialysis"]),
    "detail": st.text(max_size=8),
    "product": st.sampled_from([*PRODUCTS, "Yescarta", "kymriah", "", "CAR-X"]),
    "sex": st.sampled_from(["F", "M", "U", "female", "", "x"]),
    "disease": st.sampled_from(["LBCL", "B-ALL", "MM", "dlbcl", "", "zzz"]),
    "age_years": st.one_of(st.integers(-10, 130).map(str), st.just("")),
    "site": st.sampled_from(["A", "B", "Åre", ""]),
    "person_id": st.sampled_from(["", "P1", "P2"]),
    "crs_max_grade": st.integers(-1, 6).map(str),
    "grade3_hours": HOURS,
    "followup_hours": HOURS,
    "death_hours": HOURS,
}
IDS = st.one_of(
    st.sampled_from(["p1", "p2", "007", "7", "P-3", " p1", "患者1"]), st.text(max_size=4)
)
FILE_MODES = ["csv"] * 6 + ["parquet"] * 2 + ["empty", "header_only", "binary", "semicolon"]
DATA_MODES = ["csv"] * 3 + ["parquet"]


def _cell(data, column: str) -> str:
    plausible = PLAUSIBLE.get(column)
    if plausible is None or data.draw(st.integers(0, 3), label=f"{column} garbage?") == 0:
        return data.draw(GARBAGE, label=column)
    return data.draw(plausible, label=column)


def _columns(data, table: str) -> list[str]:
    cols = list(CONTRACT_COLUMNS[table])
    if table in ("observations", "events"):  # one time column, sometimes both
        pick = data.draw(st.sampled_from(["hours", "hours", "time", "both"]), label="time")
        drop = {"hours": {"time", "end_time"}, "time": {"hours", "end_hours"}}.get(pick, set())
        cols = [c for c in cols if c not in drop]
    if data.draw(st.integers(0, 7), label=f"{table} drop columns?") == 0:
        gone = data.draw(st.sets(st.sampled_from(cols), max_size=2), label="dropped")
        cols = [c for c in cols if c not in gone]
    if data.draw(st.integers(0, 4), label=f"{table} extra columns?") == 0:
        extra = data.draw(
            st.lists(st.sampled_from(["note", "Unnamed: 0", "", "ÿ", cols[0] if cols else "x"]),
                     max_size=2),
            label="extra",
        )  # fmt: skip
        cols = cols + extra
    return cols


def _write(path_stem: Path, cols: list[str], rows: list[list[str]], mode: str, data) -> Path:
    if mode == "parquet":
        path = path_stem.with_suffix(".parquet")
        rows = [(r + [""] * len(cols))[: len(cols)] for r in rows]  # no ragged rows in Parquet
        frame = pd.DataFrame({f"{c}" if c not in cols[:i] else f"{c}.{i}": [r[i] for r in rows]
                              for i, c in enumerate(cols)}, dtype=object)  # fmt: skip
        for c in frame.columns:  # some columns typed: float (nan/inf kept) or int64
            kind = data.draw(st.sampled_from(["str", "str", "float", "int"]), label=f"pq {c}")
            conv = pd.to_numeric(frame[c], errors="coerce")
            if kind == "float" and len(frame) and conv.notna().all():
                frame[c] = conv.astype("float64")
            elif kind == "int" and len(frame) and conv.notna().all():
                if ((conv % 1 == 0) & (conv.abs() < 2**62)).all():
                    frame[c] = conv.astype("int64")
        frame = frame.astype({c: "str" for c in frame.columns if frame[c].dtype == object})
        frame.to_parquet(path, index=False)
        return path
    path = path_stem.with_suffix(".csv")
    if mode == "empty":
        path.write_bytes(b"")
    elif mode == "binary":
        path.write_bytes(data.draw(st.binary(max_size=64), label="bytes"))
    else:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter=";" if mode == "semicolon" else ",")
            writer.writerow(cols)
            if mode != "header_only":
                writer.writerows(rows)
    return path


def _table(data, folder: Path, table: str, ids: list[str], n_max: int, modes) -> Path:
    cols = _columns(data, table)
    mode = data.draw(st.sampled_from(modes), label=f"{table} mode")
    n = data.draw(st.integers(0, n_max), label=f"{table} rows")
    rows = []
    for _ in range(n):
        row = []
        for c in cols:
            if c == "patient_id":
                pool = st.one_of(st.sampled_from(ids), st.just("ghost"), GARBAGE)
                pid = data.draw(pool, label="pid") if table != "patients" else None
                row.append(pid if pid is not None else data.draw(st.sampled_from(ids)))
            else:
                row.append(_cell(data, c))
        # a ragged row now and then (too few or too many fields)
        if row and data.draw(st.integers(0, 24), label="ragged?") == 0:
            row = row[:-1] if data.draw(st.booleans()) else [*row, "extra"]
        rows.append(row)
    return _write(folder / table, cols, rows, mode, data)


# ---------------------------------------------------------------- the property
def check_contract(cohort, files: list[str]) -> None:
    """The normalised cohort's contract (crs_ml/cohort.py docstring)."""
    p, o, e, rej = cohort.patients, cohort.observations, cohort.events, cohort.rejected
    assert list(p.columns) == PATIENT_COLUMNS
    assert str(p["infusion_time"].dtype) == "datetime64[ns, UTC]"
    assert p["age_years"].dtype == np.float64
    ids = p["patient_id"].astype(object)
    assert len(p) > 0 and ids.notna().all() and (ids != "").all() and ids.is_unique
    assert p["person_id"].astype(object).notna().all()
    assert set(p["sex"].astype(object)) <= {"F", "M", "U"}
    assert set(p["product"].dropna().astype(object)) <= set(PRODUCTS)
    age = p["age_years"].to_numpy()
    assert (np.isnan(age) | ((age >= 0) & (age <= 120))).all()
    inf = p["infusion_time"].dropna()
    now = pd.Timestamp(datetime.now(UTC)) + pd.Timedelta(days=2)
    assert ((inf >= pd.Timestamp("1900-01-01", tz="UTC")) & (inf <= now)).all()

    assert list(o.columns) == OBSERVATION_COLUMNS
    assert o["hours"].dtype == np.float64 and o["value"].dtype == np.float64
    assert o["censored"].dtype == np.int8 and o["out_of_range"].dtype == bool
    assert o["source_row"].dtype == np.int64 and (o["source_row"] >= 1).all()
    assert np.isfinite(o["hours"].to_numpy()).all(), "hours NaN/inf in observations"
    assert np.isfinite(o["value"].to_numpy()).all(), "value NaN/inf in observations"
    assert set(o["censored"].unique()) <= {-1, 0, 1}
    assert set(o["variable"].astype(object)) <= set(VARIABLES)
    assert set(o["patient_id"].astype(object)) <= set(ids)
    _assert_sorted(o, ["patient_id", "hours", "variable", "source_row"])

    assert list(e.columns) == EVENT_COLUMNS
    assert e["hours"].dtype == np.float64 and e["end_hours"].dtype == np.float64
    assert e["source_row"].dtype == np.int64 and (e["source_row"] >= 1).all()
    assert np.isfinite(e["hours"].to_numpy()).all()
    end = e["end_hours"].to_numpy()
    assert (np.isnan(end) | (np.isfinite(end) & (end >= e["hours"].to_numpy()))).all()
    assert set(e["event"].astype(object)) <= set(EVENT_NAMES)
    assert set(e["patient_id"].astype(object)) <= set(ids)
    _assert_sorted(e, ["patient_id", "hours", "event", "source_row"])

    assert list(rej.columns) == REJECTED_COLUMNS
    for r in rej.itertuples(index=False):
        assert isinstance(r.file, str) and r.file in files, r
        assert isinstance(r.row, int | np.integer) and r.row >= 1, r
        assert isinstance(r.column, str) and r.column, r
        assert isinstance(r.reason, str) and r.reason, r
    assert cohort.report is not None
    if cohort.outcomes is not None:
        oc = cohort.outcomes
        assert oc["crs_max_grade"].dtype == np.int64
        assert oc["crs_max_grade"].between(0, 5).all()
        assert set(oc["patient_id"].astype(object)) <= set(ids) and oc["patient_id"].is_unique
        for c in ("grade3_hours", "followup_hours", "death_hours"):
            assert oc[c].dtype == np.float64 and not np.isinf(oc[c].to_numpy()).any()


def _assert_sorted(frame: pd.DataFrame, keys: list[str]) -> None:
    if len(frame) < 2:
        return
    order = frame[keys].astype({keys[0]: object}).sort_values(keys, kind="mergesort").index
    assert (order == frame.index).all(), f"not sorted by {keys}"


def check_error(exc: CrsMlError, files: list[str]) -> None:
    msg = str(exc)
    assert msg.strip(), "empty error message"
    assert "Traceback" not in msg
    assert any(f in msg for f in files), f"error does not name the file: {msg}"
    if isinstance(exc, InputError):
        if exc.row is not None:
            assert isinstance(exc.row, int) and exc.row >= 1 and f"row {exc.row}" in msg
        if exc.column is not None:
            assert f"'{exc.column}'" in msg


def load_and_check(folder: Path, kind: str):
    files = sorted(p.name for p in folder.iterdir())
    CASES[kind] += 1
    try:
        cohort = load_cohort(folder)
    except CrsMlError as exc:
        CASES[f"{kind}: CrsMlError"] += 1
        check_error(exc, files)
        return None
    CASES[f"{kind}: loaded"] += 1
    check_contract(cohort, files)
    return cohort


@pytest.fixture(scope="module", autouse=True)
def report_cases(request):
    start = time.monotonic()
    yield
    total = sum(v for k, v in CASES.items() if ":" not in k)
    line = (f"fuzz load_cohort: {total} hypothesis cases in {time.monotonic() - start:.1f} s "
            f"({dict(sorted(CASES.items()))})")  # fmt: skip
    print("\n" + line, file=sys.stderr)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=st.data())
def test_random_cohorts_load_or_fail_cleanly(scratch, data):
    """Patients, observations and events: every column may hold garbage."""
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        folder = Path(tmp)
        ids = data.draw(st.lists(IDS, min_size=1, max_size=4), label="ids")
        _table(data, folder, "patients", ids, 5, FILE_MODES)
        _table(data, folder, "observations", ids, 12, FILE_MODES)
        if data.draw(st.booleans(), label="events?"):
            _table(data, folder, "events", ids, 6, FILE_MODES)
        load_and_check(folder, "random")


@FUZZ
@given(data=st.data())
def test_mostly_valid_cohorts_with_a_few_bad_cells(scratch, data):
    """Well-formed files (so loading gets past the structural checks) with bad cells."""
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        folder = Path(tmp)
        ids = data.draw(st.lists(IDS, min_size=1, max_size=4, unique=True), label="ids")
        pat_rows = [[i, *(_cell(data, c) for c in PATIENT_COLUMNS[1:])] for i in ids]
        mode = data.draw(st.sampled_from(DATA_MODES), label="patients mode")
        _write(folder / "patients", PATIENT_COLUMNS, pat_rows, mode, data)
        cols = ["patient_id", "hours", "variable", "value", "unit"]
        if data.draw(st.booleans(), label="time column?"):
            cols[1] = "time"
        n = data.draw(st.integers(1, 25), label="n obs")
        rows = [[data.draw(st.sampled_from([*ids, "ghost"])) if c == "patient_id"
                 else _cell(data, c) for c in cols] for _ in range(n)]  # fmt: skip
        mode = data.draw(st.sampled_from(DATA_MODES), label="observations mode")
        _write(folder / "observations", cols, rows, mode, data)
        if data.draw(st.booleans(), label="events?"):
            ev_cols = ["patient_id", cols[1], "end_" + cols[1], "event", "detail"]
            ev_rows = [[data.draw(st.sampled_from(ids)) if c == "patient_id"
                        else _cell(data, c) for c in ev_cols]
                       for _ in range(data.draw(st.integers(1, 6)))]  # fmt: skip
            _write(folder / "events", ev_cols, ev_rows, "csv", data)
        if data.draw(st.integers(0, 2), label="outcomes?") == 0:
            oc_cols = ["patient_id", "crs_max_grade", "grade3_hours", "followup_hours",
                       "death_hours"]  # fmt: skip
            oc_rows = [[i, *(_cell(data, c) for c in oc_cols[1:])] for i in ids]
            _write(folder / "outcomes", oc_cols, oc_rows, "csv", data)
        load_and_check(folder, "mostly_valid")


# ---------------------------------------------------------------- deterministic cases
def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_out_of_order_times_unicode_and_specials_load_to_the_contract(tmp_path):
    _csv(tmp_path / "patients.csv", ["patient_id", "infusion_time", "age_years"],
         [["患者-α", "2024-03-01T08:00:00", "1e308"], ["p2", "1850-01-01", "-5"],
          ["p3", "2999-01-01T00:00:00", "NaN"]])  # fmt: skip
    _csv(tmp_path / "observations.csv", ["patient_id", "time", "variable", "value", "unit"],
         [["患者-α", "2024-03-02T08:00:00", "il6", "inf", "pg/mL"],
          ["患者-α", "2024-03-01T20:00:00", "il6", "-inf", "pg/mL"],
          ["患者-α", "2024-03-01T10:00:00", "il6", "1e400", "pg/mL"],
          ["患者-α", "2024-03-01T09:00:00", "crp", "-12", "mg/L"],
          ["患者-α", "2024-03-01T11:00:00", "temperature", "38.5", "°C"],
          ["患者-α", "2024-03-01T11:30:00", "temperature", "101", "°F"],
          ["患者-α", "2024-03-01T12:00:00", "il6", "12", "µg/éé"],
          ["p2", "2024-03-01T12:00:00", "il6", "12", "pg/mL"],
          ["p3", "2024-03-01T12:00:00", "il6", "12", "pg/mL"],
          ["ghost", "2024-03-01T12:00:00", "il6", "12", "pg/mL"]])  # fmt: skip
    cohort = load_and_check(tmp_path, "deterministic")
    assert cohort is not None
    o = cohort.observations
    assert list(o["hours"]) == sorted(o["hours"])  # out-of-order input comes out sorted
    assert set(o["variable"]) == {"crp", "temperature"}  # inf/-inf/1e400 are not values
    reasons = " ".join(cohort.rejected["reason"].astype(str))
    assert "unknown unit" in reasons
    assert (cohort.rejected["patient_id"].astype(str) == "ghost").any()
    assert cohort.patients["infusion_time"].isna().sum() == 2  # pre-1900 and far future


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        (
            {"patients.csv": b"", "observations.csv": b"patient_id,hours,variable,value\n"},
            "patients.csv",
        ),
        (
            {
                "patients.csv": b"patient_id\n",
                "observations.csv": b"patient_id,hours,variable,value\n",
            },
            "patients.csv",
        ),
        ({"patients.csv": b"patient_id\np1\n", "observations.csv": b""}, "observations.csv"),
        (
            {"patients.csv": b"id\np1\n", "observations.csv": b"patient_id,hours,variable,value\n"},
            "patients.csv",
        ),
        (
            {
                "patients.csv": b"patient_id\np1\np1\n",
                "observations.csv": b"patient_id,hours,variable,value\np1,1,il6,3\n",
            },
            "patients.csv",
        ),
        (
            {"patients.csv": b"patient_id\np1\n", "observations.csv": b"\xff\xfe\x00\x01garbage"},
            "observations.csv",
        ),
        (
            {"patients.csv": b"patient_id\np1\n", "observations.parquet": b"PAR1 not parquet"},
            "observations.parquet",
        ),
    ],
    ids=["empty", "header-only", "empty-obs", "no-id-column", "dup-patient", "binary", "bad-pq"],
)
def test_structural_problems_are_input_errors_naming_the_file(tmp_path, files, needle):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    CASES["deterministic"] += 1
    with pytest.raises(CrsMlError) as info:
        cohort = load_cohort(tmp_path)
        fatal = [p for p in cohort.report.problems if p.severity == "fatal"]
        if fatal:  # a fatal problem reported instead of raised is fine too
            raise InputError(f"{fatal[0].table}: {fatal[0].message}", file=needle)
    assert needle in str(info.value)


# ---------------------------------------------------------------- one huge patient
N_HUGE = 2_000_000


def test_millions_of_rows_for_one_patient_load_and_score(tmp_path, session_dir):
    """2,000,000 observation rows of one patient (CSV) load and score without error."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    import conftest_scoring as cs

    from crs_ml.scoring.score import score

    bundle = cs.setup(session_dir).bundle
    rng = np.random.default_rng(20240)
    variables = np.array(["temperature", "heart_rate", "sbp", "spo2", "il6", "crp"])
    units = np.array(["degC", "/min", "mmHg", "%", "pg/mL", "mg/L"])
    centre = np.array([37.5, 90.0, 115.0, 96.0, 40.0, 30.0])
    k = rng.integers(0, len(variables), N_HUGE)
    hours = np.round(np.sort(rng.uniform(-24.0, 120.0, N_HUGE)), 4)
    value = np.round(centre[k] * rng.lognormal(0.0, 0.05, N_HUGE), 2)
    frame = pd.DataFrame({"patient_id": "P-1", "hours": hours, "variable": variables[k],
                          "value": value, "unit": units[k]})  # fmt: skip
    import pyarrow as pa
    import pyarrow.csv as pacsv

    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False),
                    tmp_path / "observations.csv")  # fmt: skip
    (tmp_path / "patients.csv").write_text("patient_id,product,age_years\nP-1,axi-cel,60\n")
    t0 = time.monotonic()
    cohort = load_cohort(tmp_path)
    t_load = time.monotonic() - t0
    assert cohort.report.usable
    assert len(cohort.observations) == frame.drop_duplicates(["hours", "variable"]).shape[0]
    check_contract(cohort, ["patients.csv", "observations.csv"])
    t0 = time.monotonic()
    scores = score(bundle, cohort)
    t_score = time.monotonic() - t0
    print(f"\n2M rows of one patient: load {t_load:.1f} s, score {t_score:.1f} s", file=sys.stderr)
    assert len(scores) == 1 and scores["patient_id"].iloc[0] == "P-1"
    assert scores["status"].iloc[0] == "scored"
    assert 0.0 < scores["risk"].iloc[0] < 1.0


# ---------------------------------------------------------------- bugs found by fuzzing
def _obs_parquet(folder: Path, table) -> None:
    import pyarrow.parquet as pq

    (folder / "patients.csv").write_text("patient_id\np1\n")
    pq.write_table(table, folder / "observations.parquet")


def test_parquet_binary_column_with_invalid_utf8_is_an_input_error(tmp_path):
    import pyarrow as pa

    table = pa.table({"patient_id": ["p1"], "hours": [1.0],
                      "variable": pa.array([b"\xff\xfe"], pa.binary()), "value": [3.0]})  # fmt: skip
    _obs_parquet(tmp_path, table)
    try:
        cohort = load_cohort(tmp_path)
    except CrsMlError as exc:
        check_error(exc, ["observations.parquet"])
    else:
        check_contract(cohort, ["patients.csv", "observations.parquet"])


def test_boolean_id_column_error_names_the_file(tmp_path):
    import pyarrow as pa

    _obs_parquet(tmp_path, pa.table({"patient_id": [True], "hours": [1.0],
                                     "variable": ["il6"], "value": [3.0]}))  # fmt: skip
    with pytest.raises(CrsMlError) as info:
        load_cohort(tmp_path)
    check_error(info.value, ["observations.parquet"])


def test_ragged_row_names_a_column(tmp_path):
    (tmp_path / "patients.csv").write_text("patient_id\np1\n")
    (tmp_path / "observations.csv").write_text(
        "patient_id,hours,variable,value\np1,1,il6,3\np1,2,il6,4,extra\np1,3\n"
    )
    rejected = load_cohort(tmp_path).rejected
    assert len(rejected) == 2
    assert (rejected["column"].astype(str) != "").all(), rejected
