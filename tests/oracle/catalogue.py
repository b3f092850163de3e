"""FROZEN ORACLE (tests only): the feature catalogue as it was before the polars rewrite
(unchanged; used by the oracle builder). Do not edit.

The feature catalogue: every landmark feature with its group, unit, meaning and monotone sign.

``feature_catalogue(config)`` is the contract between :mod:`crs_ml.features.builder` (which computes
the columns in exactly this order) and the models (monotone constraints, names).
``python -m crs_ml.features.catalogue`` prints it as a markdown table (the README includes
that output; it is generated, never hand-copied). The static (time-invariant) patient
features are encoded here too, with the same vocabulary (:func:`static_features`).

Conventions shared by all per-variable features at landmark L: only values with result time
hours <= L are used; non-numeric results (NaN) are ignored; ``last`` is the value with the
largest hours, and among values at the same hours the one with the larger ``source_row`` (the
later row of the input file) wins. ``last``, ``max``/``min``, ``n`` and ``hours_since_last``
use every visible value, including pre-infusion ones; ``baseline`` is the last value at
hours < 0. Censored results (``<x``, ``>x``) enter as the numbers the loader gave them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from crs_ml.cohort import CD28_PRODUCTS, PRODUCTS
from crs_ml.config import FeatureConfig
from crs_ml.errors import ConfigError

LAB_VARIABLES = ("il6", "crp", "ferritin", "ldh", "platelets", "creatinine")
VITAL_VARIABLES = ("temperature", "sbp", "dbp", "heart_rate", "resp_rate", "spo2")
VARIABLES = LAB_VARIABLES + VITAL_VARIABLES
#: variables summarised by their minimum instead of their maximum (low is bad)
MIN_VARIABLES = ("platelets", "sbp", "spo2")
UNITS = {
    "il6": "pg/mL",
    "crp": "mg/L",
    "ferritin": "ng/mL",
    "ldh": "U/L",
    "platelets": "10^9/L",
    "creatinine": "mg/dL",
    "temperature": "degC",
    "sbp": "mmHg",
    "dbp": "mmHg",
    "heart_rate": "/min",
    "resp_rate": "/min",
    "spo2": "%",
}
PRETOCI = (
    ("il6", "max"),
    ("il6", "last"),
    ("crp", "max"),
    ("crp", "last"),
    ("ferritin", "max"),
    ("temperature", "max"),
)
DISEASES = ("LBCL", "B-ALL", "MCL", "MM", "FL", "other")
GROUPS = ("labs", "vitals", "fever", "crs_state", "treatment", "static", "scores")
CATALOGUE_COLUMNS = ["name", "group", "unit", "description", "monotone"]


def _slug(text: str) -> str:
    return text.lower().replace("-", "_")


def _variable_rows(v: str, group: str) -> list[tuple]:
    unit = UNITS[v]
    lab = group == "labs"
    extreme = "min" if v in MIN_VARIABLES else "max"
    sign = -1 if v == "platelets" else 0
    return [
        (f"{v}_baseline", group, unit, f"{v}: last value before infusion (hours < 0)", sign),
        (f"{v}_last", group, unit, f"{v}: most recent value at hours <= L", sign),
        (
            f"{v}_{extreme}",
            group,
            unit,
            f"{v}: {extreme}imum of the values at hours <= L",
            sign if extreme == "min" else 0,
        ),
        (
            f"{v}_change",
            group,
            "log ratio" if lab else unit,
            f"{v}: " + ("ln(last / baseline)" if lab else "last - baseline"),
            0,
        ),
        (
            f"{v}_slope_24h",
            group,
            f"{unit} per h",
            f"{v}: least-squares slope over hours in (L-24, L]; needs 2 distinct times",
            0,
        ),
        (f"{v}_n", group, "count", f"{v}: number of values at hours <= L", 0),
        (f"{v}_hours_since_last", group, "h", f"{v}: L - hours of the last value", 0),
        (f"{v}_measured", group, "0/1", f"{v}: 1 if any value at hours <= L", 0),
    ]


def _all_rows(config: FeatureConfig) -> list[tuple]:
    rows: list[tuple] = []
    for v in LAB_VARIABLES:
        rows += _variable_rows(v, "labs")
    for v, stat in PRETOCI:
        if v == "temperature":
            continue
        rows.append(
            (
                f"{v}_pretoci_{stat}",
                "labs",
                UNITS[v],
                f"{v}: {stat} of the values before the first tocilizumab (all if none)",
                1,
            )
        )
    for v in VITAL_VARIABLES:
        rows += _variable_rows(v, "vitals")
    hf, win = config.high_fever_c, config.early_fever_window_h
    rows += [
        (
            "temperature_pretoci_max",
            "fever",
            "degC",
            "temperature: max of the values before the first tocilizumab (all if none)",
            1,
        ),
        (
            "fever_onset_h",
            "fever",
            "h",
            "first hours >= 0 with temperature >= 38.0 degC; L when none yet (censored)",
            0,
        ),
        ("fever_onset_censored", "fever", "0/1", "1 if no fever yet at L", 0),
        (
            "febrile_hours",
            "fever",
            "h",
            "hours in [0, L] spent febrile, each temperature carried forward to the next one",
            0,
        ),
        (
            "temperature_max_early",
            "fever",
            "degC",
            f"max temperature at hours in [0, min({win:g}, L)]",
            0,
        ),
        (
            "high_fever_early",
            "fever",
            "0/1",
            f"temperature_max_early >= {hf:g} degC (NaN when no temperature in the window)",
            0,
        ),
        ("febrile_now", "crs_state", "0/1", "last temperature at hours <= L is >= 38.0 degC", 0),
        (
            "oxygen_level",
            "crs_state",
            "level",
            "highest oxygen support in [0, L]: 0 none, 1 low flow, 2 high flow, 3 positive pressure",
            0,
        ),
        (
            "vasopressor_level",
            "crs_state",
            "level",
            "vasopressors in [0, L]: 0 none, 1 one, 2 several running at once (vasopressin excluded)",
            0,
        ),
        (
            "astct_grade_so_far",
            "crs_state",
            "grade",
            "highest ASTCT-2019-derived-v4 grade in [0, L] from the data visible at L",
            0,
        ),
        (
            "hours_since_crs_onset",
            "crs_state",
            "h",
            "L - first hours at ASTCT grade >= 1; NaN when no CRS yet",
            0,
        ),
    ]
    for drug in ("tocilizumab", "corticosteroid", "antipyretic"):
        rows += [
            (f"{drug}_given", "treatment", "0/1", f"1 if {drug} was given at hours <= L", 0),
            (
                f"hours_since_{drug}",
                "treatment",
                "h",
                f"L - hours of the first {drug} dose; NaN when not given",
                0,
            ),
        ]
    for p in PRODUCTS:
        rows.append(
            (
                f"product_{_slug(p)}",
                "static",
                "0/1",
                f"product is {p} (all product columns 0 when unknown)",
                0,
            )
        )
    rows += [
        (
            "costim_cd28",
            "static",
            "0/1",
            "CD28-costimulated product (axi-cel, brexu-cel); NaN when product other or unknown",
            0,
        ),
        ("age_years", "static", "years", "age at infusion", 0),
        ("sex_female", "static", "0/1", "1 female, 0 male, NaN unknown", 0),
    ]
    for d in DISEASES:
        rows.append(
            (
                f"disease_{_slug(d)}",
                "static",
                "0/1",
                f"disease is {d} (all disease columns 0 when unknown)",
                0,
            )
        )
    rows += [
        ("landmark_h", "landmark", "h", "the landmark L: hours since infusion", 0),
        (
            "measix_baseline",
            "scores",
            "U/L x mg/dL / 10^9/L",
            "m-EASIX at baseline: LDH x CRP[mg/dL = mg/L / 10] / platelets",
            0,
        ),
        (
            "measix_landmark",
            "scores",
            "U/L x mg/dL / 10^9/L",
            "m-EASIX from the last values at L",
            0,
        ),
        (
            "easix_baseline",
            "scores",
            "U/L x mg/dL / 10^9/L",
            "EASIX at baseline: LDH x creatinine / platelets",
            0,
        ),
        ("easix_landmark", "scores", "U/L x mg/dL / 10^9/L", "EASIX from the last values at L", 0),
    ]
    return rows


def _categories(values: pd.Series, listed, idx: np.ndarray, values_out: dict) -> dict:
    """{output value: float column} for the rows ``idx`` of a categorical attribute.

    Each distinct text is normalised once (strip, lower case): a ``listed`` value maps to
    itself, any other text to 'other', a missing one to '' (unknown). ``values_out`` maps a
    normalised value to the number it becomes; unknown/unlisted values become NaN."""
    codes, uniques = pd.factorize(values, sort=False)
    names = []
    for u in uniques:
        text = str(u).strip().lower() if isinstance(u, str) else ""
        names.append(text if text in listed or not text else "other")
    names.append("")  # code -1: missing
    row_codes = codes[idx]
    return {
        out: (np.array([values_out.get(nm, np.nan) for nm in names])[row_codes])
        for out, values_out in values_out.items()
    }


def static_features(patients: pd.DataFrame, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Static features (product and disease one-hots, costim_cd28, age_years, sex_female) for
    the rows ``idx`` of ``patients``; unknown product or disease -> all-zero one-hot."""
    one_hot = {f"product_{_slug(p)}": {p: 1.0} for p in PRODUCTS}
    for col in one_hot.values():
        col.update({q: 0.0 for q in (*PRODUCTS, "")} | col)
    known = {p: float(p in CD28_PRODUCTS) for p in PRODUCTS if p != "other"}
    f = _categories(patients["product"], PRODUCTS, idx, {**one_hot, "costim_cd28": known})
    age = pd.to_numeric(patients["age_years"], errors="coerce").to_numpy("float64")
    f["age_years"] = age[idx]
    f |= _categories(patients["sex"], ("f", "m"), idx, {"sex_female": {"f": 1.0, "m": 0.0}})
    listed = [d.lower() for d in DISEASES]
    dis = {f"disease_{_slug(d)}": {q: float(q == d) for q in (*listed, "")} for d in listed}
    f |= _categories(patients["disease"], listed, idx, dis)
    return f


