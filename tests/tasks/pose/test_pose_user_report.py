"""`landform invert/compare --task pose` replace their output sets as one unit (the computation faked)."""

import json
from types import SimpleNamespace

import pytest
import torch
from report_faults import check_report_writes, fake_figure

from landform.tasks.pose import user
from landform.tasks.pose.kinematics import KEYPOINTS


@pytest.fixture
def frames(tmp_path, monkeypatch):
    """Two files of 3D joints, and the pose models and fitting faked."""
    files = []
    for name in ("walk.json", "sit.json"):
        (tmp_path / name).write_text(json.dumps({"joints_3d": [[0.1, 0.2, 0.3]] * len(KEYPOINTS)}))
        files.append(str(tmp_path / name))
    models = SimpleNamespace(vae=SimpleNamespace(decoder=lambda x: torch.zeros(x.shape[0], 76)), encoder=None,
                             landscape=None)
    models.for_mask = lambda mask: models
    run = SimpleNamespace(name="landscape", lr=0.1,
                          run=lambda *args, **kwargs: SimpleNamespace(x=torch.rand(1, 2), losses=torch.rand(4, 1)))
    monkeypatch.setattr(user, "PoseModels", SimpleNamespace(load=lambda kind, device: models))
    monkeypatch.setattr(user, "methods", lambda models, fixed=None: [run])
    monkeypatch.setattr(user, "pose_problem", lambda *args, **kwargs: None)
    return files


def test_an_interrupted_pose_invert_leaves_the_old_outputs_whole(tmp_path, frames, monkeypatch):
    monkeypatch.setattr(user, "Kinematics", lambda: SimpleNamespace(to=lambda device: lambda poses: poses))
    monkeypatch.setattr(user, "pose_record", lambda pose, points: {"pose": pose.tolist()})
    folder = tmp_path / "inv"
    check_report_writes(folder, ("walk.json", "sit.json"),
                        lambda: user.invert_inputs(frames, folder, steps=3, progress=False), monkeypatch)


def test_an_interrupted_pose_compare_leaves_the_old_outputs_whole(tmp_path, frames, monkeypatch):
    comparison = SimpleNamespace(summary={"improvement_at_200": 0.1, "speedup_at_20": 1.0},
                                 results={"baseline": SimpleNamespace(losses=torch.rand(4, 1))})
    monkeypatch.setattr(user, "_swept_lrs", lambda kind, steps, seed, device: {})
    monkeypatch.setattr(user, "compare", lambda *args, **kwargs: comparison)
    monkeypatch.setattr(user, "plot_curves", fake_figure)
    folder = tmp_path / "cmp"
    check_report_writes(folder, ("walk_curves.png", "sit_curves.png", "summary.json"),
                        lambda: user.compare_inputs(frames, folder, steps=3, progress=False), monkeypatch)
