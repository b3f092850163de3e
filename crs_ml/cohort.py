"""The normalised cohort: the one in-memory form every later step reads.

Loading (:func:`crs_ml.ingest.load.load_cohort`) and the simulator both produce a :class:`Cohort`;
features, labelling, training and scoring only ever read this form. Columns and dtypes:

``patients`` (one row per infusion episode)
    patient_id (str), person_id (str; defaults to patient_id), infusion_time
    (datetime64[ns, UTC], NaT when the cohort is in relative hours), product (str, canonical
    lower case: axi-cel, tisa-cel, liso-cel, brexu-cel, ide-cel, cilta-cel, other; NA when
    unknown), age_years (float64), sex (str F/M/U), disease (str), site (str).

``observations`` (long format, one row per measurement)
    patient_id (str), hours (float64, hours since infusion of the *result*), variable (str,
    canonical name), value (float64 in the canonical unit; NaN for non-numeric results),
    censored (int8: -1 below a detection limit ``<x``, +1 above ``>x``, 0 otherwise),
    out_of_range (bool: outside the catalogue's plausible range; kept, never clipped, read
    by no feature),
    source_row (int64: 1-based data row in the input file, for error messages).
    Sorted by patient_id, hours, variable, source_row.

``events`` (treatments and organ support)
    patient_id (str), hours (float64), end_hours (float64, NaN when not given), event (str,
    canonical name), detail (str, may be NA), source_row (int64). Sorted like observations.

``outcomes`` (optional; training and validation only)
    patient_id (str), crs_max_grade (int64 0-5), grade3_hours (float64, NaN if never),
    followup_hours (float64, NaN = followed through the horizon), death_hours (float64,
    NaN = no death recorded), label_definition (str).

``truth`` (optional; simulator only)
    patient_id (str), landmark_h (float64), true_risk (float64): the simulator's probability
    of grade >= 3 CRS in (landmark_h, horizon] for every patient at risk at that landmark.

``truth_horizons`` (optional; simulator only)
    patient_id (str), landmark_h (float64), horizon (str, e.g. "next 24 h"), horizon_end_h
    (float64), true_risk (float64): the simulator's true cumulative incidence by each short
    horizon (:func:`crs_ml.simulate.simulator.horizon_truth`), for the per-horizon oracle.

Every table's ``patient_id`` is text: a table given to a Cohort (built or assigned) with ids
of another type (integers, floats, mixed objects) is held with them as text (:func:`ids_as_text`: integral
floats without '.0', missing as ''), so every step matches ids the same way (the int 7 and
the text "7" are one patient).

``report``
    the validation report of loading (:class:`crs_ml.ingest.load.CheckReport`), or None.

``rejected``
    rows that failed validation and were left out: file, row, column, reason, patient_id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

PATIENT_COLUMNS = [
    "patient_id",
    "person_id",
    "infusion_time",
    "product",
    "age_years",
    "sex",
    "disease",
    "site",
]
OBSERVATION_COLUMNS = [
    "patient_id",
    "hours",
    "variable",
    "value",
    "censored",
    "out_of_range",
    "source_row",
]
EVENT_COLUMNS = ["patient_id", "hours", "end_hours", "event", "detail", "source_row"]
OUTCOME_COLUMNS = [
    "patient_id",
    "crs_max_grade",
    "grade3_hours",
    "followup_hours",
    "death_hours",
    "label_definition",
]
TRUTH_COLUMNS = ["patient_id", "landmark_h", "true_risk"]
TRUTH_HORIZONS_COLUMNS = ["patient_id", "landmark_h", "horizon", "horizon_end_h", "true_risk"]
REJECTED_COLUMNS = ["file", "row", "column", "reason", "patient_id"]

EVENT_NAMES = (
    "vasopressor",
    "vasopressin",
    "oxygen_low_flow",
    "oxygen_high_flow",
    "positive_pressure",
    "tocilizumab",
    "corticosteroid",
    "anakinra",
    "antipyretic",
    "icu_admission",
    "death",
)
PRODUCTS = ("axi-cel", "tisa-cel", "liso-cel", "brexu-cel", "ide-cel", "cilta-cel", "other")
#: CD28-costimulated products start earlier and more severely (docs/domain.md).
CD28_PRODUCTS = ("axi-cel", "brexu-cel")


#: the tables whose ``patient_id`` a Cohort keeps as text
ID_TABLES = ("patients", "observations", "events", "outcomes", "truth", "truth_horizons")


def ids_as_text(s: pd.Series) -> pd.Series:
    """Identifier column as text; integral floats lose their '.0'; missing -> ''; surrounding
    whitespace removed. Raises ValueError for true/false values."""
    if pd.api.types.is_float_dtype(s.dtype):
        v = s.to_numpy(dtype="float64", na_value=np.nan)
        if np.all(np.isnan(v) | (v == np.round(v))):
            s = s.astype("Int64")
    elif pd.api.types.is_bool_dtype(s.dtype):
        raise ValueError("identifier column holds true/false values")
    elif pd.api.types.is_object_dtype(s.dtype):  # mixed values: an integral float as an int
        values = [int(v) if isinstance(v, float) and v.is_integer() else v for v in s]
        s = pd.Series(values, index=s.index, dtype=object, name=s.name)
    return s.astype("str").fillna("").str.strip()


def is_text(s: pd.Series) -> bool:
    """The column is text: pandas' string dtypes, Arrow text, or objects that are all str
    (missing values allowed)."""
    dtype = s.dtype
    if isinstance(dtype, pd.StringDtype):
        return True
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        return pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(
            dtype.pyarrow_dtype
        )
    return pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(s, skipna=True) in (
        "string",
        "empty",
    )


def implausible(observations: pd.DataFrame) -> np.ndarray:
    """Per observation row: flagged ``out_of_range`` by loading (a value outside the
    catalogue's plausible range, which no feature, grading or completeness reads). A table
    built by hand without the column, or with missing flags, counts as plausible."""
    flags = observations.get("out_of_range")
    if flags is None:
        return np.zeros(len(observations), dtype=bool)
    if flags.dtype == bool:
        return flags.to_numpy()
    return flags.fillna(False).astype(bool).to_numpy()


def empty_rejected() -> pd.DataFrame:
    """A new empty rejected-rows table (a copy of one built once: every Cohort made
    without one gets it, one-patient scoring makes several)."""
    return _empty_rejected_template().copy()


@lru_cache(maxsize=1)
def _empty_rejected_template() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in REJECTED_COLUMNS})


#: pandas' text type of the tables' text columns ("str": Arrow strings), resolved once
TEXT = pd.api.types.pandas_dtype("str")
#: below this many rows :func:`pandas_table` builds a table column by column
SMALL_TABLE_ROWS = 1_000


def str_array(values) -> pd.api.extensions.ExtensionArray:
    """Text values as pandas' text array ("str": Arrow strings), without a Series around it
    (missing values as NaN)."""
    return pd.array(np.asarray(values, dtype=object), dtype=TEXT)  # not the alias: 10 us less


def pandas_table(frame) -> pd.DataFrame:
    """A polars table as pandas, as ``frame.to_pandas()`` gives it for the tables' column
    types: text as pandas' "str", numbers and flags as numpy. Below SMALL_TABLE_ROWS rows it is
    built column by column: to_pandas' fixed cost (0.2-0.7 ms a table) is most of a
    one-patient conversion, while on many rows to_pandas is faster. A column of another type,
    or a null among integers or flags, goes through to_pandas at any size."""
    import polars as pl  # here: importing the Cohort does not start polars

    if frame.height >= SMALL_TABLE_ROWS:
        return frame.to_pandas()
    columns = {}
    for s in frame.get_columns():
        if s.dtype == pl.String:
            columns[s.name] = str_array(s.to_numpy())
        elif s.dtype.is_float() or (
            (s.dtype.is_integer() or s.dtype == pl.Boolean) and s.null_count() == 0
        ):
            columns[s.name] = s.to_numpy()
        else:
            return frame.to_pandas()
    return pd.DataFrame(columns, copy=False)


@dataclass
class Cohort:
    """A normalised cohort; see the module docstring for the columns."""

    patients: pd.DataFrame
    observations: pd.DataFrame
    events: pd.DataFrame
    outcomes: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None
    report: Any = None
    rejected: pd.DataFrame = field(default_factory=empty_rejected)
    source: str | None = None
    truth_horizons: pd.DataFrame | None = None

    def __setattr__(self, name: str, value) -> None:
        # built or assigned, a table's patient ids are text (the module docstring)
        if name in ID_TABLES and value is not None and "patient_id" in value.columns:
            ids = value["patient_id"]
            if not is_text(ids):
                try:
                    value = value.assign(patient_id=ids_as_text(ids))
                except ValueError as exc:
                    raise ValueError(f"Cohort.{name}: patient_id: {exc}") from None
        object.__setattr__(self, name, value)

    @property
    def n_patients(self) -> int:
        return int(len(self.patients))

    def subset(self, patient_ids) -> Cohort:
        """The same cohort restricted to ``patient_ids`` (order of ``patients`` kept)."""
        ids = pd.Index(pd.Series(list(patient_ids), dtype="object").astype(str))

        def _keep(df: pd.DataFrame | None) -> pd.DataFrame | None:
            if df is None:
                return None
            return df[df["patient_id"].isin(ids)].reset_index(drop=True)

        return Cohort(
            patients=_keep(self.patients),
            observations=_keep(self.observations),
            events=_keep(self.events),
            outcomes=_keep(self.outcomes),
            truth=_keep(self.truth),
            report=self.report,
            rejected=_keep(self.rejected) if "patient_id" in self.rejected else self.rejected,
            source=self.source,
            truth_horizons=_keep(self.truth_horizons),
        )
