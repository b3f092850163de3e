"""Driver texts built column-wise (crs_ml.scoring.drivers) against the frozen per-group, per-row
implementation (tests/oracle/drivers.py), byte for byte.

Random rows over every feature of the default catalogue (every kind: numbers with units,
signed changes, flags, counts, fold changes, oxygen and vasopressor levels, hours since a
treatment) plus a feature outside the catalogue; values include NaN, +-inf, 0, -0.0, negative,
huge and tiny numbers and rounding edges; contributions include zeros, NaN, +-inf and many
exact ties (drawn from a few values), so the tie rule of the top-n selection is exercised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from oracle import drivers as oracle

from crs_ml.features.catalogue import feature_catalogue, feature_names
from crs_ml.scoring.drivers import FeatureTexts, format_values, signed_hundredths, top_drivers

EDGE_VALUES = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 1.5, 2.5, 3.0, 9.995,
                        10.0, 99.95, 99.94, 100.0, 999.5, 1e15, -1e15, 1e300, -1e300, 1e-12,
                        -1e-12, 0.125, 0.0005, 709.0, 710.0, -745.0, 12345.678, -0.004999])  # fmt: skip
KINDS = ("number", "signed", "flag", "count", "fold", "oxygen", "vaso", "since", "other")
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")


def _features():
    names = [*feature_names(), "custom_score"]
    catalogue = feature_catalogue()
    return names, catalogue


def _random_values(rng, shape):
    pick = rng.random(shape)
    values = rng.normal(0, 1, shape) * 10.0 ** rng.integers(-4, 7, shape)
    values = np.where(pick < 0.3, rng.choice(EDGE_VALUES, shape), values)
    values = np.where((pick >= 0.3) & (pick < 0.45), rng.integers(-3, 6, shape), values)
    return values


def _random_contributions(rng, shape):
    pick = rng.random(shape)
    ties = rng.choice(np.array([0.5, -0.5, 0.25, -0.25, 0.125, 1.005, -1.005]), shape)
    c = rng.normal(0, 0.4, shape)
    c = np.where(pick < 0.45, 0.0, c)  # features the model does not use
    c = np.where((pick >= 0.45) & (pick < 0.7), ties, c)
    c = np.where((pick >= 0.7) & (pick < 0.71), np.nan, c)
    c = np.where((pick >= 0.71) & (pick < 0.712), rng.choice([np.inf, -np.inf], shape), c)
    c = np.where((pick >= 0.712) & (pick < 0.72), -0.0, c)
    return c


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_top_drivers_equal_the_frozen_implementation(seed, n):
    names, catalogue = _features()
    rng = np.random.default_rng(seed)
    rows = 1500
    X = pd.DataFrame(_random_values(rng, (rows, len(names))), columns=names)
    contributions = _random_contributions(rng, (rows, len(names)))
    # some rows with only a few non-zero contributions (fewer than n), some with none
    contributions[:50, :] = 0.0
    contributions[50:100, rng.integers(0, len(names), 50)] = 0.7
    imputed = rng.random((rows, len(names))) < 0.03
    landmark_h = rng.choice(np.array([6.0, 12.0, 24.0, 48.0, 72.5]), rows)
    texts = FeatureTexts.of(names, catalogue)
    new = top_drivers(X, contributions, names, landmark_h, n, catalogue, imputed, texts=texts)
    old = oracle.top_drivers(X, contributions, names, landmark_h, n, catalogue, imputed,
                             texts=texts)  # fmt: skip
    assert new.dtype == object and old.dtype == object
    differ = np.flatnonzero(new != old)
    assert len(differ) == 0, (new[differ[:3]], old[differ[:3]])
    # the draw exercises what it should: ties at the top, listed values of every kind
    assert any(";" in t for t in new) and any("together" in t for t in new)
    assert any(" = yes (" in t or " = no (" in t for t in new)
    assert any(" = x" in t for t in new) and any("not measured yet" in t for t in new)
    assert any("imputed (training median)" in t for t in new)


def test_every_feature_in_the_top_slot_equals_the_frozen_implementation():
    """Each feature in turn the one driver of all rows, over the edge values: every kind and
    unit, every landmark label, in one call."""
    names, catalogue = _features()
    texts = FeatureTexts.of(names, catalogue)
    kinds = {kind for _, kind, _ in texts.specs}
    assert {"number", "signed", "flag", "count", "fold", "oxygen", "vaso", "since"} <= kinds
    rows = len(EDGE_VALUES) * len(names)
    X = pd.DataFrame(np.tile(EDGE_VALUES, len(names))[:, None] * np.ones((1, len(names))),
                     columns=names)  # fmt: skip
    contributions = np.zeros((rows, len(names)))
    contributions[np.arange(rows), np.repeat(np.arange(len(names)), len(EDGE_VALUES))] = 0.3
    landmark_h = np.resize(np.array([6.0, 24.0, 72.5]), rows)
    new = top_drivers(X, contributions, names, landmark_h, 3, catalogue, texts=texts)
    old = oracle.top_drivers(X, contributions, names, landmark_h, 3, catalogue, texts=texts)
    assert list(new) == list(old)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("unit", ["", "pg/mL"])
def test_format_values_equal_the_frozen_implementation(kind, unit):
    rng = np.random.default_rng(7)
    values = np.r_[EDGE_VALUES, _random_values(rng, 400)]
    new = format_values(kind, unit, values)
    old = oracle.format_values(kind, unit, values)
    assert list(new) == list(old)


def test_signed_hundredths_equal_python_formatting_at_every_rounding_edge():
    """The looked-up "+.2f" texts of contributions are Python's own, at and around every
    half-hundredth (where the decimal value and its float differ), for values that round to 0
    (whose sign Python keeps), large ones, and NaN and +-inf."""
    rng = np.random.default_rng(11)
    halves = (np.arange(-20000, 20001) + 0.5) / 100
    near = np.r_[halves, np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf)]
    values = np.r_[
        near,
        rng.normal(0, 1, 20000),
        rng.normal(0, 30, 5000),
        rng.choice([-1, 1], 2000) * 10.0 ** rng.uniform(-8, 8, 2000),
        [0.0, -0.0, 0.001, -0.001, 0.004999, -0.004999, 0.005, -0.005, 99.995, -99.995,
         99.994999, 100.0, 1e300, -1e300, np.nan, np.inf, -np.inf],
    ]  # fmt: skip
    assert signed_hundredths(values) == [f"{v:+.2f}" for v in values.tolist()]


def test_numbers_made_without_their_input_are_not_measured():
    import numpy as np
    import pandas as pd

    from crs_ml.scoring.drivers import not_measured

    names = ["temperature_n", "fever_onset_h", "febrile_hours", "astct_grade_so_far",
             "oxygen_level", "product_axi_cel", "product_tisa_cel", "costim_cd28", "crp_max",
             "age_years"]  # fmt: skip
    X = pd.DataFrame(
        [
            [0, 24.0, 0.0, 0, 0, 0, 0, 0, 12.0, 60],  # no temperature; product unknown
            [3, 10.0, 4.0, 1, 0, 0, 1, 0, np.nan, 60],  # febrile at 10 h; tisa-cel
        ],
        columns=names,
        dtype=float,
    )
    absent = pd.DataFrame(not_measured(X, names), columns=names)
    assert absent.loc[0].to_dict() == {
        "temperature_n": True, "fever_onset_h": True, "febrile_hours": True,
        "astct_grade_so_far": True, "oxygen_level": False,  # support events are recorded
        "product_axi_cel": True, "product_tisa_cel": True, "costim_cd28": True,
        "crp_max": False, "age_years": False,
    }  # fmt: skip
    assert absent.loc[1].to_dict() == {**dict.fromkeys(names, False), "crp_max": True}
