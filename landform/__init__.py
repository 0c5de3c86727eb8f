"""landform: learned loss landscapes for fast optimization-based inference.

Fit Θ: Z → X once (``fit``, Algorithm 1 of "Landscape Learning for Neural Network Inversion"), then
invert a frozen forward model F in a few steps by optimizing z with x = Θ(z) (``invert``).

The names below are imported on first use, so ``import landform`` (and the ``landform`` command's
start-up, which a Ctrl-C may interrupt) does not load torch until it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DescentSettings": "landform.inference",
    "FitResult": "landform.fitting",
    "FitSettings": "landform.fitting",
    "InversionResult": "landform.inference",
    "Landscape": "landform.landscape",
    "LandformError": "landform.errors",
    "Mapping": "landform.mapping",
    "Method": "landform.comparison",
    "Problem": "landform.problem",
    "compare": "landform.comparison",
    "fit": "landform.fitting",
    "invert": "landform.inference",
    "learn": "landform.recipe",
    "load_problem": "landform.problem",
    "metrics": None,
    "summarize": "landform.comparison",
    "sweep_lr": "landform.comparison",
}
__all__ = [
    "DescentSettings",
    "FitResult",
    "FitSettings",
    "InversionResult",
    "LandformError",
    "Landscape",
    "Mapping",
    "Method",
    "Problem",
    "compare",
    "fit",
    "invert",
    "learn",
    "load_problem",
    "metrics",
    "summarize",
    "sweep_lr",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from landform import metrics
    from landform.comparison import Method, compare, summarize, sweep_lr
    from landform.errors import LandformError
    from landform.fitting import FitResult, FitSettings, fit
    from landform.inference import DescentSettings, InversionResult, invert
    from landform.landscape import Landscape
    from landform.mapping import Mapping
    from landform.problem import Problem, load_problem
    from landform.recipe import learn


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'landform' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name] or f"landform.{name}")
    value = module if _EXPORTS[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

