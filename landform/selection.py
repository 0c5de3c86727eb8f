"""Θ's selection on held-out observations during the recipe's Algorithm 1, kept across a resume.

``ThetaSelector`` is ``fit``'s ``should_stop``: every few rounds it scores Θ on held-out observations, keeps the
best Θ and stops the fit on a plateau (or at 80% of the budget). Its state (the best Θ, its round, the stalls,
the curve) is saved beside Θ's checkpoint after every score, as a pair named by the round, so that a killed
fit resumes to the same selection: ``resume`` reloads it, scores the checkpoint's round if the kill came
between its commit and its score, and says whether the selection had already stopped the fit.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from pathlib import Path

import torch

from landform.comparison import SWEEP_LRS, sweep_rates
from landform.distributed import Context
from landform.fitting import FitResult, checkpoint_rounds
from landform.inference import InversionResult, invert
from landform.io import load_pair, save_pair
from landform.learned_parts import Budget, leader_writes
from landform.mapping import Mapping
from landform.metrics import speedup_at
from landform.problem import Problem
from landform.tuning import final_loss, run_over_ranks

SELECTION_FILE = "theta-selection"  # SELECTION_FILE-<round>.safetensors / .json


class ThetaSelector:
    """``fit``'s ``should_stop``: every few rounds, Θ's mean log loss over the first T steps on held-out
    observations (Eq. 3 around the start); keeps the best Θ, stops on a plateau or at 80% of the budget. With a
    ``directory`` its state is saved there after every score (rank 0 writes), for ``resume``."""

    def __init__(self, problem: Problem, base, val: torch.Tensor, budget: Budget, *, lr_z: float, steps: int,
                 seed: int, device: torch.device, every: int = 5, patience: int = 6,
                 context: Context | None = None, directory: Path | None = None) -> None:
        self.problem, self.base, self.val, self.budget, self.steps = problem, base, val, budget, steps
        self.lr_z, self.seed, self.device, self.every, self.patience = lr_z, seed, device, every, patience
        self.ctx, self.directory = context or Context(), directory
        self.best_score, self.best_state, self.best_round, self.stalls = math.inf, None, 0, 0
        self.curve: list[list[float]] = []
        self.times: list[float] = []  # the budget's seconds used at each score (rank 0's clock)
        self.stopped = "rounds"
        self.done = False  # whether a plateau or the budget stopped the fit
        self._baseline: torch.Tensor | None = None

    def score(self, mapping: Mapping) -> tuple[float, torch.Tensor]:
        """Θ's mean log loss over the first T steps on the held-out observations, and its mean loss curve."""
        curve = run_over_ranks(self.ctx, lambda y: invert(
            self.problem.forward, self.problem.loss, y, mapping=mapping, lr=self.lr_z, steps=self.steps,
            seed=self.seed, base=self.base, device=self.device, allow_nonfinite=True), self.val).losses.mean(1)
        mapping.train()
        return float(torch.nan_to_num(curve.clamp_min(1e-30).log(), nan=math.inf).mean()), curve

    def baseline(self) -> torch.Tensor:
        """The baseline's mean loss curve over T steps on the held-out observations (lr swept like
        ``compare.sweep_lr``; computed once)."""
        if self._baseline is None:
            runs: dict[float, InversionResult] = {}

            def final_of(lr: float) -> float:
                runs[lr] = run_over_ranks(self.ctx, lambda y: invert(
                    self.problem.forward, self.problem.loss, y, lr=lr, steps=self.steps, seed=self.seed,
                    device=self.device, allow_nonfinite=True, x_shape=self.problem.x_shape, init="origin"), self.val)
                return final_loss(runs[lr])

            best_lr, _ = sweep_rates(SWEEP_LRS, final_of)
            self._baseline = torch.nan_to_num(runs[best_lr].losses.mean(1), nan=math.inf)
        return self._baseline

    def __call__(self, result: FitResult) -> bool:
        done = len(result.history)
        over = self.ctx.leader_says(self.budget.until(0.8) <= 1.0)
        if done % self.every and not over:
            return False
        return self._judge(result.mapping, result.history[-1].round, result.history[-1].scores, over)

    def _judge(self, mapping: Mapping, round_number: int, scores: dict, over: bool) -> bool:
        """Score Θ after ``round_number``, keep it if it is the best, save the state; whether to stop."""
        value, curve = self.score(mapping)
        self.curve.append([round_number, value])
        self.times.append(round(self.budget.used(), 3))
        baseline = self.baseline()  # shown on fit's progress bar: the held-out speedup at T and the loss ratio
        scores["validation_speedup"] = speedup_at(baseline, curve, self.steps)
        scores["validation_loss_ratio"] = float(curve[-1] / baseline[-1].clamp_min(1e-30))
        if value < self.best_score - 1e-3:
            self.best_score, self.best_round, self.stalls = value, round_number, 0
            self.best_state = {k: v.detach().clone() for k, v in mapping.state_dict().items()}
        else:
            self.stalls += 1
        if self.stalls >= self.patience:
            self.stopped, self.done = "plateau", True
        elif over:
            self.stopped, self.done = "time", True
        self._save(round_number)
        return self.done

    def _save(self, round_number: int) -> None:
        """The state after the score of ``round_number``, then the older states removed (a kill between leaves
        the older, complete pair; a pair's JSON, written last, commits it)."""
        if self.directory is None:
            return
        directory = self.directory
        config = {"round": round_number, "best_score": self.best_score, "best_round": self.best_round,
                  "stalls": self.stalls, "curve": self.curve, "times": self.times, "stopped": self.stopped,
                  "done": self.done, "has_best": self.best_state is not None}

        def write() -> None:
            state = self.best_state if self.best_state is not None else {"none": torch.zeros(1)}
            save_pair(directory / f"{SELECTION_FILE}-{round_number:06d}.safetensors", state, config)
            for older, _ in _saved(directory):
                if older < round_number:
                    for suffix in (".json", ".safetensors"):
                        with contextlib.suppress(FileNotFoundError):
                            (directory / f"{SELECTION_FILE}-{older:06d}{suffix}").unlink()
        leader_writes(self.ctx, write)

    def resume(self, mapping: Mapping) -> bool:
        """Reload the state saved for the rounds that Θ's checkpoint holds; score the checkpoint's own round if
        it is due and was not scored (a kill between the commit and the score), on a copy of ``mapping`` (the
        fit's Θ, not yet restored). Returns whether the selection had stopped the fit: no more rounds run."""
        if self.directory is None:
            return False
        ctx = self.ctx
        config, tensors = _load_state(self.directory, self.every) if ctx.leader else ({}, {})
        if ctx.active:  # the folder may be rank 0's alone
            config = json.loads(ctx.share(json.dumps(config)) or "{}")
            tensors = ctx.broadcast_tensors(tensors if ctx.leader else None)
        saved = config.get("saved")
        if saved:
            self.best_score, self.best_round = float(saved["best_score"]), int(saved["best_round"])
            self.stalls, self.stopped, self.done = int(saved["stalls"]), str(saved["stopped"]), bool(saved["done"])
            self.curve, self.times = list(saved["curve"]), list(saved["times"])
            self.best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} \
                if saved.get("has_best") else None
        if config.get("due") and not self.done:
            theta = copy.deepcopy(mapping)
            theta.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("theta.")})
            self._judge(theta.to(self.device), int(config["rounds"]), {}, False)
        return self.done

    def restore_best(self, mapping: Mapping) -> None:
        if self.best_state is not None:
            mapping.load_state_dict(self.best_state)


