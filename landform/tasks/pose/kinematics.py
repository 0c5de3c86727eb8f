"""Differentiable forward kinematics of the DeepMimic humanoid, read from pybullet's humanoid.urdf.

Joint offsets and hinge axes come from the URDF at run time (``xml.etree``); positions are in the root
frame (the root at the origin, unrotated, as the body pose excludes it), y up, x forward, z to the
right, scaled by 0.25 as pybullet_envs loads the model, so units are meters. Besides the joint
frames, three sites per chain end make rotations of the neck, ankles and wrists visible: the head
and feet (their links' centers of mass) and the wrists (the fixed wrist joints).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from landform.errors import LandformError
from landform.tasks.pose.data import HINGES, SPHERICAL, split_pose, urdf_path

SCALE = 0.25
KEYPOINTS = ("chest", "neck", "head", "right_hip", "right_knee", "right_ankle", "right_foot",
             "right_shoulder", "right_elbow", "right_wrist", "left_hip", "left_knee", "left_ankle",
             "left_foot", "left_shoulder", "left_elbow", "left_wrist")
# Which pose joint (in data.JOINTS) each keypoint belongs to, for masks built from body parts.
KEYPOINT_JOINT = {"head": "neck", "right_foot": "right_ankle", "left_foot": "left_ankle",
                  "right_wrist": "right_elbow", "left_wrist": "left_elbow"}
BONES = (("root", "chest"), ("chest", "neck"), ("neck", "head"), ("root", "right_hip"),
         ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("right_ankle", "right_foot"),
         ("chest", "right_shoulder"), ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
         ("root", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
         ("left_ankle", "left_foot"), ("chest", "left_shoulder"), ("left_shoulder", "left_elbow"),
         ("left_elbow", "left_wrist"))


@dataclass
class UrdfJoint:
    name: str
    kind: str
    parent: str
    child: str
    origin: tuple[float, float, float]
    axis: tuple[float, float, float]
    com: tuple[float, float, float]


def _floats(text: str | None, default: str = "0 0 0") -> tuple[float, float, float]:
    values = tuple(float(v) for v in (text or default).split())
    if len(values) != 3:
        raise LandformError(f"expected three numbers in the URDF, got {text!r}")
    return values  # type: ignore[return-value]


def read_urdf(path: str | Path | None = None) -> dict[str, UrdfJoint]:
    """The URDF's joints by name (each joint's child link has the same name in this model)."""
    path = Path(path) if path is not None else urdf_path()
    try:
        root = ET.fromstring(path.read_bytes().rstrip(b"\x00\r\n\t "))  # the wheel's file ends in a NUL
    except (OSError, ET.ParseError) as error:
        raise LandformError(f"cannot read the skeleton {path}: {error}") from None
    coms = {}
    for link in root.iter("link"):
        origin = link.find("inertial/origin")
        coms[link.get("name")] = _floats(origin.get("xyz") if origin is not None else None)
    joints = {}
    for joint in root.iter("joint"):
        origin = joint.find("origin")
        if origin is not None and any(abs(v) > 1e-9 for v in _floats(origin.get("rpy"))):
            raise LandformError(f"joint {joint.get('name')} has a rotated origin, which this model does not expect")
        axis = joint.find("axis")
        child = joint.find("child").get("link")
        joints[joint.get("name")] = UrdfJoint(
            name=joint.get("name"), kind=joint.get("type"), parent=joint.find("parent").get("link"), child=child,
            origin=_floats(origin.get("xyz") if origin is not None else None),
            axis=_floats(axis.get("xyz") if axis is not None else None, "1 0 0"), com=coms.get(child, (0, 0, 0)))
    missing = [j for j in (*SPHERICAL, *HINGES, "right_wrist", "left_wrist") if j not in joints]
    if missing:
        raise LandformError(f"the skeleton {path} lacks joints {missing}")
    return joints


def axis_angle_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [n, 3, 3] about a fixed unit ``axis`` [3] by ``angle`` [n] (Rodrigues)."""
    k = torch.zeros(3, 3, dtype=angle.dtype, device=angle.device)
    k[0, 1], k[0, 2], k[1, 0], k[1, 2], k[2, 0], k[2, 1] = -axis[2], axis[1], axis[2], -axis[0], -axis[1], axis[0]
    eye = torch.eye(3, dtype=angle.dtype, device=angle.device)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return eye + s * k + (1 - c) * (k @ k)


