"""Trainers of the pose task's zoo entries: the VAE prior (F) and one Θ per observation model.

``landform zoo train pose-vae`` then ``landform zoo train pose-theta-pose_params`` (and
``-joints_3d``, ``-keypoints_2d``). Checkpoints go to runs/<name>/ (safetensors + json) and a rerun
resumes from them; the zoo entry is written only when training is complete.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from landform import Mapping, fit, invert, zoo
from landform.errors import LandformError
from landform.tasks.pose.data import UPPER_JOINTS, joint_mask, load_splits
from landform.tasks.pose.kinematics import Kinematics
from landform.tasks.pose.losses import LOSS_NAMES, observation, pose_entry_joint
from landform.tasks.pose.model import VAE_NAME, PoseVAE, load_vae

RUNS = Path("runs")
LATENT_DIM = 16
VAE_SETTINGS = {"latent_dim": LATENT_DIM, "hidden": 512, "dropout": 0.1, "steps": 6000, "batch_size": 128,
                "lr": 1e-3, "kl_weight": 1e-3, "joint_weight": 1.0, "checkpoint_every": 500}
# §7.2: Z 128 -> X, hidden 512, Adam lr 0.1 on z, AdamW lr 0.005 and weight decay 0.1 on Θ. T, N, B for 2 CPUs.
THETA_SETTINGS = {"z_dim": 128, "hidden": 512, "lr_z": 0.1, "lr": 0.005, "weight_decay": 0.1, "steps": 20,
                  "trajectories": 256, "rounds": 60, "batch_size": 256, "select_every": 10,
                  "mix_fraction": 0.5}


def theta_name(kind: str) -> str:
    return f"pose-theta-{kind}"


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float16 storage (halves the shipped size; loaders convert back to float32)."""
    return {k: v.detach().cpu().to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}


def train_vae(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
              settings: dict | None = None, directory: Path | None = None) -> PoseVAE:
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
    run = RUNS / VAE_NAME
    step, elapsed = 0, 0.0
    if resume and (run / "state.safetensors").exists():
        step, elapsed = _restore(run, cfg, vae, optimizer, schedule, generator)
    vae.train()
    started = time.perf_counter()
    bar = tqdm(range(step, cfg["steps"]), initial=step, total=cfg["steps"], disable=not progress, desc=VAE_NAME)
    for step in bar:
        index = torch.randint(train.shape[0], (cfg["batch_size"],), generator=generator)
        pose = train[index.to(device)]
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
    zoo.save(VAE_NAME, _half(vae.state_dict()), config, _vae_card(cfg, metrics, elapsed, splits.describe(), pca),
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
    rows = "\n".join(f"| {k} | {v['pose_mse']:.4f} | {v['joint_error_cm']:.2f} |" for k, v in metrics.items())
    return f"""# pose-vae: VPoser-style pose prior (F of the pose task)

Reproduce: `landform zoo train {VAE_NAME}` (seed 0, CPU, 1 thread; {seconds:.0f} s).

Data: the DeepMimic humanoid motion capture clips in the `pybullet==3.2.7` wheel
(`pybullet_data/data/motions/humanoid3d_*.txt`), body pose only (the root is dropped), quaternions
normalized. Split: {split}

Model: encoder 76 -> 512 -> 512 -> 2x{cfg['latent_dim']} (Gaussian); decoder {cfg['latent_dim']} -> 512 -> 512 -> 52
with LeakyReLU(0.2) and dropout {cfg['dropout']}: a 6D rotation per spherical joint (8, Gram-Schmidt to
a rotation matrix) and an angle per hinge (knees, elbows). Pose parameters: 8 row-major rotation
matrices then 4 hinge angles (76 numbers).

Latent size X = {cfg['latent_dim']} (the paper's VPoser has 32): there are only {pca['distinct_frames']} distinct
training frames from {pca['clips']} clips; the first k principal components of the training pose parameters explain
{', '.join(f'{100 * v:.0f}% (k = {k})' for k, v in pca.items() if k.isdigit())} of their variance. A nonlinear decoder
needs fewer dimensions than PCA, and more latent dimensions than the data supports would only
collapse to the prior.

Training: {cfg['steps']} Adam steps (lr {cfg['lr']}, cosine to lr/50), batch {cfg['batch_size']},
loss = pose-parameter MSE + {cfg['joint_weight']} x FK joint MSE (m^2) + {cfg['kl_weight']} x KL.
Weights stored as float16.

Reconstruction through the latent mean:

| split | pose-parameter MSE | mean joint error (cm) |
|---|---|---|
{rows}
"""


def _checkpoint(run: Path, cfg: dict, vae: PoseVAE, optimizer, schedule, generator, step: int, seconds: float) -> None:
    tensors = {f"model.{k}": v for k, v in vae.state_dict().items()}
    tensors.update(zoo.optimizer_tensors(optimizer))
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"settings": cfg, "step": step, "seconds": seconds, "param_groups": optimizer.state_dict()["param_groups"],
            "schedule": schedule.state_dict()}
    zoo.save_pair(run / "state.safetensors", tensors, meta)


