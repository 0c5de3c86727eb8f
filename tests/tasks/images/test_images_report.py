"""The images demo's report folder is replaced as one unit (its computation faked: seconds, not minutes)."""

from types import SimpleNamespace

import torch
from report_faults import check_report_writes, fake_figure

from landform.tasks.images import task


def _fake_comparison(steps: int) -> SimpleNamespace:
    results = {name: SimpleNamespace(losses=torch.rand(steps + 1, 2)) for name in task.PROCESS_METHODS}
    return SimpleNamespace(results=results, tuned=lambda: [])


def test_an_interrupted_images_report_leaves_the_old_report_whole(tmp_path, monkeypatch):
    images = torch.rand(2, 1, 28, 28)
    models = SimpleNamespace(landscape=SimpleNamespace(settings=task.SETTINGS))
    monkeypatch.setattr(task, "load_models", lambda device: models)
    monkeypatch.setattr(task, "load_fashion_mnist", lambda split: (images, None))
    monkeypatch.setattr(task, "load_mnist", lambda: images)
    monkeypatch.setattr(task, "run_comparison", lambda models, y, val, *, steps, **kw: (_fake_comparison(steps), {}))
    monkeypatch.setattr(task, "summary_block", lambda comparison, encoder: {"encoder": 0.5})
    monkeypatch.setattr(task, "spectrum", lambda *args, **kwargs: {"rows": {}})
    monkeypatch.setattr(task, "completions", lambda path, *args, **kwargs: (fake_figure(path), {})[1])
    monkeypatch.setattr(task, "summary_markdown", lambda summary: "# the new report\n")
    for figure in ("process_grid", "encoder_grid", "plot_spectrum", "plot_curves"):
        monkeypatch.setattr(task, figure, fake_figure)
    folder = tmp_path / "images"
    check_report_writes(folder, task.REPORT_FILES,
                        lambda: task.demo(folder, count=2, val_count=2, steps=3, progress=False), monkeypatch)