class Kinematics(nn.Module):
    """Pose parameters [B, 76] -> 3D keypoints [B, 17, 3] in meters (see ``KEYPOINTS``).

    Batched over the tree: all local rotations are built at once (hinges by one Rodrigues formula over
    their axes), then the chain is composed one depth level at a time (4 levels), so a call is a few dozen
    tensor operations whatever the number of joints.
    """

    def __init__(self, urdf: str | Path | None = None, scale: float = SCALE) -> None:
        super().__init__()
        joints = read_urdf(urdf)
        order = [j for j in _topological(joints) if j in SPHERICAL or j in HINGES or j.endswith("_wrist")]
        depth = {"root": 0}
        for name in order:
            depth[name] = depth[joints[name].parent] + 1
        self.order = sorted(order, key=lambda j: depth[j])  # stable: topological within a level
        self.parents = {j: joints[j].parent for j in self.order}
        names = ["root", *self.order]
        levels = sorted({depth[j] for j in self.order})
        self.levels = [[i for i, j in enumerate(self.order) if depth[j] == level] for level in levels]
        for level, members in enumerate(self.levels):
            if members != list(range(members[0], members[-1] + 1)):
                raise LandformError("the skeleton's joints of one depth are not contiguous")
            self.register_buffer(f"parent_{level}", torch.tensor([names.index(self.parents[self.order[i]])
                                                                  for i in members]))
            self.register_buffer(f"offset_{level}", torch.tensor([joints[self.order[i]].origin for i in members])
                                 * scale)
        # Local rotations: spherical joints from the pose, hinges from their angles, the rest fixed (identity).
        self.register_buffer("spherical_slot", torch.tensor([SPHERICAL.index(j) if j in SPHERICAL else -1
                                                             for j in self.order]))
        axes = torch.tensor([joints[j].axis for j in HINGES])
        axes = axes / axes.norm(dim=1, keepdim=True)
        skew = torch.zeros(len(HINGES), 3, 3)
        skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -axes[:, 2], axes[:, 1], -axes[:, 0]
        skew = skew - skew.transpose(1, 2)
        self.register_buffer("hinge_skew", skew)
        self.register_buffer("hinge_skew2", skew @ skew)
        kinds = [0 if j in SPHERICAL else 1 if j in HINGES else 2 for j in self.order]
        source = [*range(len(SPHERICAL)), *range(len(SPHERICAL), len(SPHERICAL) + len(HINGES))]
        slots = [source[SPHERICAL.index(j)] if k == 0 else source[len(SPHERICAL) + HINGES.index(j)] if k == 1
                 else len(SPHERICAL) + len(HINGES) for j, k in zip(self.order, kinds, strict=True)]
        self.register_buffer("local_slot", torch.tensor(slots))
        # Keypoints: a joint frame's origin, or a site (a link's center of mass) in a joint's frame.
        sites = {"head": "neck", "right_foot": "right_ankle", "left_foot": "left_ankle"}
        self.register_buffer("site_joint", torch.tensor([1 + self.order.index(sites[k]) for k in sites]))
        self.register_buffer("site_offset", torch.tensor([joints[sites[k]].com for k in sites]) * scale)
        point_names = [*names, *sites]
        self.register_buffer("keypoint_index", torch.tensor([point_names.index(k) for k in KEYPOINTS]))

    def _local(self, pose: torch.Tensor) -> torch.Tensor:
        """Local rotation of every joint in ``self.order``: [B, J, 3, 3]."""
        rotations, hinges = split_pose(pose)
        angle = hinges[..., None, None]
        bent = (torch.eye(3, dtype=pose.dtype, device=pose.device) + torch.sin(angle) * self.hinge_skew.to(pose.dtype)
                + (1 - torch.cos(angle)) * self.hinge_skew2.to(pose.dtype))
        fixed = torch.eye(3, dtype=pose.dtype, device=pose.device).expand(pose.shape[0], 1, 3, 3)
        return torch.cat([rotations, bent, fixed], dim=1)[:, self.local_slot]

    def world(self, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World (root-frame) rotations [B, 1 + J, 3, 3] and positions [B, 1 + J, 3] of the root and
        every joint frame in ``self.order``."""
        local = self._local(pose)
        n = pose.shape[0]
        rotation = torch.eye(3, dtype=pose.dtype, device=pose.device).expand(n, 1, 3, 3)
        position = torch.zeros(n, 1, 3, dtype=pose.dtype, device=pose.device)
        for level, members in enumerate(self.levels):
            parent = getattr(self, f"parent_{level}")
            parent_r = rotation[:, parent]
            offset = getattr(self, f"offset_{level}").to(pose.dtype)
            t = position[:, parent] + (parent_r @ offset[:, :, None])[..., 0]
            r = parent_r @ local[:, members[0]:members[-1] + 1]
            rotation = torch.cat([rotation, r], dim=1)
            position = torch.cat([position, t], dim=1)
        return rotation, position

    def frames(self, pose: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """World (root-frame) rotation and position of every joint frame, by joint name."""
        rotation, position = self.world(pose)
        return {name: (rotation[:, i], position[:, i]) for i, name in enumerate(["root", *self.order])}

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        rotation, position = self.world(pose)
        sites = position[:, self.site_joint] + (rotation[:, self.site_joint]
                                                @ self.site_offset.to(pose.dtype)[:, :, None])[..., 0]
        return torch.cat([position, sites], dim=1)[:, self.keypoint_index]


def _topological(joints: dict[str, UrdfJoint]) -> list[str]:
    """Joint names ordered so that every parent comes before its children."""
    ordered, placed = [], {"base", "root"}
    pending = [j for j in joints.values() if j.child not in placed]
    while pending:
        ready = [j for j in pending if j.parent in placed]
        if not ready:
            raise LandformError("the skeleton's joints do not form a tree rooted at 'root'")
        for joint in ready:
            ordered.append(joint.name)
            placed.add(joint.child)
        pending = [j for j in pending if j.child not in placed]
    return ordered


class PinholeCamera(nn.Module):
    """A fixed pinhole camera looking at the root: 3D points [B, K, 3] -> normalized image points [B, K, 2].

    Placed ``distance`` meters from the root, turned ``yaw`` degrees about the vertical from straight
    in front of the body and looking ``pitch`` degrees down; ``focal`` in units of the image width.
    """

    def __init__(self, *, distance: float = 4.0, yaw: float = 30.0, pitch: float = 10.0, focal: float = 2.0) -> None:
        super().__init__()
        a, b = math.radians(yaw), math.radians(pitch)
        forward = torch.tensor([-math.cos(a) * math.cos(b), -math.sin(b), -math.sin(a) * math.cos(b)])
        center = -forward * distance
        up = torch.tensor([0.0, 1.0, 0.0])
        right = torch.linalg.cross(forward, up)
        right = right / right.norm()
        true_up = torch.linalg.cross(right, forward)
        self.register_buffer("rotation", torch.stack([right, true_up, forward]))  # camera axes as rows
        self.register_buffer("center", center)
        self.focal = float(focal)
        self.settings = {"distance": distance, "yaw": yaw, "pitch": pitch, "focal": focal}

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        camera = (points - self.center.to(points.dtype)) @ self.rotation.to(points.dtype).T
        depth = camera[..., 2:].clamp_min(1e-3)
        return self.focal * camera[..., :2] / depth
