"""The pose task's jobs: the report (``landform demo pose``), ``invert`` and ``compare`` on user files.

Baseline: Adam on the VAE latent x from 0, learning rate swept on the validation frames over
{0.5, 0.1, 0.05, 0.01, 0.001} (§7.2). Ours: Adam lr 0.1 on z from 0, x = Θ(z), Θ shipped per loss.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import numpy as np
import torch

from landform import invert, summarize, sweep_lr, zoo
from landform.errors import LandformError
from landform.mapping import Mapping
from landform.report import plot_curves, summary_table, write_curves_csv, write_json, write_text
from landform.tasks.pose.data import HINGES, JOINTS, LOWER_JOINTS, SPHERICAL, UPPER_JOINTS, joint_mask, load_splits
from landform.tasks.pose.kinematics import KEYPOINTS, Kinematics
from landform.tasks.pose.losses import LOSS_NAMES, observation
from landform.tasks.pose.model import PoseVAE, load_vae
from landform.tasks.pose.train import THETA_SETTINGS, theta_name

STEPS = 200
LONG_STEPS = 1000
SNAPSHOT_STEPS = (0, 1, 2, 3, 4, 5, 6)
TARGETS = {"pose_params": {"in_distribution": {"improvement_at_200": 0.19, "speedup_at_20": 10.0},
                           "ood": {"improvement_at_200": 0.11}}}
SPLIT_NAMES = {"in_distribution": "test", "ood": "ood"}
# Frames per report split (a seeded subset where the split is larger), so the report takes < 5 min on 2 CPUs.
REPORT_COUNT = {"in_distribution": None, "ood": 256}


@functools.lru_cache(maxsize=1)
def _splits():
    return load_splits()


def load_theta(kind: str, device: str | torch.device = "cpu", directory: Path | None = None) -> Mapping:
    """The shipped Θ for loss ``kind`` (float16 storage, returned as float32, eval mode)."""
    name = theta_name(kind)
    try:
        state, config = zoo.load(name, directory)
    except LandformError as error:
        raise LandformError(f"{error}; train it with `landform zoo train {name}`") from None
    mapping = Mapping(config["z_dim"], tuple(config["x_shape"]), hidden=config["hidden"])
    zoo.load_module_state(mapping, {k: v.float() for k, v in state.items()}, str(zoo.path(name)))
    return mapping.to(device).eval().requires_grad_(False)


def split_poses(split: str, *, count: int | None = None, seed: int = 0) -> torch.Tensor:
    """Pose parameters of a report split: ``in_distribution`` (held-out test segments) or ``ood``."""
    poses = getattr(_splits(), SPLIT_NAMES.get(split, split))
    if count is not None and count < poses.shape[0]:
        index = torch.randperm(poses.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
        poses = poses[index.sort().values]
    return poses


def baseline_lr(kind: str, vae: PoseVAE, *, device: str = "cpu", seed: int = 0, steps: int = STEPS):
    """§7.2: the baseline's learning rate, swept on the validation frames."""
    obs = observation(kind, vae.decoder)
    with torch.no_grad():
        y_val = obs.target(_splits().validation.to(device))
    return sweep_lr(obs.forward, obs.loss, y_val, steps=steps, x_shape=(vae.latent_dim,), seed=seed, device=device)


def run_pair(kind: str, vae: PoseVAE, mapping: Mapping, y: torch.Tensor, *, lr: float, steps: int = STEPS,
             mask: torch.Tensor | None = None, seed: int = 0, device: str = "cpu"):
    """(baseline, ours) inversions of observations ``y`` with an optional unit mask."""
    obs = observation(kind, vae.decoder, mask)
    common = {"steps": steps, "seed": seed, "device": device}
    baseline = invert(obs.forward, obs.loss, y, lr=lr, x_shape=(vae.latent_dim,), **common)
    ours = invert(obs.forward, obs.loss, y, mapping=mapping, lr=THETA_SETTINGS["lr_z"], **common)
    return baseline, ours


def evaluate_split(kind: str, vae: PoseVAE, mapping: Mapping, split: str, *, device: str = "cpu", seed: int = 0,
                   count: int | None = None, lr: float | None = None, sweep: dict | None = None,
                   steps: int = STEPS) -> dict:
    """The summary block (``landform.compare.summarize``) of one loss on one split."""
    if lr is None:
        lr, sweep = baseline_lr(kind, vae, device=device, seed=seed, steps=steps)
    block, _, _ = _evaluate(kind, vae, mapping, split_poses(split, count=count, seed=seed).to(device), lr=lr,
                            sweep=sweep, device=device, seed=seed, steps=steps)
    return block


