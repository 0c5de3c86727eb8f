"""Retargeting to the DeepMimic humanoid: from segment orientations to the pose task's raw frames.

Every source is brought to one intermediate: the orientation of each of the humanoid's 12 posed segments
in the root's frame (DeepMimic axes: x forward, y up, z to the right), ``world`` rotations [n, 3, 3] by
pose joint name (``data.JOINTS``; the segment a joint turns: the chest joint turns the chest, the right
knee the right shin). ``world_to_joints`` turns them into the frame's local joint rotations, fitting each
hinge (knees, elbows) with the angle about its axis closest to the source's relative rotation and
carrying the fitted hinge into its child, so the foot keeps the source's orientation. ``to_frames``
writes the DeepMimic frame layout [n, 44] that ``data.frames_to_pose`` reads.

For a skeleton whose rest pose differs from DeepMimic's (the CMU skeleton stands in a T-pose),
``segment_orientations`` takes each source bone's rotation relative to its rest and turns the DeepMimic
segment so that its bone points where the source bone points (see its docstring).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from landform.tasks.pose.data import FRAME_COLUMNS, FRAME_WIDTH, HINGES, JOINTS, SPHERICAL

# The parent segment of each pose joint's segment ("root": the pelvis, the identity in the root's frame).
PARENT = {"chest": "root", "neck": "chest", "right_hip": "root", "right_knee": "right_hip",
          "right_ankle": "right_knee", "right_shoulder": "chest", "right_elbow": "right_shoulder",
          "left_hip": "root", "left_knee": "left_hip", "left_ankle": "left_knee", "left_shoulder": "chest",
          "left_elbow": "left_shoulder"}
# Each segment's bone: from its joint to this keypoint of ``kinematics.KEYPOINTS`` (the head and feet are
# sites: the centers of mass of the neck and ankle links).
BONE_END = {"chest": "neck", "neck": "head", "right_hip": "right_knee", "right_knee": "right_ankle",
            "right_ankle": "right_foot", "right_shoulder": "right_elbow", "right_elbow": "right_wrist",
            "left_hip": "left_knee", "left_knee": "left_ankle", "left_ankle": "left_foot",
            "left_shoulder": "left_elbow", "left_elbow": "left_wrist"}
ORDER = ("chest", "neck", "right_shoulder", "right_elbow", "left_shoulder", "left_elbow",
         "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle")  # parents first


def basis(rows: list[list[float]]) -> torch.Tensor:
    """A change of axes (a proper rotation, float64) given by its rows: DeepMimic axis i = row i · source axes."""
    matrix = torch.tensor(rows, dtype=torch.float64)
    if not torch.allclose(matrix @ matrix.T, torch.eye(3, dtype=torch.float64)) or torch.det(matrix) < 0:
        raise ValueError("a change of axes must be a proper rotation")
    return matrix


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of quaternions (w, x, y, z), normalized first."""
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) with w >= 0 of rotation matrices [..., 3, 3] (stable on every branch)."""
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    candidates = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0],
                     m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22,
                     m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 - m00 - m11 + m22], -1)], -2)  # row k is 4 q_k q (unnormalized), best where q_k is large
    best = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22],
                       -1).argmax(-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smallest rotations [..., 3, 3] taking directions ``a`` onto directions ``b`` (any lengths)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    a, b = torch.broadcast_tensors(a, b)
    axis = torch.linalg.cross(a, b, dim=-1)
    sin, cos = axis.norm(dim=-1), (a * b).sum(-1)
    # Opposite directions: turn by pi about any axis normal to a.
    helper = torch.where((a[..., :1].abs() < 0.9), torch.tensor([1.0, 0, 0], dtype=a.dtype),
                         torch.tensor([0, 1.0, 0], dtype=a.dtype))
    normal = torch.linalg.cross(a, helper, dim=-1)
    axis = torch.where((sin < 1e-9)[..., None] & (cos < 0)[..., None], normal, axis)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    angle = torch.atan2(sin, cos)
    return axis_rotation(axis, angle)


def axis_rotation(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotations [..., 3, 3] about unit axes [..., 3] by angles [...] (Rodrigues)."""
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*axis.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis.dtype).expand_as(k)
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    return eye + s * k + (1 - c) * (k @ k)


