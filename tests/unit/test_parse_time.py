"""One time parser for the data's time columns and the --as-of option."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from crs_ml.errors import InputError
from crs_ml.ingest.values import parse_time, parse_times


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2024-02-03T10:00", "2024-02-03T10:00Z"), ("2024-02-03", "2024-02-03T00:00Z"),
     ("2024-02-03T10:00+01:00", "2024-02-03T09:00Z"), ("2024-02-03T10:00:00Z", "2024-02-03T10:00Z"),
     (datetime(2024, 2, 3, 10), "2024-02-03T10:00Z")],
)  # fmt: skip
def test_iso_8601_and_datetimes_are_read_as_the_data_reads_them(text, expected):
    got = parse_time(text)
    assert got == pd.Timestamp(expected)
    if isinstance(text, str):  # the same instant as the data's time columns give
        ns, problem = parse_times(pd.Series([text]))
        assert problem[0] == "" and ns[0] == got.value


@pytest.mark.parametrize("text", ["03/02/2024", "13/02/2024", "03.02.2024 10:00", "3-2-24"])
def test_day_month_text_is_refused_naming_the_accepted_forms(text):
    with pytest.raises(InputError, match="day/month text, which is ambiguous") as err:
        parse_time(text, "--as-of")
    assert str(err.value).startswith(f"--as-of '{text}'") and "YYYY-MM-DD" in str(err.value)
    assert parse_times(pd.Series([text]))[1][0] == "unparseable"  # the data refuses it too


def test_other_bad_times_say_why():
    with pytest.raises(InputError, match="'yesterday' is not valid: give ISO 8601"):
        parse_time("yesterday")
    with pytest.raises(InputError, match="is before 1900"):
        parse_time("1850-01-01")
