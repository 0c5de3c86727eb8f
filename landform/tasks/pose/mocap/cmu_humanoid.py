"""dm_control's CMU humanoid clips from ``envpool-assets==0.4.1`` (``mocap_2019.bin``, ``mocap_2020.bin``).

The ``EPMOCAP1`` format (little-endian): the 8-byte magic ``EPMOCAP1``, a uint32 clip count, then per clip
a uint32-length-prefixed UTF-8 id, a uint32 frame count, a float64 time step, a uint32 field count and per
field a uint32-length-prefixed name, a uint32 width and ``frames x width`` float32 values. The fields used
here are ``body_positions`` [n, 31 x 3] and ``body_quaternions`` [n, 31 x 4] (w, x, y, z): the world pose
of the 31 bodies of the humanoid's MJCF (``humanoid_CMU_V2019.xml`` / ``_V2020.xml``) in document order,
z up. Retargeting takes each body's rotation relative to its rest orientation (the MJCF's ``quat``
attributes composed from the root) and the joints' positions, both in the root's frame
(``cmu_skeleton``).
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import torch

from landform.errors import LandformError
from landform.tasks.pose.mocap import cmu_skeleton
from landform.tasks.pose.mocap.retarget import (
    quaternion_to_matrix,
    segment_orientations,
    to_frames,
    world_to_joints,
)

MAGIC = b"EPMOCAP1"
# MuJoCo's world (z up) -> DeepMimic's world (y up): x stays, y becomes -z, z becomes y.
WORLD_TO_DEEPMIMIC = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=torch.float64)


@dataclass
class MocapClip:
    """One clip of an EPMOCAP1 file: its id, time step (seconds) and fields [frames, width] (float32)."""

    id: str
    dt: float
    fields: dict[str, torch.Tensor]

    @property
    def frames(self) -> int:
        return next(iter(self.fields.values())).shape[0] if self.fields else 0


def read_epmocap(path: str | Path) -> list[MocapClip]:
    """Every clip of an EPMOCAP1 file, checked for truncation and finite values."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LandformError(f"cannot read {path}: {error}") from None
    if data[:8] != MAGIC:
        raise LandformError(f"{path} is not an EPMOCAP1 file (magic {data[:8]!r})")
    offset = 8

    def take(fmt: str):
        nonlocal offset
        size = struct.calcsize(fmt)
        if offset + size > len(data):
            raise LandformError(f"{path} ends early, at byte {offset}")
        values = struct.unpack_from(fmt, data, offset)
        offset += size
        return values[0]

    def text() -> str:
        nonlocal offset
        length = take("<I")
        if offset + length > len(data):
            raise LandformError(f"{path} ends early, at byte {offset}")
        value = data[offset:offset + length].decode("utf-8")
        offset += length
        return value

    clips = []
    for _ in range(take("<I")):
        clip_id, frames, dt = text(), take("<I"), take("<d")
        fields = {}
        for _ in range(take("<I")):
            name, width = text(), take("<I")
            count = frames * width
            if offset + 4 * count > len(data):
                raise LandformError(f"{path} ends early in field {name} of clip {clip_id}")
            values = torch.frombuffer(bytearray(data[offset:offset + 4 * count]), dtype=torch.float32)
            offset += 4 * count
            fields[name] = values.reshape(frames, width)
            if not torch.isfinite(fields[name]).all():
                raise LandformError(f"field {name} of clip {clip_id} in {path} is not finite")
        clips.append(MocapClip(id=clip_id, dt=dt, fields=fields))
    if offset != len(data):
        raise LandformError(f"{path} has {len(data) - offset} bytes after its last clip")
    return clips


@dataclass
class RestSkeleton:
    """A MJCF body tree at rest: body names in document order, each body's parent, its position in its parent's
    frame and its rest orientation relative to the root (float64)."""

    names: list[str]
    parent: dict[str, str | None]
    offset: dict[str, torch.Tensor]
    rest_rotation: dict[str, torch.Tensor]


def _numbers(text: str | None, default: list[float]) -> torch.Tensor:
    return torch.tensor([float(v) for v in text.split()] if text else default, dtype=torch.float64)


