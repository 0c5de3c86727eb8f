"""What a reproduction is: a function of a ``ReproductionScale`` (how much it computes: the real run or
``--quick``) and an output folder, registered by name in ``REPRODUCTIONS``. The reproductions (``figures``,
``tables``) import this module and ``landform.paper`` imports them, so neither needs the other's package
module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ReproductionScale:
    """How much each reproduction computes: the real run or ``--quick``."""

    quick: bool
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    @property
    def images(self) -> int:  # evaluation images per split
        return 4 if self.quick else 32

    @property
    def steps(self) -> int:  # inversion steps
        return 5 if self.quick else 200

    @property
    def long_steps(self) -> int:  # inversion steps of the curves to convergence (Fig. 3a: 2000)
        return 8 if self.quick else 2000

    @property
    def fit_rounds(self) -> int:  # Algorithm 1 rounds of an image-task fit (at least 100 per seed)
        return 1 if self.quick else 100

    @property
    def fit_trajectories(self) -> int:
        return 4 if self.quick else 64

    @property
    def fit_steps(self) -> int:
        return 3 if self.quick else 20

    @property
    def seeds(self) -> tuple[int, ...]:  # one fit per seed wherever a table fits Θ (each fit takes minutes)
        return (self.seed,) if self.quick else (self.seed, self.seed + 1, self.seed + 2)


Reproduction = Callable[[ReproductionScale, Path], dict]
REPRODUCTIONS: dict[str, Reproduction] = {}
FIGURES: dict[str, tuple[str, ...]] = {}  # the figure files each reproduction writes beside its summary


def register(name: str, figures: tuple[str, ...] = ()) -> Callable[[Reproduction], Reproduction]:
    """Add a reproduction to ``REPRODUCTIONS`` under ``name``; ``figures``: the files it writes beside
    summary.json and summary.md, so that its report is replaced as one unit (``report_files``)."""
    def add(function: Reproduction) -> Reproduction:
        REPRODUCTIONS[name] = function
        FIGURES[name] = tuple(figures)
        return function
    return add


def report_files(name: str) -> tuple[str, ...]:
    """The files of the reproduction ``name``'s report: its summary.json and summary.md and its figures."""
    return ("summary.json", "summary.md", *FIGURES.get(name, ()))


def quick_root() -> Path:
    """The runs folder's paper-quick/, where a quick run writes without ``--out`` (``landform.tasks.runs_dir``;
    imported here, since the core, ``landform.paper``'s own module included, never imports a task)."""
    from landform.tasks import runs_dir

    return runs_dir() / "paper-quick"
