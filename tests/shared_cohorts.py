"""Tiny hand-made cohorts for tests that pin outcome rules (censoring, competing deaths).

Every patient is one person at site A with one CRP value at 2 h; the outcomes are given by
hand, so a test can say what each patient's follow-up is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crs_ml.cohort import EVENT_COLUMNS, OBSERVATION_COLUMNS, OUTCOME_COLUMNS, Cohort


def outcome_cohort(outcomes: dict[str, tuple], crp) -> Cohort:
    """A cohort of ``outcomes``' patients: {patient_id: (grade3_hours, death_hours,
    followup_hours)} (NaN: none), person id the patient id in capitals, no events; ``crp``
    is the CRP at 2 h, one number for all or a list in the order of ``outcomes``."""
    ids = list(outcomes)
    p = pd.DataFrame({"patient_id": pd.Series(ids, dtype=object)})
    p["person_id"] = p["patient_id"].str.upper()
    p["infusion_time"] = pd.Series(pd.NaT, index=p.index, dtype="datetime64[ns, UTC]")
    p["product"], p["age_years"], p["sex"], p["disease"] = "axi-cel", 50.0, "F", "LBCL"
    p["site"] = "A"
    o = pd.DataFrame({"patient_id": pd.Series(ids, dtype=object), "hours": 2.0,
                      "variable": "crp", "value": crp})  # fmt: skip
    o["censored"], o["out_of_range"] = np.int8(0), False
    o["source_row"] = np.arange(1, len(o) + 1, dtype=np.int64)
    e = pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})
    e = e.astype({"hours": float, "end_hours": float, "source_row": np.int64})
    out = pd.DataFrame(
        [(k, 0, *v, "test") for k, v in outcomes.items()],
        columns=["patient_id", "crs_max_grade", "grade3_hours", "death_hours", "followup_hours",
                 "label_definition"],
    )[OUTCOME_COLUMNS]  # fmt: skip
    return Cohort(p, o[OBSERVATION_COLUMNS], e[EVENT_COLUMNS], outcomes=out)
