"""Run configuration: YAML files under ``configs/``, validated with pydantic.

Unknown keys are errors (``extra="forbid"``) so a typo never silently falls back to a
default. ``load_config(path, overrides)`` applies ``--set section.key=value`` overrides
(values parsed as YAML scalars) before validation and records them in ``overrides``.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from crs_ml.errors import ConfigError

#: landmarks of training and scoring: every 6 h up to day 7, since severe CRS of 4-1BB
#: products and some trials starts on days 4-9 (about 1.7x the rows of 6-96 h; one default
#: fit on 1,000 simulated patients took about 8% more CPU)
DEFAULT_LANDMARKS_H = [float(h) for h in range(6, 169, 6)]
#: landmarks of the simulator's truth table (true risk): every 6 h up to day 7; contains
#: DEFAULT_LANDMARKS_H
SIMULATOR_TRUTH_LANDMARKS_H = [float(h) for h in range(6, 169, 6)]
#: landmarks the metrics are reported at (training CV, validation): days 1 and 2, where most
#: severe CRS starts, and days 3 and 5 for the late onsets of 4-1BB products
DEFAULT_REPORT_LANDMARKS_H = [24.0, 48.0, 72.0, 120.0]
#: short horizons after the landmark (hours): "in the next 24 h" and "in the next 72 h"
DEFAULT_WINDOWS_H = [24.0, 72.0]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def code_targets() -> dict[str, tuple[str, ...]]:
    """Code-map kind -> the targets it may map to (:mod:`crs_ml.ingest.codes`)."""
    from crs_ml.cohort import EVENT_NAMES, PRODUCTS
    from crs_ml.variables import VARIABLES

    return {
        "variable": tuple(VARIABLES),
        "event": tuple(e for e in EVENT_NAMES if e != "death"),
        "product": tuple(p for p in PRODUCTS if p != "other"),
        "infusion": ("cart",),
        "disease": ("LBCL", "B-ALL", "MCL", "MM", "FL", "other"),
        "outcome": ("crs_grade", "followup_end"),
    }


class CodeEntry(_Strict):
    """One site code mapping (``data.codes``), added to the package's code maps
    (:mod:`crs_ml.ingest.codes`): a code (``vocabulary_id`` + ``concept_code``) or an OMOP
    ``concept_id``, or both, mapped to a target of its kind."""

    #: variable, event, product, infusion, disease or outcome
    kind: str
    #: a catalogue variable, event name, product, disease (``cart`` for infusion;
    #: ``crs_grade`` / ``followup_end`` for outcome)
    target: str
    vocabulary_id: str | None = None
    concept_code: str | None = None
    concept_id: int | None = None
    concept_name: str | None = None

    @model_validator(mode="after")
    def _known_target(self) -> CodeEntry:
        kinds = code_targets()
        if self.kind not in kinds:
            raise ValueError(f"kind '{self.kind}' is not one of {', '.join(kinds)}")
        if self.target not in kinds[self.kind]:
            close = difflib.get_close_matches(self.target, kinds[self.kind], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"'{self.target}' is not a {self.kind} target{hint}")
        if self.concept_id is None and not (self.vocabulary_id and self.concept_code):
            raise ValueError("give a concept_id, or a vocabulary_id and a concept_code")
        return self


class OmopConfig(_Strict):
    """Reading an OMOP CDM v5.4 source (``data.format: omop``)."""

    #: database schema of the CDM tables (PostgreSQL; DuckDB: ``main``)
    cdm_schema: str | None = None
    #: CDM datetimes carry no time zone: the zone they are read in (IANA name)
    time_zone: str = "UTC"
    #: the cohort: persons of this ``cohort_definition_id`` in the ``cohort`` table; None:
    #: every person with a CAR-T infusion record
    cohort_definition_id: int | None = None
    #: ``cohort`` table's schema (OHDSI results schema); None: ``cdm_schema``
    results_schema: str | None = None
    #: a row belongs to the latest infusion at or before its time plus this many hours (the
    #: baseline window: results up to a week before a re-infusion belong to it)
    baseline_window_h: float = Field(168.0, ge=0)
    #: site name for every patient when the source has no ``care_site`` names
    site: str | None = None


class DataConfig(_Strict):
    """How input files are read and normalised."""

    path: str | None = None
    #: input format; None: detected from ``path`` (a ``postgresql://`` URL, a ``.duckdb`` file
    #: or a folder of OMOP tables is ``omop``; a folder of contract tables is ``contract``)
    format: Literal["contract", "omop", "meds", "fhir"] | None = None
    #: site code mappings added to the package's (:mod:`crs_ml.ingest.codes`)
    codes: list[CodeEntry] = Field(default_factory=list)
    omop: OmopConfig = Field(default_factory=OmopConfig)
    #: per table (patients, observations, events, outcomes): {site_column: contract_column}
    column_mapping: dict[str, dict[str, str]] = Field(default_factory=dict)
    #: {site variable name: catalogue variable}, for lab names the catalogue's aliases lack
    #: (``{"Ferritin, serum": ferritin}``; the check report suggests them)
    variable_aliases: dict[str, str] = Field(default_factory=dict)
    #: a missing unit is an error instead of a counted warning
    strict_units: bool = False

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        """``data.omop.episode_gap_h`` (before one setting served every format) is read as
        ``data.infusion_merge_h``, with a warning, so older configs and model folders load."""
        omop = data.get("omop") if isinstance(data, dict) else None
        if not isinstance(omop, dict) or "episode_gap_h" not in omop:
            return data
        omop = dict(omop)
        gap = omop.pop("episode_gap_h")
        given = data.get("infusion_merge_h", gap)
        if float(given) != float(gap):
            raise ValueError(
                f"data.omop.episode_gap_h ({gap}) and data.infusion_merge_h ({given}) disagree: "
                "they are one setting now (data.infusion_merge_h); remove the first"
            )
        warnings.warn(
            "data.omop.episode_gap_h is now data.infusion_merge_h (one setting for OMOP, MEDS "
            "and FHIR); read as such",
            DeprecationWarning,
            stacklevel=2,
        )
        return {**data, "omop": omop, "infusion_merge_h": gap}

    @field_validator("variable_aliases")
    @classmethod
    def _known_targets(cls, v: dict[str, str]) -> dict[str, str]:
        from crs_ml.variables import VARIABLES, resolve_variable

        for site, target in v.items():
            if resolve_variable(target) is None:
                close = difflib.get_close_matches(str(target), list(VARIABLES), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"'{site}' maps to '{target}', not a catalogue variable{hint}")
        return v

    #: value used for a result reported as ``<x``: half the limit or the limit itself
    censored_below: Literal["half", "limit"] = "half"
    #: rule for conflicting duplicates (same patient, time, variable, different value)
    conflicting_duplicates: Literal["last_row", "max", "mean"] = "last_row"
    #: MEDS / FHIR: records up to this many hours before an infusion belong to its episode
    #: (baseline); older records of a subject are not read
    history_h: float = Field(default=168.0, ge=0)
    #: OMOP / MEDS / FHIR: infusion records of one person this close (hours) are one infusion
    infusion_merge_h: float = Field(default=72.0, ge=0)


class TaskConfig(_Strict):
    """The prediction task: landmarks and horizon, in hours since infusion."""

    landmarks_h: list[float] = Field(default_factory=lambda: list(DEFAULT_LANDMARKS_H))
    horizon_h: float = 336.0
    #: short horizons, hours after the landmark: at L the risk by min(L + w, horizon_h) for
    #: each w, beside the risk by horizon_h (censored, competing-risk labels and metrics)
    windows_h: list[float] = Field(default_factory=lambda: list(DEFAULT_WINDOWS_H))
    #: censoring weights from a reverse Kaplan-Meier within deciles of the predicted risk
    #: (loss to follow-up that depends on risk does not bias the metrics:
    #: benchmarks/bench_censoring.py), within each site, or one overall ("none")
    censoring_by: Literal["risk_decile", "site", "none"] = "risk_decile"
    #: training rows of the day-14 model: "ipcw" = everyone at risk at L with data, the
    #: censored before the horizon left out and the others weighted by inverse probability of
    #: censoring (crs_ml.modeling.horizons.training_weights; as the short windows always
    #: are); "none" = the complete-case rows (rule 4 of crs_ml.features.landmarks), unweighted
    training_weights: Literal["ipcw", "none"] = "ipcw"

    @field_validator("landmarks_h")
    @classmethod
    def _sorted_positive(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("at least one landmark is needed")
        if any(h <= 0 for h in v):
            raise ValueError("landmarks are hours after infusion and must be > 0")
        return sorted({float(h) for h in v})

    @field_validator("windows_h")
    @classmethod
    def _windows_positive(cls, v: list[float]) -> list[float]:
        if any(h <= 0 for h in v):
            raise ValueError("windows are hours after the landmark and must be > 0")
        return sorted({float(h) for h in v})


class LabelConfig(_Strict):
    """ASTCT-2019 grading as derivable from data (crs_ml.features.grading, ``crs-ml label``).

    The consensus (Lee 2019) states neither a fever-to-organ-support window nor how to read a
    flow from an oxygen record; these are this project's choices, declared here."""

    #: a fever qualifies hypotension or hypoxia recorded up to this many hours after it
    #: (the consensus states no window: an assumption)
    fever_window_h: float = Field(24.0, ge=0)
    #: highest flow (L/min) of low-flow oxygen: a stated flow above it is high flow (grade
    #: 3), at or below it on a nasal cannula low flow (grade 2) (ASTCT: 6 L/min)
    low_flow_max_l_min: float = Field(6.0, gt=0)
    #: a stated FiO2 above this fraction on an oxygen event that is not positive pressure is
    #: high flow / Venturi (grade 3); a low-flow cannula at 1-6 L/min gives about 0.24-0.40
    #: (rule of thumb; an assumption, the consensus does not speak of FiO2)
    high_flow_fio2_above: float = Field(0.40, gt=0, lt=1)