def _evaluate(kind, vae, mapping, poses, *, lr, sweep, device, seed, steps):
    obs = observation(kind, vae.decoder)
    with torch.no_grad():
        y = obs.target(poses)
    baseline, ours = run_pair(kind, vae, mapping, y, lr=lr, steps=steps, seed=seed, device=device)
    block = summarize(baseline.losses, ours.losses,
                      seconds_per_step={"baseline": baseline.seconds_per_step, "landscape": ours.seconds_per_step},
                      extra={"loss": kind, "baseline_lr": lr, "landscape_lr": THETA_SETTINGS["lr_z"],
                             "optimizer": "adam", "lr_sweep": {str(k): v for k, v in (sweep or {}).items()}})
    return block, baseline, ours


# ----------------------------------------------------------------------------------------------- the report


def demo(out: Path, *, device: str = "cpu", seed: int = 0, progress: bool = True) -> dict:
    """Write report/pose/: curves, skeleton snapshots, completions, summary.json and summary.md."""
    started = time.perf_counter()
    device = device or "cpu"
    out = Path(out)
    torch.manual_seed(seed)
    vae = load_vae(device)
    mappings = {kind: load_theta(kind, device) for kind in LOSS_NAMES}
    summary: dict = {}
    curves: dict[str, dict[str, torch.Tensor]] = {}
    for kind in LOSS_NAMES:
        lr, sweep = baseline_lr(kind, vae, device=device, seed=seed)
        panels, panel_lines = {}, {}
        for split in ("in_distribution", "ood"):
            poses = split_poses(split, count=REPORT_COUNT[split], seed=seed).to(device)
            block, baseline, ours = _evaluate(kind, vae, mappings[kind], poses, lr=lr, sweep=sweep, device=device,
                                              seed=seed, steps=STEPS)
            key = split if kind == "pose_params" else f"{kind}/{split}"
            hlines = {}
            if split == "in_distribution":
                # How far from converged is the baseline at 200? The same run continued to LONG_STEPS.
                obs = observation(kind, vae.decoder)
                with torch.no_grad():
                    y = obs.target(poses)
                long = invert(obs.forward, obs.loss, y, lr=lr, steps=LONG_STEPS, x_shape=(vae.latent_dim,),
                              seed=seed, device=device).losses.mean(1)
                block[f"baseline_at_{LONG_STEPS}"] = float(long[-1])
                hlines[f"baseline @ {LONG_STEPS} steps"] = float(long[-1])
            summary[key] = block
            title = f"{kind}, {split.replace('_', ' ')}"
            panels[title] = {f"baseline (lr {lr})": baseline.losses, "ours (Θ)": ours.losses}
            panel_lines[title] = hlines
            curves[f"{kind}/{split}/baseline"] = baseline.losses.mean(1)
            curves[f"{kind}/{split}/ours"] = ours.losses.mean(1)
            if progress:
                print(f"pose {kind} {split}: improvement_at_200 {block['improvement_at_200']:.3f}, "
                      f"speedup_at_20 {block['speedup_at_20']:.2f}", flush=True)
        plot_curves(out / f"curves_{kind}.png", panels, hlines=panel_lines)
    write_curves_csv(out / "curves.csv", curves)
    summary["completion"] = _completions(out, vae, mappings, device=device, seed=seed)
    summary["snapshots"] = _snapshots(out, vae, mappings, summary, device=device, seed=seed)
    summary["targets"] = _check_targets(summary)
    summary["config"] = {"steps": STEPS, "seed": seed, "device": str(device), "latent_dim": vae.latent_dim,
                         "theta": THETA_SETTINGS, "split": _splits().describe(),
                         "ood_frames": f"{REPORT_COUNT['ood']} of {split_poses('ood').shape[0]} (seeded subset)",
                         "seconds": round(time.perf_counter() - started, 1)}
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", _markdown(summary))
    return summary


def _check_targets(summary: dict) -> dict:
    """Each issue target with the measured value and whether it is met."""
    checks = {}
    for kind in ("pose_params", "joints_3d"):
        for split, wanted in TARGETS["pose_params"].items():
            block = summary[split if kind == "pose_params" else f"{kind}/{split}"]
            for metric, threshold in wanted.items():
                checks[f"{kind}/{split}/{metric}"] = {"target": threshold, "measured": block[metric],
                                                      "met": bool(block[metric] >= threshold)}
    return checks


