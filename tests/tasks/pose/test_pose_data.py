"""The DeepMimic clips: layout, quaternion normalization, the split, mirroring and masks."""

from __future__ import annotations

import builtins

import pytest
import torch

from landform.errors import LandformError
from landform.tasks.pose import data


def test_clips_have_the_deepmimic_layout():
    names = data.motion_names()
    assert {"walk", "run", "backflip", "cartwheel"} <= set(names)
    frames = data.read_frames("walk")
    assert frames.shape[1] == data.FRAME_WIDTH == 44
    # the columns of the 12 body joints tile the frame after duration, root position and root rotation
    widths = {j: 1 if j in data.HINGES else 4 for j in data.JOINTS}
    assert sum(widths.values()) == 44 - 8
    assert sorted(data.FRAME_COLUMNS[j] for j in data.JOINTS)[0] == 8


def test_quaternions_are_normalized_to_rotations():
    frames = data.read_frames("kick")  # this clip has quaternions far from unit length
    raw = torch.stack([frames[:, data.FRAME_COLUMNS[j]:data.FRAME_COLUMNS[j] + 4] for j in data.SPHERICAL], 1)
    assert (raw.norm(dim=-1) - 1).abs().max() > 0.1
    quats, _ = data.frames_to_quaternions(frames)
    assert torch.allclose(quats.norm(dim=-1), torch.ones(()).double(), atol=1e-12)
    rotations, hinges = data.split_pose(data.frames_to_pose(frames))
    eye = torch.eye(3).expand_as(rotations)
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(rotations.shape[:2]), atol=1e-5)
    assert hinges.shape == (frames.shape[0], 4)


def test_split_keeps_ood_motions_out_and_leaves_a_gap():
    splits = data.load_splits()
    assert splits.train.shape[1] == splits.test.shape[1] == data.POSE_DIM
    train_clips = {name.split(" ")[0] for name, _ in splits.sources["train"]}
    assert not train_clips & set(data.OOD_MOTIONS)
    assert {name for name, _ in splits.sources["ood"]} == set(data.OOD_MOTIONS)
    train = {(n, i) for n, i in splits.sources["train"] if "mirrored" not in n}
    for split in ("test", "validation"):
        for name, index in splits.sources[split]:
            for offset in range(-data.GAP, data.GAP + 1):
                assert (name, index + offset) not in train


def test_mirror_is_an_involution_and_swaps_sides():
    pose = data.frames_to_pose(data.read_frames("punch"))
    mirrored = data.mirror_pose(pose)
    assert torch.allclose(data.mirror_pose(mirrored), pose)
    _, hinges = data.split_pose(pose)
    _, mirrored_hinges = data.split_pose(mirrored)
    assert torch.equal(mirrored_hinges[:, data.HINGES.index("left_elbow")], hinges[:, data.HINGES.index("right_elbow")])


def test_missing_pybullet_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pybullet_data":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(LandformError, match=r"pip install pybullet==3\.2\.7"):
        data.pybullet_data_path()


def test_joint_mask_rejects_unknown_joints():
    mask = data.joint_mask(data.UPPER_JOINTS)
    assert mask.sum() == len(data.UPPER_JOINTS)
    with pytest.raises(LandformError, match="unknown joints"):
        data.joint_mask(["tail"])


def test_jitter_keeps_rotations_and_scale_zero_is_identity():
    pose = data.frames_to_pose(data.read_frames("walk")[:6])
    generator = torch.Generator().manual_seed(0)
    jittered = data.jitter_poses(pose, generator, rotation_std=0.2, hinge_std=0.1)
    rotations, _ = data.split_pose(jittered)
    eye = torch.eye(3).expand_as(rotations)
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), eye, atol=1e-5)
    assert not torch.allclose(jittered, pose)
    still = data.jitter_poses(pose, generator, rotation_std=0.2, hinge_std=0.1, scale=torch.zeros(6))
    assert torch.allclose(still, pose, atol=1e-6)
    again = data.jitter_poses(pose, torch.Generator().manual_seed(0), rotation_std=0.2, hinge_std=0.1)
    assert torch.equal(again, jittered)  # seeded


def test_axis_angle_matrix_turns_by_the_vector_length():
    quarter = data.axis_angle_to_matrix(torch.tensor([[0.0, 0.0, torch.pi / 2]]))[0]
    assert torch.allclose(quarter @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