def read_mjcf_skeleton(path: str | Path) -> RestSkeleton:
    """The body tree of a MuJoCo model below its first body (the root), with rest orientations in the root's frame."""
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as error:
        raise LandformError(f"cannot read the skeleton {path}: {error}") from None
    root = tree.getroot().find("worldbody/body")
    if root is None:
        raise LandformError(f"{path} has no body under worldbody")
    names, parent, offset, rotation = [], {}, {}, {}

    def visit(body: ET.Element, up: str | None) -> None:
        name = body.get("name")
        names.append(name)
        parent[name] = up
        offset[name] = _numbers(body.get("pos"), [0, 0, 0])
        local = quaternion_to_matrix(_numbers(body.get("quat"), [1, 0, 0, 0]))
        rotation[name] = torch.eye(3, dtype=torch.float64) if up is None else rotation[up] @ local
        for child in body.findall("body"):
            visit(child, name)

    visit(root, None)
    return RestSkeleton(names=names, parent=parent, offset=offset, rest_rotation=rotation)


def data_bodies(skeleton: RestSkeleton) -> list[str]:
    """The bodies of a clip's ``body_positions`` / ``body_quaternions``, in order: the MJCF's bodies but the root
    (the first, ``lhipjoint``, is fixed at the root's place and orientation), with one more body after ``head``
    (rigid with the head, not in the MJCF file: ``EXTRA``). Found by checking every parent-child offset
    (``body_poses``)."""
    names = skeleton.names[1:]
    if "head" not in names:
        raise LandformError("the CMU skeleton has no head")
    at = names.index("head") + 1
    return [*names[:at], EXTRA, *names[at:]]


EXTRA = "(head site)"
OFFSET_TOLERANCE = 5e-3  # meters; the fingers are 2.2 mm off their MJCF offsets, every other body < 0.1 mm


def body_poses(clip: MocapClip,
               skeleton: RestSkeleton) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
    """World rotations [n, 3, 3] and positions [n, 3] by body name (float64), and the skeleton's scale in the clip
    (1.2 for the 2020 clips, 1 for 2019's), checked: each body's position relative to its parent, in its
    parent's frame, must be its MJCF offset times that scale."""
    names = data_bodies(skeleton)
    bodies = len(names)
    try:
        positions = clip.fields["body_positions"].double().reshape(clip.frames, bodies, 3)
        rotations = quaternion_to_matrix(clip.fields["body_quaternions"].double().reshape(clip.frames, bodies, 4))
    except (KeyError, RuntimeError):
        raise LandformError(f"clip {clip.id} lacks body poses for {bodies} bodies") from None
    rotation = {name: rotations[:, i] for i, name in enumerate(names)}
    position = {name: positions[:, i] for i, name in enumerate(names)}
    rotation["root"], position["root"] = rotation[names[0]], position[names[0]]
    local, offsets = [], []
    for name in names:
        up = skeleton.parent.get(name)
        if up is None:
            continue
        offset = (rotation[up].transpose(-1, -2) @ (position[name] - position[up])[..., None])[..., 0]
        local.append(offset)
        offsets.append(skeleton.offset[name].expand_as(offset))
    local, offsets = torch.cat(local), torch.cat(offsets)
    scale = float((local * offsets).sum() / (offsets * offsets).sum())
    worst = float((local - scale * offsets).norm(dim=-1).max())
    if worst > OFFSET_TOLERANCE:
        raise LandformError(f"clip {clip.id} does not match its skeleton (a body is {worst:.4f} m off its parent)")
    return rotation, position, scale


def root_frame(clip: MocapClip, skeleton: RestSkeleton) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per CMU body, (rotation relative to rest, joint position), both in the root's frame and DeepMimic axes."""
    rotation, position, _ = body_poses(clip, skeleton)
    root_t = rotation["root"].transpose(-1, -2)
    axes = cmu_skeleton.TO_DEEPMIMIC
    relative, joint = {}, {}
    for name in skeleton.names:
        relative[name] = axes @ root_t @ rotation[name] @ skeleton.rest_rotation[name].T @ axes.T
        joint[name] = (axes @ (root_t @ (position[name] - position["root"])[..., None]))[..., 0]
    return relative, joint


def to_deepmimic(clip: MocapClip, skeleton: RestSkeleton) -> torch.Tensor:
    """Raw DeepMimic frames [n, 44] of a CMU humanoid clip (root position and rotation in a y-up world)."""
    relative, joint = root_frame(clip, skeleton)
    world = segment_orientations(relative, joint, cmu_skeleton.SEGMENTS)
    rotations, hinges = world_to_joints(world)
    rotation, position, _ = body_poses(clip, skeleton)
    return to_frames(rotations, hinges, dt=clip.dt, root_position=position["root"] @ WORLD_TO_DEEPMIMIC.T,
                     root_rotation=WORLD_TO_DEEPMIMIC @ rotation["root"] @ cmu_skeleton.TO_DEEPMIMIC.T)
