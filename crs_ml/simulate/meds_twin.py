"""Writing the simulated cohort as a MEDS 0.4 dataset (the MEDS twin of the contract files).

``<out>/data/<shard>.parquet`` (subject_id, time, code, numeric_value, text_value and the
extension columns unit, end_time, site; sorted by subject and time, each subject in one
shard, validated against :class:`meds.DataSchema` before it is written),
``<out>/metadata/codes.parquet`` (every code with its description) and
``<out>/metadata/dataset.json``. The records are :func:`crs_ml.simulate.coded_twin.twin_records`;
per subject also ``MEDS_BIRTH`` and a static ``GENDER//<sex>`` row. MEDS times carry no time
zone: they are written as UTC wall-clock times.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from crs_ml.ingest.codes import code_map, split_code
from crs_ml.simulate.coded_twin import TwinRecords, twin_records

#: subjects per data shard
SHARD_SUBJECTS = 50_000


def _naive(ts: pd.Series) -> np.ndarray:
    return pd.Series(ts, dtype="datetime64[ns, UTC]").dt.tz_localize(None).to_numpy()


def meds_frame(twin: TwinRecords) -> pd.DataFrame:
    """All MEDS rows of the twin (pandas, MEDS column names), sorted by subject and time."""
    ep, rec = twin.episodes, twin.records
    static = pd.DataFrame(
        {
            "subject_id": ep["subject_id"].to_numpy(),
            "time": pd.Series(pd.NaT, index=ep.index, dtype="datetime64[ns, UTC]"),
            "code": "GENDER//" + ep["sex"].astype(str),
        }
    )
    births = pd.DataFrame(
        {"subject_id": ep["subject_id"].to_numpy(), "time": ep["birth"], "code": "MEDS_BIRTH"}
    )
    text = rec["text"].where(rec["text"].notna(), rec["detail"])
    body = pd.DataFrame(
        {
            "subject_id": rec["subject_id"].to_numpy(),
            "time": rec["time"],
            "code": rec["code"],
            "numeric_value": rec["number"].to_numpy(dtype="float32"),
            "text_value": text.to_numpy(dtype=object),
            "unit": rec["unit"].to_numpy(dtype=object),
            "end_time": rec["end_time"],
            "site": rec["site"].to_numpy(dtype=object),
        }
    )
    out = pd.concat([static, births, body], ignore_index=True)
    out["_static"] = out["time"].notna()  # static rows (no time) first
    out = out.sort_values(["subject_id", "_static", "time"], kind="stable").drop(columns="_static")
    return out.reset_index(drop=True)


def _texts(column: pd.Series) -> list:
    return [None if pd.isna(v) else str(v) for v in column.tolist()]


def _table(frame: pd.DataFrame):
    import pyarrow as pa
    from meds import DataSchema

    schema = pa.schema(
        [
            ("subject_id", pa.int64()),
            ("time", pa.timestamp("us")),
            ("code", pa.string()),
            ("numeric_value", pa.float32()),
            ("text_value", pa.large_string()),
            ("unit", pa.string()),
            ("end_time", pa.timestamp("us")),
            ("site", pa.string()),
        ]
    )
    table = pa.table(
        {
            "subject_id": pa.array(frame["subject_id"].to_numpy(dtype="int64")),
            "time": pa.array(_naive(frame["time"]), type=pa.timestamp("us")),
            "code": pa.array(frame["code"].to_numpy(dtype=object), type=pa.string()),
            "numeric_value": pa.array(
                frame["numeric_value"].to_numpy(dtype="float32"),
                mask=frame["numeric_value"].isna().to_numpy(),
            ),
            "text_value": pa.array(_texts(frame["text_value"]), type=pa.large_string()),
            "unit": pa.array(_texts(frame["unit"]), type=pa.string()),
            "end_time": pa.array(_naive(frame["end_time"]), type=pa.timestamp("us")),
            "site": pa.array(_texts(frame["site"]), type=pa.string()),
        },
        schema=schema,
    )
    DataSchema.validate(table)
    return table


def _codes_table(codes: np.ndarray):
    import pyarrow as pa
    from meds import CodeMetadataSchema

    names = {(c.vocabulary_id, c.concept_code): c.concept_name for c in code_map().codes}
    desc = []
    for code in codes:
        vocab, concept = split_code(code)
        desc.append(names.get((vocab, concept)) or None)
    table = pa.table(
        {
            "code": pa.array(list(codes), type=pa.string()),
            "description": pa.array(desc, type=pa.string()),
            "parent_codes": pa.array([[] for _ in codes], type=pa.list_(pa.string())),
        }
    )
    CodeMetadataSchema.validate(table)
    return table


def write_meds(tables: dict[str, pd.DataFrame], out_dir, seed: int) -> dict[str, Path]:
    """Write the MEDS twin of a simulation's clean tables; returns the paths written."""
    import meds
    import pyarrow.parquet as pq

    out = Path(out_dir)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    frame = meds_frame(twin_records(tables, seed))
    paths: dict[str, Path] = {}
    shard = (frame["subject_id"].to_numpy() - 1) // SHARD_SUBJECTS
    for k in np.unique(shard):
        path = out / "data" / f"{int(k)}.parquet"
        pq.write_table(_table(frame[shard == k]), path)
        paths[f"data {int(k)}"] = path
    codes_path = out / "metadata" / "codes.parquet"
    pq.write_table(_codes_table(np.sort(frame["code"].unique())), codes_path)
    paths["codes"] = codes_path
    dataset = {
        "dataset_name": "crs_ml simulated cohort",
        "dataset_version": f"seed {seed}",
        "etl_name": "crs-ml simulate --format meds",
        "meds_version": meds.__version__,
        "code_modifier_columns": ["unit"],
        "site_id_columns": ["site"],
        "other_extension_columns": ["end_time"],
    }
    meta = out / "metadata" / "dataset.json"
    meta.write_text(json.dumps(dataset, indent=2))
    paths["dataset"] = meta
    return paths
