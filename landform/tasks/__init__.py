"""The tasks: the paper's applications (images §4.1, pose §4.2, defense §4.3) and the built-in synthetic
problem, one folder each, behind one seam.

A task is a ``Task`` registered by name. Each folder ``landform/tasks/<name>/`` is found without being
imported (so ``landform demo --help`` lists it and the command starts without torch), and registers its
``Task`` in its ``__init__.py`` when first asked for: adding a task is adding a folder. A task defined
elsewhere is registered in-process with ``register(task)``, or named on the command line as
``--task package.module:attribute`` (the attribute is a ``Task``).

What the command line calls, and with which keywords:

- ``demo(out, *, device, seed, progress) -> dict``: the task's report in ``out``; the summary it returns
  holds one block per split (a block with ``speedup_at_20`` is printed as a table).
- ``invert_inputs(inputs, out, *, device, seed, progress, **options)`` and ``compare_inputs(...)``
  (optional): the task on a user's files. ``options`` are the command line's options the task honours
  (``Task.options``, e.g. ``steps``: inversion steps, ``mode``); any other option given with ``--task``
  is refused in one line.
- ``trainers``: zoo entry name -> ``trainer(*, device, seed, resume, progress[, run_dir][, zoo_dir])``
  (``landform zoo train NAME``); ``run_dir`` and ``zoo_dir`` are passed to the trainers that take them.

Every function may be given as ``"package.module:attribute"``, imported on first use, so a task's
package can register itself without loading torch or its models. This module imports neither torch nor
any task.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landform.errors import LandformError

# The command line's options that a task's invert_inputs / compare_inputs may honour (one meaning each:
# steps = inversion steps, mode = inference mode with Θ, lr = step size on the optimized variable, ...).
TASK_OPTIONS = ("steps", "mode", "lr", "optimizer", "count", "init", "mapping", "observations", "mask")
RUNS_ENV = "LANDFORM_RUNS"
DEFAULT_DEMO = "images"  # what `landform demo` runs without a name
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

Lazy = Callable[..., Any] | str


def _resolve(value: Any, what: str) -> Any:
    """A value given as ``"package.module:attribute"`` imported now; anything else as it is."""
    if not isinstance(value, str):
        return value
    module_name, _, attribute = value.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise LandformError(f"{what} cannot be loaded: {error}") from None
    try:
        return getattr(module, attribute)
    except ImportError as error:  # a package's lazy __getattr__ importing a submodule
        raise LandformError(f"{what} cannot be loaded: {error}") from None
    except AttributeError:
        raise LandformError(f"{what}: {module_name} has no attribute {attribute!r}") from None


@dataclass(frozen=True)
class Task:
    """One application behind the command line (see the module's docstring for the calls).

    ``options``: the command line's options (``TASK_OPTIONS``) that ``invert_inputs`` and
    ``compare_inputs`` honour with their one meaning; ``None`` reads them off the functions' keyword
    parameters. A task whose ``steps`` keyword means something else (attack steps, say) lists its options
    explicitly, without ``steps``.
    """

    name: str
    description: str
    demo: Lazy
    invert_inputs: Lazy | None = None
    compare_inputs: Lazy | None = None
    trainers: Mapping[str, Callable[..., Any]] | str = field(default_factory=dict)
    options: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise LandformError(f"a task name is lower-case letters, digits and '_', got {self.name!r}")
        if self.options is not None:
            object.__setattr__(self, "options", frozenset(self.options))
            unknown = sorted(self.options - set(TASK_OPTIONS))
            if unknown:
                raise LandformError(f"task {self.name!r}: unknown options {unknown}; use some of {TASK_OPTIONS}")

    def function(self, command: str) -> Callable[..., Any]:
        """The task's ``demo``, ``invert_inputs`` or ``compare_inputs`` (refused in one line if it has none)."""
        value = getattr(self, "demo" if command == "demo" else f"{command}_inputs")
        if value is None:
            raise LandformError(f"task {self.name!r} has no `{command}` on user inputs; "
                                f"see `landform demo {self.name}`")
        return _resolve(value, f"task {self.name!r}")

    def accepts(self, command: str) -> frozenset[str]:
        """The options of ``TASK_OPTIONS`` that ``command`` (invert or compare) honours."""
        if self.options is not None:
            return self.options
        return frozenset(TASK_OPTIONS) & keywords(self.function(command))

    def trainer_table(self) -> dict[str, Callable[..., Any]]:
        """Zoo entry name -> trainer, the ``trainers`` mapping (imported now if given by name)."""
        table = _resolve(self.trainers, f"the trainers of task {self.name!r}")
        if not isinstance(table, Mapping):
            raise LandformError(f"the trainers of task {self.name!r} are a {type(table).__name__}, not a mapping")
        return dict(table)


def keywords(function: Callable[..., Any]) -> frozenset[str]:
    """The names ``function`` takes as keyword arguments (not counting a ``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(p.name for p in parameters
                     if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))


def takes_keyword(function: Callable[..., Any], name: str) -> bool:
    """Whether ``function`` accepts the keyword argument ``name`` (by name or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return name in keywords(function) or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` (or replace the one of the same name); returns it."""
    if not isinstance(task, Task):
        raise LandformError(f"register() takes a landform.tasks.Task, got {type(task).__name__}")
    _REGISTRY[task.name] = task
    return task


def unregister(name: str) -> None:
    """Remove the task registered as ``name`` (a built-in one is registered again when next asked for)."""
    _REGISTRY.pop(name, None)


def builtin_names() -> list[str]:
    """The task folders under landform/tasks/, found without importing them."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__)
                  if info.ispkg and not info.name.startswith("_"))


def names() -> list[str]:
    """Every task's name: the folders under landform/tasks/ and the tasks registered in this process."""
    return sorted(set(builtin_names()) | set(_REGISTRY))


def is_spec(name: str) -> bool:
    """Whether ``name`` has the form ``package.module:attribute`` (a task defined outside landform)."""
    return ":" in name


def get(name: str) -> Task:
    """The task called ``name`` (a registered or built-in name, or ``package.module:attribute``)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if is_spec(name):
        module_name, _, attribute = name.partition(":")
        if not module_name or not attribute:
            raise LandformError(f"--task must be a name or package.module:attribute, got {name!r}")
        task = _resolve(name, f"task {name}")
        if not isinstance(task, Task):
            raise LandformError(f"{name} is a {type(task).__name__}, not a landform.tasks.Task")
        return register(task)
    if name not in builtin_names():
        raise LandformError(f"unknown task {name!r}; use one of {', '.join(names())} (or package.module:attribute)")
    try:
        importlib.import_module(f"{__name__}.{name}")
    except ImportError as error:
        raise LandformError(f"task {name!r} cannot be loaded: {error}") from None
    if name not in _REGISTRY:
        raise LandformError(f"landform.tasks.{name} registers no task named {name!r}")
    return _REGISTRY[name]


def find_trainer(entry: str) -> tuple[Task, Callable[..., Any]]:
    """The task whose ``trainers`` has the zoo entry ``entry``, and that trainer (each task is asked; one
    that cannot be loaded is named in the error if no other has the entry)."""
    trainable: list[str] = []
    broken: list[str] = []
    for name in [*_REGISTRY, *(n for n in builtin_names() if n not in _REGISTRY)]:
        try:
            task = get(name)
            table = task.trainer_table()
        except LandformError as error:
            broken.append(f"{name} ({error})")
            continue
        if entry in table:
            return task, table[entry]
        trainable.extend(table)
    note = f"; tasks that could not be loaded: {'; '.join(broken)}" if broken else ""
    raise LandformError(f"no trainer for {entry!r}; trainable: {', '.join(sorted(trainable)) or 'none'}{note}")


def runs_dir(override: str | Path | None = None) -> Path:
    """Where trainers and reproductions keep their runs (checkpoints, logs, weights not installed):
    ``override``, else $LANDFORM_RUNS, else a per-user cache ($XDG_CACHE_HOME or ~/.cache)/landform/runs."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "landform" / "runs"


__all__ = ["DEFAULT_DEMO", "TASK_OPTIONS", "Task", "builtin_names", "find_trainer", "get", "is_spec", "keywords",
           "names", "register", "runs_dir", "takes_keyword", "unregister"]