class FeatureConfig(_Strict):
    """Which feature groups are on (see the feature catalogue)."""

    groups: list[str] = Field(
        default_factory=lambda: [
            "labs",
            "vitals",
            "fever",
            "crs_state",
            "treatment",
            "static",
            "scores",
        ]
    )
    #: fever threshold of the early-fever feature and baseline rule (degC)
    high_fever_c: float = 38.9
    #: window of the early-fever feature, cut to the landmark (hours)
    early_fever_window_h: float = 36.0
    #: catalogue variables given the standard summaries (baseline, last, max or min, change,
    #: slope, count, hours since last, measured). None: every catalogue variable, and at
    #: training those without any value in the training cohort are dropped (the trained
    #: model stores the resulting list, the run logs the dropped ones)
    variables: list[str] | None = None
    #: the ASTCT grading of the CRS-state features (and of scoring's "already grade >= 3 by
    #: L"): always the config's ``label`` section, copied here (a value given here is
    #: replaced) so that a trained model stores it with its features and scores with the
    #: grading its labels were derived with (a model stored without it was built with the
    #: defaults)
    grading: LabelConfig = Field(default_factory=LabelConfig)

    @field_validator("variables")
    @classmethod
    def _catalogue_variables(cls, v: list[str] | None) -> list[str] | None:
        from crs_ml.variables import VARIABLES

        if v is None:
            return v
        unknown = [name for name in v if name not in VARIABLES]
        if unknown:
            raise ValueError(
                f"features.variables: {unknown} not in the variable catalogue "
                f"({', '.join(VARIABLES)})"
            )
        return list(dict.fromkeys(v))


