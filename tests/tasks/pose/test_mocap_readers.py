"""The motion capture readers and the retargeting, on tiny hand-built inputs with known answers (issue 23)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from landform.errors import LandformError
from landform.tasks.pose import data
from landform.tasks.pose.kinematics import Kinematics
from landform.tasks.pose.mocap import amp, asf_amc, cmu_humanoid, retarget


def _walk_poses(count: int = 6) -> torch.Tensor:
    """A few DeepMimic walk poses, turned a little so that every joint moves in three dimensions (float64)."""
    pose = data.frames_to_pose(data.read_frames("walk"))[::7][:count].double()
    return data.jitter_poses(pose, torch.Generator().manual_seed(0), rotation_std=0.3, hinge_std=0.0)


def _segment_orientations(pose: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each pose joint's segment orientation and each keypoint's position, root frame, of DeepMimic poses."""
    kinematics = Kinematics().double()
    frames = kinematics.frames(pose)
    world = {joint: frames[joint][0] for joint in data.JOINTS}
    points = dict(zip(retarget.deepmimic_skeleton().rest, kinematics(pose).unbind(1), strict=True))
    return world, points


def test_matrix_to_quaternion_inverts_quaternion_to_matrix():
    q = data.normalize_quaternions(torch.randn(500, 4, generator=torch.Generator().manual_seed(1)).double())
    q[:4] = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]).double()  # every branch
    back = retarget.matrix_to_quaternion(retarget.quaternion_to_matrix(q))
    assert torch.allclose(back.abs(), q.abs(), atol=1e-12) and (back[:, 0] >= 0).all()
    assert torch.allclose(retarget.quaternion_to_matrix(back), retarget.quaternion_to_matrix(q), atol=1e-12)


def test_joints_from_segment_orientations_round_trip():
    pose = _walk_poses()
    world, _ = _segment_orientations(pose)
    rotations, hinges = retarget.world_to_joints(world)
    assert torch.allclose(data.pose_vector(rotations, hinges), pose, atol=1e-9)
    frames = retarget.to_frames(rotations, hinges, dt=0.5)
    assert frames.shape == (pose.shape[0], data.FRAME_WIDTH) and (frames[:, 0] == 0.5).all()
    assert torch.allclose(data.frames_to_pose(frames).double(), pose.float().double(), atol=1e-6)


def test_a_hinge_takes_the_closest_angle_about_its_axis():
    axis = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    angle = torch.tensor([0.3, -1.2, 2.5], dtype=torch.float64)
    bent = retarget.axis_rotation(axis.expand(3, 3), angle)
    assert torch.allclose(retarget.hinge_angle(bent, axis), angle, atol=1e-12)
    # a small turn about another axis leaves the closest hinge angle where it was
    off = retarget.axis_rotation(torch.tensor([[1.0, 0, 0]], dtype=torch.float64).expand(3, 3),
                                 torch.full((3,), 0.05, dtype=torch.float64))
    assert torch.allclose(retarget.hinge_angle(bent @ off, axis), angle, atol=2e-3)


def test_segments_from_a_skeleton_with_the_same_rest_pose_recover_the_pose():
    """``segment_orientations`` with DeepMimic itself as the source (same rest pose, bones along its own) is exact."""
    pose = _walk_poses()
    world, points = _segment_orientations(pose)
    segments = {joint: retarget.SegmentSource(joint, joint, retarget.BONE_END[joint], align=not joint.endswith("ankle"))
                for joint in data.JOINTS}
    oriented = retarget.segment_orientations(world, points, segments)
    rotations, hinges = retarget.world_to_joints(oriented)
    assert torch.allclose(data.pose_vector(rotations, hinges), pose, atol=1e-6)


