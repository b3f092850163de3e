"""pandas_table gives what to_pandas gives, small tables column by column included."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import polars as pl
import pytest

from crs_ml import cohort as cohort_module
from crs_ml.cohort import pandas_table


def _table(n: int, **extra) -> pl.DataFrame:
    rng = np.random.default_rng(n)
    value = rng.normal(size=n)
    value[::3] = np.nan
    return pl.DataFrame(
        {
            "patient_id": pl.Series(
                [None if i % 4 == 0 else f"P{i}" for i in range(n)], dtype=pl.String
            ),
            "hours": pl.Series(value).set(pl.Series(np.arange(n) % 5 == 0), None),
            "value32": pl.Series(value, dtype=pl.Float32),
            "censored": pl.Series(np.arange(n) % 3 - 1, dtype=pl.Int8),
            "source_row": pl.Series(np.arange(1, n + 1), dtype=pl.Int64),
            "out_of_range": np.arange(n) % 2 == 0,
            **extra,
        }
    )


@pytest.mark.parametrize("n", [0, 1, 7, 1500])
def test_the_same_frame_as_to_pandas(n):
    frame = _table(n)
    assert (n < cohort_module.SMALL_TABLE_ROWS) == (n != 1500)  # both paths are measured
    pd.testing.assert_frame_equal(pandas_table(frame), frame.to_pandas(), check_exact=True)
    assert n == 0 or pandas_table(frame)["patient_id"].dtype == cohort_module.TEXT


@pytest.mark.parametrize(
    "extra",
    [
        {"flag": pl.Series([True, None, False])},  # a null among flags
        {"count": pl.Series([1, None, 3], dtype=pl.Int64)},  # ... among integers
        {"when": pl.Series([datetime(2026, 1, 1)] * 3)},  # another type
    ],
)
def test_other_columns_go_through_to_pandas(extra):
    frame = _table(3, **extra)
    pd.testing.assert_frame_equal(pandas_table(frame), frame.to_pandas(), check_exact=True)
