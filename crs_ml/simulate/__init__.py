"""Simulate: a mechanistic, literature-grounded simulator of CRS after CAR T-cell therapy.

Every assumption in one place (``params``); patients at infusion (``baseline``); the latent
CRS process and its exact true risk (``chain``); the clinical course (``course``); biomarkers
and vitals (``kinetics``); when things are measured (``sampling``); the clean or messy input
files (``write``); the whole run (``simulator``). Calibration of the product constants
(``calibrate``) and the measured targets (``targets``) are the tooling under it.

May import: the core, ingest and features (outcomes are graded with :mod:`crs_ml.features.grading`
so that the simulator and the label agree). Not evaluation (same level).
"""

_EXPORTS = {
    "SimulationParams": "params",
    "SimulationResult": "simulator",
    "default_params": "params",
    "simulate": "simulator",
    "simulate_cohort": "simulator",
    "with_products": "params",
    "with_sites": "params",
    "write_cohort": "simulator",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # public names load their module on first use, so importing the room stays cheap
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
