"""Real motion capture from the ``pybullet==3.2.7`` wheel: the DeepMimic humanoid clips and skeleton.

Read at run time from ``pybullet_data`` (never copied into the repository). Each clip is JSON with a
``Frames`` list of 44 numbers per frame: duration, root position (3), root rotation (4), then chest,
neck, right hip (quaternions w,x,y,z), right knee (angle), right ankle, right shoulder (quaternions),
right elbow (angle), left hip, left knee, left ankle, left shoulder, left elbow in the same pattern
(the layout of pybullet_envs' ``humanoid_pose_interpolator``). The body pose is every joint but the
root, as VPoser's is. Pose parameters (the VAE's output, Eq. 6's variable) are the 3x3 rotation
matrices of the 8 spherical joints, row-major, followed by the 4 hinge angles: 76 numbers.

Split: out of distribution are whole motion types never trained on (acrobatic and floor motions);
of every other clip a validation segment and a test segment (whole contiguous runs of frames) are
held out, with ``GAP`` frames on each side that neither training nor evaluation uses.

Augmentation (training side only): left-right mirror images (in the split) and ``jitter_poses``, a
small random rotation of every spherical joint and a small change of every hinge angle. Random global
rotations are the identity here: the body pose, the 3D joints and the camera all live in the root's
frame (as VPoser's body pose excludes the global orientation), so rotating the whole body changes no
observation of this task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from landform.errors import LandformError

INSTALL = "pip install pybullet==3.2.7"
JOINTS = ("chest", "neck", "right_hip", "right_knee", "right_ankle", "right_shoulder", "right_elbow",
          "left_hip", "left_knee", "left_ankle", "left_shoulder", "left_elbow")
HINGES = ("right_knee", "right_elbow", "left_knee", "left_elbow")
SPHERICAL = tuple(j for j in JOINTS if j not in HINGES)
# Column of each joint's first value in a DeepMimic frame (quaternions take 4 columns, hinges 1).
FRAME_COLUMNS = {"chest": 8, "neck": 12, "right_hip": 16, "right_knee": 20, "right_ankle": 21,
                 "right_shoulder": 25, "right_elbow": 29, "left_hip": 30, "left_knee": 34, "left_ankle": 35,
                 "left_shoulder": 39, "left_elbow": 43}
FRAME_WIDTH = 44
POSE_DIM = 9 * len(SPHERICAL) + len(HINGES)
OOD_MOTIONS = ("backflip", "cartwheel", "roll", "getup_facedown", "getup_faceup")
HELD_OUT_FRACTION = {"validation": 0.1, "test": 0.15}
GAP = 4
UPPER_JOINTS = ("chest", "neck", "right_shoulder", "right_elbow", "left_shoulder", "left_elbow")
LOWER_JOINTS = ("right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle")


def pybullet_data_path() -> Path:
    """The installed ``pybullet_data`` folder, or a one-line error saying how to install it."""
    try:
        import pybullet_data
    except ImportError:
        raise LandformError(f"the pose task needs pybullet's motion capture data: {INSTALL}") from None
    return Path(pybullet_data.getDataPath())


def motions_folder() -> Path:
    folder = pybullet_data_path() / "data" / "motions"
    if not folder.is_dir():
        raise LandformError(f"no motion clips in {folder}; reinstall with `{INSTALL}`")
    return folder


def urdf_path() -> Path:
    path = pybullet_data_path() / "humanoid" / "humanoid.urdf"
    if not path.exists():
        raise LandformError(f"missing skeleton {path}; reinstall with `{INSTALL}`")
    return path


def motion_names() -> list[str]:
    """Names of the humanoid clips, e.g. ``walk`` for ``humanoid3d_walk.txt``."""
    return sorted(p.stem.removeprefix("humanoid3d_") for p in motions_folder().glob("humanoid3d_*.txt"))


def read_frames(name: str) -> torch.Tensor:
    """The raw frames [n, 44] of clip ``name`` (float64), checked for width and finiteness."""
    path = motions_folder() / f"humanoid3d_{name}.txt"
    try:
        frames = json.loads(path.read_text())["Frames"]
        tensor = torch.tensor(frames, dtype=torch.float64)
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise LandformError(f"cannot read motion clip {path}: {error}") from None
    if tensor.dim() != 2 or tensor.shape[1] != FRAME_WIDTH or not torch.isfinite(tensor).all():
        raise LandformError(f"motion clip {path} is not a list of {FRAME_WIDTH} finite numbers per frame")
    return tensor


def normalize_quaternions(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w,x,y,z), with w >= 0 (q and -q are the same rotation)."""
    norm = q.norm(dim=-1, keepdim=True)
    if (norm < 1e-8).any():
        raise LandformError("a quaternion of zero length cannot be normalized")
    q = q / norm
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] from unit quaternions (w,x,y,z)."""
    w, x, y, z = q.unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def frames_to_quaternions(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit quaternions [n, 8, 4] of the spherical joints, hinge angles [n, 4]) of raw frames."""
    quats = torch.stack([frames[:, FRAME_COLUMNS[j]:FRAME_COLUMNS[j] + 4] for j in SPHERICAL], dim=1)
    hinges = torch.stack([frames[:, FRAME_COLUMNS[j]] for j in HINGES], dim=1)
    return normalize_quaternions(quats), hinges