#: the default xgboost hyperparameters (also spelled out in configs/default.yaml): shallow,
#: regularised trees and cross-fitted calibration, because ~100 events and 139 candidate
#: features need sample efficiency more than capacity (benchmarks/bench_train.py)
DEFAULT_XGBOOST_PARAMS: dict[str, Any] = {
    "n_estimators": 400,
    "max_depth": 2,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "min_child_weight": 10.0,
    "reg_lambda": 5.0,
    "early_stopping_rounds": 30,
    "inner_folds": 4,
}


#: the default model (also spelled out in configs/default.yaml; configs/stack.yaml has the
#: same model section): the stacked model (super learner, :mod:`crs_ml.modeling.stack`) of the
#: xgboost pipeline, the additive model and the compact clinical logistic model. It meets
#: the robustness benchmark's criterion in 22 of 24 simulated worlds and sizes (4 draws
#: each) and is above the xgboost pipeline (configs/xgboost.yaml, the previous default) in
#: all 24 (README, "Predictive quality"). A ``model`` section without ``type`` is laid over it.
DEFAULT_MODEL: dict[str, Any] = {
    "type": "stack",
    "calibration": "platt",
    # below 50 persons with an event: equal weights over the two additive members
    "params": {
        "inner_folds": 4,
        "blend_rules": ["nnls"],
        "few_events_below": 50,
        "few_events_members": ["additive", "compact"],
    },
    "members": {
        # the xgboost pipeline with one inner split for early stopping and Platt: the blend
        # recalibrates, and the stack already fits every member 5 times
        "xgboost": {"type": "xgboost", "calibration": "platt", "params": {"inner_folds": 0}},
        "additive": {
            "type": "additive",
            "params": {"spline_knots": 3, "C_grid": [0.0003, 0.001, 0.003], "inner_folds": 3},
        },
        "compact": {
            "type": "additive",
            "feature_set": "clinical_core",
            "params": {"spline_knots": 0, "C_grid": [0.001, 0.01, 0.1, 1.0], "inner_folds": 3},
        },
    },
}


