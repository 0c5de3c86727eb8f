"""Trainers of the pose task's zoo entries: the VAE prior (F) and, per observation model, Eq. 3's Θ, the
learned start E and the default mode's Θ anchored at E.

``landform zoo train pose-vae``, then for each loss (``pose_params``, ``joints_3d``, ``keypoints_2d``)
``pose-theta-LOSS``, ``pose-encoder-LOSS`` and ``pose-theta-anchored-LOSS`` in that order (``TRAINERS``
lists them so). Checkpoints go to runs/<name>/ (safetensors + json) and a rerun resumes from them; the
zoo entry is written only when training is complete.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from landform import Mapping, fit, invert, zoo
from landform.compare import sweep_lr
from landform.errors import LandformError
from landform.fitting import checkpoint_state
from landform.metrics import speedup_at, step_reached
from landform.report import format_interval, markdown_table
from landform.tasks import runs_dir
from landform.tasks.pose.data import UPPER_JOINTS, jitter_poses, joint_mask, load_splits
from landform.tasks.pose.kinematics import Kinematics
from landform.tasks.pose.losses import LOSS_NAMES, observation, observation_shape, pose_entry_joint
from landform.tasks.pose.model import VAE_NAME, ObservationEncoder, PoseVAE, load_vae

LATENT_DIM = 32  # the paper's X (§7.2), VPoser's latent size
VAE_SETTINGS = {"latent_dim": LATENT_DIM, "hidden": 512, "dropout": 0.1, "steps": 6000, "batch_size": 128,
                "lr": 1e-3, "kl_weight": 1e-3, "joint_weight": 1.0, "rotation_noise": 0.05, "hinge_noise": 0.05,
                "checkpoint_every": 500}
# §7.2: Z 128 -> X 32, Adam lr 0.1 on z, AdamW lr 0.005 and weight decay 0.1 on Θ, T = 200. N and B for 2 CPUs.
# Hidden 256 instead of 512: a third of the decoder's cost per step instead of all of it (quality in the card).
THETA_SETTINGS = {"z_dim": 128, "hidden": 256, "lr_z": 0.1, "lr": 0.005, "weight_decay": 0.1, "steps": 200,
                  "trajectories": 512, "rounds": 30, "batch_size": 256, "select_every": 5, "select_steps": 100,
                  "prior_fraction": 0.25, "mix_fraction": 0.5, "rotation_noise": 0.2, "hinge_noise": 0.2}
# The learned start E(y): an MLP trained through the frozen decoder on Θ's training observations (its loss,
# plus a small latent term E(F(x)) ≈ x on prior samples that keeps its guesses where the decoder was trained).
ENCODER_SETTINGS = {"hidden": 512, "layers": 3, "steps": 24000, "batch_size": 256, "lr": 1e-3, "latent_weight": 0.01,
                    "prior_batch": 128, "checkpoint_every": 1000}
# The default mode's Θ, anchored at the learned start: x = E(y) + Θ(z) (+ δ at inference), Algorithm 1 with
# T = 20 (the horizon it is judged at: it refines a guess that is already close), N = 512, 200 rounds.
ANCHORED_SETTINGS = {**THETA_SETTINGS, "steps": 20, "rounds": 200, "lr": 0.0025, "select_every": 25,
                     "select_steps": 20, "output_scale": 0.1}
# The default mode's step sizes on z and on δ (x = Θ(z) + δ) that train_theta chooses from on the validation frames.
LR_Z_CHOICES = (0.1, 0.2)
LR_X_CHOICES = (0.05, 0.1, 0.2, 0.3, 0.5)


def theta_name(kind: str, anchored: bool = False) -> str:
    return f"pose-theta-anchored-{kind}" if anchored else f"pose-theta-{kind}"


def encoder_name(kind: str) -> str:
    return f"pose-encoder-{kind}"


def train_vae(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
              settings: dict | None = None, directory: Path | None = None, run: Path | None = None) -> PoseVAE:
    """Train the VAE on the training split (reconstruction of pose parameters and FK joints + KL)."""
    cfg = {**VAE_SETTINGS, **(settings or {})}
    torch.manual_seed(seed)
    splits = load_splits()
    train = splits.train.to(device)
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
    bar = tqdm(range(step, cfg["steps"]), initial=step, total=cfg["steps"], disable=not progress, desc=VAE_NAME)
    for step in bar:
        index = torch.randint(train.shape[0], (cfg["batch_size"],), generator=generator)
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
    zoo.save(VAE_NAME, zoo.half(vae.state_dict()), config, _vae_card(cfg, metrics, elapsed, splits.describe(), pca),
             directory=directory)
    return vae


@torch.no_grad()
def vae_metrics(vae: PoseVAE, splits, kinematics: Kinematics) -> dict:
    """Reconstruction error (through the latent mean) per split: pose MSE and joint error in cm."""
    out = {}
    for split in ("train", "validation", "test", "ood"):
        pose = getattr(splits, split)
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


def _vae_card(cfg: dict, metrics: dict, seconds: float, split: str, pca: dict[str, float]) -> str:
    order = [k for k in ("train", "validation", "test", "ood") if k in metrics]
    rows = "\n".join(f"| {k} | {metrics[k]['pose_mse']:.4f} | {metrics[k]['joint_error_cm']:.2f} |" for k in order)
    explained = ", ".join(f"{100 * pca[k]:.0f}% (k = {k})" for k in sorted((k for k in pca if k.isdigit()), key=int))
    return f"""# pose-vae: VPoser-style pose prior (F of the pose task)

