"""The feature catalogue: every landmark feature with its group, unit, meaning and monotone sign.

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

Every feature is DECLARED once, as a :class:`Feature` (name, group, unit, description,
monotone sign, the variable or event it reads, its aggregation and window); the builder
computes each declaration with the kernel its ``aggregation`` names, so the catalogue and the
code cannot disagree. The per-variable summaries come from the variable catalogue
(:mod:`crs_ml.variables`: kind, clinical direction, monotone signs, pre-tocilizumab
summaries), so a variable added there gets its features without code changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from crs_ml.cohort import CD28_PRODUCTS, PRODUCTS
from crs_ml.config import FeatureConfig
from crs_ml.errors import ConfigError
from crs_ml.variables import CORE_VARIABLES, Variable
from crs_ml.variables import VARIABLES as VARIABLE_CATALOGUE

#: group of the per-variable summaries, by the catalogue's kind of variable
KIND_GROUPS = {"lab": "labs", "vital": "vitals"}
#: the 12 variables of the default features, and their split into labs and vitals
VARIABLES = CORE_VARIABLES
LAB_VARIABLES = tuple(v for v in VARIABLES if VARIABLE_CATALOGUE[v].kind == "lab")
VITAL_VARIABLES = tuple(v for v in VARIABLES if VARIABLE_CATALOGUE[v].kind == "vital")
#: variables summarised by their minimum instead of their maximum (low is bad)
MIN_VARIABLES = tuple(v for v in VARIABLES if VARIABLE_CATALOGUE[v].direction < 0)
UNITS = {v: VARIABLE_CATALOGUE[v].unit for v in VARIABLES}
PRETOCI = tuple((v, stat) for v in VARIABLES for stat in VARIABLE_CATALOGUE[v].pretoci)
#: window of the slope feature (hours before L)
SLOPE_WINDOW_H = 24.0
DRUGS = ("tocilizumab", "corticosteroid", "antipyretic")
DISEASES = ("LBCL", "B-ALL", "MCL", "MM", "FL", "other")
GROUPS = ("labs", "vitals", "fever", "crs_state", "treatment", "static", "scores")
CATALOGUE_COLUMNS = ["name", "group", "unit", "description", "monotone"]
#: below this many patients the static features' texts are mapped one by one (no factorize)
SMALL_PATIENTS = 1_000


@dataclass(frozen=True)
class Feature:
    """One declared landmark feature; the builder computes it with the kernel named by
    ``aggregation`` from the data of ``variable`` (a catalogue variable, an event name or a
    patient attribute; "" for features of several inputs) visible at L."""

    name: str
    group: str
    unit: str
    description: str
    monotone: int = 0
    variable: str = ""
    aggregation: str = ""
    window_h: float | None = None


def _slug(text: str) -> str:
    return text.lower().replace("-", "_")


def variable_features(var: Variable, group: str) -> list[Feature]:
    """The standard summaries of one catalogue variable (see the module docstring)."""
    v, unit, sign = var.name, var.unit, var.monotone.get
    lab = var.kind != "vital"
    extreme = "min" if var.direction < 0 else "max"
    w = SLOPE_WINDOW_H
    return [
        Feature(f"{v}_baseline", group, unit, f"{v}: last value before infusion (hours < 0)",
                sign("baseline", 0), v, "baseline"),
        Feature(f"{v}_last", group, unit, f"{v}: most recent value at hours <= L",
                sign("last", 0), v, "last"),
        Feature(f"{v}_{extreme}", group, unit, f"{v}: {extreme}imum of the values at hours <= L",
                sign(extreme, 0), v, extreme),
        Feature(f"{v}_change", group, "log ratio" if lab else unit,
                f"{v}: " + ("ln(last / baseline)" if lab else "last - baseline"),
                sign("change", 0), v, "log_ratio" if lab else "difference"),
        Feature(f"{v}_slope_{w:g}h", group, f"{unit} per h",
                f"{v}: least-squares slope over hours in (L-{w:g}, L]; needs 2 distinct times",
                sign(f"slope_{w:g}h", 0), v, "slope", w),
        Feature(f"{v}_n", group, "count", f"{v}: number of values at hours <= L", 0, v, "count"),
        Feature(f"{v}_hours_since_last", group, "h", f"{v}: L - hours of the last value", 0, v,
                "hours_since_last"),
        Feature(f"{v}_measured", group, "0/1", f"{v}: 1 if any value at hours <= L", 0, v,
                "measured"),
    ]  # fmt: skip


def pretoci_features(var: Variable, group: str) -> list[Feature]:
    """The variable's declared summaries of the values before the first tocilizumab dose."""
    return [
        Feature(
            f"{var.name}_pretoci_{stat}",
            var.pretoci_group or group,
            var.unit,
            f"{var.name}: {stat} of the values before the first tocilizumab (all if none)",
            var.monotone.get(f"pretoci_{stat}", 0),
            var.name,
            f"pretoci_{stat}",
        )
        for stat in var.pretoci
    ]


