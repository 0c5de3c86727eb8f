"""Trainers of the pose task's zoo entries: the VAE prior (F) and, per observation model, Eq. 3's Θ and the
default mode's landscape, which the core recipe learns (``landform.recipe.learn``: the learned start E, Θ
anchored at E and the tuned inference; settings in ``settings``, cards in ``cards``).

``landform zoo train pose-vae``, then for each loss (``pose_params``, ``joints_3d``, ``keypoints_2d``)
``pose-theta-LOSS`` and ``pose-landscape-LOSS`` (``TRAINERS`` lists them in that order). Checkpoints go to
runs/<name>/ (safetensors + json) and a rerun resumes from them; the zoo entry is written only when training
is complete.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from landform import Mapping, fit, invert, zoo
from landform.comparison import sweep_lr
from landform.errors import LandformError
from landform.fitting import checkpoint_state
from landform.landscape import Landscape
from landform.metrics import speedup_at, step_reached
from landform.progress import progress_bar
from landform.recipe import learn
from landform.start import StartEncoder
from landform.tasks import runs_dir
from landform.tasks.pose.cards import landscape_card, theta_card, vae_card
from landform.tasks.pose.data import jitter_poses
from landform.tasks.pose.evaluate import evaluate_split
from landform.tasks.pose.kinematics import Kinematics
from landform.tasks.pose.load import FITTED_ON, PoseModels, landscape_name, load_theta, theta_name, theta_rates
from landform.tasks.pose.losses import LOSS_NAMES, observation, observation_shape
from landform.tasks.pose.mocap.union import by_source, deepmimic_weighted
from landform.tasks.pose.model import VAE_NAME, PoseVAE, load_vae
from landform.tasks.pose.problem import SOURCE_SPLIT, cached_splits, pose_problem, training_observations
from landform.tasks.pose.settings import (
    LR_X_CHOICES,
    LR_Z_CHOICES,
    RECIPE_SETTINGS,
    THETA_SETTINGS,
    VAE_SETTINGS,
)


def train_vae(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
              settings: dict | None = None, directory: Path | None = None, run: Path | None = None) -> PoseVAE:
    """Train the VAE on the training split (reconstruction of pose parameters and FK joints + KL), the DeepMimic
    frames ``deepmimic_share`` of every batch."""
    cfg = {**VAE_SETTINGS, **(settings or {})}
    torch.manual_seed(seed)
    splits = cached_splits()
    train = splits.train.to(device)
    weights = deepmimic_weighted(splits, cfg["deepmimic_share"])
    vae = PoseVAE(cfg["latent_dim"], cfg["hidden"], cfg["dropout"]).to(device)
    kinematics = Kinematics().to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg["lr"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg["steps"], eta_min=cfg["lr"] / 50)
    generator = torch.Generator().manual_seed(seed)
    run = Path(run) if run is not None else runs_dir() / VAE_NAME
    step, elapsed = 0, 0.0
    if resume and (run / "state.safetensors").exists():
        step, elapsed = _restore(run, cfg, vae, optimizer, schedule, generator)
    vae.train()
    started = time.perf_counter()
    bar = progress_bar(range(step, cfg["steps"]), enabled=progress, initial=step, total=cfg["steps"], desc=VAE_NAME)
    for step in bar:
        index = torch.multinomial(weights, cfg["batch_size"], replacement=True, generator=generator)
        pose = jitter_poses(train[index.to(device)], generator, rotation_std=cfg["rotation_noise"],
                            hinge_std=cfg["hinge_noise"])
        recon, mean, log_var = vae(pose, generator)
        pose_mse = (recon - pose).pow(2).mean()
        joint_mse = (kinematics(recon) - kinematics(pose)).pow(2).mean()
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(dim=1).mean()
        loss = pose_mse + cfg["joint_weight"] * joint_mse + cfg["kl_weight"] * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 100 == 0:
            bar.set_postfix(pose=f"{pose_mse.item():.4f}", joints=f"{joint_mse.item():.5f}", kl=f"{kl.item():.1f}")
        if (step + 1) % cfg["checkpoint_every"] == 0 or step + 1 == cfg["steps"]:
            _checkpoint(run, cfg, vae, optimizer, schedule, generator, step + 1,
                        elapsed + time.perf_counter() - started)
    elapsed += time.perf_counter() - started
    vae.eval()
    metrics = vae_metrics(vae, splits, kinematics)
    config = {**vae.config(), "training": cfg, "seed": seed, "train_seconds": round(elapsed, 1), "metrics": metrics}
    pca = explained_variance(splits.train)
    originals = [name for name, _ in splits.sources["train"] if "mirrored" not in name]
    pca["distinct_frames"], pca["clips"] = len(originals), len(set(originals))
    config["pca_explained_variance"] = pca
    zoo.save(VAE_NAME, zoo.half(vae.state_dict()), config, vae_card(cfg, metrics, elapsed, splits.describe(), pca),
             directory=directory)
    return vae


@torch.no_grad()
def vae_metrics(vae: PoseVAE, splits, kinematics: Kinematics) -> dict:
    """Reconstruction error (through the latent mean) per split and per source's test frames (``test_SOURCE``):
    pose MSE and joint error in cm."""
    out = {}
    parts = {split: getattr(splits, split) for split in ("train", "validation", "test", "ood")}
    parts.update({f"{SOURCE_SPLIT}{source}": pose for source, pose in by_source(splits, "test").items()})
    for split, pose in parts.items():
        recon = vae.decoder(vae.encoder(pose)[0])
        out[split] = {"pose_mse": float((recon - pose).pow(2).mean()),
                      "joint_error_cm": float(100 * (kinematics(recon) - kinematics(pose)).norm(dim=-1).mean())}
    return out


def explained_variance(poses: torch.Tensor, components: tuple[int, ...] = (8, 16, 24, 32)) -> dict[str, float]:
    """Fraction of the pose parameters' variance that the first k principal components explain."""
    centered = poses - poses.mean(dim=0)
    energy = torch.linalg.svdvals(centered).pow(2)
    cumulative = energy.cumsum(0) / energy.sum()
    return {str(k): round(float(cumulative[k - 1]), 3) for k in components if k <= len(cumulative)}