Reproduce: `landform zoo train {VAE_NAME}` (seed 0, CPU, 1 thread; {seconds:.0f} s).

Data: the DeepMimic humanoid motion capture clips in the `pybullet==3.2.7` wheel
(`pybullet_data/data/motions/humanoid3d_*.txt`), body pose only (the root is dropped), quaternions
normalized. Split: {split}

Model: encoder 76 -> 512 -> 512 -> 2x{cfg['latent_dim']} (Gaussian); decoder {cfg['latent_dim']} -> 512 -> 512 -> 52
with LeakyReLU(0.2) and dropout {cfg['dropout']}: a 6D rotation per spherical joint (8, Gram-Schmidt to
a rotation matrix) and an angle per hinge (knees, elbows). Pose parameters: 8 row-major rotation
matrices then 4 hinge angles (76 numbers).

Latent size X = {cfg['latent_dim']}, the paper's (§7.2, VPoser's). There are only {pca['distinct_frames']} distinct
training frames from {pca['clips']} clips (the first k principal components of the training pose parameters explain
{explained} of their variance), so some latent
dimensions stay close to the prior; still, against the earlier X = 16 model (same data, no joint noise) this one
reconstructs the test frames a little better (pose MSE 0.0164 against 0.0171, 6.7 against 7.1 cm) and the
best reachable test loss by descent on x drops from 0.0090 to 0.0069 (pose parameters).

Training: {cfg['steps']} Adam steps (lr {cfg['lr']}, cosine to lr/50), batch {cfg['batch_size']},
loss = pose-parameter MSE + {cfg['joint_weight']} x FK joint MSE (m^2) + {cfg['kl_weight']} x KL, on the training
frames and their mirror images with joint noise (every spherical joint turned by N(0, {cfg['rotation_noise']}) rad
per axis, every hinge by N(0, {cfg['hinge_noise']}) rad; training side only).
Weights stored as float16.

Reconstruction through the latent mean:

| split | pose-parameter MSE | mean joint error (cm) |
|---|---|---|
{rows}
"""


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


def train_encoder(kind: str, *, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                  settings: dict | None = None, directory: Path | None = None, run: Path | None = None
                  ) -> ObservationEncoder:
    """Train the learned start E for loss ``kind`` on Θ's training observations (``training_observations``):
    minimize the loss of F(E(y)) against y, plus ``latent_weight`` x |E(F(x)) - x|^2 on prior samples."""
    if kind not in LOSS_NAMES:
        raise LandformError(f"unknown pose loss {kind!r}; use one of {', '.join(LOSS_NAMES)}")
    cfg = {**ENCODER_SETTINGS, **(settings or {})}
    vae = load_vae(device, directory)
    obs = observation(kind, vae.decoder)
    observations = training_observations(kind, vae, THETA_SETTINGS, device=device)
    torch.manual_seed(seed)
    encoder = ObservationEncoder(observation_shape(kind), vae.latent_dim, cfg["hidden"], cfg["layers"]).to(device)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=cfg["lr"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg["steps"], eta_min=cfg["lr"] / 100)
    generator = torch.Generator().manual_seed(seed)
    run = Path(run) if run is not None else runs_dir() / encoder_name(kind)
    step, elapsed = 0, 0.0
    if resume and (run / "state.safetensors").exists():
        step, elapsed = _restore(run, cfg, encoder, optimizer, schedule, generator)
    started = time.perf_counter()
    bar = tqdm(range(step, cfg["steps"]), initial=step, total=cfg["steps"], disable=not progress,
               desc=encoder_name(kind))
    for step in bar:
        y = observations(cfg["batch_size"], generator)
        fitted = obs.loss(obs.forward(encoder(y)), y).mean()
        latent = torch.randn(cfg["prior_batch"], vae.latent_dim, generator=generator).to(device)
        with torch.no_grad():
            drawn = obs.forward(latent)
        loss = fitted + cfg["latent_weight"] * (encoder(drawn) - latent).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 100 == 0:
            bar.set_postfix(loss=f"{fitted.item():.4g}")
        if (step + 1) % cfg["checkpoint_every"] == 0 or step + 1 == cfg["steps"]:
            _checkpoint(run, cfg, encoder, optimizer, schedule, generator, step + 1,
                        elapsed + time.perf_counter() - started)
    elapsed += time.perf_counter() - started
    encoder.eval().requires_grad_(False)
    splits = load_splits()
    metrics = {}
    with torch.no_grad():
        for split in ("train", "validation", "test", "ood"):
            y = obs.target(getattr(splits, split).to(device))
            metrics[split] = float(obs.loss(obs.forward(encoder(y)), y).mean())
    config = {**encoder.config(), "loss": kind, "training": cfg, "seed": seed, "train_seconds": round(elapsed, 1),
              "vae": vae_fingerprint(directory), "start_loss": metrics}
    zoo.save(encoder_name(kind), zoo.half(encoder.state_dict()), config,
             _encoder_card(kind, cfg, metrics, elapsed, splits.describe()), directory=directory)
    return encoder


def _encoder_card(kind: str, cfg: dict, metrics: dict[str, float], seconds: float, split: str) -> str:
    table = markdown_table(["split", f"mean {kind} loss"], [[name, value] for name, value in metrics.items()])
    return f"""# {encoder_name(kind)}: the learned start for the pose task, {kind} loss

Reproduce: `landform zoo train {encoder_name(kind)}` (needs `pose-vae`; seed 0, CPU, 1 thread; {seconds:.0f} s).

What it is: an MLP from a {kind} observation to a guess of the VAE latent x ({cfg['layers']} hidden layers of
{cfg['hidden']}, LeakyReLU(0.2)). It is the start of the default mode (x = E(y) + Θ(z) + δ) and of the
`encoder_init` comparison (descent on x from E(y), the pipeline practitioners run).

Training: {cfg['steps']} Adam steps (lr {cfg['lr']}, cosine to lr/100), batch {cfg['batch_size']} of Θ's training
observations (training side only: prior samples, recombined and joint-noised training frames and their mirror
images; see `pose-theta-{kind}`), loss = the {kind} loss of F(E(y)) against y + {cfg['latent_weight']} x
|E(F(x)) - x|^2 on {cfg['prior_batch']} latents drawn from the prior. Weights stored as float16.

Data and split (the same as pose-vae): {split}

Loss of F(E(y)) per split (no descent):

{table}
"""


def vae_fingerprint(directory: Path | None = None) -> str:
    """A short hash of the VAE's weights file: every Θ records the one it was fitted on."""
    return zoo.fingerprint(VAE_NAME, directory)