def test_an_arm_at_rest_sideways_is_turned_down_by_the_rest_alignment():
    """A source arm resting sideways (a T-pose) turned down and about itself gives DeepMimic's hanging arm, turned
    about itself by as much: the source's rotation from its rest, not its rest, carries over."""
    skeleton = retarget.deepmimic_skeleton()
    n = 1
    eye = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    rest = dict(skeleton.rest)
    # posed: the source arm hangs down (turned 90 degrees about x: from +z, to the right, to -y), then turned
    # 0.5 radians about itself (about y): DeepMimic's shoulder must turn by just that, about its vertical arm
    down = retarget.axis_rotation(torch.tensor([[1.0, 0, 0]], dtype=torch.float64), torch.tensor([torch.pi / 2]))
    twist = retarget.axis_rotation(torch.tensor([[0.0, 1, 0]], dtype=torch.float64), torch.tensor([0.5]))
    relative = {joint: eye for joint in data.JOINTS}
    relative["right_shoulder"] = relative["right_elbow"] = (twist @ down).double()
    positions = {k: v.expand(n, 3) for k, v in rest.items()}
    segments = {joint: retarget.SegmentSource(joint, joint, retarget.BONE_END[joint], align=not joint.endswith("ankle"))
                for joint in data.JOINTS}
    world = retarget.segment_orientations(relative, positions, segments)
    rotations, hinges = retarget.world_to_joints(world)
    points = Kinematics().double()(data.pose_vector(rotations, hinges))
    assert torch.allclose(points[0], torch.stack(list(rest.values())), atol=1e-6)
    # and twisted as the source: only the shoulder turns, 0.5 about y (the source turn alone would point it forward)
    expected = torch.eye(3, dtype=torch.float64).repeat(1, len(data.SPHERICAL), 1, 1)
    expected[0, data.SPHERICAL.index("right_shoulder")] = twist[0]
    assert torch.allclose(rotations, expected, atol=1e-6)
    assert torch.allclose(hinges, torch.zeros_like(hinges), atol=1e-6)


def _epmocap_bytes(clips: list[tuple[str, float, dict[str, np.ndarray]]]) -> bytes:
    out = bytearray(b"EPMOCAP1" + struct.pack("<I", len(clips)))
    for clip_id, dt, fields in clips:
        frames = next(iter(fields.values())).shape[0]
        out += struct.pack("<I", len(clip_id)) + clip_id.encode() + struct.pack("<Id", frames, dt)
        out += struct.pack("<I", len(fields))
        for name, values in fields.items():
            out += struct.pack("<I", len(name)) + name.encode() + struct.pack("<I", values.shape[1])
            out += values.astype("<f4").tobytes()
    return bytes(out)


