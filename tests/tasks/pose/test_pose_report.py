"""The pose demo's report folder is replaced as one unit (its computation faked: seconds, not minutes)."""

from types import SimpleNamespace

import torch
from report_faults import check_report_writes, fake_figure

from landform.tasks.pose import report


def _fake_comparison(kind, models, y, **options) -> tuple[SimpleNamespace, dict]:
    comparison = SimpleNamespace(lrs={"baseline": 0.1}, results={"baseline": SimpleNamespace(losses=torch.rand(4, 2))})
    return comparison, {"speedup_at_20": 1.0, "steps_to_baseline_200": 3, "improvement_at_200": 0.1}


def _fake_figures(names: tuple[str, ...]):
    def write(out, *args, **kwargs) -> dict:
        for name in names:
            fake_figure(out / name)
        return {}
    return write


def test_an_interrupted_pose_report_leaves_the_old_report_whole(tmp_path, monkeypatch):
    models = SimpleNamespace(vae=SimpleNamespace(latent_dim=2), landscape=None, rates=(0.1, 0.2), encoder=None)
    long_run = SimpleNamespace(run=lambda *args, **kwargs: SimpleNamespace(losses=torch.rand(4, 2)))
    poses = torch.zeros(2, 3)
    monkeypatch.setattr(report, "PoseModels", SimpleNamespace(load=lambda kind, device: models))
    monkeypatch.setattr(report, "report_splits", lambda: ("in_distribution", "ood"))
    monkeypatch.setattr(report, "sweep_poses", lambda seed: poses)
    monkeypatch.setattr(report, "report_poses", lambda split, seed: poses)
    monkeypatch.setattr(report, "split_poses", lambda split, **kwargs: poses)
    monkeypatch.setattr(report, "observe", lambda kind, vae, x: x)
    monkeypatch.setattr(report, "run_comparison", _fake_comparison)
    monkeypatch.setattr(report, "methods", lambda models, fixed: [long_run])
    monkeypatch.setattr(report, "pose_problem", lambda *args, **kwargs: None)
    monkeypatch.setattr(report, "plot_curves", fake_figure)
    monkeypatch.setattr(report, "_completions", _fake_figures(("completions.png",)))
    monkeypatch.setattr(report, "_snapshots", _fake_figures(("snapshots_sitting.png", "snapshots_standing.png")))
    monkeypatch.setattr(report, "check_targets", lambda summary: {})
    monkeypatch.setattr(report, "cached_splits", lambda: SimpleNamespace(describe=lambda: "a fake split"))
    monkeypatch.setattr(report, "_markdown", lambda summary: "# the new report\n")
    folder = tmp_path / "pose"
    check_report_writes(folder, report.REPORT_FILES, lambda: report.demo(folder, progress=False), monkeypatch)