def _variable_blocks(variables: tuple[str, ...]) -> dict[str, list[Feature]]:
    """{group: features} of the per-variable and pre-tocilizumab features, in order."""
    blocks: dict[str, list[Feature]] = {"labs": [], "vitals": [], "fever": []}
    for kind in ("lab", "vital"):
        group = KIND_GROUPS[kind]
        chosen = [VARIABLE_CATALOGUE[v] for v in variables if VARIABLE_CATALOGUE[v].kind == kind]
        for var in chosen:
            blocks[group] += variable_features(var, group)
        for var in chosen:
            for f in pretoci_features(var, group):
                blocks.setdefault(f.group, []).append(f)
    return blocks


def _declarations(config: FeatureConfig, variables: tuple[str, ...]) -> list[Feature]:
    blocks = _variable_blocks(variables)
    hf, win = config.high_fever_c, config.early_fever_window_h
    rows = [*blocks.pop("labs"), *blocks.pop("vitals"), *blocks.pop("fever")]
    rows += [
        Feature("fever_onset_h", "fever", "h",
                "first hours >= 0 with temperature >= 38.0 degC; L when none yet (censored)",
                0, "temperature", "fever_onset_h"),
        Feature("fever_onset_censored", "fever", "0/1", "1 if no fever yet at L", 0,
                "temperature", "fever_onset_censored"),
        Feature("febrile_hours", "fever", "h",
                "hours in [0, L] spent febrile, each temperature carried forward to the next one",
                0, "temperature", "febrile_hours"),
        Feature("temperature_max_early", "fever", "degC",
                f"max temperature at hours in [0, min({win:g}, L)]", 0, "temperature",
                "max_early", win),
        Feature("high_fever_early", "fever", "0/1",
                f"temperature_max_early >= {hf:g} degC (NaN when no temperature in the window)",
                0, "temperature", "high_fever_early", win),
        Feature("febrile_now", "crs_state", "0/1",
                "last temperature at hours <= L is >= 38.0 degC", 0, "temperature",
                "febrile_now"),
        Feature("oxygen_level", "crs_state", "level",
                "highest oxygen support in [0, L]: 0 none, 1 low flow, 2 high flow, 3 positive "
                "pressure", 0, "", "oxygen_level"),
        Feature("vasopressor_level", "crs_state", "level",
                "vasopressors in [0, L]: 0 none, 1 one, 2 several running at once (vasopressin "
                "excluded)", 0, "", "vasopressor_level"),
        Feature("astct_grade_so_far", "crs_state", "grade",
                "highest ASTCT-2019-derived-v4 grade in [0, L] from the data visible at L", 0,
                "", "astct_grade_so_far"),
        Feature("hours_since_crs_onset", "crs_state", "h",
                "L - first hours at ASTCT grade >= 1; NaN when no CRS yet", 0, "",
                "hours_since_crs_onset"),
    ]  # fmt: skip
    for drug in DRUGS:
        rows += [
            Feature(f"{drug}_given", "treatment", "0/1", f"1 if {drug} was given at hours <= L",
                    0, drug, "given"),
            Feature(f"hours_since_{drug}", "treatment", "h",
                    f"L - hours of the first {drug} dose; NaN when not given", 0, drug,
                    "hours_since_first"),
        ]  # fmt: skip
    for p in PRODUCTS:
        rows.append(Feature(f"product_{_slug(p)}", "static", "0/1",
                            f"product is {p} (all product columns 0 when unknown)", 0,
                            "product", "static"))  # fmt: skip
    rows += [
        Feature("costim_cd28", "static", "0/1",
                "CD28-costimulated product (axi-cel, brexu-cel); NaN when product other or "
                "unknown", 0, "product", "static"),
        Feature("age_years", "static", "years", "age at infusion", 0, "age_years", "static"),
        Feature("sex_female", "static", "0/1", "1 female, 0 male, NaN unknown", 0, "sex",
                "static"),
    ]  # fmt: skip
    for d in DISEASES:
        rows.append(Feature(f"disease_{_slug(d)}", "static", "0/1",
                            f"disease is {d} (all disease columns 0 when unknown)", 0,
                            "disease", "static"))  # fmt: skip
    unit = "U/L x mg/dL / 10^9/L"
    rows += [
        Feature("landmark_h", "landmark", "h", "the landmark L: hours since infusion", 0, "",
                "landmark"),
        Feature("measix_baseline", "scores", unit,
                "m-EASIX at baseline: LDH x CRP[mg/dL = mg/L / 10] / platelets", 0, "baseline",
                "measix"),
        Feature("measix_landmark", "scores", unit, "m-EASIX from the last values at L", 0,
                "last", "measix"),
        Feature("easix_baseline", "scores", unit,
                "EASIX at baseline: LDH x creatinine / platelets", 0, "baseline", "easix"),
        Feature("easix_landmark", "scores", unit, "EASIX from the last values at L", 0, "last",
                "easix"),
    ]  # fmt: skip
    return rows