def pose_vector(rotations: torch.Tensor, hinges: torch.Tensor) -> torch.Tensor:
    """Pose parameters [n, 76] from rotation matrices [n, 8, 3, 3] and hinge angles [n, 4]."""
    return torch.cat([rotations.reshape(rotations.shape[0], -1), hinges], dim=1)


def split_pose(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rotation matrices [n, 8, 3, 3], hinge angles [n, 4]) of pose parameters [n, 76]."""
    if pose.dim() != 2 or pose.shape[1] != POSE_DIM:
        raise LandformError(f"pose parameters must have shape [n, {POSE_DIM}], got {tuple(pose.shape)}")
    n = len(SPHERICAL)
    return pose[:, :9 * n].reshape(-1, n, 3, 3), pose[:, 9 * n:]


def frames_to_pose(frames: torch.Tensor) -> torch.Tensor:
    """Body pose parameters [n, 76] (float32) of raw frames [n, 44]; the root is dropped."""
    quats, hinges = frames_to_quaternions(frames)
    return pose_vector(quaternion_to_matrix(quats), hinges).float()


def mirror_pose(pose: torch.Tensor) -> torch.Tensor:
    """The left-right mirror image of poses: reflect through the sagittal (x-y) plane, swap sides.

    With S = diag(1, 1, -1), each rotation R becomes S R S; hinges turn about z, so they are unchanged.
    """
    rotations, hinges = split_pose(pose)
    sign = torch.tensor([1.0, 1.0, -1.0], dtype=pose.dtype, device=pose.device)
    reflected = rotations * sign[:, None] * sign[None, :]
    swap_s = [SPHERICAL.index(_other_side(j)) for j in SPHERICAL]
    swap_h = [HINGES.index(_other_side(j)) for j in HINGES]
    return pose_vector(reflected[:, swap_s], hinges[:, swap_h])


def axis_angle_to_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] from axis-angle vectors [..., 3] (the angle is the vector's length)."""
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*vectors.shape[:-1], 3, 3)
    return torch.linalg.matrix_exp(skew)


