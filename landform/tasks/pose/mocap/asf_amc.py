"""Acclaim ASF/AMC motion capture (the CMU format): a parser, forward kinematics and retargeting.

The ASF file gives each bone's rest ``direction`` (a unit vector in the world at rest; every bone's rest
orientation is the world's), ``length``, ``axis`` (Euler angles, in the order named, of the frame its
degrees of freedom turn about) and ``dof``; ``:hierarchy`` its parent. An AMC file gives, per frame, each
moving bone's values in its ``dof`` order (the root's in its ``order``: translations and rotations).
Forward kinematics (Acclaim's convention): a bone's world rotation is parent · C · M · C⁻¹ with C the
rotation of its ``axis`` and M its motion, each Euler rotation applied in the order listed (x first in
"rx ry rz": M = Rz Ry Rx); it starts where its parent ends and ends ``length`` along its rotated
direction. Retargeting (``to_deepmimic``) uses the CMU skeleton's segments (``cmu_skeleton``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from landform.errors import LandformError
from landform.tasks.pose.mocap import cmu_skeleton
from landform.tasks.pose.mocap.retarget import segment_orientations, to_frames, world_to_joints

INCH = 0.0254
CMU_FPS = 120.0  # the CMU database's capture rate; AMC files do not state theirs
# ASF/CMU world (y up, x the subject's left at rest, z forward) -> DeepMimic's world (y up, z right).
WORLD_TO_DEEPMIMIC = cmu_skeleton.TO_DEEPMIMIC


@dataclass
class Bone:
    name: str
    direction: torch.Tensor  # [3], unit, world at rest
    length: float
    axis: torch.Tensor  # [3] degrees
    axis_order: str  # e.g. "xyz": the order the axis angles apply in
    dofs: list[str] = field(default_factory=list)  # e.g. ["rx", "ry", "rz"]


@dataclass
class AsfSkeleton:
    """A parsed ASF file: bones by name, each bone's parent ("root" for the root's children), the root's
    channel order and rest placement, and the length unit in meters."""

    bones: dict[str, Bone]
    parent: dict[str, str]
    root_order: list[str]
    root_axis_order: str
    root_position: torch.Tensor
    root_orientation: torch.Tensor
    meters_per_unit: float
    degrees: bool = True

    def ordered(self) -> list[str]:
        """Bone names with every parent before its children."""
        placed, order = {"root"}, []
        pending = list(self.bones)
        while pending:
            ready = [b for b in pending if self.parent[b] in placed]
            if not ready:
                raise LandformError("the ASF hierarchy does not form a tree under the root")
            order += ready
            placed.update(ready)
            pending = [b for b in pending if b not in placed]
        return order


def _tokens(line: str) -> list[str]:
    return line.replace("(", " ").replace(")", " ").split()


def read_asf(path: str | Path) -> AsfSkeleton:
    """Parse an ASF skeleton file (sections ``:units``, ``:root``, ``:bonedata``, ``:hierarchy``)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as error:
        raise LandformError(f"cannot read {path}: {error}") from None
    section, bones, parent, current = None, {}, {}, None
    units = {"length": 1.0, "angle": "deg"}
    root = {"order": ["tx", "ty", "tz", "rx", "ry", "rz"], "axis": "xyz", "position": [0.0] * 3,
            "orientation": [0.0] * 3}
    try:
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith(":"):
                words = line[1:].split()
                section = words[0].lower()
                continue
            words = _tokens(line)
            key = words[0].lower()
            if section == "units" and key in units:
                units[key] = float(words[1]) if key == "length" else words[1].lower()
            elif section == "root":
                if key == "order":
                    root["order"] = [w.lower() for w in words[1:]]
                elif key == "axis":
                    root["axis"] = words[1].lower()
                elif key in ("position", "orientation"):
                    root[key] = [float(v) for v in words[1:4]]
            elif section == "bonedata":
                if key == "begin":
                    current = {"dofs": []}
                elif key == "end":
                    bone = Bone(name=current["name"], direction=_unit(current["direction"]), length=current["length"],
                                axis=torch.tensor(current["axis"][:3], dtype=torch.float64),
                                axis_order=current["axis"][3].lower(), dofs=current["dofs"])
                    bones[bone.name] = bone
                    current = None
                elif key == "name":
                    current["name"] = words[1]
                elif key == "direction":
                    current["direction"] = [float(v) for v in words[1:4]]
                elif key == "length":
                    current["length"] = float(words[1])
                elif key == "axis":
                    current["axis"] = [float(v) for v in words[1:4]] + [words[4] if len(words) > 4 else "XYZ"]
                elif key == "dof":
                    current["dofs"] = [w.lower() for w in words[1:]]
            elif section == "hierarchy" and key not in ("begin", "end"):
                for child in words[1:]:
                    parent[child] = words[0]
    except (IndexError, KeyError, ValueError, TypeError) as error:
        raise LandformError(f"cannot parse the ASF file {path}: {error!r}") from None
    missing = [b for b in bones if b not in parent]
    if not bones or missing:
        raise LandformError(f"the ASF file {path} has no bones or bones outside its hierarchy: {missing}")
    return AsfSkeleton(bones=bones, parent=parent, root_order=root["order"], root_axis_order=root["axis"],
                       root_position=torch.tensor(root["position"], dtype=torch.float64),
                       root_orientation=torch.tensor(root["orientation"], dtype=torch.float64),
                       meters_per_unit=INCH / units["length"], degrees=units["angle"].startswith("deg"))