def check_groups(config: FeatureConfig) -> None:
    unknown = sorted(set(config.groups) - set(GROUPS))
    if unknown:
        raise ConfigError(
            f"features.groups: unknown group(s) {unknown}; known: {', '.join(GROUPS)}"
        )


def feature_catalogue(config: FeatureConfig | None = None) -> pd.DataFrame:
    """name, group, unit, description, monotone (+1, -1, 0) of the features ``config`` turns on.

    Group 'landmark' (the landmark_h column) is always on."""
    config = config or FeatureConfig()
    return _cached_catalogue(config.model_dump_json()).copy()


def feature_names(config: FeatureConfig | None = None) -> list[str]:
    """``feature_catalogue(config)["name"]`` as a list (cached; no table copied)."""
    config = config or FeatureConfig()
    return list(_cached_catalogue(config.model_dump_json())["name"])


@lru_cache(maxsize=32)
def _cached_catalogue(config_json: str) -> pd.DataFrame:
    """The catalogue of one configuration (keyed by its JSON; callers get copies)."""
    config = FeatureConfig.model_validate_json(config_json)
    check_groups(config)
    on = set(config.groups) | {"landmark"}
    rows = [r for r in _all_rows(config) if r[1] in on]
    cat = pd.DataFrame(rows, columns=CATALOGUE_COLUMNS).astype(
        {"name": object, "group": object, "unit": object, "description": object}
    )
    cat["monotone"] = cat["monotone"].astype("int64")
    return cat