def _checkpoint(run: Path, cfg: dict, model: torch.nn.Module, optimizer, schedule, generator, step: int,
                seconds: float) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(zoo.optimizer_tensors(optimizer))
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"settings": cfg, "step": step, "seconds": seconds, "param_groups": optimizer.state_dict()["param_groups"],
            "schedule": schedule.state_dict()}
    zoo.save_pair(run / "state.safetensors", tensors, meta)


def _restore(run: Path, cfg: dict, model: torch.nn.Module, optimizer, schedule, generator) -> tuple[int, float]:
    tensors, meta = zoo.load_pair(run / "state.safetensors")
    if meta.get("settings") != cfg:
        raise LandformError(f"cannot resume {run}: settings differ from the checkpoint; rerun with --restart")
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    zoo.load_optimizer_tensors(optimizer, tensors, meta["param_groups"])
    schedule.load_state_dict(meta["schedule"])
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), float(meta["seconds"])


def train_theta(kind: str, *, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                settings: dict | None = None, directory: Path | None = None, run: Path | None = None) -> Mapping:
    """Fit Eq. 3's Θ with Algorithm 1 for the observation model ``kind`` (``training_observations``), keep the
    round that scores best on the validation frames, choose its Θ + δ step sizes, evaluate it and write the
    zoo entry."""
    if kind not in LOSS_NAMES:
        raise LandformError(f"unknown pose loss {kind!r}; use one of {', '.join(LOSS_NAMES)}")
    cfg = {**THETA_SETTINGS, **(settings or {})}
    name = theta_name(kind)
    vae = load_vae(device, directory)
    obs = observation(kind, vae.decoder)
    splits = cached_splits()
    observations = training_observations(kind, vae, cfg, device=device)
    with torch.no_grad():
        val_y = obs.target(splits.validation.to(device))
    torch.manual_seed(seed)
    mapping = Mapping(cfg["z_dim"], (vae.latent_dim,), hidden=cfg["hidden"])
    started = time.perf_counter()
    run = Path(run) if run is not None else runs_dir() / name
    # Algorithm 1 in chunks of ``select_every`` rounds (fit resumes exactly from its checkpoint); keep the
    # round whose Θ has the lowest mean log loss over the first ``select_steps`` steps on the validation frames.
    best, selection = _load_selection(run) if resume else (None, [])
    done = selection[-1]["rounds"] if selection else 0
    for rounds in range(done + cfg["select_every"], cfg["rounds"] + 1, cfg["select_every"]):
        fit(mapping, obs.forward, obs.loss, observations, rounds=rounds, trajectories=cfg["trajectories"],
            steps=cfg["steps"], lr_z=cfg["lr_z"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
            batch_size=cfg["batch_size"], checkpoint_dir=run, resume=rounds > cfg["select_every"],
            seed=seed, device=device, progress=progress)
        score = validation_score(obs, mapping, val_y, lr_z=cfg["lr_z"], seed=seed, device=device,
                                 steps=cfg["select_steps"])
        selection.append({"rounds": rounds, "validation_mean_log_loss": score})
        if best is None or score < best[0]:
            best = (score, rounds, {k: v.detach().clone() for k, v in mapping.state_dict().items()})
        zoo.save_pair(run / "best.safetensors", best[2], {"rounds": best[1], "score": best[0], "selection": selection})
    if best is None:
        raise LandformError(f"no rounds to fit: rounds={cfg['rounds']}, select_every={cfg['select_every']}")
    mapping.load_state_dict(best[2])
    history = (checkpoint_state(run) or {}).get("history", [])
    seconds = sum(r.get("seconds", 0.0) for r in history) or time.perf_counter() - started
    mapping.eval().requires_grad_(False)
    (lr_z, lr_x), rate_selection = choose_default_rates(obs, mapping, val_y, seed=seed, device=device)
    models = PoseModels(vae, mapping, kind, rates=(lr_z, lr_x))
    evaluation = {split: evaluate_split(kind, models, split, device=device, seed=seed, count=128)
                  for split in ("in_distribution", "ood")}
    config = {**mapping.config(), "loss": kind, "fit": cfg, "seed": seed, "train_seconds": round(seconds, 1),
              "trajectories_total": cfg["trajectories"] * best[1], "selected_rounds": best[1],
              "selection": selection, "default_lr_z": lr_z, "lr_x": lr_x, "rate_selection": rate_selection,
              "requires": zoo.requirements(FITTED_ON, directory), "evaluation": evaluation}
    zoo.save(name, zoo.half(mapping.state_dict()), config,
             theta_card(kind, cfg, seconds, evaluation, splits.describe(), vae.latent_dim, best[1], (lr_z, lr_x),
                        rate_selection),
             directory=directory)
    return mapping


def train_landscape(kind: str, *, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                    settings: dict | None = None, directory: Path | None = None, run: Path | None = None,
                    evaluation: dict | None = None) -> Landscape:
    """The default mode's landscape for loss ``kind``, learned by the core recipe (``landform.recipe.learn``,
    no time budget) from the pose Problem: the learned start (``RECIPE_SETTINGS``' MLP, pSp's latent term on
    prior draws), Θ anchored at it, and the inference settings tuned on the validation frames; evaluated
    (``evaluate_split`` with ``evaluation``'s options over its defaults, 128 frames per split) and written to
    the zoo with its card."""
    if kind not in LOSS_NAMES:
        raise LandformError(f"unknown pose loss {kind!r}; use one of {', '.join(LOSS_NAMES)}")
    cfg = {**RECIPE_SETTINGS, **(settings or {})}
    name = landscape_name(kind)
    vae = load_vae(device, directory)
    splits = cached_splits()
    obs = observation(kind, vae.decoder)
    with torch.no_grad():  # shuffled: the recipe selects Θ and tunes on a few of them, from every source
        order = torch.randperm(splits.validation.shape[0], generator=torch.Generator().manual_seed(seed))
        val_y = obs.target(splits.validation[order].to(device))
    run = Path(run) if run is not None else runs_dir() / name
    torch.manual_seed(seed)
    start = StartEncoder(observation_shape(kind), (vae.latent_dim,), architecture="mlp", hidden=cfg["start_hidden"],
                         layers=cfg["start_layers"])

    def prior(n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, vae.latent_dim, generator=generator)

    began = time.perf_counter()
    landscape = learn(pose_problem(kind, vae, device=device), run, seconds=math.inf, rounds=cfg["rounds"],
                      hidden=cfg["hidden"], z_dim=cfg["z_dim"], trajectories=cfg["trajectories"],
                      start_steps=cfg["start_steps"], resume=resume, seed=seed, device=device, progress=progress,
                      start=start, prior=prior, prior_weight=cfg["prior_weight"], validation=val_y,
                      pool_size=cfg["pool_size"], refine=cfg["refine"], learned_steps=cfg.get("learned_steps"),
                      log=print if progress else (lambda line: None))
    seconds = time.perf_counter() - began
    models = PoseModels(vae, load_theta(kind, device, directory), kind, landscape, rates=theta_rates(kind, directory))
    options = {"count": 128, **(evaluation or {})}
    evaluation = {split: evaluate_split(kind, models, split, device=device, seed=seed, **options)
                  for split in ("in_distribution", "ood")}
    landscape.requires = {**landscape.requires, **zoo.requirements(FITTED_ON, directory)}
    tensors, config = landscape.state()
    config.update(loss=kind, recipe_settings=cfg, seed=seed, train_seconds=round(seconds, 1), evaluation=evaluation)
    zoo.save(name, zoo.half(tensors, keep=landscape.statistics()), config,
             landscape_card(kind, cfg, landscape, seconds, evaluation, splits.describe()), directory=directory)
    return landscape


def _load_selection(run: Path) -> tuple[tuple[float, int, dict] | None, list[dict]]:
    """The best Θ so far and the scores of a resumed run (none if it has not scored a chunk yet)."""
    if not (run / "best.safetensors").exists() or checkpoint_state(run) is None:
        return None, []
    state, meta = zoo.load_pair(run / "best.safetensors")
    return (meta["score"], meta["rounds"], state), meta["selection"]


def validation_score(obs, mapping: Mapping, val_y: torch.Tensor, *, lr_z: float, seed: int, device: str,
                     steps: int = 200) -> float:
    """Mean over steps 0..``steps`` of log(mean validation loss) of Eq. 3: rewards both speed and the end point."""
    mapping.eval()
    curve = invert(obs.forward, obs.loss, val_y, mapping=mapping, lr=lr_z, steps=steps, seed=seed,
                   device=device).losses.mean(dim=1)
    mapping.train()
    return float(curve.clamp_min(1e-12).log().mean())


def choose_default_rates(obs, mapping: Mapping, val_y: torch.Tensor, *, seed: int, device: str, steps: int = 200
                         ) -> tuple[tuple[float, float], dict[str, dict]]:
    """The step sizes (on z, on δ) of Eq. 3's Θ + δ (the default mode where joints are hidden), chosen on the
    validation frames as the baseline's rate is: of ``LR_Z_CHOICES`` x ``LR_X_CHOICES``, among the pairs whose
    mean loss stays at or below the baseline's (learning rate swept) from step 5 on, the one with the highest
    speedup at 20 (ties: the lower worst ratio over steps); if no pair stays below, the lowest worst ratio."""
    _, sweep = sweep_lr(obs.forward, obs.loss, val_y, steps=steps, x_shape=tuple(mapping.x_shape), seed=seed,
                        device=device)
    best_lr = min(sweep, key=lambda lr: sweep[lr]["final"])
    baseline = invert(obs.forward, obs.loss, val_y, lr=best_lr, steps=steps, x_shape=tuple(mapping.x_shape),
                      seed=seed, device=device).losses.mean(1)
    table = {}
    for lr_z in LR_Z_CHOICES:
        for lr_x in LR_X_CHOICES:
            ours = invert(obs.forward, obs.loss, val_y, mapping=mapping, mode="residual", lr=lr_z, lr_x=lr_x,
                          steps=steps, seed=seed, device=device).losses.mean(1)
            table[f"{lr_z}/{lr_x}"] = {"worst_ratio_from_5": float((ours[5:] / baseline[5:]).max()),
                                       "speedup_at_20": speedup_at(baseline, ours, 20),
                                       "steps_to_baseline_200": step_reached(ours, float(baseline[-1]))}
    below = [k for k, v in table.items() if v["worst_ratio_from_5"] <= 1.0]
    best = max(below, key=lambda k: (table[k]["speedup_at_20"], -table[k]["worst_ratio_from_5"])) if below \
        else min(table, key=lambda k: table[k]["worst_ratio_from_5"])
    return (float(best.split("/")[0]), float(best.split("/")[1])), table


def _vae_trainer(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                 run_dir: Path | None = None, zoo_dir: Path | None = None) -> None:
    train_vae(device=device, seed=seed, resume=resume, progress=progress, directory=zoo_dir, run=run_dir)


def _trainer(train, name: str, kind: str):
    """The ``zoo train`` entry point of one pose zoo entry: ``train(kind)`` with the CLI's options."""
    def trainer(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                run_dir: Path | None = None, zoo_dir: Path | None = None) -> None:
        train(kind, device=device, seed=seed, resume=resume, progress=progress, directory=zoo_dir,
              run=run_dir)

    trainer.__doc__ = f"Train and ship {name}."
    return trainer


# In dependency order: the VAE, then per loss the Eq. 3 Θ and the landscape (the recipe: start, anchored Θ, settings).
TRAINERS = {VAE_NAME: _vae_trainer,
            **{name: _trainer(train, name, kind) for kind in LOSS_NAMES
               for name, train in ((theta_name(kind), train_theta), (landscape_name(kind), train_landscape))}}