def training_observations(kind: str, vae: PoseVAE, cfg: dict, *, device: str = "cpu"):
    """Θ's training observations, a sampler ``(n, generator) -> y`` (training side only):

    - a fraction ``prior_fraction`` of poses decoded from latents drawn from the VAE prior N(0, I);
    - the rest training frames (all in-distribution clips and their mirror images), of which a fraction
      ``mix_fraction`` recombined (one frame's upper body with another's lower body), all with joint
      noise (``jitter_poses``) of a random level between 0 and ``rotation_noise`` / ``hinge_noise``: poses
      the VAE cannot draw exactly, as held-out frames are.
    """
    obs = observation(kind, vae.decoder)
    train_poses = load_splits().train.to(device)
    upper = joint_mask(UPPER_JOINTS)[pose_entry_joint()].to(device)

    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        a = torch.randint(train_poses.shape[0], (n,), generator=generator).to(device)
        b = torch.randint(train_poses.shape[0], (n,), generator=generator).to(device)
        mixed = (torch.rand(n, 1, generator=generator) < cfg["mix_fraction"]).to(device)
        frames = torch.where(mixed & upper, train_poses[b], train_poses[a])
        frames = jitter_poses(frames, generator, rotation_std=cfg["rotation_noise"], hinge_std=cfg["hinge_noise"],
                              scale=torch.rand(n, generator=generator))
        prior = (torch.rand(n, 1, generator=generator) < cfg["prior_fraction"]).to(device)
        latent = torch.randn(n, vae.latent_dim, generator=generator).to(device)
        with torch.no_grad():
            return obs.target(torch.where(prior, vae.decoder(latent), frames))

    return draw


def _load_checked(name: str, directory: Path | None) -> tuple[dict[str, torch.Tensor], dict]:
    """A pose zoo entry's float32 weights and config, refused if missing or fitted on another VAE."""
    try:
        state, config = zoo.load(name, directory)
    except LandformError as error:
        raise LandformError(f"{error}; train it with `landform zoo train {name}`") from None
    if config.get("vae") != vae_fingerprint(directory):
        raise LandformError(f"{name} was fitted on another pose-vae; retrain it with `landform zoo train {name}`")
    return {k: v.float() for k, v in state.items()}, config


def load_encoder(kind: str, device: str | torch.device = "cpu", directory: Path | None = None) -> ObservationEncoder:
    """The shipped learned start for loss ``kind`` (float32, eval mode, frozen), checked to fit the shipped VAE."""
    name = encoder_name(kind)
    state, config = _load_checked(name, directory)
    encoder = ObservationEncoder(tuple(config["observation_shape"]), config["latent_dim"], config["hidden"],
                                 config["layers"])
    zoo.load_module_state(encoder, state, str(zoo.path(name, directory)))
    return encoder.to(device).eval().requires_grad_(False)


def load_theta(kind: str, device: str | torch.device = "cpu", directory: Path | None = None, *,
               anchored: bool = False) -> Mapping:
    """The shipped Θ for loss ``kind`` (Eq. 3's, or with ``anchored`` the default mode's x = E(y) + Θ(z);
    float16 storage, returned as float32, eval mode), checked to be fitted on the shipped VAE."""
    name = theta_name(kind, anchored)
    state, config = _load_checked(name, directory)
    mapping = Mapping(config["z_dim"], tuple(config["x_shape"]), hidden=config["hidden"],
                      additive=bool(config.get("additive", False)))
    zoo.load_module_state(mapping, state, str(zoo.path(name, directory)))
    return mapping.to(device).eval().requires_grad_(False)


