"""The loader's fast paths give what the slow ones give.

- Values: polars casts a text to a number row by row and only the texts it cannot read go
  through the text parser; this is exact only if every text polars reads as a finite number
  is read by the parser as the same number (plain, uncensored). Checked on number-like texts
  (digits, signs, dots, exponents, separators, spaces, inf/nan spellings), and the column
  result against the parser text by text.
- Short text columns (one patient's records) are stripped and factorised in plain Python;
  long ones by polars. Both give the same texts, codes and order of first appearance.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from crs_ml.ingest import values

NUMBER_LIKE = st.text(
    alphabet=st.sampled_from(list("0123456789.eE+-_ ,'\u00a0\tinfatyINFATYxd<>")),
    max_size=12,
)
TEXTS = st.lists(
    st.one_of(st.none(), st.text(alphabet=st.sampled_from(list("ab \t\u00a0\u2009\n\x1c-")))),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(NUMBER_LIKE, min_size=1, max_size=30))
def test_polars_numbers_are_the_text_parsers_numbers(texts):
    cast = pl.Series(texts, dtype=pl.String).cast(pl.Float64, strict=False).to_list()
    for text, number in zip(texts, cast, strict=True):
        if number is not None and np.isfinite(number):
            assert values.parse_text_value(text) == (number, 0, ""), text
    value, censored, kind = values.value_codes(pl.Series(texts, dtype=pl.String), "half")
    for i, text in enumerate(texts):
        v, c, k = values.parse_text_value(text, "half")
        assert (value[i] == v) or (np.isnan(value[i]) and np.isnan(v)), text
        assert censored[i] == c and values.KIND_TEXTS[kind[i]] == k, text


@settings(max_examples=200, deadline=None)
@given(TEXTS)
def test_short_columns_in_python_match_polars(texts):
    s = pl.Series("t", texts, dtype=pl.String)
    short_strip = values.strip_text(s)
    short_codes, short_uniques = values.factorize(s)
    saved = values.SMALL
    values.SMALL = -1  # every column through polars
    try:
        long_strip = values.strip_text(s)
        long_codes, long_uniques = values.factorize(s)
    finally:
        values.SMALL = saved
    assert short_strip.to_list() == long_strip.to_list()
    assert short_strip.to_list() == [None if t is None else t.strip() for t in texts]
    assert short_codes.tolist() == long_codes.tolist()
    assert short_uniques.to_list() == long_uniques.to_list()
