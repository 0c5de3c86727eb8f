"""``landform demo defense``: the Table 1 analog (paper §4.3) on Fashion-MNIST, and the defense on a user's
images.

For every robust model, on a fixed seeded subset of test images:

- the precondition: the SSL loss gap between attacked and clean images (paired, with its interval), and the
  view-vote diagnostic (how much any view-consistency objective could recover);
- the main attack, torchattacks' PGD-L2 at ε = 1.6 (see ``attack.py`` for the budget), then the core's
  ``compare`` of the baseline reversal (Mao et al. 2021: Adam on r, lr chosen on its own Eq. 7 loss) and ours
  (Adam on z, r = Θ(z)), robust accuracy after 1, 5, 20 and 40 steps;
- a noise control beside every defense number: x_adv + noise of the same L2 norm as the reversal vector;
- clean accuracy with the defense on; torchattacks' AutoAttack (standard) on a subset; a sweep of the
  attack budget; an adaptive attack that differentiates through one step of ours (``landform.unroll``).

Accuracy intervals are 95% bootstrap intervals over images (``landform.metrics.bootstrap_ci``); differences
between two defenses are paired (the same images). Attacks are cached under runs/defense-cache/ (keyed by
the weights' and settings' hash); from a clean clone they are computed, inside the time budget.

The accuracy and difference blocks, the noise control and the chunk size come from
``landform.tasks.defense.scoring`` (shared with the adaptive-attack studies under experiments/); the report's
text is written by ``landform.tasks.defense.summary``. The evaluation and the user-image commands stay together:
they share the cached attacks and the defense's settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from landform import zoo
from landform.comparison import Method, compare, summarize_methods
from landform.errors import LandformError
from landform.io import atomic_outputs, write_bytes
from landform.metrics import bootstrap_ci
from landform.progress import progress_bar
from landform.report import write_json, write_text
from landform.tasks import runs_dir
from landform.tasks.common import load_gray28
from landform.tasks.defense import attack
from landform.tasks.defense.data import eval_subset
from landform.tasks.defense.defense import (
    BASELINE_INIT,
    LAMBDA,
    RADIUS,
    baseline_lr,
    baseline_start,
    defended_logits,
    defense_problem,
    load_landscape,
    ours_settings,
    reversal_of,
    reverse,
)
from landform.tasks.defense.models import SHIPPED, entry_file, load_model, model_name, theta_name
from landform.tasks.defense.scoring import CHUNK, accuracy, correct, difference, noise_like
from landform.tasks.defense.ssl import ssl_gap, view_vote
from landform.tasks.defense.summary import summary_markdown

TEST_SIZE = 300
SUBSET = 100  # AutoAttack, the budget sweep's baseline, the adaptive attack, clean + baseline
BASELINE_STEPS = (1, 5, 20, 40)
SWEEP_EPS = (0.8, 1.6, 2.4)
SWEEP_STEPS = 50
ADAPTIVE_STEPS = 10


# ------------------------------------------------------------------------------------------------ attacks
def _fingerprint(recipe: str, extra: dict) -> str:
    """A cache key: the robust model's weights (``zoo.fingerprint``) and the attack's settings."""
    digest = hashlib.sha256(zoo.fingerprint(model_name(recipe)).encode())
    digest.update(json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _cached(recipe: str, label: str, settings: dict, x: torch.Tensor, make) -> torch.Tensor:
    """Adversarial examples for (model, images, settings), from the cache (RUNS/defense-cache) when present."""
    key = _fingerprint(recipe, {**settings, "n": x.shape[0]})
    path = runs_dir() / "defense-cache" / f"{recipe}-{label}-{key}.safetensors"
    if path.exists():
        try:
            tensors, _ = zoo.load_pair(path)
            if tensors["x"].shape == x.shape:
                return tensors["x"].to(x.device)
        except LandformError:
            pass
    x_adv = make()
    zoo.save_pair(path, {"x": x_adv.detach().cpu()}, settings)
    return x_adv.detach()


def torchattacks_pgd(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int, seed: int) -> torch.Tensor:
    """torchattacks.PGDL2 (random start, step ε/4 as the paper's 64/255 for 256/255), seeded."""
    import torchattacks

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torchattacks.PGDL2(model, eps=eps, alpha=eps / 4, steps=steps, random_start=True)(x, y)


def torchattacks_autoattack(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int) -> torch.Tensor:
    """torchattacks.AutoAttack, version 'standard' (APGD-CE, APGD-T, FAB-T, Square), L2."""
    import torchattacks

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torchattacks.AutoAttack(model, norm="L2", eps=eps, version="standard", n_classes=10, seed=seed)(x, y)


# ------------------------------------------------------------------------------------------------ chunks
def defend(model, a: torch.Tensor, *, mapping=None, steps: int, lr: float, seed: int, device: str,
           start_scale: float = 1.0) -> torch.Tensor:
    """The defended images of ``a``, in fixed chunks of CHUNK images (every evaluation, the adaptive attacker's
    included, runs exactly this function; the defense's contrastive negatives are the other images of a chunk)."""
    return torch.cat([reverse(model, a[i:i + CHUNK], mapping=mapping, steps=steps, lr=lr, seed=seed, device=device,
                              start_scale=start_scale).x for i in range(0, a.shape[0], CHUNK)])


def compare_chunks(model, a: torch.Tensor, methods: list[Method], *, steps: int, snapshots: tuple[int, ...],
                   seed: int, device: str) -> tuple[dict, dict]:
    """The core's ``compare`` on each chunk of CHUNK images; returns every method's defended images at
    ``snapshots`` (``reversal_of``) and the summary block of the merged per-image loss tables."""
    problem = defense_problem(model)
    losses: dict[str, list] = {m.name: [] for m in methods}
    shots: dict[str, dict[int, list]] = {m.name: {t: [] for t in snapshots} for m in methods}
    seconds: dict[str, float] = {m.name: 0.0 for m in methods}
    comparison = None
    for i in range(0, a.shape[0], CHUNK):
        chunk = a[i:i + CHUNK]
        comparison = compare(problem, chunk, methods, steps=steps, snapshots=snapshots, seed=seed, device=device,
                             report_steps=snapshots, bootstrap=0)
        for name, result in comparison.results.items():
            losses[name].append(result.losses)
            seconds[name] += result.seconds_per_step * chunk.shape[0] / a.shape[0]
            for t in snapshots:
                shots[name][t].append(reversal_of(result.snapshots[t], chunk))
    merged = {name: torch.cat(tables, dim=1) for name, tables in losses.items()}
    summary = summarize_methods(merged, steps=snapshots, seconds_per_step=seconds, seed=seed,
                                extra={"lr": comparison.lrs, "optimizer": "adam", "chunk": CHUNK})
    summary["baseline_lr"] = comparison.lrs["baseline"]
    return {name: {t: torch.cat(v) for t, v in per.items()} for name, per in shots.items()}, summary


# ----------------------------------------------------------------------------------------------- numbers
def _controlled(model, a: torch.Tensor, defended: torch.Tensor, y: torch.Tensor, seed: int) -> dict:
    """A defense's accuracy, the noise control's (a + noise of the reversal's norm), and their difference."""
    r = defended - a
    ok = correct(model, defended, y)
    ok_noise = correct(model, (a + noise_like(r, seed)).clamp(0, 1), y)
    return {**accuracy(ok), "noise": accuracy(ok_noise), "minus_noise": difference(ok, ok_noise),
            "reversal_norm": float(r.flatten(1).norm(dim=1).mean()), "_correct": ok}


def _strip(block):
    """Drop the per-image tensors kept for paired differences."""
    if isinstance(block, dict):
        return {k: _strip(v) for k, v in block.items() if not k.startswith("_")}
    return block


# -------------------------------------------------------------------------------------------------- model
def evaluate(recipe: str, *, n: int = TEST_SIZE, subset: int = SUBSET, seed: int = 0, device: str = "cpu",
             bar=None) -> dict:
    """All the numbers of one robust model (see the module docstring)."""
    model = load_model(recipe, device=device)
    landscape = load_landscape(recipe, device=device)
    mapping, lr_z, base_lr = landscape.mapping, landscape.settings.lr_z, baseline_lr(landscape)
    x, y = eval_subset(n, seed=seed)
    x, y = x.to(device), y.to(device)
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def tick(label: str) -> None:
        now = time.perf_counter()
        timings[label] = round(now - clock[0], 1)
        clock[0] = now
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{recipe}: {label}")

    row: dict = {"test_images": n, "subset_images": subset}
    eps = attack.L2_EPS
    settings = {"tool": "torchattacks.PGDL2", "eps": eps, "alpha": eps / 4, "steps": SWEEP_STEPS, "seed": seed}
    x_adv = _cached(recipe, "pgdl2", settings, x,
                    lambda: torchattacks_pgd(model, x, y, eps=eps, steps=SWEEP_STEPS, seed=seed))
    clean_ok, none_ok = correct(model, x, y), correct(model, x_adv, y)
    row["clean"], row["no_defense"] = accuracy(clean_ok), accuracy(none_ok)
    gap = ssl_gap(model, x, x_adv, seed=seed).double()
    row["ssl_gap"] = float(gap.mean())
    row["ssl_gap_ci95"] = bootstrap_ci(lambda g: float(g[0]), gap[None], seed=seed)
    row["ssl_gap_positive_fraction"] = float((gap > 0).double().mean())
    row["view_vote"] = view_vote(model, x, x_adv, y, seed=seed)
    tick("attack_and_gap")

    # The core's comparison: the baseline (Adam on r) and ours (Adam on z) on Eq. 7, 40 steps each.
    methods = [Method("baseline", lr=base_lr, init=baseline_start(seed), use_base=True),
               Method("landscape", mapping=mapping, mode="pure", lr=lr_z, init="gaussian", use_base=True)]
    steps = max(BASELINE_STEPS)
    snaps, row["loss"] = compare_chunks(model, x_adv, methods, steps=steps, snapshots=(0, *BASELINE_STEPS),
                                        seed=seed, device=device)
    row["baseline_steps"] = {str(t): _controlled(model, x_adv, snaps["baseline"][t], y, seed + t)
                             for t in BASELINE_STEPS}
    row["landscape_steps"] = {str(t): _controlled(model, x_adv, snaps["landscape"][t], y, seed + t)
                              for t in BASELINE_STEPS}
    ours1 = row["landscape_steps"]["1"]
    base40 = row["baseline_steps"][str(steps)]
    row["noise_control"] = {"landscape_1": ours1["noise"], "baseline_40": base40["noise"],
                            "landscape_1_minus_noise": ours1["minus_noise"],
                            "baseline_40_minus_noise": base40["minus_noise"]}
    row["landscape_1_minus_baseline_40"] = difference(ours1["_correct"], base40["_correct"])
    row["landscape_1_minus_no_defense"] = difference(ours1["_correct"], none_ok)
    row["baseline_40_minus_no_defense"] = difference(base40["_correct"], none_ok)
    tick("defenses")

    # Clean images through the defense (ours: all n; the baseline's 40 steps: the subset).
    clean_ours = defend(model, x, mapping=mapping, steps=1, lr=lr_z, seed=seed, device=device)
    clean_base = defend(model, x[:subset], steps=steps, lr=base_lr, seed=seed, device=device)
    row["clean_with_defense"] = accuracy(correct(model, clean_ours, y))
    row["clean_drop"] = difference(clean_ok, correct(model, clean_ours, y))
    row["clean_with_baseline_40"] = accuracy(correct(model, clean_base, y[:subset]))
    row["clean_subset"] = accuracy(clean_ok[:subset])
    tick("clean")

    # torchattacks: PGD-L2 (the main attack above) and AutoAttack on the subset, each then defended.
    xs, ys = x[:subset], y[:subset]
    x_aa = _cached(recipe, "autoattack", {"tool": "torchattacks.AutoAttack", "version": "standard", "norm": "L2",
                                          "eps": eps, "seed": seed}, xs,
                   lambda: torchattacks_autoattack(model, xs, ys, eps=eps, seed=seed))
    row["torchattacks"] = {
        "pgd_l2": {"settings": settings, "no_defense": row["no_defense"], "landscape_1": _strip(ours1),
                   "baseline_40": _strip(base40)},
        "autoattack": {"settings": {"version": "standard", "norm": "L2", "eps": eps, "images": subset},
                       **_defended_block(model, mapping, x_aa, ys, lr_z=lr_z, base_lr=base_lr, seed=seed,
                                         device=device)}}
    tick("autoattack")

    # The attack budget: torchattacks PGD-L2 at each ε (the main ε reuses the main attack).
    sweep = {}
    for e in SWEEP_EPS:
        if e == eps:
            x_e = x_adv[:subset]
        else:
            cfg = {"tool": "torchattacks.PGDL2", "eps": e, "alpha": e / 4, "steps": SWEEP_STEPS, "seed": seed}
            x_e = _cached(recipe, f"pgdl2-{e}", cfg, xs,
                          lambda e=e: torchattacks_pgd(model, xs, ys, eps=e, steps=SWEEP_STEPS, seed=seed))
        sweep[str(e)] = _defended_block(model, mapping, x_e, ys, lr_z=lr_z, base_lr=base_lr, seed=seed, device=device)
    row["epsilon_sweep"] = sweep
    tick("epsilon_sweep")

    # Adaptive: L2 PGD on the defended classifier (ours, 1 step), through the step (second order, same seed as
    # the defender), started from the transfer examples. Robust = survives both attacks.
    step_size = 2.5 * eps / ADAPTIVE_STEPS
    x_adapt = torch.cat([
        attack.pgd(lambda v: defended_logits(model, mapping, v, lr=lr_z, seed=seed), xs[i:i + CHUNK],
                   ys[i:i + CHUNK], norm="l2", eps=eps, step=step_size, steps=ADAPTIVE_STEPS,
                   start=x_adv[i:i + CHUNK]) for i in range(0, subset, CHUNK)])
    adapt_ok = correct(model, defend(model, x_adapt, mapping=mapping, steps=1, lr=lr_z, seed=seed, device=device),
                       ys)
    transfer_ok = ours1["_correct"][:subset]
    row["adaptive"] = {"settings": {"eps": eps, "step": step_size, "steps": ADAPTIVE_STEPS, "images": subset,
                                    "through": "one step of ours (landform.unroll, second order)",
                                    "start": "the torchattacks PGD-L2 examples"},
                       "adaptive_only": accuracy(adapt_ok), "worst_of_both": accuracy(adapt_ok * transfer_ok),
                       "transfer_on_subset": accuracy(transfer_ok)}
    tick("adaptive")
    row["targets"] = _targets(row)
    row["seconds"] = timings
    images = {"clean": x[:6].cpu(), "attacked": x_adv[:6].cpu(),
              "reversal": (snaps["landscape"][1][:6] - x_adv[:6]).cpu(),
              "defended": snaps["landscape"][1][:6].cpu(), "labels": y[:6].cpu(),
              "pred_attacked": model(x_adv[:6]).argmax(1).cpu(),
              "pred_defended": model(snaps["landscape"][1][:6]).argmax(1).cpu()}
    return {"row": _strip(row), "images": images}


def _defended_block(model, mapping, a: torch.Tensor, y: torch.Tensor, *, lr_z: float, base_lr: float, seed: int,
                    device: str) -> dict:
    """No defense, ours after 1 step and the baseline after 40, each with its noise control."""
    ours = defend(model, a, mapping=mapping, steps=1, lr=lr_z, seed=seed, device=device)
    base = defend(model, a, steps=max(BASELINE_STEPS), lr=base_lr, seed=seed, device=device)
    none_ok = correct(model, a, y)
    ours_block, base_block = _controlled(model, a, ours, y, seed + 1), _controlled(model, a, base, y, seed + 40)
    return {"no_defense": accuracy(none_ok), "landscape_1": _strip(ours_block), "baseline_40": _strip(base_block),
            "landscape_1_minus_no_defense": difference(ours_block["_correct"], none_ok)}


def _targets(row: dict) -> dict:
    """The defense's targets for one model, measured (True/False), never asserted."""
    ours = row["landscape_steps"]["1"]
    return {"ours_1_step_at_least_baseline_40_steps": ours["accuracy"] >= row["baseline_steps"]["40"]["accuracy"],
            "ours_1_step_at_least_no_defense_plus_5": ours["accuracy"] >= row["no_defense"]["accuracy"] + 0.05,
            "ours_1_step_above_noise_beyond_sampling_error": (ours["minus_noise"]["ci95"][0] or 0.0) > 0.0,
            "clean_drop_at_most_2_points": row["clean_drop"]["difference"] <= 0.02}


# --------------------------------------------------------------------------------------------------- demo
PARTS_PER_MODEL = 7


def report_files(recipes: tuple[str, ...]) -> tuple[str, ...]:
    """The files of the demo's report on ``recipes``, replaced as one unit (``landform.io.atomic_outputs``)."""
    return ("robust_accuracy.png", *dict.fromkeys(f"examples_{recipe}.png" for recipe in recipes), "summary.json",
            "summary.md")


def demo(out: Path, *, device: str = "cpu", seed: int = 0, progress: bool = True,
         recipes: tuple[str, ...] = SHIPPED, n: int = TEST_SIZE, subset: int = SUBSET) -> dict:
    """Write report/defense/: summary.md, summary.json, robust_accuracy.png, examples_<model>.png, replaced as
    one unit once every number is computed (an interrupted run leaves the previous report whole)."""
    out = Path(out)
    for recipe in recipes:  # every entry first: a missing one fails before minutes of attacks
        for name in (model_name(recipe), theta_name(recipe)):
            entry_file(recipe, name)
    started = time.perf_counter()
    rows, images = {}, {}
    with progress_bar(total=PARTS_PER_MODEL * len(recipes), enabled=progress, desc="demo defense") as bar:
        for recipe in recipes:
            result = evaluate(recipe, n=n, subset=min(subset, n), seed=seed, device=device, bar=bar)
            rows[model_name(recipe)], images[recipe] = result["row"], result["images"]
    summary = {
        "test_images": n, "subset_images": min(subset, n), "seed": seed, "threads": torch.get_num_threads(),
        "attack": {"main": {"tool": "torchattacks.PGDL2", "eps": attack.L2_EPS, "alpha": attack.L2_EPS / 4,
                            "steps": SWEEP_STEPS, "random_start": True},
                   "autoattack": {"tool": "torchattacks.AutoAttack", "version": "standard", "norm": "L2",
                                  "eps": attack.L2_EPS},
                   "sweep_eps": list(SWEEP_EPS),
                   "adaptive": {"eps": attack.L2_EPS, "step": 2.5 * attack.L2_EPS / ADAPTIVE_STEPS,
                                "steps": ADAPTIVE_STEPS}},
        "defense": {"lambda": LAMBDA, "lambda_normalization": "sum of r² over the 784 pixels",
                    "radius": RADIUS, "baseline_init_std": BASELINE_INIT, "optimizer": "adam",
                    "steps": list(BASELINE_STEPS)},
        "models": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    from landform.tasks.defense.figures import plot_examples, plot_robust_accuracy

    text = summary_markdown(summary)
    with atomic_outputs(out, report_files(recipes)) as stage:  # the old report or the new one, never a mix
        plot_robust_accuracy(stage / "robust_accuracy.png", rows)
        for recipe, pictures in images.items():
            plot_examples(stage / f"examples_{recipe}.png", pictures)
        write_json(stage / "summary.json", summary)
        write_text(stage / "summary.md", text)
    if progress:
        print("\n".join(line for line in text.splitlines() if line.startswith("|"))[:4000])
    return summary


# ----------------------------------------------------------------------------------------------- user images
# The output sets of ``compare_inputs`` and ``invert_inputs``, each replaced as one unit
# (``landform.io.atomic_outputs``): an interrupted run leaves the previous set whole.
COMPARE_FILES = ("compare.json", "compare.png")
INVERT_FILES = ("defended.npy", "reversal.npy", "defended_1_step.npy", "defended_baseline.npy", "invert.json")


def load_user_images(inputs: list[str]) -> torch.Tensor:
    """User images as [N, 1, 28, 28] in [0, 1] (see ``landform.tasks.common.load_gray28``): no resizing, the
    attack and the defense are defined on 28x28 pixels."""
    return load_gray28(inputs)


def compare_inputs(inputs: list[str], out: Path, *, device: str = "cpu", seed: int = 0, steps: int = 200,
                   progress: bool = True, recipe: str = "pgd") -> dict:
    """Attack the user's images (L2 PGD with ``steps`` steps, label = the model's clean prediction), then
    defend with the baseline and ours; writes compare.json and compare.png as one set (``COMPARE_FILES``),
    returns predictions per step."""
    x = load_user_images(inputs).to(device)
    model = load_model(recipe, device=device)
    landscape = load_landscape(recipe, device=device)
    out = Path(out)
    with torch.no_grad():
        label = model(x).argmax(1)
    x_adv = attack.pgd(model, x, label, norm="l2", eps=attack.L2_EPS, step=attack.L2_STEP, steps=steps, seed=seed)
    shown = (1, 5)
    base = reverse(model, x_adv, steps=max(shown), lr=baseline_lr(landscape), seed=seed, snapshots=shown,
                   device=device)
    ours = reverse(model, x_adv, **ours_settings(landscape, steps=max(shown)), seed=seed, snapshots=shown,
                   device=device)
    with torch.no_grad():
        result = {"model": model_name(recipe), "files": list(inputs), "clean_prediction": label.tolist(),
                  "attacked_prediction": model(x_adv).argmax(1).tolist(),
                  "baseline": {str(t): model(base.snapshots[t]).argmax(1).tolist() for t in shown},
                  "landscape": {str(t): model(ours.snapshots[t]).argmax(1).tolist() for t in shown},
                  "loss_curve": {"baseline": base.losses.mean(1).tolist(), "landscape": ours.losses.mean(1).tolist()}}
    from landform.tasks.defense.figures import plot_examples

    k = min(6, x.shape[0])
    with atomic_outputs(out, COMPARE_FILES) as stage:  # the old set or the new one, never a mix
        plot_examples(stage / "compare.png", {"clean": x[:k].cpu(), "attacked": x_adv[:k].cpu(),
                                              "reversal": (ours.snapshots[1][:k] - x_adv[:k]).cpu(),
                                              "defended": ours.snapshots[1][:k].cpu(), "labels": label[:k].cpu(),
                                              "pred_attacked": torch.tensor(result["attacked_prediction"][:k]),
                                              "pred_defended": torch.tensor(result["landscape"]["1"][:k])})
        write_json(stage / "compare.json", result)
    return result


def invert_inputs(inputs: list[str], out: Path, *, device: str = "cpu", seed: int = 0, steps: int = 200,
                  progress: bool = True, recipe: str = "pgd") -> None:
    """Defend the user's images as given (they may already be attacked) with the hardened defense, the one that
    holds against adaptive attacks (its settings in the shipped landscape; its random start comes from
    ``seed``, which a deployment keeps secret and draws afresh per call), in chunks of CHUNK images as every
    evaluation runs it: ``defended.npy``, ``reversal.npy``
    and ``prediction`` in invert.json. Beside it, for comparison, the one-step defense (it does not hold under
    adaptive attacks) and 40 steps of the baseline; all written as one set (``INVERT_FILES``)."""
    x = load_user_images(inputs).to(device)
    model = load_model(recipe, device=device)
    landscape = load_landscape(recipe, device=device)
    out = Path(out)
    hardened = defend(model, x, **ours_settings(landscape, hardened=True), seed=seed, device=device)
    one_step = defend(model, x, **ours_settings(landscape), seed=seed, device=device)
    base = defend(model, x, steps=max(BASELINE_STEPS), lr=baseline_lr(landscape), seed=seed, device=device)
    with torch.no_grad():
        predictions = {"model": model_name(recipe), "files": list(inputs),
                       "defense": "hardened: {steps} steps of ours from a random start of scale "
                                  "{start_scale}".format(**landscape.record["defense"]["hardened"]),
                       "batch": f"the images given, together in chunks of {CHUNK} (the defense's contrastive "
                                "negatives are the other images of a chunk)",
                       "prediction": model(hardened).argmax(1).tolist(),
                       "prediction_input": model(x).argmax(1).tolist(),
                       "prediction_1_step": model(one_step).argmax(1).tolist(),
                       "prediction_baseline_40_steps": model(base).argmax(1).tolist()}
    with atomic_outputs(out, INVERT_FILES) as stage:  # the old set or the new one, never a mix
        _save_npy(stage / "defended.npy", hardened)
        _save_npy(stage / "reversal.npy", hardened - x)
        _save_npy(stage / "defended_1_step.npy", one_step)
        _save_npy(stage / "defended_baseline.npy", base)
        write_json(stage / "invert.json", predictions)


def _save_npy(path: Path, array: torch.Tensor) -> None:
    """``np.save``'s bytes of ``array``, written atomically through ``landform.io``."""
    buffer = io.BytesIO()
    np.save(buffer, array.detach().cpu().numpy())
    write_bytes(path, buffer.getvalue())