def _laid_over(base: dict, given: dict) -> dict:
    """``given`` laid over ``base``, nested mappings key by key."""
    out = dict(base)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _laid_over(out[key], value)
        out[key] = value
    return out


_Fraction = Annotated[float, Field(gt=0, le=1)]
#: the types and ranges of the hyperparameters of each model type, checked when a config is
#: read (before any data is loaded or model fit); names not listed here are checked against
#: the estimator's own parameters when the model is built
MODEL_PARAM_RULES: dict[str, dict[str, Any]] = {
    "xgboost": {
        "n_estimators": Annotated[int, Field(ge=1)],
        "max_depth": Annotated[int, Field(ge=1, le=20)],
        "learning_rate": _Fraction,
        "subsample": _Fraction,
        "colsample_bytree": _Fraction,
        "min_child_weight": Annotated[float, Field(ge=0)],
        "reg_lambda": Annotated[float, Field(ge=0)],
        "early_stopping_rounds": Annotated[int | None, Field(ge=1)],
        "inner_valid_fraction": Annotated[float, Field(gt=0, lt=1)],
        "inner_folds": Annotated[int, Field(ge=0)],  # 0 or 1: one inner split; K >= 2 folds
        "n_jobs": Annotated[int, Field(ge=1)],
        "random_state": int,
    },
    "logistic": {
        "C": Annotated[float, Field(gt=0)],
        "penalty": Literal["l1", "l2"],
        "max_iter": Annotated[int, Field(ge=1)],
        "random_state": int,
    },
    "fever_rule": {"threshold_c": Annotated[float, Field(ge=35, le=43)]},
    "measix": {},
    "additive": {
        "spline_knots": Annotated[int, Field(ge=0, le=20)],
        "min_distinct_for_spline": Annotated[int, Field(ge=2)],
        "C_grid": list[Annotated[float, Field(gt=0)]],
        "inner_folds": Annotated[int, Field(ge=0)],
        "max_iter": Annotated[int, Field(ge=1)],
        "random_state": int,
    },
    "stack": {
        "inner_folds": Annotated[int, Field(ge=2)],
        "blend_rules": list[Literal["equal", "nnls", "single", "shrunk"]],
        "few_events_below": Annotated[int, Field(ge=0)],
        "few_events_members": list[str],
        "random_state": int,
    },
}