def feature_variables(config: FeatureConfig | None = None) -> tuple[str, ...]:
    """The catalogue variables whose summaries ``config`` turns on, in catalogue order (all
    of them when ``config.variables`` is None)."""
    chosen = None if config is None or config.variables is None else set(config.variables)
    return tuple(v for v in VARIABLE_CATALOGUE if chosen is None or v in chosen)


def measured_variables(observations: pd.DataFrame) -> list[str]:
    """Catalogue variables with at least one numeric value in ``observations``."""
    numeric = observations["variable"][observations["value"].notna()]
    present = set(pd.unique(numeric.astype(object)))
    return [v for v in VARIABLE_CATALOGUE if v in present]


def select_feature_variables(cohort, config: FeatureConfig) -> tuple[FeatureConfig, list[str]]:
    """``config`` with its variables decided on ``cohort``, the TRAINING data, and the
    catalogue variables dropped. When ``config.variables`` is None: every catalogue variable
    with at least one numeric value in the cohort (the others would give all-missing
    columns); a given list is kept as it is. Scoring and validation use the stored list,
    never their own data's."""
    if config.variables is not None:
        return config, []
    kept = measured_variables(cohort.observations)
    dropped = [v for v in VARIABLE_CATALOGUE if v not in kept]
    return config.model_copy(update={"variables": kept}), dropped


def _categories(values: pd.Series, listed, idx: np.ndarray, values_out: dict) -> dict:
    """{output value: float column} for the rows ``idx`` of a categorical attribute.

    Each distinct text is normalised once (strip, lower case): a ``listed`` value maps to
    itself, any other text to 'other', a missing one to '' (unknown). ``values_out`` maps a
    normalised value to the number it becomes; unknown/unlisted values become NaN."""
    if len(values) < SMALL_PATIENTS:  # a few patients: their texts one by one, no factorize
        texts = values.tolist()
        names = [_category(texts[i], listed) for i in idx.tolist()]
        return {
            out: np.array([values_out.get(nm, np.nan) for nm in names], dtype=np.float64)
            for out, values_out in values_out.items()
        }
    codes, uniques = pd.factorize(values, sort=False)
    names = [_category(u, listed) for u in uniques]
    names.append("")  # code -1: missing
    row_codes = codes[idx]
    return {
        out: (np.array([values_out.get(nm, np.nan) for nm in names])[row_codes])
        for out, values_out in values_out.items()
    }


def _category(value, listed) -> str:
    """A listed value itself, any other text 'other', no text '' (stripped, lower case)."""
    text = str(value).strip().lower() if isinstance(value, str) else ""
    return text if text in listed or not text else "other"


