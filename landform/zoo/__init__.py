"""The model zoo: trained weights shipped inside the package.

Each entry NAME is three files in this folder: ``NAME.safetensors`` (the tensors), ``NAME.json``
(what is needed to rebuild the module) and ``NAME.md`` (the model card: data, split, the command
that reproduces it, training time, metrics). No pickle anywhere.

Retraining writes here only when asked: ``landform zoo train NAME`` finds NAME's trainer in the task
registry (``landform.tasks``) and gives it ``zoo_dir=RUNS/zoo`` and ``run_dir=RUNS/NAME`` (RUNS: ``--runs-dir``,
else $LANDFORM_RUNS, else ~/.cache/landform/runs); ``--install`` gives it ``zoo_dir=ZOO_DIR``. ``save``
without ``directory`` writes into this folder: trainers pass their ``zoo_dir`` on.

An entry fitted on other entries (a Θ on a VAE, an encoder on a generator) records their fingerprints
(``requirements``); ``check_fitted_on`` is the one check of them on load, and ``load_landscape`` the one loader
of a task's shipped landscape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from landform.errors import LandformError

# The serialization helpers live in landform.io; they are re-exported here for the task code.
from landform.io import (  # noqa: F401
    load_module_state,
    load_optimizer_tensors,
    load_pair,
    optimizer_tensors,
    read_bytes,
    save_pair,
    write_bytes,
)

if TYPE_CHECKING:
    from landform.landscape import InferenceSettings, Landscape

ZOO_DIR = Path(__file__).resolve().parent
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _checked(name: str) -> str:
    """A zoo entry name: letters, digits, '-', '_' and '.', no path (so `zoo show ../../README` is refused)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise LandformError(f"invalid zoo entry name {name!r}; see `landform zoo list`")
    return name


def path(name: str, directory: str | Path | None = None) -> Path:
    """Path of the weights file of zoo entry ``name``: in ``directory`` when it holds them (a trainer's
    ``zoo_dir``), else in the package's zoo."""
    file = f"{_checked(name)}.safetensors"
    if directory is not None and (Path(directory) / file).exists():
        return Path(directory) / file
    return ZOO_DIR / file


def fingerprint(name: str, directory: str | Path | None = None) -> str:
    """A short hash of the weights file of ``name``: models fitted on top of it record it, so a retrained
    dependency is caught on load instead of silently mismatching."""
    import hashlib

    return hashlib.sha256(path(name, directory).read_bytes()).hexdigest()[:16]


def names() -> list[str]:
    """Names of the entries that ship weights."""
    return sorted(p.stem for p in ZOO_DIR.glob("*.safetensors"))


def card(name: str) -> str:
    """The model card of ``name`` (markdown)."""
    card_path = ZOO_DIR / f"{_checked(name)}.md"
    if not card_path.is_file():
        raise LandformError(f"zoo entry '{name}' has no model card; known: {', '.join(names()) or 'none'}")
    return read_bytes(card_path, 2**20, "model card").decode("utf-8", "replace")


