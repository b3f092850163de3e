"""Simulate: a mechanistic, literature-grounded simulator of CRS after CAR T-cell therapy.

Every assumption in one place (``params``); patients at infusion (``baseline``); the latent
CRS process and its exact true risk (``chain``); the clinical course (``course``); biomarkers
and vitals (``kinetics``); the catalogue markers beyond the core 12 (``markers``); when things
are measured (``sampling``); the clean or messy input
files (``write``); the whole run (``simulator``). Calibration of the product constants
(``calibrate``) and the measured targets (``targets``) are the tooling under it.

May import: the core, ingest and features (outcomes are graded with :mod:`crs_ml.features.grading`
so that the simulator and the label agree). Not evaluation (same level).
"""

from crs_ml.lazy import exports_getattr

_EXPORTS = {
    "SimulationParams": "params",
    "SimulationResult": "simulator",
    "default_params": "params",
    "horizon_truth": "simulator",
    "simulate": "simulator",
    "simulate_cohort": "simulator",
    "with_products": "params",
    "with_sites": "params",
    "write_cohort": "simulator",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports_getattr(__name__, _EXPORTS)
