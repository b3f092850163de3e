"""The simulated cohort as coded records: what the MEDS and FHIR twins write.

From the clean contract tables (relative hours) of one simulation: every infusion episode
becomes one subject (the simulator draws a re-infusion's sex, age and course independently
of the earlier episode, which one person record cannot hold, so ``person_id`` is the one
column a twin does not carry: it reads back as the subject), with an infusion time on a
whole minute between 2019 and 2024 (drawn from the seed), a birth date giving the episode's
age in completed years, and one record per fact, coded with the first package code of its
target in the shared code mappings:

- observations: the variable's first LOINC code, the value (a detection limit as ``<1.5``)
  and the canonical unit, at infusion + hours (times on the simulator's 36 s grid, so the
  hours read back exactly);
- events: the event's code, start and end, the detail (drug and dose, oxygen flow); deaths
  as the MEDS death code with the cause;
- the infusion: the product's HCPCS code at the infusion time, at the episode's site;
- the disease: its ICD-10-CM code 30 days before the infusion;
- outcomes: a CRS grade record (SNOMED 1290005006, value = the highest grade) at the time
  grade 3 was reached, or at the infusion for grades 1-2 (the contract has no onset for
  them); none for grade 0; the end of follow-up as a lost-to-follow-up record; the grading
  definition as the grade record's text.

The simulator's truth (its true risk) has no place in these formats and is not written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crs_ml.ingest.coded.mapping import DEATH_CODE, preferred_code

_FIRST_MINUTE = pd.Timestamp("2019-01-01", tz="UTC")
_SPAN_MINUTES = 5 * 365 * 1440


@dataclass
class TwinRecords:
    """``episodes``: one row per subject (subject_id int64 from 1, patient_id of the
    simulation, infusion_time, birth, sex, site, product); ``records``: subject_id, time,
    end_time (datetime64[ns, UTC]), kind, code, number (float64), text, unit, detail."""

    episodes: pd.DataFrame
    records: pd.DataFrame


def _seconds(hours: np.ndarray) -> pd.TimedeltaIndex:
    return pd.to_timedelta(np.round(np.asarray(hours, dtype="float64") * 3600.0), unit="s")


def _codes(kind: str, targets) -> np.ndarray:
    found = {t: preferred_code(kind, t) for t in pd.unique(pd.Series(targets, dtype=object))}
    return pd.Series(targets, dtype=object).map(found).to_numpy(dtype=object)


def twin_records(tables: dict[str, pd.DataFrame], seed: int) -> TwinRecords:
    """The coded records of a simulation's clean tables (see the module docstring)."""
    rng = np.random.default_rng([seed, 20260612])
    pts = tables["patients"].reset_index(drop=True)
    n = len(pts)
    subject = np.arange(1, n + 1, dtype=np.int64)
    infusion = _FIRST_MINUTE + pd.to_timedelta(rng.integers(0, _SPAN_MINUTES, n), unit="min")
    age = pts["age_years"].to_numpy(dtype="float64")
    days = rng.integers(1, 360, n)
    birth = pd.Series(
        [
            (t.normalize() - pd.DateOffset(years=int(a)) - pd.Timedelta(days=int(d)))
            if np.isfinite(a)
            else pd.NaT
            for t, a, d in zip(infusion, age, days, strict=True)
        ],
        dtype="datetime64[ns, UTC]",
    )
    episodes = pd.DataFrame(
        {
            "subject_id": subject,
            "patient_id": pts["patient_id"].astype(str).to_numpy(dtype=object),
            "infusion_time": pd.Series(infusion, dtype="datetime64[ns, UTC]"),
            "birth": birth,
            "sex": pts["sex"].astype(object).to_numpy(),
            "site": pts["site"].astype(object).to_numpy(),
            "product": pts["product"].astype(object).to_numpy(),
        }
    )
    index = pd.Index(episodes["patient_id"])
    inf_of = pd.Series(episodes["infusion_time"].to_numpy(), index=index)

    def at(patient_ids, hours) -> pd.Series:
        base = pd.DatetimeIndex(inf_of.reindex(pd.Index(patient_ids)))
        return pd.Series(base + _seconds(hours), dtype="datetime64[ns, UTC]")

    def sid(patient_ids) -> np.ndarray:
        return subject[index.get_indexer(pd.Index(patient_ids))]

    parts = []
    obs = tables["observations"]
    text = obs["value"].astype(str).to_numpy(dtype=object)
    censored = pd.Series(text).str.match(r"^[<>]").to_numpy()
    number = pd.to_numeric(pd.Series(text).str.lstrip("<>"), errors="coerce").to_numpy()
    parts.append(
        pd.DataFrame(
            {
                "subject_id": sid(obs["patient_id"]),
                "time": at(obs["patient_id"], obs["hours"]),
                "kind": "observation",
                "code": _codes("variable", obs["variable"]),
                "number": number,
                "text": np.where(censored, text, None),
                "unit": obs["unit"].to_numpy(dtype=object),
            }
        )
    )
    ev = tables["events"]
    death = (ev["event"] == "death").to_numpy()
    codes = np.full(len(ev), DEATH_CODE, dtype=object)
    codes[~death] = _codes("event", ev["event"][~death])
    parts.append(
        pd.DataFrame(
            {
                "subject_id": sid(ev["patient_id"]),
                "time": at(ev["patient_id"], ev["hours"]),
                "end_time": at(ev["patient_id"], ev["end_hours"]),
                "kind": np.where(death, "death", "event"),
                "code": codes,
                "detail": ev["detail"].astype(object).where(ev["detail"].notna(), None),
            }
        )
    )
    parts.append(
        pd.DataFrame(
            {
                "subject_id": subject,
                "time": episodes["infusion_time"],
                "kind": "infusion",
                "code": _codes("product", pts["product"]),
                "site": episodes["site"],
            }
        )
    )
    dcode = _codes("disease", pts["disease"].astype(object))
    parts.append(
        pd.DataFrame(
            {
                "subject_id": subject,
                "time": episodes["infusion_time"] - pd.Timedelta(days=30),
                "kind": "disease",
                "code": dcode,
            }
        )
    )
    oc = tables.get("outcomes")
    if oc is not None:
        parts.extend(_outcome_records(oc, at, sid))
    records = pd.concat(parts, ignore_index=True)
    for c in ("end_time",):
        records[c] = pd.Series(records[c], dtype="datetime64[ns, UTC]")
    for c in ("text", "unit", "detail", "site"):
        records[c] = records[c].astype(object).where(records[c].notna(), None)
    records = records.sort_values(["subject_id", "time", "code"], kind="stable")
    return TwinRecords(episodes, records.reset_index(drop=True))


def _outcome_records(oc: pd.DataFrame, at, sid) -> list[pd.DataFrame]:
    grade = oc["crs_max_grade"].to_numpy(dtype="int64")
    g3 = oc["grade3_hours"].to_numpy(dtype="float64")
    has = grade >= 1
    hours = np.where(grade >= 3, g3, 0.0)[has]
    label = oc["label_definition"].astype(object).where(oc["label_definition"].notna(), None)
    out = [
        pd.DataFrame(
            {
                "subject_id": sid(oc["patient_id"][has]),
                "time": at(oc["patient_id"][has], hours),
                "kind": "crs_grade",
                "code": preferred_code("outcome", "crs_grade"),
                "number": grade[has].astype("float64"),
                "detail": label[has].to_numpy(dtype=object),
            }
        )
    ]
    follow = oc["followup_hours"].notna().to_numpy()
    if follow.any():
        out.append(
            pd.DataFrame(
                {
                    "subject_id": sid(oc["patient_id"][follow]),
                    "time": at(oc["patient_id"][follow], oc["followup_hours"][follow]),
                    "kind": "followup_end",
                    "code": preferred_code("outcome", "followup_end"),
                }
            )
        )
    return out