#: named feature sets a model may be restricted to (``model.feature_set``): shell-style
#: patterns over the feature names; a pattern that matches no feature of the data is skipped,
#: so a set works whichever variables a cohort (or the feature catalogue) has. ``all``: every
#: feature. ``clinical_core``: the compact clinical core that a simple, well-specified model
#: uses: the early inflammatory maxima (IL-6, CRP, ferritin before tocilizumab and overall),
#: fever height and timing, the baseline risk labs (LDH, platelets, CRP, ferritin), the
#: product, the CRS state so far (grade, oxygen, vasopressors, treatment given) and the landmark.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "all": ("*",),
    "clinical_core": (
        "il6_pretoci_max", "crp_pretoci_max", "ferritin_pretoci_max",
        "il6_max", "crp_max", "ferritin_max",
        "temperature_max_early", "temperature_pretoci_max", "fever_onset_h",
        "fever_onset_censored",
        "ldh_baseline", "platelets_baseline", "crp_baseline", "ferritin_baseline",
        "product_*", "costim_cd28",
        "astct_grade_so_far", "oxygen_level", "vasopressor_level",
        "tocilizumab_given", "corticosteroid_given",
        "landmark_h",
    ),
}  # fmt: skip
_PARAM_MODELS = {
    kind: create_model(
        f"{kind}_params",
        __config__=ConfigDict(extra="allow", strict=False),
        **{name: (rule, None) for name, rule in rules.items()},
    )
    for kind, rules in MODEL_PARAM_RULES.items()
}


class ModelConfig(_Strict):
    """Model type and hyperparameters. ``params`` go to the estimator; for xgboost they are
    laid over :data:`DEFAULT_XGBOOST_PARAMS`, so a config or ``--set`` names only what it
    changes."""

    type: Literal["xgboost", "logistic", "measix", "fever_rule", "additive", "stack"] = "xgboost"
    params: dict[str, Any] = Field(default_factory=dict)
    monotone: bool = False
    calibration: Literal["platt", "none"] = "platt"
    #: the features the model reads: a name of :data:`FEATURE_SETS` (default: all)
    feature_set: str = "all"
    #: the candidates of a ``stack`` model, by name (each a model configuration)
    members: dict[str, ModelConfig] = Field(default_factory=dict)

    @field_validator("feature_set")
    @classmethod
    def _known_set(cls, v: str) -> str:
        if v not in FEATURE_SETS:
            raise ValueError(f"unknown feature set '{v}'; known: {', '.join(FEATURE_SETS)}")
        return v

    @model_validator(mode="after")
    def _stack_members(self) -> ModelConfig:
        if self.type == "stack" and len(self.members) < 2:
            raise ValueError("a stack model needs at least two members (model.members)")
        if self.type != "stack" and self.members:
            raise ValueError(f"model.members is for type 'stack', not '{self.type}'")
        if any(m.type == "stack" for m in self.members.values()):
            raise ValueError("a stack member cannot itself be a stack")
        unknown = sorted(set(self.params.get("few_events_members") or ()) - set(self.members))
        if self.type == "stack" and unknown:
            raise ValueError(
                f"model.params.few_events_members: {', '.join(unknown)} not among "
                f"model.members ({', '.join(self.members)})"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _xgboost_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type", "xgboost") == "xgboost":
            data = {**data, "params": {**DEFAULT_XGBOOST_PARAMS, **(data.get("params") or {})}}
        return data

    @field_validator("params")
    @classmethod
    def _param_types(cls, v: dict[str, Any], info) -> dict[str, Any]:
        """Hyperparameters of the right type and range (:data:`MODEL_PARAM_RULES`)."""
        kind = info.data.get("type", "xgboost")
        rules = _PARAM_MODELS.get(kind)
        if rules is not None:
            rules.model_validate(v)
        unknown = [name for name in v if name not in MODEL_PARAM_RULES["stack"]]
        if kind == "stack" and unknown:  # every parameter of the stack is listed
            raise ValueError(
                f"{', '.join(unknown)}: not a parameter of model type 'stack' (valid: "
                f"{', '.join(MODEL_PARAM_RULES['stack'])}); a member's hyperparameters are "
                f"model.members.<member>.params, e.g. model.members.xgboost.params.{unknown[0]}"
            )
        return v


class CVConfig(_Strict):
    """Repeated group k-fold by person, stratified at person level."""

    folds: int = Field(5, ge=2)
    repeats: int = Field(5, ge=1)
    bootstrap: int = Field(1000, ge=0)
    validation: Literal["cv", "optimism"] = "cv"
    #: landmarks the CV metrics are reported at (those in task.landmarks_h)
    report_landmarks_h: list[float] = Field(
        default_factory=lambda: list(DEFAULT_REPORT_LANDMARKS_H)
    )
    #: CV repeats of the short-horizon models (task.windows_h; crs_ml.modeling.horizons):
    #: fewer than the day-14 model's, so each window adds folds x this + 1 fits
    horizon_repeats: int = Field(1, ge=1)


#: settings whose value may hold a password, never echoed in an error
SECRET_KEYS = ("mlflow.tracking_uri",)
#: query-string keys of a tracking URI that carry a secret (any key containing one of these)
SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "token", "secret", "key", "sig", "auth")