def _frame_scores(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sitting-likeness, standing-likeness) of keypoints [n, 17, 3] in the root frame (x forward, y up)."""
    k = {name: points[:, i] for i, name in enumerate(KEYPOINTS)}
    torso = torch.nn.functional.normalize(k["neck"], dim=-1)
    thighs = [torch.nn.functional.normalize(k[f"{s}_knee"] - k[f"{s}_hip"], dim=-1) for s in ("left", "right")]
    shins = [torch.nn.functional.normalize(k[f"{s}_ankle"] - k[f"{s}_knee"], dim=-1) for s in ("left", "right")]
    upright = torso[:, 1]
    sitting = upright + sum(t[:, 0] for t in thighs) / 2 - sum(s[:, 1] for s in shins) / 2
    standing = upright - sum(t[:, 1] + s[:, 1] for t, s in zip(thighs, shins, strict=True)) / 2
    return sitting, standing


def _snapshots(out: Path, vae: PoseVAE, mappings: dict, summary: dict, *, device: str, seed: int) -> dict:
    """Fig. 5: skeletons at steps 0-6 and the last, baseline vs ours vs target (pose-parameter loss)."""
    from landform.tasks.pose.figures import plot_snapshots

    kinematics = Kinematics().to(device)
    splits = _splits()
    poses = torch.cat([splits.test, splits.ood]).to(device)
    sources = [("in distribution", *s) for s in splits.sources["test"]] + [("ood", *s) for s in splits.sources["ood"]]
    with torch.no_grad():
        sitting, standing = _frame_scores(kinematics(poses))
    chosen = {"sitting-like": int(sitting.argmax()), "standing-like": int(standing.argmax())}
    kind = "pose_params"
    lr = summary["in_distribution"]["baseline_lr"]
    obs = observation(kind, vae.decoder)
    written = {}
    for label, index in chosen.items():
        pose = poses[index:index + 1]
        y = obs.target(pose)
        rows = {"baseline": [], "ours": []}
        for step in (*SNAPSHOT_STEPS, STEPS):
            baseline, ours = run_pair(kind, vae, mappings[kind], y, lr=lr, steps=step, seed=seed, device=device)
            with torch.no_grad():
                rows["baseline"].append((step, kinematics(vae.decoder(baseline.x))[0]))
                rows["ours"].append((step, kinematics(vae.decoder(ours.x))[0]))
        split, clip, frame = sources[index]
        name = f"snapshots_{label.split('-')[0]}.png"
        with torch.no_grad():
            target_points = kinematics(pose)[0]
        plot_snapshots(out / name, rows, target_points,
                       f"{label} frame ({split}: {clip} frame {frame}), pose-parameter loss")
        written[label] = {"file": name, "split": split, "clip": clip, "frame": frame}
    return written


def _completions(out: Path, vae: PoseVAE, mappings: dict, *, device: str, seed: int, starts: int = 5) -> dict:
    """Fig. 6 rows 3-4: upper- or lower-body-only 3D joints completed by ours from several random z0."""
    from landform.tasks.pose.figures import plot_completions

    kind = "joints_3d"
    kinematics = Kinematics().to(device)
    obs = observation(kind, vae.decoder)
    poses = split_poses("in_distribution").to(device)
    with torch.no_grad():
        _, standing = _frame_scores(kinematics(poses))
        y_all = obs.target(poses)
    results, rows = {}, {}
    index = int(torch.argsort(standing, descending=True)[len(standing) // 4])  # a typical, not extreme, frame
    for part, joints in (("upper body", UPPER_JOINTS), ("lower body", LOWER_JOINTS)):
        unit_mask = obs.mask_from_joints(joint_mask(joints))
        y = y_all[index:index + 1].expand(starts, -1, -1)
        masked = observation(kind, vae.decoder, unit_mask)
        z0 = torch.randn(starts, mappings[kind].z_dim, generator=torch.Generator().manual_seed(seed))
        ours = invert(masked.forward, masked.loss, y, mapping=mappings[kind], lr=THETA_SETTINGS["lr_z"],
                      steps=STEPS, init=z0, seed=seed, device=device)
        with torch.no_grad():
            points = kinematics(vae.decoder(ours.x))
        error = (points - y).norm(dim=-1) * 100
        results[part] = {"observed_error_cm": float(error[:, unit_mask].mean()),
                         "hidden_error_cm": float(error[:, ~unit_mask].mean()),
                         "hidden_spread_cm": float(points[:, ~unit_mask].std(dim=0).norm(dim=-1).mean() * 100),
                         "starts": starts}
        rows[part] = (y_all[index], unit_mask, list(points))
    clip, frame = _splits().sources["test"][index]
    plot_completions(out / "completions.png", rows, f"3D joints of one body half observed ({clip} frame {frame}), "
                     f"completed by ours from {starts} random z0")
    results["file"] = "completions.png"
    return results


def _markdown(summary: dict) -> str:
    lines = ["# Pose: inverting a VPoser-style prior (paper §4.2)", "",
             f"Split: {summary['config']['split']}", "",
             f"Baseline: Adam on the VAE latent (X = {summary['config']['latent_dim']}) from 0, lr swept on the "
             "validation frames; ours: Adam lr 0.1 on z from 0 through Θ. 200 steps; losses are per-example "
             "MSE (pose parameters; 3D joints in m^2; 2D keypoints in normalized image units^2).", ""]
    for key, block in summary.items():
        if isinstance(block, dict) and "speedup_at_20" in block:
            title = f"pose_params/{key}" if "/" not in key else key
            lines += [f"## {title}", "", summary_table(block), ""]
            long = block.get(f"baseline_at_{LONG_STEPS}")
            if long is not None:
                lines += [f"The baseline continued to {LONG_STEPS} steps reaches {long:.4g} (at step 200: "
                          f"{block['baseline'][-1]:.4g}, ours {block['landscape'][-1]:.4g}), so by step 200 it has "
                          f"{100 * (1 - long / block['baseline'][-1]):.1f}% left to gain on its own.", ""]
    lines += ["## Targets (issue 4)", "", "| check | target | measured | met |", "|---|---|---|---|"]
    for name, check in summary["targets"].items():
        lines.append(f"| {name} | {check['target']} | {check['measured']:.3f} | {'yes' if check['met'] else 'no'} |")
    lines += ["", "## Completion from half a body (3D joints, ours, random z0)", ""]
    for part, block in summary["completion"].items():
        if isinstance(block, dict):
            lines.append(f"- {part} observed: error on observed joints {block['observed_error_cm']:.1f} cm, on hidden "
                         f"joints {block['hidden_error_cm']:.1f} cm, spread of hidden joints across "
                         f"{block['starts']} starts {block['hidden_spread_cm']:.1f} cm")
    lines += ["", "Figures: " + ", ".join(f"curves_{k}.png" for k in LOSS_NAMES) + ", "
              + ", ".join(v["file"] for v in summary["snapshots"].values()) + ", completions.png", "",
              f"Time: {summary['config']['seconds']} s.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- user files


def read_observation(path: str | Path) -> tuple[str, torch.Tensor, torch.Tensor | None]:
    """(loss kind, observations [B, 17, 3|2], keypoint mask [B, 17] or None) from a JSON or .npy file.

    JSON: ``{"joints_3d": [[x, y, z] x 17]}`` or ``{"keypoints_2d": [[u, v] x 17]}`` (one pose, or a list
    of poses), optional ``"mask"`` (17 booleans per pose). .npy: an array [17, 3|2] or [B, 17, 3|2], with
    an optional mask in FILE.mask.npy beside it. Keypoint order: ``KEYPOINTS``. NaN is allowed only at
    hidden keypoints.
    """
    path = Path(path)
    if not path.exists():
        raise LandformError(f"input file not found: {path}")
    mask = None
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise LandformError(f"cannot read {path}: {error}") from None
        keys = [k for k in ("joints_3d", "keypoints_2d") if isinstance(data, dict) and k in data]
        if len(keys) != 1:
            raise LandformError(f"{path} must hold exactly one of 'joints_3d' or 'keypoints_2d'")
        try:
            values = torch.tensor(np.asarray(data[keys[0]], dtype=np.float64), dtype=torch.float32)
            if "mask" in data:
                mask = torch.tensor(np.asarray(data["mask"]).astype(bool))
        except (TypeError, ValueError) as error:
            raise LandformError(f"{path}: '{keys[0]}' is not a numeric array: {error}") from None
    elif path.suffix == ".npy":
        try:
            values = torch.tensor(np.load(path, allow_pickle=False).astype(np.float64), dtype=torch.float32)
            mask_path = path.with_name(path.stem + ".mask.npy")
            if mask_path.exists():
                mask = torch.tensor(np.load(mask_path, allow_pickle=False).astype(bool))
        except (OSError, ValueError) as error:
            raise LandformError(f"cannot read {path}: {error}") from None
    else:
        raise LandformError(f"{path}: use a .json or .npy file of 3D joints or 2D keypoints")
    if values.dim() == 2:
        values = values[None]
    if values.dim() != 3 or values.shape[1] != len(KEYPOINTS) or values.shape[2] not in (2, 3):
        raise LandformError(f"{path}: expected {len(KEYPOINTS)} joints with 3 (3D) or 2 (2D) coordinates each, "
                            f"got shape {tuple(values.shape)}")
    kind = "joints_3d" if values.shape[2] == 3 else "keypoints_2d"
    if mask is not None:
        if mask.dim() == 1:
            mask = mask[None].expand(values.shape[0], -1)
        if tuple(mask.shape) != tuple(values.shape[:2]):
            raise LandformError(f"{path}: the mask must have {len(KEYPOINTS)} entries per pose, "
                                f"got {tuple(mask.shape)}")
        if not mask.any(dim=1).all():
            raise LandformError(f"{path}: the mask hides every joint of at least one pose")
    finite = torch.isfinite(values).all(dim=-1)
    observed = torch.ones_like(finite) if mask is None else mask
    if (~finite & observed).any():
        raise LandformError(f"{path}: NaN or infinite coordinates at observed joints (hide them with a mask)")
    values = torch.where(finite[..., None], values, torch.zeros_like(values))
    return kind, values, mask


def pose_record(pose: torch.Tensor, points: torch.Tensor) -> dict:
    """Readable pose parameters (rotation matrices, hinge angles) and joint positions of one pose."""
    rotations = pose[:9 * len(SPHERICAL)].reshape(len(SPHERICAL), 3, 3)
    return {"rotations": {j: rotations[i].tolist() for i, j in enumerate(SPHERICAL)},
            "hinge_angles": {j: float(pose[9 * len(SPHERICAL) + i]) for i, j in enumerate(HINGES)},
            "pose_parameters": pose.tolist(),
            "joint_positions": {k: points[i].tolist() for i, k in enumerate(KEYPOINTS)}}


def invert_inputs(inputs: list[str], out: Path, *, device: str = "cpu", seed: int = 0, steps: int = STEPS,
                  progress: bool = True) -> None:
    """Fit pose parameters to each file's 3D joints or 2D keypoints with ours; write OUT/<name>.json."""
    if not inputs:
        raise LandformError("give one or more .json or .npy files of 3D joints or 2D keypoints")
    device = device or "cpu"
    vae = load_vae(device)
    kinematics = Kinematics().to(device)
    out = Path(out)
    for name in inputs:
        kind, y, mask = read_observation(name)
        obs = observation(kind, vae.decoder, mask)
        result = invert(obs.forward, obs.loss, y.to(device), mapping=load_theta(kind, device),
                        lr=THETA_SETTINGS["lr_z"], steps=steps, seed=seed, device=device, progress=progress)
        with torch.no_grad():
            poses = vae.decoder(result.x)
            points = kinematics(poses)
        record = {"input": str(name), "observation": kind, "steps": steps, "keypoint_order": list(KEYPOINTS),
                  "joint_order": list(JOINTS), "final_loss": result.losses[-1].tolist(),
                  "latent": result.x.tolist(), "poses": [pose_record(p, q) for p, q in zip(poses, points, strict=True)]}
        path = write_json(out / f"{Path(name).stem}.json", record)
        if progress:
            print(f"{name}: {kind}, final loss {result.losses[-1].mean():.4g} -> {path}")


