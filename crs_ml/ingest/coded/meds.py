"""Reading a MEDS 0.4 dataset (Medical Event Data Standard) into the :class:`Cohort`.

Layout read: ``<root>/data/**/*.parquet`` (columns ``subject_id`` int64, ``time``
timestamp[us], ``code`` string, ``numeric_value`` float32, ``text_value`` string; each file
validated against :class:`meds.DataSchema`) and ``<root>/metadata/codes.parquet`` (validated
against :class:`meds.CodeMetadataSchema` when present). Optional extension columns: ``unit``
(the measurement's unit; a code modifier column), ``end_time`` (when a continuous support
stopped) and ``site`` (site of care, read from the infusion record).

Codes are ``VOCABULARY/CODE`` (``LOINC/26881-3``, ``HCPCS/Q2041``, ``RxNorm/...``) and are
mapped by the shared code mappings; besides them the standard's ``MEDS_BIRTH`` (birth date,
for the age at infusion) and ``MEDS_DEATH`` (death; ``text_value`` = cause) and the
conventional ``GENDER//F`` / ``GENDER/M`` codes are read. Values: ``numeric_value`` (float32:
read at the precision the standard stores, 0.79 stays 0.79), or ``text_value`` when there is
no number or it states a detection limit (``<1.5``); ``text_value`` is also the event's detail
(drug and dose, oxygen flow) and, on a CRS grade code, the grading definition.

Only the rows of mapped codes are materialised; the others are counted by code (a polars
group-by per file). The rest is :mod:`crs_ml.ingest.coded.assemble`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crs_ml.cohort import Cohort
from crs_ml.config import DataConfig
from crs_ml.errors import InputError
from crs_ml.ingest.coded.assemble import CodedSource, classify_codes, coded_cohort
from crs_ml.ingest.problems import Problem

__all__ = ["is_meds", "load_meds", "read_meds"]

BIRTH = "MEDS_BIRTH"
DEATH = "MEDS_DEATH"
_SEX_PREFIXES = ("GENDER", "SEX")


def is_meds(path) -> bool:
    """A folder with ``data/`` holding Parquet files and a ``metadata/`` folder or a
    ``subject_id`` column: the MEDS layout."""
    root = Path(path)
    if not (root / "data").is_dir():
        return False
    files = sorted((root / "data").rglob("*.parquet"))
    if not files:
        return False
    if (root / "metadata").is_dir():
        return True
    import pyarrow.parquet as pq

    return "subject_id" in pq.read_schema(files[0]).names


def _validate(files: list[Path], codes: Path | None) -> None:
    import pyarrow.parquet as pq
    from meds import CodeMetadataSchema, DataSchema

    for f in files:
        try:
            DataSchema.validate(pq.read_schema(f))
        except Exception as exc:  # the schema library's own error types
            raise InputError(
                f"not a MEDS 0.4 data file ({type(exc).__name__}: {exc}); expected subject_id "
                "int64, time timestamp[us] (no time zone), code string, numeric_value float32, "
                "text_value string",
                file=str(f),
            ) from None
    if codes is not None:
        try:
            CodeMetadataSchema.validate(pq.read_schema(codes))
        except Exception as exc:
            raise InputError(
                f"not a MEDS 0.4 code metadata file ({type(exc).__name__}: {exc})",
                file=str(codes),
            ) from None


def _sex(code: str) -> str | None:
    head, _, rest = code.partition("/")
    if head.upper() not in _SEX_PREFIXES:
        return None
    return rest.lstrip("/")


def read_meds(path, options: DataConfig | None = None) -> CodedSource:
    """The coded rows of a MEDS dataset (validated; see the module docstring)."""
    import polars as pl

    opts = options or DataConfig()
    root = Path(path)
    data_dir = root / "data"
    files = sorted(data_dir.rglob("*.parquet")) if data_dir.is_dir() else []
    if not files:
        raise InputError("no MEDS data files (data/*.parquet)", file=str(root))
    codes_file = root / "metadata" / "codes.parquet"
    _validate(files, codes_file if codes_file.exists() else None)
    problems: list[Problem] = []
    if not codes_file.exists():
        problems.append(
            Problem("MEDS", "no_code_metadata", "info",
                    "metadata/codes.parquet is missing (the standard lists every code there)", 1)
        )  # fmt: skip

    parts, persons, unmapped = [], [], []
    rows_read = 0
    for f in files:
        rel = str(f.relative_to(root))
        scan = pl.scan_parquet(f).with_row_index("row", offset=1)
        names = scan.collect_schema().names()
        distinct = scan.select(pl.col("code").unique()).collect()["code"].to_numpy()
        kinds, _ = classify_codes(pd.Series(distinct, dtype=object), opts.codes)
        special = np.array(
            [c in (BIRTH, DEATH) or _sex(str(c)) is not None for c in distinct], dtype=bool
        )
        wanted = distinct[(kinds != "") | special].tolist()
        counts = (
            scan.filter(~pl.col("code").is_in(wanted))
            .group_by("code")
            .agg(pl.len().alias("n"), pl.col("row").first(), pl.col("subject_id").first())
            .collect()
        )
        if counts.height:
            unmapped.append(counts.with_columns(pl.lit(rel).alias("file")).to_pandas())
        rows_read += int(scan.select(pl.len()).collect().item())
        cols = [pl.col("subject_id").cast(pl.String).alias("subject"), pl.col("time"),
                pl.col("code"), pl.col("row")]  # fmt: skip
        num = pl.col("numeric_value").cast(pl.String) if "numeric_value" in names else None
        text = pl.col("text_value").cast(pl.String) if "text_value" in names else None
        censored = text.str.contains(r"^\s*[<>]") if text is not None else pl.lit(False)
        if num is not None and text is not None:
            value = pl.when(num.is_null() | censored).then(text).otherwise(num)
        else:
            value = num if num is not None else (text if text is not None else pl.lit(None))
        cols += [
            value.cast(pl.String).alias("value"),
            (text if text is not None else pl.lit(None, pl.String)).alias("detail"),
            _optional(names, "unit", pl.String),
            _optional(names, "site", pl.String),
            _optional(names, "end_time", pl.Datetime("us")),
        ]
        got = scan.filter(pl.col("code").is_in(wanted)).select(cols).collect().to_pandas()
        got["file"] = rel
        is_person = got["code"].isin([BIRTH]) | got["code"].str.match(r"(?i)^(?:gender|sex)/")
        persons.append(got[is_person])
        parts.append(got[~is_person])

    rows = pd.concat(parts, ignore_index=True)
    person_rows = pd.concat(persons, ignore_index=True)
    source = CodedSource(
        format="MEDS",
        source=str(root),
        rows=_rows(rows),
        persons=_persons(person_rows),
        problems=problems,
        rows_read=rows_read,
    )
    if unmapped:
        u = pd.concat(unmapped, ignore_index=True)
        kinds, _ = classify_codes(u["code"], opts.codes)
        u = u[kinds == ""]  # codes mapped in another file are counted there
        if len(u):
            source.unmapped = u
    source.problems.append(
        Problem("MEDS", "time_without_zone", "info",
                "MEDS times have no time zone (the standard's timestamp type): read as UTC; "
                "hours since infusion are differences on the dataset's one clock", 1)
    )  # fmt: skip
    return source


def _optional(names, column: str, dtype):
    import polars as pl

    if column in names:
        return pl.col(column).cast(dtype).alias(column)
    return pl.lit(None, dtype).alias(column)


def _utc(series: pd.Series) -> pd.Series:
    s = pd.to_datetime(series)
    if getattr(s.dt, "tz", None) is None:
        s = s.dt.tz_localize("UTC")
    return s.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _rows(got: pd.DataFrame) -> pd.DataFrame:
    time = _utc(got["time"])
    code = got["code"].astype(object)
    out = pd.DataFrame(
        {
            "subject": got["subject"].astype(object),
            "time": time,
            "time_problem": np.where(time.isna(), "missing", ""),
            "end_time": _utc(got["end_time"]),
            "code": code,
            "value": got["value"].astype(object),
            "unit": got["unit"].astype(object),
            "detail": got["detail"].astype(object),
            "site": got["site"].astype(object),
            "file": got["file"].astype(object),
            "row": got["row"].to_numpy(dtype="int64"),
        }
    )
    return out


def _persons(got: pd.DataFrame) -> pd.DataFrame:
    birth = got[got["code"] == BIRTH]
    sex = got[got["code"] != BIRTH]
    b = birth.drop_duplicates("subject").set_index("subject")
    s = sex.sort_values("time", na_position="first").drop_duplicates("subject", keep="last")
    subjects = pd.Index(pd.unique(pd.concat([birth["subject"], sex["subject"]])))
    return pd.DataFrame(
        {
            "subject": subjects.to_numpy(dtype=object),
            "sex": s.set_index("subject")["code"].map(_sex).reindex(subjects).to_numpy(object),
            "birth": _utc(b["time"].reindex(subjects)).to_numpy(),
            "file": "",
            "row": 0,
        }
    ).assign(birth=lambda d: pd.Series(d["birth"], dtype="datetime64[ns, UTC]"))


def load_meds(path, options: DataConfig | None = None) -> Cohort:
    """Read, validate and normalise a MEDS 0.4 dataset into the same :class:`Cohort` the
    contract tables give (see the module docstring and :mod:`crs_ml.ingest.coded.assemble`)."""
    return coded_cohort(read_meds(path, options), options)
