"""landform: learned loss landscapes for fast optimization-based inference.

Fit Θ: Z → X once (``fit``, Algorithm 1 of "Landscape Learning for Neural Network Inversion"), then
invert a frozen forward model F in a few steps by optimizing z with x = Θ(z) (``invert``).

The names below are imported on first use, so ``import landform`` (and the ``landform`` command's
start-up, which a Ctrl-C may interrupt) does not load torch until it is needed.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "FitResult": "landform.fitting",
    "InversionResult": "landform.inference",
    "Landscape": "landform.landscape",
    "LandformError": "landform.errors",
    "Mapping": "landform.mapping",
    "Method": "landform.compare",
    "Problem": "landform.problem",
    "compare": "landform.compare",
    "fit": "landform.fitting",
    "invert": "landform.inference",
    "learn": "landform.recipe",
    "load_problem": "landform.problem",
    "metrics": None,
    "summarize": "landform.compare",
    "sweep_lr": "landform.compare",
}
__all__ = [
    "FitResult",
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
    from landform.compare import Method, compare, summarize, sweep_lr
    from landform.errors import LandformError
    from landform.fitting import FitResult, fit
    from landform.inference import InversionResult, invert
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


class _Package(types.ModuleType):
    """Keeps an exported function from being shadowed by the submodule of the same name: importing
    ``landform.compare`` binds the module as the package attribute ``compare``, which would hide the
    function ``compare`` from ``from landform import compare``."""

    def __setattr__(self, name: str, value: Any) -> None:
        shadows = (isinstance(value, types.ModuleType) and _EXPORTS.get(name) == f"landform.{name}"
                   and value.__name__ == f"landform.{name}")
        if not shadows:
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
