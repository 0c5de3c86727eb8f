"""Test-time reversal of adversarial attacks (Mao et al. 2021; paper §4.3, Eq. 7), baseline and landscape.

The defended input is x = a + r, a the attacked image. Eq. 7 minimizes SSL(a + r) + λ‖r‖². In the core's
terms (``defense_problem``) the forward model is the clamp to [0, 1] (an image is classified only inside
the valid range), the observation is a itself, the base is a (x = a + ...), and
``loss(x_hat, a) = SSL(x_hat) + λ‖x_hat − a‖²`` per example. The baseline optimizes r directly from a
random start (``landform.inference.invert`` without a mapping); ours optimizes z with r = Θ(z) (an additive
Mapping). ``defended_logits`` is the same defense written with ``landform.unroll`` so that an adaptive
attacker can differentiate through it.

λ: the paper writes λ‖Θ(z)‖₂² with λ = 1 without saying whether ‖r‖² is summed or averaged over pixels.
Summed (as written), λ = 1 holds r to a fraction of the attack's size (‖r‖ 0.26 against an attack of 1.6,
and no gain: the issue's probe). Averaged over the 784 pixels, λ = 1 holds nothing, and Θ learns to give
every image a large reversal of its own (‖r‖ at the bound, as unlike its neighbours as noise), which lowers
the instance-discrimination loss without restoring the class (measured: ours = the noise control). We use
the squared norm summed over pixels, as written, with ``LAMBDA`` = 0.1 (= 78 on the per-pixel mean), and
bound r as Mao et al.'s code does: r is projected onto the L2 ball of radius ``RADIUS`` = 2ε (their reversal
budget is twice the attack's), so the defended image is a + P(r), inside [0, 1]. The contrastive negatives
are the other images of the batch (Mao et al.): with a fixed bank of clean images instead, Θ learned one
universal pattern that moves every image away from the bank (measured: no gain).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from landform import Mapping, fit, invert, zoo
from landform.errors import LandformError
from landform.landscape import InferenceSettings, Landscape
from landform.problem import Problem
from landform.tasks import runs_dir
from landform.tasks.defense import attack
from landform.tasks.defense.data import load_split
from landform.tasks.defense.models import (
    IMAGE_SHAPE,
    RobustModel,
    entry_file,
    load_model,
    model_name,
    theta_name,
)
from landform.tasks.defense.ssl import ssl_loss
from landform.unroll import unroll

LAMBDA = 0.1
RADIUS = 2 * attack.L2_EPS
BASELINE_INIT = 0.01  # std of the baseline's random start (Mao et al. start r at random)
BASELINE_LRS = (0.003, 0.01, 0.03)
# The defense that holds against an attacker who knows it (report/defense/adaptive_remedies): 5 steps of
# ours from a random start z0 ~ N(0, 0.5²) drawn afresh, and kept secret, at every call (the deployed 1-step
# defense draws N(0, 1) from a fixed seed). The smaller start halves the reversal on clean images and with it the
# clean drop; 0.5 was chosen among 1, 0.5 and 0.25 on 1,000 validation images' clean accuracy before any attack.
HARDENED = {"steps": 5, "start_scale": 0.5}
DEPLOYED = {"steps": 1, "start_scale": 1.0}  # the deployed defense: one step of ours from z0 ~ N(0, 1)


def clamp_forward(x: torch.Tensor) -> torch.Tensor:
    """F for the defense: the image the classifier will see, kept inside [0, 1]."""
    return x.clamp(0.0, 1.0)


def project(r: torch.Tensor, radius: float = RADIUS) -> torch.Tensor:
    """r scaled, per image, into the L2 ball of ``radius`` (unchanged inside it)."""
    norm = r.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (r.dim() - 1))
    return r * torch.clamp(radius / norm, max=1.0)


def reversal_of(x: torch.Tensor, a: torch.Tensor, radius: float = RADIUS) -> torch.Tensor:
    """The defended image the classifier sees for the optimized x: a + P(clamp(x) − a), inside [0, 1] (a convex
    combination of a and clamp(x))."""
    return a + project(clamp_forward(x) - a, radius)


def defense_loss(model: RobustModel, *, lam: float = LAMBDA,
                 radius: float = RADIUS) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Eq. 7 per example on the defended image a + r, r = P(x_hat − a): the contrastive SSL loss (negatives: the
    other images of the batch; rows that are the same attacked image are not each other's negatives) plus
    λ‖r‖² (summed over pixels)."""
    def loss(x_hat: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        r = project(x_hat - a, radius)
        groups = torch.unique(a.detach().flatten(1), dim=0, return_inverse=True)[1]
        return ssl_loss(model, a + r, in_batch=True, groups=groups) + lam * r.flatten(1).pow(2).sum(1)
    return loss


def baseline_start(seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The baseline's random start r0 ~ N(0, BASELINE_INIT²), seeded (a function of the observations)."""
    def start(a: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return (BASELINE_INIT * torch.randn(a.shape, generator=generator)).to(a)
    return start


def defense_problem(model: RobustModel, *, lam: float = LAMBDA, pool: torch.Tensor | None = None) -> Problem:
    """Eq. 7 as a landform.Problem: observations are attacked images (drawn from ``pool``), base(a) = a."""
    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        if pool is None:
            raise LandformError("this defense problem has no pool of attacked images to draw from")
        return pool[torch.randint(pool.shape[0], (n,), generator=generator)]

    return Problem(forward=clamp_forward, loss=defense_loss(model, lam=lam), x_shape=IMAGE_SHAPE,
                   train_observations=draw, test_observations=draw, base=lambda a: a, name="defense")


def reverse(model: RobustModel, a: torch.Tensor, *, mapping: Mapping | None = None, steps: int = 1,
            lr: float = 0.01, lam: float = LAMBDA, seed: int = 0, snapshots: tuple[int, ...] = (),
            device: str = "cpu", start_scale: float = 1.0):
    """The defense on attacked images a [B, 1, 28, 28]: ``steps`` Adam steps on r (``mapping=None``, the
    baseline, from a random start) or on z (x = a + Θ(z), z0 ~ N(0, start_scale²)), through the core's
    ``invert``. Returns its InversionResult with x and the snapshots replaced by the defended images
    (``reversal_of``)."""
    loss = defense_loss(model, lam=lam)
    if mapping is None:
        result = invert(clamp_forward, loss, a, steps=steps, lr=lr, base=a, init=baseline_start(seed)(a),
                        x_shape=IMAGE_SHAPE, seed=seed, snapshots=snapshots, device=device)
    else:
        result = invert(clamp_forward, loss, a, mapping=mapping, mode="pure", steps=steps, lr=lr, base=a,
                        init="gaussian", init_scale=start_scale, x_shape=IMAGE_SHAPE, seed=seed,
                        snapshots=snapshots, device=device)
    result.x = reversal_of(result.x, a)
    result.snapshots = {t: reversal_of(v, a) for t, v in result.snapshots.items()}
    return result


def defended_logits(model: RobustModel, mapping: Mapping | None, a: torch.Tensor, *, lr: float, steps: int = 1,
                    lam: float = LAMBDA, seed: int = 0, start_scale: float = 1.0) -> torch.Tensor:
    """Logits of the defended classifier, differentiable with respect to a (for the adaptive attack): the
    same steps as ``reverse`` (same start and augmentation seed), unrolled with ``landform.unroll``."""
    init = baseline_start(seed)(a.detach()) if mapping is None else "gaussian"
    x = unroll(clamp_forward, defense_loss(model, lam=lam), a, mapping=mapping, steps=steps, lr=lr, init=init,
               init_scale=1.0 if mapping is None else start_scale, base=a, x_shape=IMAGE_SHAPE, seed=seed)
    return model(reversal_of(x, a))


def load_landscape(recipe: str, *, device: str = "cpu", zoo_dir: str | Path | None = None) -> Landscape:
    """The shipped defense of ``recipe`` as a Landscape (``zoo.load_landscape``, frozen): the additive Θ, no
    learned start (the base is the attacked image itself), and settings read from the Θ's config: mode "pure"
    at its ``lr_z`` for ``DEPLOYED["steps"]`` steps, ``lr_x`` the baseline's step on r. ``record["defense"]``
    holds the start scales of the deployed and hardened variants (the core's "pure" mode starts z at 0; the
    defense starts it at random, so it runs its own loop: ``ours_settings``)."""
    config = Mapping.config_of(entry_file(recipe, theta_name(recipe), zoo_dir))
    try:
        lr_z, base_lr = float(config["settings"]["lr_z"]), float(config["baseline"]["lr"])
    except (KeyError, TypeError, ValueError):
        raise LandformError(f"{theta_name(recipe)} has no lr_z or baseline lr in its config; retrain it with "
                            f"`landform zoo train {theta_name(recipe)}`") from None
    settings = InferenceSettings(mode="pure", lr_z=lr_z, lr_x=base_lr, warmup=0, steps=DEPLOYED["steps"])
    landscape = zoo.load_landscape(theta_name(recipe), fitted_on(recipe), directory=zoo_dir, device=device,
                                   settings=settings)
    record = {**landscape.record, "defense": {"start_scale": DEPLOYED["start_scale"], "hardened": dict(HARDENED),
                                              "baseline": config["baseline"]}}
    return landscape.with_(record=record).requires_grad_(False).eval()


def ours_settings(landscape: Landscape, *, hardened: bool = False, steps: int | None = None) -> dict:
    """The keywords of ``reverse`` for ours with ``landscape`` (``load_landscape``): its Θ, its ``lr_z``, and the
    steps and start scale of the deployed defense, or of the hardened one; ``steps`` overrides the count."""
    defense = landscape.record["defense"]
    variant = defense["hardened"] if hardened else {"steps": landscape.settings.steps,
                                                    "start_scale": defense["start_scale"]}
    return {"mapping": landscape.mapping, "lr": landscape.settings.lr_z,
            "steps": int(variant["steps"] if steps is None else steps), "start_scale": float(variant["start_scale"])}


def baseline_lr(landscape: Landscape) -> float:
    """The baseline's step size on r (chosen on its own Eq. 7 loss when Θ was fitted), kept as ``lr_x``."""
    return landscape.settings.lr_x


def load_theta(recipe: str, *, device: str = "cpu", zoo_dir: str | Path | None = None) -> tuple[Mapping, dict]:
    """The additive Θ of ``recipe`` (float32, frozen; loaded through ``load_landscape``) and its JSON config:
    ``settings`` (how it was fitted, ``lr_z`` its step size) and ``baseline`` (the baseline's lr)."""
    landscape = load_landscape(recipe, device=device, zoo_dir=zoo_dir)
    return landscape.mapping, Mapping.config_of(entry_file(recipe, theta_name(recipe), zoo_dir))


def fitted_on(recipe: str) -> dict[str, str | None]:
    """The zoo entry the Θ of ``recipe`` is fitted on, the robust model (older entries: under
    ``model_fingerprint``), for ``zoo.check_fitted_on``."""
    return {model_name(recipe): "model_fingerprint"}


def attacked_pool(model: RobustModel, size: int, *, steps: int, eps: float = attack.L2_EPS, seed: int = 0,
                  device: str = "cpu", split: str = "train",
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Attacked images of ``split`` (train: to fit Θ; val: to pick the baseline's lr): L2 PGD at ε with
    ``steps`` steps of 2.5ε/steps, a cheaper attack than the test attack, on a seeded subset."""
    from landform.progress import progress_bar

    x, y = load_split(split)
    index = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed + 77))[:size]
    x, y = x[index].to(device), y[index].to(device)
    parts = []
    for i in progress_bar(range(0, size, 256), enabled=progress, desc=f"attack pool ({split})"):
        parts.append(attack.pgd(model, x[i:i + 256], y[i:i + 256], norm="l2", eps=eps, step=2.5 * eps / steps,
                                steps=steps, seed=seed + i))
    return torch.cat(parts), y.cpu()


def sweep_baseline_lr(model: RobustModel, a: torch.Tensor, *, steps: int, lam: float = LAMBDA, seed: int = 0,
                      device: str = "cpu", lrs: tuple[float, ...] = BASELINE_LRS) -> tuple[float, dict]:
    """The baseline's lr: the one with the lowest mean Eq. 7 loss after ``steps`` steps on attacked
    validation images (the baseline's own objective, not the accuracy we report)."""
    scores = {str(lr): reverse(model, a, steps=steps, lr=lr, lam=lam, seed=seed, device=device).losses[-1].mean().item()
              for lr in lrs}
    best = min(lrs, key=lambda lr: scores[str(lr)])
    return float(best), scores


# Θ: §7.3 with a smaller MLP for the CPU. Paper: Z = X = 3072, hidden 3072, lr_z 0.2/255, T 5, N 5120, B 70.
THETA_SETTINGS = {"z_dim": 784, "hidden": 1024, "lr_z": 0.05, "lr": 1e-3, "weight_decay": 0.1, "steps": 5,
                  "trajectories": 128, "rounds": 30, "batch_size": 64, "init": "gaussian", "init_scale": 0.01,
                  "pool_size": 4096, "pool_attack_steps": 10, "val_size": 128, "baseline_steps": 40,
                  "last_layer_scale": 0.1}


def train_theta(recipe: str, *, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                settings: dict | None = None, run_dir: str | Path | None = None,
                zoo_dir: str | Path | None = None) -> Mapping:
    """Fit the additive Θ of ``recipe`` with Algorithm 1 on attacked training images (checkpoints in
    ``run_dir``), pick the baseline's lr on attacked validation images, and write the zoo entry (into
    ``zoo_dir``, which may also hold the robust model, default the package's zoo)."""
    cfg = {**THETA_SETTINGS, **(settings or {})}
    name = theta_name(recipe)
    model = load_model(recipe, device=device, zoo_dir=zoo_dir)
    run = Path(run_dir) if run_dir is not None else runs_dir() / name
    pool_path = run / "pool.safetensors"
    started = time.perf_counter()
    if resume and pool_path.exists():
        tensors, _ = zoo.load_pair(pool_path)
        pool, labels, val = tensors["pool"].to(device), tensors["labels"], tensors["val"].to(device)
    else:
        pool, labels = attacked_pool(model, cfg["pool_size"], steps=cfg["pool_attack_steps"], seed=seed,
                                     device=device, progress=progress)
        val, _ = attacked_pool(model, cfg["val_size"], steps=cfg["pool_attack_steps"], seed=seed, device=device,
                               split="val", progress=progress)
        zoo.save_pair(pool_path, {"pool": pool, "labels": labels, "val": val}, {"settings": cfg})
    pool_accuracy = attack.accuracy(model, pool, labels.to(device))
    torch.manual_seed(seed)
    mapping = Mapping(cfg["z_dim"], IMAGE_SHAPE, hidden=cfg["hidden"], additive=True).to(device)
    mapping.start_near_zero(cfg["last_layer_scale"])  # near r = 0: a random Θ's r would exceed the attack
    result = fit(mapping, clamp_forward, defense_loss(model), pool, rounds=cfg["rounds"],
                 trajectories=cfg["trajectories"], steps=cfg["steps"], lr_z=cfg["lr_z"], lr=cfg["lr"],
                 weight_decay=cfg["weight_decay"], batch_size=cfg["batch_size"], init=cfg["init"],
                 init_scale=cfg["init_scale"], base=lambda y: y.clone(),  # a copy: fit's checkpoint refuses aliases
                 x_shape=IMAGE_SHAPE, checkpoint_dir=run / "fit", resume=resume, seed=seed, device=device,
                 progress=progress)
    fit_seconds = sum(r.seconds for r in result.history)
    baseline_lr, sweep = sweep_baseline_lr(model, val, steps=cfg["baseline_steps"], seed=seed, device=device)
    history = result.history
    config = {**mapping.config(), "recipe": recipe, "lambda": LAMBDA, "settings": cfg,
              "requires": zoo.requirements(fitted_on(recipe), zoo_dir), "pool_accuracy": pool_accuracy,
              "fit_seconds": round(fit_seconds, 1), "seconds": round(time.perf_counter() - started, 1),
              "baseline": {"lr": baseline_lr, "steps": cfg["baseline_steps"], "init_std": BASELINE_INIT,
                           "loss_sweep": sweep},
              "loss_first_round": history[0].collect_curve, "loss_last_round": history[-1].collect_curve}
    zoo.save(name, zoo.half(mapping.state_dict()), config, _theta_card(name, recipe, cfg, config),
             directory=Path(zoo_dir) if zoo_dir is not None else None)
    return mapping


def _theta_card(name: str, recipe: str, cfg: dict, config: dict) -> str:
    first = ", ".join(f"{v:.3f}" for v in config["loss_first_round"])
    last = ", ".join(f"{v:.3f}" for v in config["loss_last_round"])
    sweep = ", ".join(f"{k}: {v:.3f}" for k, v in config["baseline"]["loss_sweep"].items())
    return f"""# {name}

Additive mapping Θ for the test-time defense of `defense-{recipe}` (paper §4.3): the defended image is
a + P(Θ(z)), a the attacked image, P the projection on the L2 ball of radius {RADIUS} (2ε), z found by Adam on
Eq. 7 (contrastive SSL loss with in-batch negatives + λ‖r‖², λ = {LAMBDA}, the squared L2 norm summed over
the 784 pixels).

- Reproduce: `landform zoo train {name} --install --threads 1` (needs `defense-{recipe}`; records its fingerprint)
- Θ: MLP {cfg['z_dim']} → {cfg['hidden']} → {cfg['hidden']} → 784, LeakyReLU(0.2) (the paper uses hidden 3072;
  smaller here for the CPU and the zoo size), float16 storage. Its step size lr_z = {cfg['lr_z']} is in the
  JSON config (`settings.lr_z`), read by the defense.
- Data: {cfg['pool_size']} Fashion-MNIST TRAINING images attacked with L2 PGD-{cfg['pool_attack_steps']}
  (ε = {attack.L2_EPS}, step {2.5 * attack.L2_EPS / cfg['pool_attack_steps']:.2f}); the classifier's accuracy on
  this pool: {config['pool_accuracy']:.3f}. {cfg['val_size']} attacked VALIDATION images pick the baseline's lr.
- Algorithm 1 (the paper's protocol): T = {cfg['steps']}, random start z0 ~ N(0, {cfg['init_scale']}²),
  N = {cfg['trajectories']}, B = {cfg['rounds']} rounds, Adam lr_z = {cfg['lr_z']}, AdamW lr {cfg['lr']},
  weight decay {cfg['weight_decay']}, batch {cfg['batch_size']}; Θ's last layer starts at {cfg['last_layer_scale']}x
  its default initialization (r ≈ 0 at the start).
- Baseline (Adam on r from N(0, {BASELINE_INIT}²)): lr {config['baseline']['lr']}, the lowest mean Eq. 7 loss
  after {config['baseline']['steps']} steps on the validation images ({sweep}).
- Time: fit {config['fit_seconds']} s summed over the rounds, {config['seconds']} s in all (pool, sweep;
  1 CPU thread on a shared 2-core machine).
- Mean Eq. 7 loss along the T steps, first round: {first}; last round: {last}.
"""