def _saved(directory: Path) -> list[tuple[int, Path]]:
    """The committed selection states in ``directory`` (their JSON written), by round."""
    found = []
    for path in directory.glob(f"{SELECTION_FILE}-*.json"):
        number = path.stem.rsplit("-", 1)[-1]
        if number.isdigit() and path.with_suffix(".safetensors").exists():
            found.append((int(number), path.with_suffix(".safetensors")))
    return sorted(found)


def _load_state(directory: Path, every: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """The last state saved for a round that Θ's checkpoint holds, and the checkpoint's Θ if its round is due
    for a score that was not saved: ``({"saved": config, "due": ..., "rounds": ...}, tensors)``."""
    rounds = checkpoint_rounds(directory)
    saved = [(r, path) for r, path in _saved(directory) if r <= rounds]
    config: dict = {"rounds": rounds}
    tensors: dict[str, torch.Tensor] = {}
    if saved:
        state, config["saved"] = load_pair(saved[-1][1], floating=True, finite=True)
        tensors.update({f"best.{k}": v for k, v in state.items()})
    config["due"] = rounds > (saved[-1][0] if saved else 0) and rounds % every == 0
    if config["due"]:
        theta = Mapping.load(directory)
        tensors.update({f"theta.{k}": v for k, v in theta.state_dict().items()})
    return config, tensors