def train_theta(kind: str, *, anchored: bool = False, device: str = "cpu", seed: int = 0, resume: bool = True,
                progress: bool = True, settings: dict | None = None, directory: Path | None = None,
                run: Path | None = None) -> Mapping:
    """Fit Θ with Algorithm 1 for the observation model ``kind`` (``training_observations``), keep the
    round that scores best on the validation frames, evaluate it and write the zoo entry. With
    ``anchored`` Θ is the default mode's x = E(y) + Θ(z), fitted around the shipped learned start E
    (``ANCHORED_SETTINGS``; Θ's output starts small, so every trajectory starts at E's guess)."""
    if kind not in LOSS_NAMES:
        raise LandformError(f"unknown pose loss {kind!r}; use one of {', '.join(LOSS_NAMES)}")
    cfg = {**(ANCHORED_SETTINGS if anchored else THETA_SETTINGS), **(settings or {})}
    name = theta_name(kind, anchored)
    vae = load_vae(device, directory)
    encoder = load_encoder(kind, device, directory) if anchored else None
    obs = observation(kind, vae.decoder)
    splits = load_splits()
    observations = training_observations(kind, vae, cfg, device=device)
    with torch.no_grad():
        val_y = obs.target(splits.validation.to(device))
    torch.manual_seed(seed)
    mapping = Mapping(cfg["z_dim"], (vae.latent_dim,), hidden=cfg["hidden"], additive=anchored)
    if anchored:
        with torch.no_grad():
            mapping.net[-1].weight.mul_(cfg["output_scale"])
            mapping.net[-1].bias.zero_()
    started = time.perf_counter()
    run = Path(run) if run is not None else runs_dir() / name
    # Algorithm 1 in chunks of ``select_every`` rounds (fit resumes exactly from its checkpoint); keep the
    # round whose Θ has the lowest mean log loss over the first ``select_steps`` steps on the validation frames.
    best, selection = _load_selection(run) if resume else (None, [])
    done = selection[-1]["rounds"] if selection else 0
    for rounds in range(done + cfg["select_every"], cfg["rounds"] + 1, cfg["select_every"]):
        fit(mapping, obs.forward, obs.loss, observations, rounds=rounds, trajectories=cfg["trajectories"],
            steps=cfg["steps"], lr_z=cfg["lr_z"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
            batch_size=cfg["batch_size"], base=encoder, checkpoint_dir=run, resume=rounds > cfg["select_every"],
            seed=seed, device=device, progress=progress)
        score = validation_score(obs, mapping, val_y, lr_z=cfg["lr_z"], seed=seed, device=device,
                                 steps=cfg["select_steps"], base=encoder)
        selection.append({"rounds": rounds, "validation_mean_log_loss": score})
        if best is None or score < best[0]:
            best = (score, rounds, {k: v.detach().clone() for k, v in mapping.state_dict().items()})
        zoo.save_pair(run / "best.safetensors", best[2], {"rounds": best[1], "score": best[0], "selection": selection})
    if best is None:
        raise LandformError(f"no rounds to fit: rounds={cfg['rounds']}, select_every={cfg['select_every']}")
    mapping.load_state_dict(best[2])
    history = (checkpoint_state(run) or {}).get("history", [])
    seconds = sum(r.get("seconds", 0.0) for r in history) or time.perf_counter() - started
    from landform.tasks.pose.task import PoseModels, evaluate_split

    mapping.eval().requires_grad_(False)
    (lr_z, lr_x), rate_selection = choose_default_rates(obs, mapping, val_y, seed=seed, device=device, base=encoder)
    models = PoseModels(vae, load_theta(kind, device, directory), encoder=encoder, anchored=mapping,
                        rates=(lr_z, lr_x)) if anchored else PoseModels(vae, mapping, rates=(lr_z, lr_x))
    evaluation = {split: evaluate_split(kind, models, split, device=device, seed=seed, count=128)
                  for split in ("in_distribution", "ood")}
    config = {**mapping.config(), "loss": kind, "fit": cfg, "seed": seed, "train_seconds": round(seconds, 1),
              "trajectories_total": cfg["trajectories"] * best[1], "selected_rounds": best[1],
              "selection": selection, "default_lr_z": lr_z, "lr_x": lr_x, "rate_selection": rate_selection,
              "vae": vae_fingerprint(directory), "evaluation": evaluation}
    if anchored:
        config["encoder"] = zoo.fingerprint(encoder_name(kind), directory)
    card = _anchored_card if anchored else _theta_card
    zoo.save(name, zoo.half(mapping.state_dict()), config,
             card(kind, cfg, seconds, evaluation, splits.describe(), vae.latent_dim, best[1], (lr_z, lr_x),
                  rate_selection),
             directory=directory)
    return mapping


def _load_selection(run: Path) -> tuple[tuple[float, int, dict] | None, list[dict]]:
    """The best Θ so far and the scores of a resumed run (none if it has not scored a chunk yet)."""
    if not (run / "best.safetensors").exists() or checkpoint_state(run) is None:
        return None, []
    state, meta = zoo.load_pair(run / "best.safetensors")
    return (meta["score"], meta["rounds"], state), meta["selection"]


def validation_score(obs, mapping: Mapping, val_y: torch.Tensor, *, lr_z: float, seed: int, device: str,
                     steps: int = 200, base: torch.nn.Module | None = None) -> float:
    """Mean over steps 0..``steps`` of log(mean validation loss) of Eq. 3 (x = base(y) + Θ(z) for an
    anchored Θ): rewards both speed and the end point."""
    mapping.eval()
    curve = invert(obs.forward, obs.loss, val_y, mapping=mapping, lr=lr_z, steps=steps, seed=seed, base=base,
                   device=device).losses.mean(dim=1)
    mapping.train()
    return float(curve.clamp_min(1e-12).log().mean())


def choose_default_rates(obs, mapping: Mapping, val_y: torch.Tensor, *, seed: int, device: str, steps: int = 200,
                         base: torch.nn.Module | None = None) -> tuple[tuple[float, float], dict[str, dict]]:
    """The default mode's step sizes (on z, on δ), chosen on the validation frames as the baseline's rate is:
    of ``LR_Z_CHOICES`` x ``LR_X_CHOICES``, among the pairs whose mean loss stays at or below the baseline's
    (learning rate swept) from step 5 on, the one with the highest speedup at 20 (ties: the lower worst ratio
    over steps); if no pair stays below, the one with the lowest worst ratio. With a learned start (``base``)
    every pair is past the baseline's step-20 loss at once, so the fastest to its step-200 loss is chosen."""
    _, sweep = sweep_lr(obs.forward, obs.loss, val_y, steps=steps, x_shape=tuple(mapping.x_shape), seed=seed,
                        device=device)
    best_lr = min(sweep, key=lambda lr: sweep[lr]["final"])
    baseline = invert(obs.forward, obs.loss, val_y, lr=best_lr, steps=steps, x_shape=tuple(mapping.x_shape),
                      seed=seed, device=device).losses.mean(1)
    table = {}
    for lr_z in LR_Z_CHOICES:
        for lr_x in LR_X_CHOICES:
            ours = invert(obs.forward, obs.loss, val_y, mapping=mapping, mode="residual", lr=lr_z, lr_x=lr_x,
                          steps=steps, seed=seed, base=base, device=device).losses.mean(1)
            table[f"{lr_z}/{lr_x}"] = {"worst_ratio_from_5": float((ours[5:] / baseline[5:]).max()),
                                       "speedup_at_20": speedup_at(baseline, ours, 20),
                                       "steps_to_baseline_200": step_reached(ours, float(baseline[-1]))}
    below = [k for k, v in table.items() if v["worst_ratio_from_5"] <= 1.0]

    def rank(key: str) -> tuple[float, float]:
        reached = table[key]["steps_to_baseline_200"]
        fast = -(math.inf if reached is None else reached) if base is not None else table[key]["speedup_at_20"]
        return fast, -table[key]["worst_ratio_from_5"]

    best = max(below, key=rank) if below else min(table, key=lambda k: table[k]["worst_ratio_from_5"])
    return (float(best.split("/")[0]), float(best.split("/")[1])), table


def _evaluation_table(evaluation: dict) -> str:
    """The card's evaluation table: every method against the baseline, per split."""
    columns = ["split", "frames", "baseline lr", "baseline @200", "default @200", "pure @200",
               "speedup at 20 (default)", "speedup at 20 (pure)", "default reaches baseline @200 at step",
               "worst ratio from step 5", "wall-clock speedup at 20"]
    rows = [[name, str(block["count"]), str(block["baseline_lr"]), f"{block['baseline'][-1]:.4g}",
             f"{block['landscape'][-1]:.4g}", f"{block['landscape_pure'][-1]:.4g}",
             f"{block['speedup_at_20']:.2f}{format_interval(block.get('speedup_at_20_ci95'))}",
             f"{block['methods']['landscape_pure']['speedup_at_20']:.2f}", str(block["steps_to_baseline_200"]),
             f"{block['worst_ratio_from_5']:.3f}", f"{block['wallclock_speedup_at_20']:.2f}"]
            for name, block in evaluation.items()]
    return markdown_table(columns, rows)


def _rate_choices(rate_selection: dict) -> str:
    return ", ".join(f"{k}: {v['worst_ratio_from_5']:.3f}, {v['speedup_at_20']:.2f}x"
                     + (f", step {v['steps_to_baseline_200']}" if "steps_to_baseline_200" in v else "")
                     for k, v in rate_selection.items())


def _theta_card(kind: str, cfg: dict, seconds: float, evaluation: dict, split: str, latent: int,
                selected: int, cfg_rates: tuple[float, float], rate_selection: dict) -> str:
    lr_x = cfg_rates[1]
    header_and_rows = _evaluation_table(evaluation)
    choices = _rate_choices(rate_selection)
    lr_z = cfg_rates[0]
    total = cfg["trajectories"] * selected
    return f"""# {theta_name(kind)}: learned landscape Θ for the pose task, {kind} loss

Reproduce: `landform zoo train {theta_name(kind)}` (needs `pose-vae`; seed 0, CPU, 1 thread; {seconds:.0f} s
of fitting on a shared 2-core machine).

Θ: Z {cfg['z_dim']} -> X {latent} (the VAE latent, as in §7.2), 3-layer MLP with LeakyReLU(0.2) and hidden
{cfg['hidden']}, not the paper's 512: with 512 Θ costs as much as the whole decoder per step (it doubled the
pose-parameter step time); with 256 it is about a third of the decoder's arithmetic. Measured in a
development run (pose-parameter loss, 15 rounds of N = 256, test frames, default mode with lr 0.05 on δ):
hidden 512 reached the baseline's step-20 loss at step 8 and ended at 0.00721 (worst ratio to the baseline
from step 5 on 1.013); hidden 256 at step 9, ending at 0.00731 (1.027).

Fitting: Algorithm 1 (`landform.fit`, method buffer), T = {cfg['steps']} Adam steps on z per trajectory (lr
{cfg['lr_z']}, z0 = 0), N = {cfg['trajectories']} trajectories per round, up to B = {cfg['rounds']} rounds; Θ trained
with AdamW (lr {cfg['lr']}, weight decay {cfg['weight_decay']}, batch {cfg['batch_size']}, T*N/batch updates per
round) under the `{kind}` loss (no masks during fitting). The shipped Θ saw {total:,} trajectories ({selected}
rounds); the paper's N = 40,960 per round for B = 500 rounds is out of reach on 2 CPU cores.

Training observations (training side only): {cfg['prior_fraction']:.0%} are poses decoded from latents drawn
from the VAE prior N(0, I); the rest are training frames (every in-distribution clip and its mirror image),
{cfg['mix_fraction']:.0%} of them recombined (the upper body of one frame with the lower body of another), all
turned by joint noise of a random level up to {cfg['rotation_noise']} rad per spherical joint and
{cfg['hinge_noise']} rad per hinge, so that Θ also learns poses the VAE cannot draw exactly, as held-out frames
are. Random global rotations change no observation here (everything lives in the root's frame).

Selection: every {cfg['select_every']} rounds Θ is scored on the validation frames (mean log loss of Eq. 3 over
steps 0-{cfg['select_steps']}); the shipped Θ is the best, after {selected} rounds. The default mode's step sizes
on z and on δ (x = Θ(z) + δ) are then chosen on the validation frames, as the baseline's is: of the pairs whose
mean loss stays at or below the baseline's from step 5 on, the fastest at step 20 (by lr_z/lr_x, the worst
ratio to the baseline from step 5 on and the speedup at 20: {choices}): lr_z = {lr_z}, lr_x = {lr_x}.
Eq. 3 (`landscape_pure`) keeps the paper's lr {cfg['lr_z']} on z.
Weights stored as float16.

Data and split (the same as pose-vae): {split}

Evaluation after fitting (200 steps; baseline = Adam on the VAE latent from 0 with the learning rate swept on
the validation frames; default = x = Θ(z) + δ; pure = Eq. 3; up to 128 frames per split; [95% bootstrap
interval over frames]; the full report is `landform demo pose`):

{header_and_rows}
"""


def _anchored_card(kind: str, cfg: dict, seconds: float, evaluation: dict, split: str, latent: int,
                   selected: int, rates: tuple[float, float], rate_selection: dict) -> str:
    name = theta_name(kind, anchored=True)
    return f"""# {name}: the default mode's Θ for the pose task, {kind} loss

Reproduce: `landform zoo train {name}` (needs `pose-vae`, `{theta_name(kind)}` and `{encoder_name(kind)}`;
seed 0, CPU, 1 thread; {seconds:.0f} s of fitting).

Θ: Z {cfg['z_dim']} -> X {latent}, 3-layer MLP, hidden {cfg['hidden']}, LeakyReLU(0.2), anchored at the learned
start: x = E(y) + Θ(z) (the paper's additive form of §4.3, with E = `{encoder_name(kind)}`). The default mode
descends on z and δ with x = E(y) + Θ(z) + δ. Θ's last layer starts at {cfg['output_scale']} x its usual
initialization with zero bias, so every trajectory of the first round starts at E's guess.

Fitting: Algorithm 1 (`landform.fit`, buffer), T = {cfg['steps']} Adam steps on z from z0 = 0 (lr {cfg['lr_z']}),
N = {cfg['trajectories']} per round, up to B = {cfg['rounds']} rounds; AdamW on Θ (lr {cfg['lr']}, weight decay
{cfg['weight_decay']}, batch {cfg['batch_size']}). T = {cfg['steps']}, not §7.2's 200: this Θ refines a guess that
is already past the baseline's step-20 loss, and the horizon that matters is the first 20 steps (the issue's
target); with T = 200 a round costs ten times as much. Training observations: those of `{theta_name(kind)}`
(training side only). Selected after {selected} rounds ({cfg['trajectories'] * selected:,} trajectories) by the
mean log loss of Eq. 3 over steps 0-{cfg['select_steps']} on the validation frames.

Step sizes of the default mode, chosen on the validation frames (among the pairs at or below the baseline from
step 5, the one that reaches the baseline's step-200 loss first; by lr_z/lr_x, the worst ratio, the speedup at
20 and that step: {_rate_choices(rate_selection)}): lr_z = {rates[0]}, lr_x = {rates[1]}. Weights stored as
float16.

Data and split (the same as pose-vae): {split}

Evaluation after fitting (200 steps; baseline = Adam on the VAE latent from 0, learning rate swept on the
validation frames; default = x = E(y) + Θ(z) + δ; pure = Eq. 3 with `{theta_name(kind)}`; up to 128 frames per
split; [95% bootstrap interval over frames]; the full report is `landform demo pose`):

{_evaluation_table(evaluation)}
"""


def _vae_trainer(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                 run_dir: Path | None = None, zoo_dir: Path | None = None) -> None:
    train_vae(device=device, seed=seed, resume=resume, progress=progress, directory=zoo_dir, run=run_dir)


def _trainer(train, name: str, kind: str, **fixed):
    """The ``zoo train`` entry point of one pose zoo entry: ``train(kind, **fixed)`` with the CLI's options."""
    def trainer(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                run_dir: Path | None = None, zoo_dir: Path | None = None) -> None:
        train(kind, **fixed, device=device, seed=seed, resume=resume, progress=progress, directory=zoo_dir,
              run=run_dir)

    trainer.__doc__ = f"Train and ship {name}."
    return trainer


# In dependency order: the VAE, then per loss the Eq. 3 Θ, the learned start, and the Θ anchored at it.
TRAINERS = {VAE_NAME: _vae_trainer,
            **{name: _trainer(train, name, kind, **fixed) for kind in LOSS_NAMES
               for name, train, fixed in ((theta_name(kind), train_theta, {}),
                                          (encoder_name(kind), train_encoder, {}),
                                          (theta_name(kind, True), train_theta, {"anchored": True}))}}

