"""The AMP humanoid clips of ``isaaclab==3.0.0`` (``isaaclab_tasks/contrib/humanoid_amp/motions/*.npz``).

Each ``.npz`` (read without pickle) holds ``fps``, ``body_names`` (15: pelvis, torso, head, upper and lower
arms, hands, thighs, shins, feet), world ``body_positions`` [n, 15, 3] and ``body_rotations`` [n, 15, 4]
(w, x, y, z), z up, the humanoid facing x with its left along y. The AMP humanoid is DeepMimic's (the same
joints and bone lengths, the same rest pose: standing, arms down), so retargeting is direct: each segment's
rotation relative to the pelvis, in DeepMimic's axes (x forward, y up, z right).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from landform.errors import LandformError
from landform.tasks.pose.mocap.retarget import basis, quaternion_to_matrix, to_frames, world_to_joints

# AMP axes (x forward, y left, z up) -> DeepMimic axes (x forward, y up, z right).
TO_DEEPMIMIC = basis([[1, 0, 0], [0, 0, 1], [0, -1, 0]])
ROOT = "pelvis"
# The AMP body each pose joint turns.
BODY = {"chest": "torso", "neck": "head", "right_shoulder": "right_upper_arm", "right_elbow": "right_lower_arm",
        "left_shoulder": "left_upper_arm", "left_elbow": "left_lower_arm", "right_hip": "right_thigh",
        "right_knee": "right_shin", "right_ankle": "right_foot", "left_hip": "left_thigh", "left_knee": "left_shin",
        "left_ankle": "left_foot"}
# The AMP body whose origin is each DeepMimic joint keypoint (the hands' origins are the wrists).
KEYPOINT_BODY = {**{joint: body for joint, body in BODY.items()}, "right_wrist": "right_hand",
                 "left_wrist": "left_hand"}


@dataclass
class AmpClip:
    """One AMP motion: frames per second, body names, world positions [n, B, 3] and rotations [n, B, 4]."""

    name: str
    fps: float
    body_names: list[str]
    positions: torch.Tensor
    rotations: torch.Tensor

    def body(self, name: str) -> int:
        if name not in self.body_names:
            raise LandformError(f"AMP clip {self.name} has no body {name!r}")
        return self.body_names.index(name)


def read_clip(path: str | Path) -> AmpClip:
    """Read one AMP ``.npz`` motion (no pickled objects allowed)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            clip = AmpClip(name=path.stem.removeprefix("humanoid_"), fps=float(data["fps"]),
                           body_names=[str(n) for n in data["body_names"]],
                           positions=torch.from_numpy(np.asarray(data["body_positions"], dtype=np.float64)),
                           rotations=torch.from_numpy(np.asarray(data["body_rotations"], dtype=np.float64)))
    except (OSError, KeyError, ValueError) as error:
        raise LandformError(f"cannot read AMP motion {path}: {error}") from None
    n, bodies = clip.positions.shape[:2]
    if clip.rotations.shape != (n, bodies, 4) or len(clip.body_names) != bodies or clip.fps <= 0:
        raise LandformError(f"AMP motion {path} has inconsistent shapes")
    return clip


def root_frame_positions(clip: AmpClip) -> dict[str, torch.Tensor]:
    """Each DeepMimic joint keypoint's AMP body origin [n, 3] in the pelvis frame, DeepMimic axes (meters)."""
    root = clip.body(ROOT)
    inverse = quaternion_to_matrix(clip.rotations[:, root]).transpose(-1, -2)
    offsets = {joint: clip.positions[:, clip.body(body)] - clip.positions[:, root]
               for joint, body in KEYPOINT_BODY.items()}
    return {joint: (TO_DEEPMIMIC @ inverse @ offset[..., None])[..., 0] for joint, offset in offsets.items()}


def to_deepmimic(clip: AmpClip) -> torch.Tensor:
    """Raw DeepMimic frames [n, 44] of an AMP clip (root position and rotation in DeepMimic's y-up world)."""
    matrices = quaternion_to_matrix(clip.rotations)
    root = matrices[:, clip.body(ROOT)]
    world = {joint: TO_DEEPMIMIC @ root.transpose(-1, -2) @ matrices[:, clip.body(body)] @ TO_DEEPMIMIC.T
             for joint, body in BODY.items()}
    rotations, hinges = world_to_joints(world)
    return to_frames(rotations, hinges, dt=1.0 / clip.fps,
                     root_position=clip.positions[:, clip.body(ROOT)] @ TO_DEEPMIMIC.T,
                     root_rotation=TO_DEEPMIMIC @ root @ TO_DEEPMIMIC.T)