def load(name: str, directory: Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load the tensors and the config of ``name`` (from ``directory`` when it holds them, else the zoo)."""
    return load_pair(path(name, directory))


def half(state: dict[str, torch.Tensor], keep: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """float16 storage for a shipped state dict (halves its size; loaders convert back to float32), but the
    entries named in ``keep`` as they are: a Landscape's statistics (``Landscape.statistics``), which float16
    cannot hold (a spread of 1e-6 is subnormal there, and the rounding of a mean divided by it is large)."""
    kept = set(keep)
    return {k: v.detach().cpu().to(torch.float16) if v.is_floating_point() and k not in kept else v.detach().cpu()
            for k, v in state.items()}


def save(name: str, state: dict[str, torch.Tensor], config: dict[str, Any], card_text: str,
         directory: Path | None = None) -> Path:
    """Write zoo entry ``name``: weights, config and model card, into ``directory`` (default: the package's
    zoo, ``ZOO_DIR``; a trainer passes its ``zoo_dir``)."""
    folder = Path(directory) if directory is not None else ZOO_DIR
    weights_path = folder / f"{_checked(name)}.safetensors"
    save_pair(weights_path, state, config)
    write_bytes(folder / f"{name}.md", card_text.encode())
    return weights_path


def requirements(names: Iterable[str], directory: str | Path | None = None) -> dict[str, dict[str, str]]:
    """The ``requires`` record of a zoo entry fitted on the zoo entries ``names``: ``{"zoo": {name: fingerprint}}``
    (``fingerprint``, a hash of the weights file), what ``check_fitted_on`` compares on load."""
    return {"zoo": {name: fingerprint(name, directory) for name in names}}


def check_fitted_on(name: str, config: dict[str, Any], fitted_on: dict[str, str | None],
                    directory: str | Path | None = None) -> dict[str, str]:
    """Refuse zoo entry ``name`` (its JSON ``config``) unless every entry it was fitted on is the one installed
    (in ``directory`` when it holds it, else the package's zoo): a retrained VAE or generator under an old Θ
    would silently mismatch. ``fitted_on`` maps each such entry to the config key that entries written before
    ``requires["zoo"]`` kept its fingerprint under (None: none). One line names what differs and the command
    that retrains ``name``; returns the fingerprints checked."""
    recorded = (config.get("requires") or {}).get("zoo") or {}
    current: dict[str, str] = {}
    differ: list[str] = []
    for dependency, legacy_key in fitted_on.items():
        if not path(dependency, directory).exists():
            raise LandformError(f"{name} needs the zoo entry {dependency}, which is missing; train it with "
                                f"`landform zoo train {dependency}`")
        current[dependency] = fingerprint(dependency, directory)
        want = recorded.get(dependency, config.get(legacy_key) if legacy_key else None)
        if want != current[dependency]:
            differ.append(f"{dependency} ({'no fingerprint recorded' if want is None else f'fitted on {want}'}, "
                          f"installed {current[dependency]})")
    if differ:
        raise LandformError(f"{name} was fitted for another {' and '.join(differ)}; retrain it with "
                            f"`landform zoo train {name}`")
    return current


def load_checked(name: str, fitted_on: dict[str, str | None],
                 directory: str | Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Zoo entry ``name``'s weights (float32) and config, refused if missing or fitted on another entry than the
    installed one (``check_fitted_on``)."""
    try:
        state, config = load(name, None if directory is None else Path(directory))
    except LandformError as error:
        raise LandformError(f"{error}; train it with `landform zoo train {name}`") from None
    config["requires"] = {**(config.get("requires") or {}), "zoo": check_fitted_on(name, config, fitted_on, directory)}
    return {k: v.float() for k, v in state.items()}, config


def load_landscape(name: str, fitted_on: dict[str, str | None], *, directory: str | Path | None = None,
                   device: torch.device | str = "cpu", start: str | None = None, steps: str | None = None,
                   settings: InferenceSettings | None = None) -> Landscape:
    """A task's shipped landscape: zoo entry ``name`` (from ``directory`` when it holds it), every entry it is
    built from checked to be fitted on the installed ``fitted_on`` entries (``check_fitted_on``; the
    fingerprints land in ``requires["zoo"]``). A saved Landscape loads as it is; a task that ships its parts
    gives a Θ entry as ``name``, the entry of its learned start as ``start``, that of its learned update steps
    as ``steps`` (used where ``settings.learned_steps`` asks for them) and its tuned ``settings``, and gets
    them as one Landscape, built in memory."""
    from landform.landscape import Landscape  # the zoo's listing stays light; the core never imports the zoo

    state, config = load_checked(name, fitted_on, directory)
    if config.get("kind") == "landform.Mapping":
        if settings is None:
            raise LandformError(f"{name} is a Θ alone: loading it as a landscape needs its inference settings")
        state = {f"theta.{k}": v for k, v in state.items()}
        steps = steps if settings.learned_steps else None  # shipped steps the settings do not use stay out
        start_config = _part(state, "start", start, fitted_on, directory, "a learned start of the current layout")
        steps_config = _part(state, "steps", steps, fitted_on, directory, "learned steps")
        config = {"kind": "landform.Landscape", "mapping": config, "start": start_config, "refine": None,
                  "steps": steps_config, "settings": asdict(settings), "requires": config["requires"],
                  "record": {"zoo": {"theta": name, "start": start, "steps": steps}}}
    return Landscape.from_state(state, config, path(name, directory)).to(device)


def _part(state: dict[str, torch.Tensor], key: str, name: str | None, fitted_on: dict[str, str | None],
          directory: str | Path | None, what: str) -> dict | None:
    """Zoo entry ``name``'s weights added to ``state`` under ``key.`` (checked like every entry), and the
    config it keeps under ``key``; None without an entry."""
    if name is None:
        return None
    part_state, entry = load_checked(name, fitted_on, directory)
    if not isinstance(entry.get(key), dict):
        raise LandformError(f"{path(name, directory)} holds no {what}; retrain it with `landform zoo train {name}`")
    state.update({f"{key}.{k}": v for k, v in part_state.items()})
    return entry[key]
