"""The pose task on a user's files: ``landform invert --task pose`` and ``landform compare --task pose`` on
3D joints or 2D keypoints (JSON or .npy, optionally masked)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch

from landform.comparison import compare
from landform.errors import LandformError
from landform.io import atomic_outputs
from landform.report import plot_curves, write_json
from landform.tasks.pose.data import HINGES, JOINTS, SPHERICAL
from landform.tasks.pose.evaluate import DEFAULT_MODE, STEPS, methods
from landform.tasks.pose.kinematics import KEYPOINTS, Kinematics
from landform.tasks.pose.load import PoseModels
from landform.tasks.pose.problem import observe, pose_problem, sweep_poses


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
    """Fit pose parameters to each file's 3D joints or 2D keypoints with ours (the default mode); write
    OUT/<name>.json, all of them replaced as one set."""
    if not inputs:
        raise LandformError("give one or more .json or .npy files of 3D joints or 2D keypoints")
    device = device or "cpu"
    kinematics = Kinematics().to(device)
    out = Path(out)
    records, done = {}, []  # by output file name: a later input of the same name wins, as it always has
    for name in inputs:
        kind, y, mask = read_observation(name)
        models = PoseModels.load(kind, device).for_mask(mask)
        vae = models.vae
        ours = next(m for m in methods(models) if m.name == "landscape")
        result = ours.run(pose_problem(kind, vae, mask, device=device, base=models.encoder), y.to(device), ours.lr,
                          steps=steps, seed=seed, device=device, progress=progress)
        with torch.no_grad():
            poses = vae.decoder(result.x)
            points = kinematics(poses)
        mode = models.landscape.settings.mode if models.landscape is not None else DEFAULT_MODE
        record = {"input": str(name), "observation": kind, "steps": steps, "mode": mode,
                  "learned_start": models.encoder is not None,
                  "keypoint_order": list(KEYPOINTS), "joint_order": list(JOINTS),
                  "final_loss": result.losses[-1].tolist(), "latent": result.x.tolist(),
                  "poses": [pose_record(p, q) for p, q in zip(poses, points, strict=True)]}
        file = f"{Path(name).stem}.json"
        records[file] = record
        done.append((name, kind, result.losses[-1].mean(), out / file))
    with atomic_outputs(out, list(records)) as stage:  # the old set or the new one, never a mix
        for file, record in records.items():
            write_json(stage / file, record)
    if progress:
        for name, kind, loss, path in done:
            print(f"{name}: {kind}, final loss {loss:.4g} -> {path}")


@functools.lru_cache(maxsize=8)
def _swept_lrs(kind: str, steps: int, seed: int, device: str) -> dict[str, float]:
    """The swept step sizes (baseline, encoder_init) chosen on the validation frames."""
    models = PoseModels.load(kind, device)
    problem = pose_problem(kind, models.vae, device=device, base=models.encoder)
    y_val = observe(kind, models.vae, sweep_poses(seed).to(device))
    swept = [m for m in methods(models) if isinstance(m.lr, tuple)]
    comparison = compare(problem, y_val, swept, y_val=y_val, steps=steps, seed=seed, device=device, bootstrap=0)
    return dict(comparison.lrs)


def compare_inputs(inputs: list[str], out: Path, *, device: str = "cpu", seed: int = 0, steps: int = STEPS,
                   progress: bool = True) -> dict:
    """Every method on each file (the baseline's step size swept on the validation frames); curves and
    summary in OUT, replaced as one set."""
    if not inputs:
        raise LandformError("give one or more .json or .npy files of 3D joints or 2D keypoints")
    device = device or "cpu"
    out = Path(out)
    summary, curves = {}, {}  # by file stem: a later input of the same stem wins, as it always has
    for name in inputs:
        kind, y, mask = read_observation(name)
        models = PoseModels.load(kind, device).for_mask(mask)
        chosen = methods(models, fixed=_swept_lrs(kind, steps, seed, str(device)))
        comparison = compare(pose_problem(kind, models.vae, mask, device=device, base=models.encoder),
                             y.to(device), chosen, steps=steps,
                             seed=seed, device=device, bootstrap=1000 if y.shape[0] > 1 else 0)
        stem = Path(name).stem
        summary[stem] = {**comparison.summary, "loss": kind}
        curves[stem] = {n: r.losses for n, r in comparison.results.items()}
    with atomic_outputs(out, [*(f"{stem}_curves.png" for stem in curves), "summary.json"]) as stage:
        for stem, panel in curves.items():  # the old set or the new one, never a mix
            plot_curves(stage / f"{stem}_curves.png", {stem: panel})
        write_json(stage / "summary.json", summary)
    if progress:
        for stem, block in summary.items():
            print(f"{stem}: improvement at {steps} {block['improvement_at_200']:.3f}, speedup at 20 "
                  f"{block['speedup_at_20']:.2f}")
    return summary