def _unit(values: list[float]) -> torch.Tensor:
    vector = torch.tensor(values, dtype=torch.float64)
    norm = vector.norm()
    return vector / norm if norm > 0 else vector


def read_amc(path: str | Path, skeleton: AsfSkeleton) -> dict[str, torch.Tensor]:
    """Per moving bone (and ``root``), its channel values [frames, channels] from an AMC file (float64)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as error:
        raise LandformError(f"cannot read {path}: {error}") from None
    frames: list[dict[str, list[float]]] = []
    try:
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith(("#", ":")):
                continue
            words = line.split()
            if len(words) == 1 and words[0].isdigit():
                frames.append({})
            elif frames:
                frames[-1][words[0]] = [float(v) for v in words[1:]]
    except ValueError as error:
        raise LandformError(f"cannot parse the AMC file {path}: {error}") from None
    if not frames:
        raise LandformError(f"the AMC file {path} has no frames")
    channels = {"root": len(skeleton.root_order), **{b.name: len(b.dofs) for b in skeleton.bones.values() if b.dofs}}
    motion = {}
    for name, width in channels.items():
        rows = [frame.get(name, [0.0] * width) for frame in frames]
        if any(len(row) != width for row in rows):
            raise LandformError(f"the AMC file {path} gives {name} a number of values other than {width}")
        motion[name] = torch.tensor(rows, dtype=torch.float64)
    return motion


def elementary(axis: str, angle: torch.Tensor) -> torch.Tensor:
    """Rotations [n, 3, 3] about the x, y or z axis by ``angle`` [n] radians."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {"x": [one, zero, zero, zero, c, -s, zero, s, c],
            "y": [c, zero, s, zero, one, zero, -s, zero, c],
            "z": [c, -s, zero, s, c, zero, zero, zero, one]}[axis]
    return torch.stack(rows, -1).reshape(*angle.shape, 3, 3)


def euler(angles: torch.Tensor, order: str) -> torch.Tensor:
    """Rotations [n, 3, 3] of Euler angles [n, k] (radians) applied in ``order`` (e.g. "xyz": x first)."""
    rotation = torch.eye(3, dtype=angles.dtype).expand(angles.shape[0], 3, 3)
    for i, axis in enumerate(order):
        rotation = elementary(axis, angles[:, i]) @ rotation
    return rotation


@dataclass
class Posed:
    """Forward kinematics of a clip: root rotation [n, 3, 3] and position [n, 3]; per bone its world rotation
    [n, 3, 3] (relative to its rest, the world's) and start and end positions [n, 3] (meters)."""

    root_rotation: torch.Tensor
    root_position: torch.Tensor
    rotation: dict[str, torch.Tensor]
    start: dict[str, torch.Tensor]
    end: dict[str, torch.Tensor]


