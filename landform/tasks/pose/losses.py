"""The three observation models of the pose task and their masked per-example losses.

- ``pose_params``: F(x) = decoder(x), the pose parameters; loss = MSE (the paper's Eq. 6).
- ``joints_3d``: F(x) = FK(decoder(x)), 17 keypoints in meters in the root frame; loss = MSE.
- ``keypoints_2d``: F(x) = camera(FK(decoder(x))), their pinhole projections; loss = MSE.

Every loss takes a joint mask [B, units] (True = observed; units are the 12 pose joints for
``pose_params`` and the 17 keypoints otherwise): hidden units add neither loss nor gradient, and the
mean is over the observed entries only, so losses with different masks stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from landform.errors import LandformError
from landform.tasks.pose.data import HINGES, JOINTS, POSE_DIM, SPHERICAL
from landform.tasks.pose.kinematics import KEYPOINT_JOINT, KEYPOINTS, Kinematics, PinholeCamera

LOSS_NAMES = ("pose_params", "joints_3d", "keypoints_2d")


def pose_entry_joint() -> torch.Tensor:
    """For each of the 76 pose parameters, the index in ``JOINTS`` of the joint it belongs to."""
    owners = [JOINTS.index(j) for j in SPHERICAL for _ in range(9)] + [JOINTS.index(j) for j in HINGES]
    return torch.tensor(owners)


def keypoint_joint() -> torch.Tensor:
    """For each keypoint, the index in ``JOINTS`` of the pose joint whose observation it is."""
    return torch.tensor([JOINTS.index(KEYPOINT_JOINT.get(k, k)) for k in KEYPOINTS])


class MaskedMSE:
    """Per-example mean squared error over observed entries: (y_hat, y) -> [B].

    ``mask`` is [B, units] or [units] (bool); y has shape [B, units * per_unit] (``flat``) or
    [B, units, per_unit]. ``entry_unit`` maps flat entries to units when units differ in size.
    """

    def __init__(self, units: int, mask: torch.Tensor | None = None, entry_unit: torch.Tensor | None = None) -> None:
        self.units = units
        self.entry_unit = entry_unit
        self.mask = None if mask is None else check_mask(mask, units)

    def with_mask(self, mask: torch.Tensor | None) -> MaskedMSE:
        return MaskedMSE(self.units, mask, self.entry_unit)

    def entry_mask(self, y: torch.Tensor) -> torch.Tensor | None:
        """The mask broadcast to y's shape (None: everything observed)."""
        if self.mask is None:
            return None
        mask = self.mask.to(y.device)
        if mask.dim() == 1:
            mask = mask.expand(y.shape[0], -1)
        if mask.shape[0] != y.shape[0]:
            raise LandformError(f"the mask has {mask.shape[0]} rows but there are {y.shape[0]} observations")
        if self.entry_unit is not None:
            return mask[:, self.entry_unit.to(y.device)]
        return mask[..., None].expand(y.shape)

    def __call__(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mask = self.entry_mask(y)
        diff = (y_hat - y).reshape(y.shape[0], -1)
        if mask is None:
            return diff.pow(2).mean(dim=1)
        mask = mask.reshape(y.shape[0], -1)
        squared = torch.where(mask, diff, torch.zeros_like(diff)).pow(2)
        return squared.sum(dim=1) / mask.sum(dim=1).clamp_min(1)


def check_mask(mask: torch.Tensor, units: int) -> torch.Tensor:
    """A boolean mask [B, units] or [units] with at least one observed unit per row."""
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        if not torch.isin(mask, torch.tensor([0, 1], dtype=mask.dtype)).all():
            raise LandformError("a mask must hold only 0/1 or true/false")
        mask = mask.bool()
    if mask.dim() not in (1, 2) or mask.shape[-1] != units:
        raise LandformError(f"a mask must have {units} entries per observation (one per joint), "
                            f"got shape {tuple(mask.shape)}")
    if not mask.reshape(-1, units).any(dim=1).all():
        raise LandformError("the mask hides every joint of at least one observation")
    return mask


@dataclass
class Observation:
    """One observation model: F (latent -> y), the loss, and how to make y and masks from poses."""

    name: str
    forward: nn.Module
    loss: MaskedMSE
    units: tuple[str, ...]

    def target(self, pose: torch.Tensor) -> torch.Tensor:
        """The noiseless observation of known poses: the same chain without the decoder."""
        return self.forward.observe(pose)

    def mask_from_joints(self, joints: torch.Tensor) -> torch.Tensor:
        """This model's unit mask [B, units] from a mask over the 12 pose ``JOINTS``."""
        joints = torch.as_tensor(joints, dtype=torch.bool)
        if self.name == "pose_params":
            return joints
        return joints[..., keypoint_joint().to(joints.device)]


class ObservedPose(nn.Module):
    """F for one observation model: decoder, then optionally kinematics and camera."""

    def __init__(self, decoder: nn.Module, kind: str, kinematics: Kinematics | None = None,
                 camera: PinholeCamera | None = None) -> None:
        super().__init__()
        if kind not in LOSS_NAMES:
            raise LandformError(f"unknown pose loss {kind!r}; use one of {', '.join(LOSS_NAMES)}")
        self.decoder, self.kind = decoder, kind
        self.kinematics = kinematics if kinematics is not None else Kinematics()
        self.camera = camera if camera is not None else PinholeCamera()

    def observe(self, pose: torch.Tensor) -> torch.Tensor:
        if self.kind == "pose_params":
            return pose
        points = self.kinematics(pose)
        return points if self.kind == "joints_3d" else self.camera(points)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.observe(self.decoder(latent))


def observation(kind: str, decoder: nn.Module, mask: torch.Tensor | None = None) -> Observation:
    """The observation model ``kind`` (one of ``LOSS_NAMES``) around a frozen decoder."""
    forward = ObservedPose(decoder, kind)
    if kind == "pose_params":
        return Observation(kind, forward, MaskedMSE(len(JOINTS), mask, pose_entry_joint()), JOINTS)
    return Observation(kind, forward, MaskedMSE(len(KEYPOINTS), mask), KEYPOINTS)


def observation_shape(kind: str) -> tuple[int, ...]:
    return {"pose_params": (POSE_DIM,), "joints_3d": (len(KEYPOINTS), 3), "keypoints_2d": (len(KEYPOINTS), 2)}[kind]
