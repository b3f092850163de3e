"""Lazy public names for the subpackages: importing a room stays cheap.

Each room's ``__init__.py`` declares its public names and the module holding each, and gets
its module ``__getattr__`` (PEP 562) from :func:`exports_getattr`, so ``crs_ml.scoring.score``
imports pandas and xgboost only when a name is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that loads ``package.<exports[name]>`` on first use of a
    public ``name`` and raises AttributeError for any other name."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
