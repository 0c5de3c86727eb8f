"""Would a Gauss-Newton (Levenberg–Marquardt) finish reach the answer sooner than Adam? Per-example LM on probe
decoders, from x = 0 and from starts near the true latents, with its seconds per iteration beside an Adam step's.

Each LM iteration builds the Jacobian of F at x by forward mode (one pass of F per coordinate of x, batched with
``torch.func.vmap``), the Gauss-Newton matrix Jᵀ H J (H the loss's Hessian in F's output), and takes the damped
step (JᵀHJ + λ diag) δ = −g per example, kept where it lowers that example's loss (λ ÷ 3, else λ × 4). A start
"near the truth" is the true latent plus Gaussian noise of ``scale`` times the latents' spread (0.1 is about as far
as the recipe's learned start on the colour decoder: loss 1.9e-3).

    .venv/bin/python experiments/gauss_newton_finish.py --threads 1 --out experiments/results/gauss_newton_finish.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.func import jvp, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import probe_problems

from landform.problem import mse

ITERATIONS = 8
SCALES = (0.0, 0.1, 0.3)


def levenberg_marquardt(forward, loss, x0: torch.Tensor, y: torch.Tensor, *, iterations: int = ITERATIONS,
                        damping: float = 1e-3) -> tuple[list[float], float]:
    """The mean loss after each LM iteration (the first entry at x0) and the mean seconds per iteration."""
    batch, dim = x0.shape[0], x0[0].numel()
    x, lam = x0.detach().clone(), torch.full((batch,), damping)
    with torch.no_grad():
        current = loss(forward(x), y)
    curve, began = [float(current.mean())], time.perf_counter()
    basis = torch.eye(dim).view(dim, 1, dim).expand(dim, batch, dim).reshape(dim, batch, *x0.shape[1:])
    for _ in range(iterations):
        y_hat = forward(x).detach().requires_grad_(True)
        jacobian = vmap(lambda v, at=x: jvp(forward, (at,), (v,))[1])(basis).reshape(dim, batch, -1).transpose(0, 1)
        (grad_y,) = torch.autograd.grad(loss(y_hat, y).sum(), y_hat, create_graph=True)
        grad_y = grad_y.reshape(batch, -1)
        curvature = torch.stack([torch.autograd.grad((grad_y * jacobian[:, j]).sum(), y_hat, retain_graph=True)[0]
                                 .reshape(batch, -1) for j in range(dim)], 1)
        gauss_newton = jacobian @ curvature.transpose(1, 2)
        gauss_newton = (gauss_newton + gauss_newton.transpose(1, 2)) / 2
        gradient = (jacobian @ grad_y.detach().unsqueeze(2)).squeeze(2)
        diagonal = torch.diagonal(gauss_newton, dim1=1, dim2=2)
        damped = gauss_newton + lam[:, None, None] * torch.diag_embed(diagonal + 1e-9 * diagonal.mean(1, keepdim=True))
        step = torch.linalg.solve(damped, -gradient.unsqueeze(2)).squeeze(2)
        with torch.no_grad():
            trial = x + step.view_as(x)
            value = loss(forward(trial), y)
            better = value < current
            x = torch.where(better.view(-1, *[1] * (x.dim() - 1)), trial, x)
            current = torch.where(better, value, current)
            lam = torch.where(better, lam / 3, lam * 4)
        curve.append(float(current.mean()))
    return curve, (time.perf_counter() - began) / iterations


def adam_step_seconds(forward, loss, x0: torch.Tensor, y: torch.Tensor, steps: int = 20) -> float:
    """The mean seconds of one Adam step on x (one forward and backward pass of F)."""
    x = x0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=0.01)
    began = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        loss(forward(x), y).sum().backward()
        optimizer.step()
    return (time.perf_counter() - began) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/gauss_newton_finish.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    colour = probe_problems.ColorDecoder()
    cases = {"colour decoder": (colour, lambda n, g: torch.randn(n, 32, generator=g), 0.01),
             "conv decoder": (probe_problems.ConvDecoder(), lambda n, g: torch.randn(n, 16, generator=g), 0.02)}
    results: dict = {"count": args.count, "threads": args.threads, "iterations": ITERATIONS, "problems": {}}
    for name, (forward, sample, noise) in cases.items():
        generator = torch.Generator().manual_seed(1)
        truth = sample(args.count, generator)
        with torch.no_grad():
            y = forward(truth)
            y = y + noise * torch.randn(y.shape, generator=generator)
        block: dict = {"noise_floor": noise ** 2}
        for scale in SCALES:
            x0 = truth + scale * truth.std() * torch.randn(truth.shape, generator=generator) if scale else \
                torch.zeros_like(truth)
            curve, seconds = levenberg_marquardt(forward, mse, x0, y)
            block[f"start {scale}"] = {"mean_loss_per_iteration": curve, "seconds_per_iteration": round(seconds, 4)}
            print(f"{name}, start {scale}: " + " ".join(f"{v:.4g}" for v in curve) + f"  {1e3 * seconds:.1f} ms/it")
        block["adam_step_seconds"] = round(adam_step_seconds(forward, mse, torch.zeros_like(truth), y), 5)
        print(f"{name}: Adam step {1e3 * block['adam_step_seconds']:.1f} ms")
        results["problems"][name] = block
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