def compare_inputs(inputs: list[str], out: Path, *, device: str = "cpu", seed: int = 0, steps: int = STEPS,
                   progress: bool = True) -> dict:
    """Baseline (lr swept on the validation frames) vs ours on each file; curves and summary in OUT."""
    if not inputs:
        raise LandformError("give one or more .json or .npy files of 3D joints or 2D keypoints")
    device = device or "cpu"
    vae = load_vae(device)
    out = Path(out)
    summary = {}
    lrs: dict[str, float] = {}
    for name in inputs:
        kind, y, mask = read_observation(name)
        if kind not in lrs:
            lrs[kind] = baseline_lr(kind, vae, device=device, seed=seed, steps=steps)[0]
        baseline, ours = run_pair(kind, vae, load_theta(kind, device), y.to(device), lr=lrs[kind], steps=steps,
                                  mask=mask, seed=seed, device=device)
        stem = Path(name).stem
        summary[stem] = summarize(baseline.losses, ours.losses,
                                  seconds_per_step={"baseline": baseline.seconds_per_step,
                                                    "landscape": ours.seconds_per_step},
                                  extra={"loss": kind, "baseline_lr": lrs[kind],
                                         "landscape_lr": THETA_SETTINGS["lr_z"]})
        plot_curves(out / f"{stem}_curves.png", {stem: {"baseline": baseline.losses, "ours": ours.losses}})
    write_json(out / "summary.json", summary)
    if progress:
        for stem, block in summary.items():
            print(f"{stem}: improvement at {steps} {block['improvement_at_200']:.3f}, speedup at 20 "
                  f"{block['speedup_at_20']:.2f}")
    return summary
