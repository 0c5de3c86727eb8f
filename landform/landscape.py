"""The artifact every recipe writes and every task ships: a ``Landscape``, one ``nn.Module``.

It holds the learned start E(y) (with its optional error-feedback step), the optional learned update steps
(``landform.steps``), the anchored Θ and the tuned inference settings, plus a record of what the fit measured
and a ``requires`` record of fingerprints of the forward model it was fitted for. ``.to(device)`` moves every
part; ``save``/``load`` write and check one ``landscape.safetensors`` + ``landscape.json`` pair through the io
module; ``invert(y, problem)`` runs its tuned inference and refuses a forward model other than the one it was
fitted for (a fine-tuned generator with an old landscape ends far above plain descent), unless told otherwise.
A task's shipped landscape loads through ``landform.zoo.load_landscape``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landform.comparison import SWEEP_LRS, Method
from landform.errors import LandformError
from landform.inference import InversionResult
from landform.io import load_module_state, load_pair, read_json, save_pair
from landform.mapping import Mapping, expected_shapes, validate_config
from landform.problem import Problem
from landform.start import RefinedStart, StartEncoder
from landform.steps import LearnedSteps

ARTIFACT = "landscape"
SETTING_MODES = ("start", "residual", "pure")


@dataclass(frozen=True)
class InferenceSettings:
    """How a Landscape inverts, with Adam: ``learned_steps`` learned update steps from the start first (0: none),
    then ``mode`` "start" descends on x = x_K + δ, "residual" on x = x_K + Θ(z) + δ, "pure" on x = x_K + Θ(z)
    (Eq. 3 around where the learned steps end, or around the start); ``lr_z`` and ``lr_x`` are the step sizes on
    z and δ, δ's ramped up over ``warmup`` steps; ``steps`` is where more steps stopped paying on the validation
    observations (the default of ``invert``), learned steps included."""

    mode: str
    lr_z: float
    lr_x: float
    warmup: int
    steps: int
    learned_steps: int = 0

    def describe(self) -> str:
        moved = {"start": f"δ (lr {self.lr_x:g})",
                 "residual": f"z (lr {self.lr_z:g}) and δ (lr {self.lr_x:g}, warm-up {self.warmup})",
                 "pure": f"z (lr {self.lr_z:g})"}[self.mode]
        x = {"start": "x0 + δ", "residual": "x0 + Θ(z) + δ", "pure": "x0 + Θ(z)"}[self.mode]
        lead = f"{self.learned_steps} learned steps, then " if self.learned_steps else ""
        return f"{lead}x = {x}, Adam on {moved}, {self.steps} steps in all"

    @classmethod
    def parse(cls, value: Any, source: str | Path) -> InferenceSettings:
        """Settings from their JSON form; one-line errors for missing or out-of-range values."""
        try:
            settings = cls(mode=str(value["mode"]), lr_z=float(value["lr_z"]), lr_x=float(value["lr_x"]),
                           warmup=int(value["warmup"]), steps=int(value["steps"]),
                           learned_steps=int(value.get("learned_steps", 0)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise LandformError(f"{source}: the landscape's settings need mode, lr_z, lr_x, warmup and steps") from None
        if not all(math.isfinite(v) and v > 0 for v in (settings.lr_z, settings.lr_x)) or settings.warmup < 0 \
                or settings.steps < 0 or settings.mode not in SETTING_MODES or settings.learned_steps < 0:
            raise LandformError(f"{source}: the landscape's settings are out of range ({value})")
        return settings


# ------------------------------------------------------------------------------------------- fingerprints

PROBE_COUNT = 4
PROBE_VALUES = 64  # output values kept per probe (a fixed, spread subset)
PROBE_TOLERANCE = 1e-3  # relative to the outputs' scale: thread counts and devices move the last bits only


def fingerprint(forward: Callable[[torch.Tensor], torch.Tensor], x_shape: tuple[int, ...],
                device: torch.device | str = "cpu") -> dict[str, Any]:
    """What identifies a forward model F: a hash of its parameters and buffers (where F is an ``nn.Module``) and
    its outputs on a few fixed, seeded probe inputs (so a plain function is covered too)."""
    record: dict[str, Any] = {"parameters": None}
    if isinstance(forward, nn.Module):
        digest = hashlib.sha256()
        for name, tensor in sorted(forward.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        record["parameters"] = digest.hexdigest()[:16]
    probe = torch.randn(PROBE_COUNT, *x_shape, generator=torch.Generator().manual_seed(20261206)).to(device)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        out = torch.as_tensor(forward(probe)).detach().to("cpu", torch.float64).reshape(PROBE_COUNT, -1)
    index = torch.linspace(0, out.shape[1] - 1, min(PROBE_VALUES, out.shape[1])).round().long()
    record["probe"] = torch.nan_to_num(out[:, index], nan=0.0, posinf=1e30, neginf=-1e30).flatten().tolist()
    record["output_shape"] = list(out.shape[1:])
    return record


def fingerprint_difference(expected: dict[str, Any], actual: dict[str, Any]) -> str | None:
    """What differs between two fingerprints, in a few words; None if they match."""
    if expected.get("parameters") is not None and actual.get("parameters") is not None \
            and expected["parameters"] != actual["parameters"]:
        return "its parameters differ (a retrained or fine-tuned model?)"
    if expected.get("output_shape") != actual.get("output_shape"):
        return f"its output has {actual.get('output_shape')} values per probe, not {expected.get('output_shape')}"
    want, got = (torch.tensor(r.get("probe", []), dtype=torch.float64) for r in (expected, actual))
    if want.shape != got.shape:
        return "its outputs on the probe inputs differ"
    scale = max(float(want.abs().max()) if want.numel() else 0.0, 1e-12)
    gap = float((want - got).abs().max()) / scale if want.numel() else 0.0
    if gap > PROBE_TOLERANCE:
        return f"its outputs on the probe inputs differ by {gap:.2g} of their scale"
    return None


# ------------------------------------------------------------------------------------------- the artifact

class Landscape(nn.Module):
    """Everything inversion needs: the learned start (None: the Problem's own ``base``) and its optional
    error-feedback step (``refiner``), the optional learned update steps, the anchored Θ and the tuned settings;
    ``record`` is what the fit measured, ``requires`` the fingerprints of what it was fitted for."""

    def __init__(self, start: StartEncoder | None, mapping: Mapping, settings: InferenceSettings, *,
                 record: dict[str, Any] | None = None, refiner: StartEncoder | None = None,
                 steps: LearnedSteps | None = None, requires: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.register_module("start", start)
        self.register_module("refiner", refiner)
        self.register_module("steps", steps)
        self.mapping = mapping
        self.settings = settings
        self.record: dict[str, Any] = dict(record or {})
        self.requires: dict[str, Any] = dict(requires or {})

    def with_(self, **changes: Any) -> Landscape:
        """A shallow copy with some parts or settings replaced (``with_(refiner=None)``); modules are shared."""
        other = copy.copy(self)
        other._modules = dict(self._modules)
        for name, value in changes.items():
            if name in ("start", "refiner", "steps", "mapping"):
                other._modules[name] = value
            elif name in ("settings", "record", "requires"):
                object.__setattr__(other, name, value)
            else:
                raise TypeError(f"Landscape has no part {name!r}")
        return other

    # -- starts

    def start_for(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """The learned start E(y), followed by its error-feedback step through ``forward`` (F) where it has one."""
        if self.start is None:
            raise LandformError("this landscape has no learned start (it was fitted on a Problem's own base)")
        return self.start if self.refiner is None else RefinedStart(self.start, forward, self.refiner)

    def start_of(self, problem: Problem) -> Callable[[torch.Tensor], torch.Tensor]:
        """The start used with ``problem``: the learned one (refined through its F), or the Problem's own base."""
        if self.start is not None:
            return self.start_for(problem.forward)
        if problem.base is None:
            raise LandformError("this landscape was fitted on a Problem's own base (start), and this Problem "
                                "has none")
        return problem.base

    # -- the forward model it was fitted for

    def check_problem(self, problem: Problem, *, allow_other_model: bool = False,
                      device: torch.device | str = "cpu") -> None:
        """Refuse ``problem`` if its forward model is not the one this landscape was fitted for (a one-line error
        that says what differs); with ``allow_other_model`` a one-line warning instead. Landscapes saved without
        a fingerprint are not checked."""
        expected = self.requires.get("forward")
        if not expected:
            return
        difference = fingerprint_difference(expected, fingerprint(problem.forward, problem.x_shape, device))
        if difference is None:
            return
        message = f"this landscape was fitted for another forward model than {problem.name!r}: {difference}"
        if not allow_other_model:
            raise LandformError(f"{message}; refit it (`landform fit`), or pass --allow-other-model "
                                "(Python: allow_other_model=True) to use it anyway")
        warnings.warn(f"{message}; used anyway (allow_other_model)", stacklevel=2)

    # -- inference

    def method(self, name: str = "landscape") -> Method:
        """The tuned inference as a ``compare`` method (run it on ``problem_with_start(problem, self)``)."""
        s = self.settings
        lead = {"lead": self.steps, "lead_count": s.learned_steps} if s.learned_steps and self.steps is not None \
            else {}
        if s.mode == "start":
            return Method(name, lr=s.lr_x, use_base=True, init="origin", **lead)
        if s.mode == "pure":
            return Method(name, mapping=self.mapping, mode="pure", lr=s.lr_z, use_base=True, **lead)
        return Method(name, mapping=self.mapping, mode="residual", lr=s.lr_z, lr_x=s.lr_x, warmup=s.warmup,
                      use_base=True, **lead)

    def invert(self, y: torch.Tensor, problem: Problem, *, steps: int | None = None, allow_other_model: bool = False,
               **kwargs: Any) -> InversionResult:
        """Invert ``y`` for ``problem`` with the tuned settings (``steps`` defaults to the tuned number; other
        keywords go to ``landform.invert``: optimizer, mask, seed, device, progress, ...)."""
        self.check_problem(problem, allow_other_model=allow_other_model)
        method = self.method()
        return method.run(problem_with_start(problem, self), y, method.lr,
                          steps=self.settings.steps if steps is None else steps, **kwargs)

    # -- serialization

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The weights (``theta.*``, ``start.*``, ``refine.*``, ``steps.*``) and the JSON config that ``from_state``
        rebuilds it from (a task ships them as a zoo entry; ``save`` writes them as one artifact)."""
        tensors = {f"theta.{k}": v for k, v in self.mapping.state_dict().items()}
        for prefix, module in (("start", self.start), ("refine", self.refiner), ("steps", self.steps)):
            if module is not None:
                tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
        config = {"kind": "landform.Landscape", "mapping": self.mapping.config(),
                  "start": None if self.start is None else self.start.config(),
                  "refine": None if self.refiner is None else self.refiner.config(),
                  "steps": None if self.steps is None else self.steps.config(),
                  "settings": asdict(self.settings), "requires": self.requires, "record": self.record}
        return tensors, config

    @classmethod
    def check_config(cls, config: Any, source: str | Path) -> dict[str, tuple[int, ...]]:
        """The weights' names and shapes a Landscape config calls for; one-line errors for a bad config."""
        if not isinstance(config, dict) or config.get("kind") != "landform.Landscape":
            raise LandformError(f"{source} is not a landform Landscape config")
        expected = {f"theta.{k}": v for k, v in expected_shapes(validate_config(config.get("mapping"),
                                                                                 source)).items()}
        for part in ("start", "refine", "steps"):
            if config.get(part) is not None:
                module = _build(part, config[part], source)
                expected.update({f"{part}.{k}": tuple(v.shape) for k, v in module.state_dict().items()})
        if config.get("refine") is not None and config.get("start") is None:
            raise LandformError(f"{source}: the landscape has an error-feedback step but no start to refine")
        return expected

    def statistics(self) -> set[str]:
        """The keys of ``state()`` that hold fixed statistics (buffers: an input's mean and spread, a step's
        scale), not trained weights: storage that rounds weights (float16) must keep these as they are, for
        a feature divided by a spread of 1e-6 turns the rounding of its mean into a large error."""
        keys = {f"theta.{k}" for k, _ in self.mapping.named_buffers()}
        for prefix, module in (("start", self.start), ("refine", self.refiner), ("steps", self.steps)):
            if module is not None:
                keys |= {f"{prefix}.{k}" for k, _ in module.named_buffers()}
        return keys

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], config: dict[str, Any], source: str | Path) -> Landscape:
        """The Landscape of ``state`` and ``config`` (as ``state`` gives them; weights of any float dtype)."""
        cls.check_config(config, source)
        state = {k: v.float() for k, v in state.items()}
        mapping = Mapping._build(validate_config(config["mapping"], source),
                                 {k[6:]: v for k, v in state.items() if k.startswith("theta.")}, source)
        start, refiner, steps = (_module_of(config, state, part, source) for part in ("start", "refine", "steps"))
        settings = InferenceSettings.parse(config.get("settings"), source)
        if settings.learned_steps and (steps is None or settings.learned_steps > steps.count):
            raise LandformError(f"{source}: the settings ask for {settings.learned_steps} learned steps, the "
                                f"landscape has {0 if steps is None else steps.count}")
        return cls(start=start, mapping=mapping.eval(), settings=settings, record=config.get("record") or {},
                   refiner=refiner, steps=steps, requires=config.get("requires") or {})

    def save(self, directory: str | Path) -> Path:
        """``DIR/landscape.safetensors`` and ``.json``, each written atomically (the JSON holds the weights'
        hash, so halves of two saves are refused)."""
        tensors, config = self.state()
        return save_pair(Path(directory) / f"{ARTIFACT}.safetensors", {k: v.cpu() for k, v in tensors.items()},
                         config)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Landscape:
        """The Landscape saved in directory ``path`` (or at ``path``.safetensors), every part checked."""
        weights = artifact_path(path)
        if weights is None:
            raise LandformError(f"no landscape in {path} (fit it with `landform fit --out {path}`)")
        config_path = weights.with_suffix(".json")
        config = read_json(config_path, "landscape config")
        expected = cls.check_config(config, config_path)
        state, _ = load_pair(weights, expected=expected, floating=True, finite=True)
        return cls.from_state(state, config, weights).to(device)

    def describe(self) -> str:
        """One line: what inversion with this landscape uses."""
        start = f"learned start ({self.start.describe()})" if self.start is not None else "the Problem's base"
        if self.refiner is not None:
            start += " + one error-feedback step"
        if self.record.get("start", {}).get("check", {}).get("dropped"):
            start = "no start (E(y) = 0: descent from the learned start ended above the baseline)"
        return f"{start} + anchored Θ (hidden {self.mapping.hidden}); {self.settings.describe()}"