def test_the_epmocap_reader_reads_a_hand_built_file(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    b = -np.arange(8, dtype=np.float32).reshape(4, 2)
    c = np.full((2, 1), 7.5, dtype=np.float32)
    path = tmp_path / "tiny.bin"
    path.write_bytes(_epmocap_bytes([("CMU_000_01", 0.03, {"position": a, "joints": b}), ("x", 0.5, {"q": c})]))
    clips = cmu_humanoid.read_epmocap(path)
    assert [(clip.id, clip.frames) for clip in clips] == [("CMU_000_01", 4), ("x", 2)]
    assert clips[0].dt == 0.03 and clips[1].dt == 0.5
    assert torch.equal(clips[0].fields["position"], torch.from_numpy(a))
    assert torch.equal(clips[0].fields["joints"], torch.from_numpy(b))
    assert torch.equal(clips[1].fields["q"], torch.from_numpy(c))
    for broken in (path.read_bytes()[:-4], b"NOTMOCAP" + path.read_bytes()[8:], path.read_bytes() + b"\0"):
        path.write_bytes(broken)
        with pytest.raises(LandformError):
            cmu_humanoid.read_epmocap(path)


TINY_ASF = """# a hand-built skeleton
:version 1.10
:name tiny
:units
  mass 1.0
  length 1.0
  angle deg
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name femur
     direction 0 -1 0
     length 10
     axis 0 0 0  XYZ
    dof rx ry rz
  end
  begin
     id 2
     name tibia
     direction 1 0 0
     length 5
     axis 0 0 90  XYZ
    dof rx
    limits (-10.0 170.0)
  end
:hierarchy
  begin
    root femur
    femur tibia
  end
"""
TINY_AMC = """:FULLY-SPECIFIED
:DEGREES
1
root 1 2 3 0 0 0
femur 0 0 0
tibia 0
2
root 0 0 0 0 90 0
femur 90 0 0
tibia 90
3
root 0 0 0 0 0 0
femur 90 90 0
tibia 0
"""


def test_asf_amc_forward_kinematics_on_a_known_frame(tmp_path):
    (tmp_path / "tiny.asf").write_text(TINY_ASF)
    (tmp_path / "tiny.amc").write_text(TINY_AMC)
    skeleton = asf_amc.read_asf(tmp_path / "tiny.asf")
    motion = asf_amc.read_amc(tmp_path / "tiny.amc", skeleton)
    assert motion["root"].shape == (3, 6) and motion["tibia"].shape == (3, 1)
    posed = asf_amc.forward_kinematics(skeleton, motion)
    inch = asf_amc.INCH
    # frame 1: at rest, the root moved by (1, 2, 3) units
    assert torch.allclose(posed.root_position[0], torch.tensor([1.0, 2, 3], dtype=torch.float64) * inch)
    assert torch.allclose(posed.end["femur"][0], torch.tensor([1.0, -8, 3], dtype=torch.float64) * inch)
    assert torch.allclose(posed.end["tibia"][0], torch.tensor([6.0, -8, 3], dtype=torch.float64) * inch)
    # frame 2: the root turns 90 degrees about y, the femur 90 about x: femur (0,-1,0) -> (0,0,-1) -> (-1,0,0);
    # the tibia's axis frame is turned 90 degrees about z, so its rx turns about the femur frame's y: its direction
    # (1,0,0) -> (0,0,-1) in the femur's frame, then femur and root: (0,0,-1) -> (0,1,0) -> (0,1,0)
    assert torch.allclose(posed.end["femur"][1], torch.tensor([-10.0, 0, 0], dtype=torch.float64) * inch, atol=1e-12)
    assert torch.allclose(posed.end["tibia"][1], torch.tensor([-10.0, 5, 0], dtype=torch.float64) * inch, atol=1e-12)
    # frame 3: the femur's "rx ry" turn x first: (0,-1,0) -> (0,0,-1) -> (-1,0,0); the tibia (1,0,0) -> (0,0,-1)
    assert torch.allclose(posed.end["femur"][2], torch.tensor([-10.0, 0, 0], dtype=torch.float64) * inch, atol=1e-12)
    assert torch.allclose(posed.end["tibia"][2], torch.tensor([-10.0, 0, -5], dtype=torch.float64) * inch, atol=1e-12)
    rest = asf_amc.rest_positions(skeleton)
    assert torch.allclose(rest["tibia"], torch.tensor([0.0, -10, 0], dtype=torch.float64) * inch)


def test_the_amp_reader_and_retargeting_recover_a_pose_drawn_in_amp_axes(tmp_path):
    """An AMP clip built from DeepMimic poses (bodies in AMP's z-up axes, the pelvis turned) comes back exactly."""
    pose = _walk_poses(4)
    world, points = _segment_orientations(pose)
    n = pose.shape[0]
    pelvis = retarget.axis_rotation(torch.tensor([0.3, 0.4, 0.866], dtype=torch.float64).expand(n, 3) /
                                    torch.tensor([0.3, 0.4, 0.866]).double().norm(), torch.linspace(0, 2, n).double())
    to_amp = amp.TO_DEEPMIMIC.T
    names = ["pelvis", *amp.BODY.values(), "right_hand", "left_hand"]
    rotations = {"pelvis": pelvis,
                 **{body: pelvis @ to_amp @ world[joint] @ to_amp.T for joint, body in amp.BODY.items()}}
    rotations["right_hand"], rotations["left_hand"] = rotations["right_lower_arm"], rotations["left_lower_arm"]
    origin = torch.tensor([1.0, 2.0, 0.9], dtype=torch.float64)
    positions = {body: origin + (pelvis @ to_amp @ points[joint][..., None])[..., 0]
                 for joint, body in amp.KEYPOINT_BODY.items()}
    positions["pelvis"] = origin.expand(n, 3)
    quaternions = np.stack([retarget.matrix_to_quaternion(rotations[b]).numpy() for b in names], 1)
    np.savez(tmp_path / "humanoid_test.npz", fps=np.int64(60), body_names=np.array(names),
             body_positions=np.stack([positions[b].numpy() for b in names], 1).astype(np.float32),
             body_rotations=quaternions.astype(np.float32))
    clip = amp.read_clip(tmp_path / "humanoid_test.npz")
    assert clip.name == "test" and clip.fps == 60
    frames = amp.to_deepmimic(clip)
    assert torch.allclose(data.frames_to_pose(frames).double(), pose, atol=1e-5)
    back = amp.root_frame_positions(clip)
    assert all(torch.allclose(back[j], points[j], atol=1e-5) for j in amp.KEYPOINT_BODY)