def secret_query_key(key: str) -> bool:
    """True when a URI's query parameter ``key`` carries a secret (:data:`SECRET_QUERY_KEYS`)."""
    return any(s in key.lower() for s in SECRET_QUERY_KEYS)


def secret_in_uri(uri: str) -> bool:
    """True when ``uri`` holds a password or a secret query parameter."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(uri)
    keys = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True)]
    return bool(parts.password) or any(map(secret_query_key, keys))


class MlflowConfig(_Strict):
    #: where runs go (default: ``MLFLOW_TRACKING_URI``, else the embedded SQLite store). Never
    #: with a password: the config is logged with every run and stored in every model
    tracking_uri: str | None = None
    experiment: str = "crs-ml"
    registered_model: str = "crs-severity"

    @field_validator("tracking_uri")
    @classmethod
    def _no_credentials(cls, v: str | None) -> str | None:
        if v is not None and secret_in_uri(v):
            raise ValueError(
                "the tracking URI holds a password or token, which would be logged with every "
                "run and stored in every model: remove it and give it through the environment "
                "(a database store: PGPASSWORD or ~/.pgpass; an MLflow server: "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN)"
            )
        return v


class ScoringConfig(_Strict):
    """Risk bands: below ``low_below`` is low, at or above ``high_from`` is high."""

    low_below: float = 0.10
    high_from: float = 0.30
    top_drivers: int = 3

    @field_validator("high_from")
    @classmethod
    def _ordered(cls, v: float, info) -> float:
        low = info.data.get("low_below")
        if low is not None and v < low:
            raise ValueError("high_from must be >= low_below")
        return v


class UnitConversion(_Strict):
    """``canonical = value * factor + offset`` (a bare number in YAML is the factor)."""

    factor: float = Field(gt=0)
    offset: float = 0.0


class SiteVariable(_Strict):
    """A site-defined variable (``variables: {name: ...}``), added to the variable catalogue
    (:mod:`crs_ml.variables`): loaded by its name, aliases and LOINC codes, converted to its
    canonical unit, flagged outside its plausible range, summarised into features and named
    in drivers by its display name and unit. A trained model stores these definitions and
    registers them when it loads."""

    #: clinical name for reports and drivers (default: the variable's name)
    display: str = ""
    #: canonical unit; values are converted to it
    unit: str = Field(min_length=1)
    #: unit as printed in reports (default: ``unit``)
    display_unit: str = ""
    #: accepted unit spellings -> factor, or {factor, offset}: canonical = value * factor +
    #: offset; the canonical unit is accepted with factor 1 when not listed
    units: dict[str, float | UnitConversion] = Field(default_factory=dict)
    #: other names the data may use (case, spaces, '-', '_' and '.' ignored)
    aliases: list[str] = Field(default_factory=list)
    #: LOINC codes, e.g. 736-9
    loinc: list[str] = Field(default_factory=list)
    #: [min, max] in the canonical unit: values outside are kept and flagged
    plausible: tuple[float, float] | None = None
    #: risk rises when the value goes up (summarised by its max) or down (by its min)
    direction: Literal["up", "down"] = "up"
    #: lab (change as log ratio) or vital (change as difference)
    kind: Literal["lab", "vital"] = "lab"
    #: a missing unit is normal and not counted as a warning
    unit_optional: bool = False
    #: free text shown in the catalogue table (e.g. the assay)
    note: str = ""

    @field_validator("units")
    @classmethod
    def _as_conversions(cls, v: dict) -> dict[str, UnitConversion]:
        out = {}
        for spelling, conv in v.items():
            if not isinstance(conv, UnitConversion):
                if conv <= 0:
                    raise ValueError(f"unit {spelling!r}: factor must be > 0 (got {conv})")
                conv = UnitConversion(factor=conv)
            out[str(spelling)] = conv
        return out

    @field_validator("plausible")
    @classmethod
    def _ordered_range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"plausible range [min, max] needs min < max (got {list(v)})")
        return v

    def to_variable(self, name: str):
        """The catalogue :class:`~crs_ml.variables.Variable` (not registered)."""
        import math

        from crs_ml.variables import Conversion, make_variable

        units = {k: Conversion(c.factor, c.offset) for k, c in self.units.items()}
        units.setdefault(self.unit, Conversion())
        return make_variable(
            name, unit=self.unit, units=units, display=self.display,
            display_unit=self.display_unit, kind=self.kind, aliases=tuple(self.aliases),
            loinc=tuple(self.loinc), plausible=self.plausible or (-math.inf, math.inf),
            direction=1 if self.direction == "up" else -1, unit_optional=self.unit_optional,
            note=self.note,
        )  # fmt: skip


def register_site_variables(variables: dict[str, SiteVariable]) -> list[str]:
    """Register validated site variable definitions in the variable catalogue; returns the
    names newly registered. Raises :class:`ConfigError` naming the variable and field."""
    from crs_ml.variables import BUILTIN_VARIABLES, register_variables

    built = []
    for name, spec in variables.items():
        if name in BUILTIN_VARIABLES:
            raise ConfigError(
                f"variables.{name}: a built-in catalogue variable cannot be redefined (choose "
                "another name)"
            )
        built.append(spec.to_variable(name))
    return register_variables(built, source="")


def declare_site_variables(variables: dict[str, Any] | None, source: str) -> list[str]:
    """Validate and register the ``variables`` section of a stored config (a model bundle's);
    ``source`` names it in errors."""
    try:
        Config.model_validate({"variables": variables or {}})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source, [])) from None
    from crs_ml.variables import site_variables

    return [name for name in variables or {} if name in site_variables()]


class Config(_Strict):
    seed: int = 0
    #: site-defined variables added to the variable catalogue, {name: definition}; validated
    #: (and registered) before the sections that may name them
    variables: dict[str, SiteVariable] = Field(default_factory=dict)
    data: DataConfig = Field(default_factory=DataConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    label: LabelConfig = Field(default_factory=LabelConfig)
    #: the default (:data:`DEFAULT_MODEL`) is the stack; a section without ``type`` is laid
    #: over it
    model: ModelConfig = Field(default_factory=lambda: ModelConfig.model_validate(DEFAULT_MODEL))
    cv: CVConfig = Field(default_factory=CVConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    #: the ``--set`` overrides applied, as given (logged with the run)
    overrides: list[str] = Field(default_factory=list)
    #: where this configuration came from when a program wrote it (``crs-ml tune`` records
    #: the data digest and seed it was selected on, so ``compare`` can flag optimism)
    provenance: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        model = data.get("model") if isinstance(data, dict) else None
        if isinstance(model, dict) and "type" not in model:
            data = {**data, "model": _laid_over(DEFAULT_MODEL, model)}
        return data

    @model_validator(mode="after")
    def _one_grading(self) -> Config:
        """features.grading is the label section (one home: ``label``; a features.grading
        given, as in a model's stored config, is replaced)."""
        if self.features.grading != self.label:
            self.features = self.features.model_copy(update={"grading": self.label})
            # copied, not set by the user: a later change of label may copy it again
            self.features.__pydantic_fields_set__.discard("grading")
        return self

    @field_validator("variables")
    @classmethod
    def _register_variables(cls, v: dict[str, SiteVariable]) -> dict[str, SiteVariable]:
        try:
            register_site_variables(v)
        except ConfigError as exc:  # "variables" is already the key of the message
            raise ValueError(str(exc).removeprefix("variables.")) from None
        return v


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.params.max_depth=3"`` -> ("model.params.max_depth", 3)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected key=value, e.g. model.params.max_depth=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set '{text}': value is not valid YAML ({exc})") from exc
    return key, value


def _with_params_level(key: str) -> str:
    """A --set on a model hyperparameter may be written without the ``params.`` level, for
    the model (``model.max_depth``) and for a stack member
    (``model.members.xgboost.max_depth``)."""
    parts = key.split(".")
    at = 3 if parts[:2] == ["model", "members"] else 1
    if parts[0] == "model" and len(parts) > at and parts[at] not in ModelConfig.model_fields:
        parts.insert(at, "params")
    return ".".join(parts)


def config_from_dict(
    tree: dict, overrides: list[str] | None = None, source: str = "config"
) -> Config:
    tree = dict(tree or {})
    applied = list(tree.pop("overrides", []) or [])
    for text in overrides or []:
        key, value = parse_override(text)
        key = _with_params_level(key)
        _set_path(tree, key, value)
        applied.append(text)
    tree["overrides"] = applied
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source, overrides or [])) from None