def _build(part: str, config: Any, source: str | Path) -> nn.Module:
    if part == "steps":
        return LearnedSteps.from_config(config, str(source))
    return StartEncoder.from_config(config, str(source))


def _module_of(config: dict[str, Any], state: dict[str, torch.Tensor], part: str, source: str | Path) -> Any:
    """A frozen part (start, error-feedback step or learned steps) of a checked Landscape state; None if absent."""
    if config.get(part) is None:
        return None
    module = _build(part, config[part], source)
    prefix = f"{part}."
    load_module_state(module, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, str(source))
    return module.eval().requires_grad_(False)


def artifact_path(path: str | Path) -> Path | None:
    """The landscape weights named by ``path`` (a directory holding one, or the file), None if there is none."""
    path = Path(path)
    candidate = path / f"{ARTIFACT}.safetensors" if path.is_dir() else path
    if candidate.name == f"{ARTIFACT}.safetensors" and candidate.with_suffix(".json").exists():
        return candidate
    return None


def landscape_methods(landscape: Landscape, lrs: tuple[float, ...] = SWEEP_LRS) -> list[Method]:
    """What ``compare`` runs for a Landscape: the baseline (descent on x from 0, lr swept), the practitioners'
    pipeline (descent on x from the learned start, its own swept lr: ``encoder_init``), the landscape's tuned
    inference, and the paper's Eq. 3 on its Θ (z alone, x = E(y) + Θ(z): ``landscape_pure``)."""
    return [Method("baseline", lr=lrs, init="origin"), Method("encoder_init", lr=lrs, use_base=True, init="origin"),
            landscape.method(), Method("landscape_pure", mapping=landscape.mapping, mode="pure", lr=0.1, use_base=True)]


def problem_with_start(problem: Problem, landscape: Landscape) -> Problem:
    """``problem`` whose ``base`` is the landscape's start (what its methods add Θ(z) and δ to)."""
    start = landscape.start_of(problem)

    def base(y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return start(y)
    return replace(problem, base=base)