def forward_kinematics(skeleton: AsfSkeleton, motion: dict[str, torch.Tensor]) -> Posed:
    """World rotations and joint positions of every bone of every frame (see the module's docstring)."""
    radians = torch.pi / 180 if skeleton.degrees else 1.0
    root = motion["root"]
    n = root.shape[0]
    rotations = [c for c in skeleton.root_order if c.startswith("r")]
    translations = [c for c in skeleton.root_order if c.startswith("t")]
    root_c = euler(skeleton.root_orientation[None] * radians, skeleton.root_axis_order)[0]
    root_m = euler(torch.stack([root[:, skeleton.root_order.index(c)] for c in rotations], 1) * radians,
                   "".join(c[1] for c in rotations))
    root_rotation = root_c @ root_m @ root_c.T
    offset = torch.zeros(n, 3, dtype=torch.float64)
    for c in translations:
        offset[:, "xyz".index(c[1])] = root[:, skeleton.root_order.index(c)]
    root_position = (skeleton.root_position + offset) * skeleton.meters_per_unit
    rotation, start, end = {"root": root_rotation}, {}, {"root": root_position}
    for name in skeleton.ordered():
        bone = skeleton.bones[name]
        up = skeleton.parent[name]
        c = euler(bone.axis[None] * radians, bone.axis_order)[0]
        if bone.dofs:
            values = motion.get(name, torch.zeros(n, len(bone.dofs), dtype=torch.float64)) * radians
            moving = [i for i, d in enumerate(bone.dofs) if d.startswith("r")]
            m = euler(values[:, moving], "".join(bone.dofs[i][1] for i in moving))
        else:
            m = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
        rotation[name] = rotation[up] @ c @ m @ c.T
        start[name] = end[up]
        end[name] = start[name] + (rotation[name] @ bone.direction)[..., :] * bone.length * skeleton.meters_per_unit
    del rotation["root"]
    return Posed(root_rotation=root_rotation, root_position=root_position, rotation=rotation, start=start, end=end)


def rest_positions(skeleton: AsfSkeleton) -> dict[str, torch.Tensor]:
    """Each bone's start at rest (meters, the root at the origin), in the ASF's axes."""
    position, rest = {"root": torch.zeros(3, dtype=torch.float64)}, {}
    for name in skeleton.ordered():
        bone = skeleton.bones[name]
        rest[name] = position[skeleton.parent[name]]
        position[name] = rest[name] + bone.direction * bone.length * skeleton.meters_per_unit
    rest["root"] = torch.zeros(3, dtype=torch.float64)
    return rest


def root_frame(skeleton: AsfSkeleton, posed: Posed) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per bone, (rotation relative to rest, start position), both in the root's frame and DeepMimic axes."""
    axes = cmu_skeleton.TO_DEEPMIMIC
    root_t = posed.root_rotation.transpose(-1, -2)
    relative = {name: axes @ root_t @ r @ axes.T for name, r in posed.rotation.items()}
    joints = {name: (axes @ root_t @ (p - posed.root_position)[..., None])[..., 0] for name, p in posed.start.items()}
    joints["root"] = torch.zeros_like(posed.root_position)
    return relative, joints


def to_deepmimic(skeleton: AsfSkeleton, motion: dict[str, torch.Tensor], fps: float = CMU_FPS) -> torch.Tensor:
    """Raw DeepMimic frames [n, 44] of an ASF/AMC clip (root position and rotation in DeepMimic's y-up world)."""
    posed = forward_kinematics(skeleton, motion)
    relative, joints = root_frame(skeleton, posed)
    world = segment_orientations(relative, joints, cmu_skeleton.SEGMENTS)
    rotations, hinges = world_to_joints(world)
    axes = WORLD_TO_DEEPMIMIC
    return to_frames(rotations, hinges, dt=1.0 / fps, root_position=posed.root_position @ axes.T,
                     root_rotation=axes @ posed.root_rotation @ axes.T)