def _restore(run: Path, cfg: dict, vae: PoseVAE, optimizer, schedule, generator) -> tuple[int, float]:
    tensors, meta = zoo.load_pair(run / "state.safetensors")
    if meta.get("settings") != cfg:
        raise LandformError(f"cannot resume {run}: settings differ from the checkpoint; rerun with --restart")
    vae.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    zoo.load_optimizer_tensors(optimizer, tensors, meta["param_groups"])
    schedule.load_state_dict(meta["schedule"])
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), float(meta["seconds"])


def train_theta(kind: str, *, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                settings: dict | None = None, directory: Path | None = None) -> Mapping:
    """Fit Θ with Algorithm 1 for the observation model ``kind`` on the training split's observations."""
    if kind not in LOSS_NAMES:
        raise LandformError(f"unknown pose loss {kind!r}; use one of {', '.join(LOSS_NAMES)}")
    cfg = {**THETA_SETTINGS, **(settings or {})}
    vae = load_vae(device, directory)
    obs = observation(kind, vae.decoder)
    splits = load_splits()
    train_poses = splits.train.to(device)
    upper = joint_mask(UPPER_JOINTS)[pose_entry_joint()].to(device)

    def observations(n: int, generator: torch.Generator) -> torch.Tensor:
        """Training frames, half of them recombined: one frame's upper body with another's lower body.

        With ~500 distinct frames Θ memorizes them; recombined bodies are new poses from the same
        joints' motions and teach Θ a landscape that generalizes to unseen frames.
        """
        a = torch.randint(train_poses.shape[0], (n,), generator=generator).to(device)
        b = torch.randint(train_poses.shape[0], (n,), generator=generator).to(device)
        mixed = torch.where(upper, train_poses[a], train_poses[b])
        keep = (torch.rand(n, 1, generator=generator) < 1 - cfg["mix_fraction"]).to(device)
        with torch.no_grad():
            return obs.target(torch.where(keep, train_poses[a], mixed))

    with torch.no_grad():
        val_y = obs.target(splits.validation.to(device))
    torch.manual_seed(seed)
    mapping = Mapping(cfg["z_dim"], (vae.latent_dim,), hidden=cfg["hidden"])
    started = time.perf_counter()
    run = RUNS / theta_name(kind)
    # Algorithm 1 in chunks of ``select_every`` rounds (fit resumes exactly from its checkpoint); keep the
    # round whose Θ has the lowest mean log loss over 200 steps on the validation frames, since with ~500
    # distinct training frames Θ starts to memorize them after a few dozen rounds.
    best, selection = _load_selection(run) if resume else (None, [])
    done = selection[-1]["rounds"] if selection else 0
    for rounds in range(done + cfg["select_every"], cfg["rounds"] + 1, cfg["select_every"]):
        fit(mapping, obs.forward, obs.loss, observations, rounds=rounds, trajectories=cfg["trajectories"],
                     steps=cfg["steps"], lr_z=cfg["lr_z"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                     batch_size=cfg["batch_size"], checkpoint_dir=run, resume=rounds > cfg["select_every"],
                     seed=seed, device=device, progress=progress)
        score = validation_score(obs, mapping, val_y, lr_z=cfg["lr_z"], seed=seed, device=device)
        selection.append({"rounds": rounds, "validation_mean_log_loss": score})
        if best is None or score < best[0]:
            best = (score, rounds, {k: v.detach().clone() for k, v in mapping.state_dict().items()})
        zoo.save_pair(run / "best.safetensors", best[2], {"rounds": best[1], "score": best[0], "selection": selection})
    if best is None:
        raise LandformError(f"no rounds to fit: rounds={cfg['rounds']}, select_every={cfg['select_every']}")
    mapping.load_state_dict(best[2])
    history = json.loads((run / "state.json").read_text()).get("history", [])
    seconds = sum(r.get("seconds", 0.0) for r in history) or time.perf_counter() - started
    from landform.tasks.pose.task import evaluate_split

    mapping.eval()
    evaluation = {split: evaluate_split(kind, vae, mapping, split, device=device, seed=seed, count=128)
                  for split in ("in_distribution", "ood")}
    config = {**mapping.config(), "loss": kind, "fit": cfg, "seed": seed, "train_seconds": round(seconds, 1),
              "selected_rounds": best[1], "selection": selection, "evaluation": evaluation}
    zoo.save(theta_name(kind), _half(mapping.state_dict()), config,
             _theta_card(kind, cfg, seconds, evaluation, splits.describe(), vae.latent_dim, best[1]),
             directory=directory)
    return mapping


def _load_selection(run: Path) -> tuple[tuple[float, int, dict] | None, list[dict]]:
    """The best Θ so far and the scores of a resumed run (none if it has not scored a chunk yet)."""
    if not (run / "best.safetensors").exists() or not (run / "state.json").exists():
        return None, []
    state, meta = zoo.load_pair(run / "best.safetensors")
    return (meta["score"], meta["rounds"], state), meta["selection"]


def validation_score(obs, mapping: Mapping, val_y: torch.Tensor, *, lr_z: float, seed: int, device: str) -> float:
    """Mean over the 201 steps of log(mean validation loss) of ours: rewards both speed and the end point."""
    mapping.eval()
    curve = invert(obs.forward, obs.loss, val_y, mapping=mapping, lr=lr_z, steps=200, seed=seed,
                   device=device).losses.mean(dim=1)
    mapping.train()
    return float(curve.clamp_min(1e-12).log().mean())


def _theta_card(kind: str, cfg: dict, seconds: float, evaluation: dict, split: str, latent: int,
                selected: int) -> str:
    lines = []
    for name, block in evaluation.items():
        lines.append(f"| {name} | {block['count']} | {block['baseline_lr']} | {block['baseline'][-1]:.4g} | "
                     f"{block['landscape'][-1]:.4g} | {block['improvement_at_200']:.3f} | "
                     f"{block['speedup_at_20']:.2f} |")
    rows = "\n".join(lines)
    return f"""# {theta_name(kind)}: learned landscape Θ for the pose task, {kind} loss

Reproduce: `landform zoo train {theta_name(kind)}` (needs `pose-vae`; seed 0, CPU, 1 thread; {seconds:.0f} s).

Θ: Z {cfg['z_dim']} -> X {latent} (the VAE latent), 3-layer MLP with hidden {cfg['hidden']}, LeakyReLU(0.2)
(paper §7.2). Fitted with Algorithm 1 (`landform.fit`, method buffer): up to B = {cfg['rounds']} rounds,
N = {cfg['trajectories']} trajectories of T = {cfg['steps']} Adam steps on z (lr {cfg['lr_z']}, z0 = 0),
Θ trained with AdamW (lr {cfg['lr']}, weight decay {cfg['weight_decay']}, batch {cfg['batch_size']},
T*N/batch updates per round) under the `{kind}` loss (no masks during fitting). Observations: training
frames, {cfg['mix_fraction']:.0%} of them recombined (the upper body of one training frame with the lower
body of another), since Θ otherwise memorizes the few hundred distinct training frames.
Every {cfg['select_every']} rounds Θ is scored on the validation frames (mean
log loss over 200 steps); the shipped Θ is the best one, after {selected} rounds. Weights stored as float16.

Data and split (the same as pose-vae): {split}

Evaluation after fitting (200 steps, baseline = Adam on the VAE latent from 0 with the learning
rate swept on the validation frames, ours = Adam lr {cfg['lr_z']} on z from 0; up to 128 frames per split):

| split | frames | baseline lr | baseline loss @200 | ours @200 | improvement_at_200 | speedup_at_20 |
|---|---|---|---|---|---|---|
{rows}
"""


def _vae_trainer(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True) -> None:
    train_vae(device=device, seed=seed, resume=resume, progress=progress)


def _theta_trainer(kind: str):
    def trainer(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True) -> None:
        train_theta(kind, device=device, seed=seed, resume=resume, progress=progress)

    trainer.__doc__ = f"Fit and ship {theta_name(kind)}."
    return trainer


TRAINERS = {VAE_NAME: _vae_trainer, **{theta_name(kind): _theta_trainer(kind) for kind in LOSS_NAMES}}