@lru_cache(maxsize=1)
def _static_values() -> tuple[dict, dict, list[str], dict]:
    """(product columns, sex columns, listed diseases, disease columns): for each output
    column of static_features, the number each normalised value becomes (built once)."""
    one_hot = {f"product_{_slug(p)}": {p: 1.0} for p in PRODUCTS}
    for col in one_hot.values():
        col.update({q: 0.0 for q in (*PRODUCTS, "")} | col)
    known = {p: float(p in CD28_PRODUCTS) for p in PRODUCTS if p != "other"}
    listed = [d.lower() for d in DISEASES]
    dis = {f"disease_{_slug(d)}": {q: float(q == d) for q in (*listed, "")} for d in listed}
    return {**one_hot, "costim_cd28": known}, {"sex_female": {"f": 1.0, "m": 0.0}}, listed, dis


def static_features(patients: pd.DataFrame, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Static features (product and disease one-hots, costim_cd28, age_years, sex_female) for
    the rows ``idx`` of ``patients``; unknown product or disease -> all-zero one-hot."""
    products, sex, listed, diseases = _static_values()
    f = _categories(patients["product"], PRODUCTS, idx, products)
    age = patients["age_years"]
    if age.dtype != np.float64:  # numbers as they are, anything else coerced
        age = pd.to_numeric(age, errors="coerce")
    age = age.to_numpy("float64")
    f["age_years"] = age[idx]
    f |= _categories(patients["sex"], ("f", "m"), idx, sex)
    f |= _categories(patients["disease"], listed, idx, diseases)
    return f


def check_groups(config: FeatureConfig) -> None:
    unknown = sorted(set(config.groups) - set(GROUPS))
    if unknown:
        raise ConfigError(
            f"features.groups: unknown group(s) {unknown}; known: {', '.join(GROUPS)}"
        )


def feature_declarations(config: FeatureConfig | None = None) -> tuple[Feature, ...]:
    """The declared features ``config`` turns on, in column order (cached per config).

    Group 'landmark' (the landmark_h column) is always on."""
    config = config or FeatureConfig()
    return _cached(config.model_dump_json(), catalogue_key())[0]


def feature_catalogue(config: FeatureConfig | None = None) -> pd.DataFrame:
    """name, group, unit, description, monotone (+1, -1, 0) of the features ``config`` turns on.

    Group 'landmark' (the landmark_h column) is always on."""
    config = config or FeatureConfig()
    return _cached(config.model_dump_json(), catalogue_key())[1].copy()


def feature_names(config: FeatureConfig | None = None) -> list[str]:
    """``feature_catalogue(config)["name"]`` as a list (cached; no table copied)."""
    config = config or FeatureConfig()
    return list(_cached(config.model_dump_json(), catalogue_key())[2])


def catalogue_key() -> tuple:
    """Identity of the variable catalogue's current entries (a cache key: a variable added
    or redeclared at run time gives a new key)."""
    return tuple((name, id(var)) for name, var in VARIABLE_CATALOGUE.items())


@lru_cache(maxsize=64)
def _cached(
    config_json: str, catalogue: tuple
) -> tuple[tuple[Feature, ...], pd.DataFrame, tuple[str, ...]]:
    """(declarations, catalogue table, names) of one configuration and variable catalogue."""
    config = FeatureConfig.model_validate_json(config_json)
    check_groups(config)
    on = set(config.groups) | {"landmark"}
    decl = tuple(f for f in _declarations(config, feature_variables(config)) if f.group in on)
    check_unique_names(decl)
    cat = pd.DataFrame(
        [(f.name, f.group, f.unit, f.description, f.monotone) for f in decl],
        columns=CATALOGUE_COLUMNS,
    ).astype({"name": object, "group": object, "unit": object, "description": object})
    cat["monotone"] = cat["monotone"].astype("int64")
    return decl, cat, tuple(f.name for f in decl)


def check_unique_names(declarations) -> None:
    """Raise :class:`ConfigError` when two declared features share a name (a site variable
    whose name makes a built-in feature's name, e.g. ``il6_pretoci`` -> ``il6_pretoci_max``),
    naming the feature and the variables that make it."""
    seen: dict[str, Feature] = {}
    for f in declarations:
        other = seen.setdefault(f.name, f)
        if other is not f:
            who = sorted({other.variable or other.group, f.variable or f.group})
            raise ConfigError(
                f"variables: the feature name {f.name!r} is made twice (by "
                f"{' and '.join(who)}); rename the site variable so its features "
                "do not collide with the catalogue's"
            )


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
