"""landform: learned loss landscapes for fast optimization-based inference.

Fit Θ: Z → X once (``fit``, Algorithm 1 of "Landscape Learning for Neural Network Inversion"), then
invert a frozen forward model F in a few steps by optimizing z with x = Θ(z) (``invert``).
"""

from landform import metrics
from landform.compare import compare, summarize, sweep_lr
from landform.errors import LandformError
from landform.fitting import FitResult, fit
from landform.inference import InversionResult, invert
from landform.mapping import Mapping
from landform.problem import Problem, load_problem

__all__ = [
           "FitResult",
           "InversionResult",
           "LandformError",
           "Mapping",
           "Problem",
           "compare",
           "fit",
           "invert",
           "load_problem",
           "metrics",
           "summarize",
           "sweep_lr",
]
__version__ = "0.1.0"