def jitter_poses(pose: torch.Tensor, generator: torch.Generator, *, rotation_std: float, hinge_std: float,
                 scale: torch.Tensor | None = None) -> torch.Tensor:
    """Joint-noise augmentation: each spherical joint turned by a random axis-angle rotation (each component
    ~ N(0, ``rotation_std``) radians) and each hinge angle moved by N(0, ``hinge_std``); ``scale`` [n]
    multiplies both per pose (a spread of noise levels)."""
    rotations, hinges = split_pose(pose)
    scale = torch.ones(pose.shape[0]) if scale is None else scale.cpu()
    scale = scale.to(pose.dtype)
    turn = torch.randn(*rotations.shape[:2], 3, generator=generator, dtype=pose.dtype) * rotation_std
    turn = turn * scale[:, None, None]
    bend = torch.randn(hinges.shape, generator=generator, dtype=pose.dtype) * hinge_std * scale[:, None]
    turned = rotations @ axis_angle_to_matrix(turn).to(pose.device)
    return pose_vector(turned, hinges + bend.to(pose.device))


def _other_side(joint: str) -> str:
    if joint.startswith("right_"):
        return "left_" + joint.removeprefix("right_")
    if joint.startswith("left_"):
        return "right_" + joint.removeprefix("left_")
    return joint


@dataclass
class PoseSplits:
    """Pose parameters [n, 76] per split, and where every frame came from (clip, frame index)."""

    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    ood: torch.Tensor
    sources: dict[str, list[tuple[str, int]]]

    def describe(self) -> str:
        counts = ", ".join(f"{k} {getattr(self, k).shape[0]}" for k in ("train", "validation", "test", "ood"))
        return (f"frames: {counts}. Out of distribution: whole clips {', '.join(OOD_MOTIONS)}. Every other clip "
                f"holds out one contiguous validation segment ({HELD_OUT_FRACTION['validation']:.0%}) and one "
                f"test segment ({HELD_OUT_FRACTION['test']:.0%}) with {GAP} unused frames on each side; the "
                "training frames are the rest, plus their left-right mirror images.")


def load_splits(*, mirror_train: bool = True) -> PoseSplits:
    """The fixed split used for training and every report (deterministic: no randomness involved)."""
    parts: dict[str, list[torch.Tensor]] = {"train": [], "validation": [], "test": [], "ood": []}
    sources: dict[str, list[tuple[str, int]]] = {k: [] for k in parts}
    names = motion_names()
    if not names:
        raise LandformError(f"no humanoid3d_*.txt clips in {motions_folder()}; reinstall with `{INSTALL}`")
    for name in names:
        pose = frames_to_pose(read_frames(name))
        n = pose.shape[0]
        labels = ["ood"] * n if name in OOD_MOTIONS else _segment_labels(n)
        for index, label in enumerate(labels):
            if label is None:
                continue
            parts[label].append(pose[index:index + 1])
            sources[label].append((name, index))
    tensors = {k: torch.cat(v) if v else torch.zeros(0, POSE_DIM) for k, v in parts.items()}
    if mirror_train:
        tensors["train"] = torch.cat([tensors["train"], mirror_pose(tensors["train"])])
        sources["train"] = sources["train"] + [(f"{name} (mirrored)", i) for name, i in sources["train"]]
    return PoseSplits(**tensors, sources=sources)


def _segment_labels(n: int) -> list[str | None]:
    """Per frame of an in-distribution clip: train, validation, test, or None (a gap frame).

    The validation segment starts at 25% of the clip and the test segment at 60%, so each has training
    frames on both sides (the clips loop), with GAP unused frames around each held-out segment.
    """
    labels: list[str | None] = ["train"] * n
    for split, start_fraction in (("validation", 0.25), ("test", 0.6)):
        length = max(2, round(HELD_OUT_FRACTION[split] * n))
        start = int(start_fraction * n)
        for i in range(start - GAP, start + length + GAP):
            if 0 <= i < n:
                labels[i] = None
        for i in range(start, min(n, start + length)):
            labels[i] = split
    return labels


def joint_mask(joints: tuple[str, ...] | list[str]) -> torch.Tensor:
    """A boolean mask over ``JOINTS`` that is true for the named joints."""
    unknown = [j for j in joints if j not in JOINTS]
    if unknown:
        raise LandformError(f"unknown joints {unknown}; known: {', '.join(JOINTS)}")
    return torch.tensor([j in joints for j in JOINTS])