def hinge_angle(relative: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """The angle [...] about unit ``axis`` [3] whose rotation is closest (Frobenius) to ``relative`` [..., 3, 3]."""
    r = relative
    vee = torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    along = (axis @ r @ axis) if r.dim() == 2 else torch.einsum("i,...ij,j->...", axis, r, axis)
    trace = r.diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.atan2(vee @ axis, trace - along)


@dataclass(frozen=True)
class Skeleton:
    """The DeepMimic humanoid at rest (root frame, meters): hinge axes, joint and site positions."""

    hinge_axis: dict[str, torch.Tensor]
    rest: dict[str, torch.Tensor]  # keypoint name -> position [3]

    def bone(self, joint: str) -> torch.Tensor:
        """The rest direction of the segment ``joint`` turns (unit vector [3])."""
        vector = self.rest[BONE_END[joint]] - self.rest[joint]
        return vector / vector.norm()


@functools.lru_cache(maxsize=1)
def deepmimic_skeleton() -> Skeleton:
    """The DeepMimic humanoid's rest pose and hinge axes, from pybullet's URDF (``kinematics.Kinematics``)."""
    from landform.tasks.pose.kinematics import KEYPOINTS, Kinematics, read_urdf

    kinematics = Kinematics().double()
    rest_pose = torch.cat([torch.eye(3, dtype=torch.float64).repeat(len(SPHERICAL), 1, 1).reshape(1, -1),
                           torch.zeros(1, len(HINGES), dtype=torch.float64)], 1)
    points = kinematics(rest_pose)[0]
    urdf = read_urdf()
    axes = {}
    for hinge in HINGES:
        axis = torch.tensor(urdf[hinge].axis, dtype=torch.float64)
        axes[hinge] = axis / axis.norm()
    return Skeleton(hinge_axis=axes, rest=dict(zip(KEYPOINTS, points, strict=True)))


def world_to_joints(world: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(local rotations [n, 8, 3, 3] of ``data.SPHERICAL``, hinge angles [n, 4] of ``data.HINGES``) from segment
    orientations in the root's frame. A hinge takes the angle that best matches its segment's rotation relative
    to its parent; its children are then posed relative to the fitted hinge."""
    skeleton = deepmimic_skeleton()
    some = next(iter(world.values()))
    placed = {"root": torch.eye(3, dtype=some.dtype).expand_as(some)}
    local, angles = {}, {}
    for joint in ORDER:
        relative = placed[PARENT[joint]].transpose(-1, -2) @ world[joint]
        if joint in HINGES:
            axis = skeleton.hinge_axis[joint].to(some.dtype)
            angles[joint] = hinge_angle(relative, axis)
            placed[joint] = placed[PARENT[joint]] @ axis_rotation(axis.expand(*angles[joint].shape, 3), angles[joint])
        else:
            local[joint] = relative
            placed[joint] = world[joint]
    return (torch.stack([local[j] for j in SPHERICAL], 1), torch.stack([angles[j] for j in HINGES], 1))


def to_frames(rotations: torch.Tensor, hinges: torch.Tensor, *, dt: float, root_position: torch.Tensor | None = None,
              root_rotation: torch.Tensor | None = None) -> torch.Tensor:
    """Raw DeepMimic frames [n, 44] (float64): duration ``dt``, root position and rotation (zero and the
    identity where not given), then each joint's quaternion (w, x, y, z) or hinge angle."""
    n = rotations.shape[0]
    frames = torch.zeros(n, FRAME_WIDTH, dtype=torch.float64)
    frames[:, 0] = dt
    if root_position is not None:
        frames[:, 1:4] = root_position
    frames[:, 4:8] = (matrix_to_quaternion(root_rotation) if root_rotation is not None
                      else torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))
    quaternions = matrix_to_quaternion(rotations)
    for i, joint in enumerate(SPHERICAL):
        frames[:, FRAME_COLUMNS[joint]:FRAME_COLUMNS[joint] + 4] = quaternions[:, i]
    for i, joint in enumerate(HINGES):
        frames[:, FRAME_COLUMNS[joint]] = hinges[:, i]
    return frames


@dataclass(frozen=True)
class SegmentSource:
    """Where a DeepMimic segment's orientation comes from in a source skeleton: the source body whose rotation
    it follows (``twist``), and the source joints its bone runs between (``start`` to ``end``); ``align``
    turns it so that its bone points along the source's (False: the source rotation as it is, for the feet,
    whose rest orientation already matches while their 'bones' are not comparable)."""

    twist: str
    start: str
    end: str
    align: bool = True


def segment_orientations(relative: dict[str, torch.Tensor], positions: dict[str, torch.Tensor],
                         segments: dict[str, SegmentSource]) -> dict[str, torch.Tensor]:
    """DeepMimic segment orientations [n, 3, 3] from a source skeleton with another rest pose.

    ``relative``: each source body's rotation relative to its rest orientation, in the root's frame;
    ``positions``: its joint's position in the root's frame [n, 3]; both in DeepMimic axes. A segment turns as
    its ``twist`` body turns from rest, then by the smallest rotation taking its bone onto the source's posed
    bone. For a rigid source bone this is the same as first aligning the two rest bones by their smallest
    rotation (conjugating that rotation by the source's turn), so a source resting in a T-pose (the CMU arms
    stand out sideways at rest, DeepMimic's hang down) keeps the source's twist; where the source bone spans
    several bodies (the CMU spine: three), it follows the ``twist`` body about the bone and the whole span's
    direction. Each hinge's parent is then turned about its own bone so the hinge can follow the source
    (``twist_into_hinge_plane``).
    """
    skeleton = deepmimic_skeleton()
    world = {}
    for joint in JOINTS:
        spec = segments[joint]
        turn = relative[spec.twist]
        if not spec.align:
            world[joint] = turn
            continue
        bone = skeleton.bone(joint).to(turn.dtype)
        posed_bone = positions[spec.end] - positions[spec.start]
        world[joint] = rotation_between(turn @ bone, posed_bone) @ turn
    for hinge in HINGES:
        spec = segments[hinge]
        world[PARENT[hinge]] = twist_into_hinge_plane(world[PARENT[hinge]], skeleton.bone(PARENT[hinge]),
                                                      skeleton.hinge_axis[hinge],
                                                      positions[spec.end] - positions[spec.start])
    return world


def twist_into_hinge_plane(upper: torch.Tensor, bone: torch.Tensor, axis: torch.Tensor, lower: torch.Tensor,
                           straight_degrees: float = 15.0) -> torch.Tensor:
    """Turn the segments ``upper`` [n, 3, 3] about their own bone (``bone`` [3] in their frame) by the smallest
    angle that puts the source's lower bone ``lower`` [n, 3] in the plane their hinge (``axis`` [3], in their
    frame) sweeps, so the hinge alone can point the lower segment where the source's points (the CMU elbow's
    axis is not DeepMimic's after the rest alignment: 12-16 degrees of forearm error without this). The turn
    fades out as the limb straightens (below ``straight_degrees`` of bend), where the plane is undefined."""
    bone_world = upper @ bone.to(upper.dtype)
    hinge_world = upper @ axis.to(upper.dtype)
    lower = lower / lower.norm(dim=-1, keepdim=True)
    across = torch.linalg.cross(bone_world, hinge_world, dim=-1)
    angle = torch.atan2(-(hinge_world * lower).sum(-1), (across * lower).sum(-1))
    angle = torch.remainder(angle + torch.pi / 2, torch.pi) - torch.pi / 2  # the smaller of the two solutions
    bend = torch.linalg.cross(bone_world, lower, dim=-1).norm(dim=-1)
    angle = angle * (bend / torch.sin(torch.tensor(straight_degrees, dtype=upper.dtype).deg2rad())).clamp(max=1)
    return axis_rotation(bone_world, angle) @ upper


def joint_positions(rotations: torch.Tensor, hinges: torch.Tensor) -> dict[str, torch.Tensor]:
    """The DeepMimic humanoid's keypoints [n, 3] (root frame, meters) of retargeted joints, by keypoint name."""
    from landform.tasks.pose.data import pose_vector
    from landform.tasks.pose.kinematics import KEYPOINTS, Kinematics

    points = Kinematics().double()(pose_vector(rotations, hinges).double())
    return {name: points[:, i] for i, name in enumerate(KEYPOINTS)}


def direction_error_degrees(points: dict[str, torch.Tensor], source: dict[str, torch.Tensor],
                            bones: dict[str, tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Angle in degrees [n] between each retargeted bone and the source's (keypoint pairs by DeepMimic name
    in ``bones``, source joint pairs in ``source``'s keys): the retargeting error where bone lengths differ."""
    errors = {}
    for name, (start, end) in bones.items():
        ours = points[end] - points[start]
        theirs = source[name]
        cos = (ours * theirs).sum(-1) / (ours.norm(dim=-1) * theirs.norm(dim=-1)).clamp_min(1e-12)
        errors[name] = torch.rad2deg(torch.acos(cos.clamp(-1, 1)))
    return errors