def _section(loc: tuple) -> type[BaseModel] | None:
    """The config class holding the last key of ``loc`` (None inside a free-form dict; a
    ``dict[str, Model]`` section such as ``variables`` gives the model of its entries)."""
    from typing import get_args, get_origin

    cls: type[BaseModel] = Config
    parts = list(loc[:-1])
    while parts:
        field = cls.model_fields.get(str(parts.pop(0)))
        ann = field.annotation if field is not None else None
        if get_origin(ann) is dict and parts:
            ann = get_args(ann)[1]
            parts.pop(0)  # the entry's key
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        cls = ann
    return cls


def format_errors(exc: ValidationError, source: str, overrides: list[str]) -> str:
    """One line for the problems of a config: per problem the key, the value given and what
    is allowed; an unknown key gets the closest known one ("did you mean")."""
    given = {}
    for text in overrides:
        given[_with_params_level(text.split("=", 1)[0].strip())] = text
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        # an error on a section (model.params) names the --set that wrote into it
        inside = [g for g in given if g.startswith(key + ".")]
        where = (
            f"--set {given[key]}"
            if key in given
            else (f"--set {given[inside[0]]}" if inside else source)
        )
        if err["type"] == "extra_forbidden":
            cls = _section(err["loc"])
            known = list(cls.model_fields) if cls is not None else []
            prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
            name = str(err["loc"][-1])
            close = [prefix + c for c in difflib.get_close_matches(name, known, n=1, cutoff=0.6)]
            if not close and len(err["loc"]) == 1 and name in MODEL_PARAM_RULES["xgboost"]:
                close = [f"model.{name}"]  # a hyperparameter given without its section
            hint = f"; did you mean '{close[0]}'?" if close else ""
            what = "unknown setting" if key in given else f"unknown setting '{key}'"
            parts.append(f"{where}: {what}{hint} (known: {', '.join(known)})")
            continue
        msg = err["msg"].replace("Value error, ", "").replace("Input should be", "must be")
        value = err.get("input")
        shown = f" (got {value!r})" if key not in given and not isinstance(value, dict) else ""
        if key in SECRET_KEYS:  # a value that may hold a password is not echoed
            where, shown = (f"--set {key}=..." if key in given else source), ""
        parts.append(f"{where}: {key} {msg}{shown}")
    return "; ".join(parts)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read and validate a YAML config (defaults when ``path`` is None)."""
    tree: dict = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p}: not valid YAML ({exc})") from exc
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {p}: top level must be a mapping")
        source = str(p)
    return config_from_dict(tree, overrides, source=source)


def stored_features(stored: dict) -> FeatureConfig:
    """The feature settings of a model's stored config (a dict) as stored, ``grading`` too:
    not re-derived from its ``label`` section; the default grading for a model stored before
    ``features.grading`` existed, which was built with it."""
    return FeatureConfig.model_validate(stored.get("features") or {})


def config_to_yaml(cfg: Config) -> str:
    """``cfg`` as YAML to read back or edit: ``features.grading`` is left out (it is the
    ``label`` section, copied on reading; a model's stored config keeps it)."""
    tree = cfg.model_dump(mode="json", exclude={"features": {"grading"}})
    return yaml.safe_dump(tree, sort_keys=False)