def catalogue_markdown(config: FeatureConfig | None = None) -> str:
    """The catalogue as a markdown table (for the README)."""
    cat = feature_catalogue(config)
    lines = ["| name | group | unit | description | monotone |", "|---|---|---|---|---|"]
    for r in cat.itertuples(index=False):
        desc = str(r.description).replace("|", "\\|")
        sign = f"{r.monotone:+d}" if r.monotone else "0"
        lines.append(f"| `{r.name}` | {r.group} | {r.unit} | {desc} | {sign} |")
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- feature-catalogue:begin (generated by `make readme`; do not edit) -->"
README_END = "<!-- feature-catalogue:end -->"


def readme_with_catalogue(text: str) -> str:
    """``text`` with the block between the README markers replaced by the catalogue."""
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{catalogue_markdown()}{README_END}{tail}"


def main() -> None:  # pragma: no cover - thin wrapper
    """``python -m crs_ml.features.catalogue [--update README.md]``"""
    import sys
    from pathlib import Path

    if len(sys.argv) == 3 and sys.argv[1] == "--update":
        path = Path(sys.argv[2])
        path.write_text(readme_with_catalogue(path.read_text()))
        print(f"updated the feature catalogue in {path}")
    else:
        print(catalogue_markdown(), end="")


if __name__ == "__main__":  # pragma: no cover
    main()
