"""The report's target checks and tables come from the measured numbers."""

import torch

from landform.tasks.defense.summary import summary_markdown
from landform.tasks.defense.task import _targets


def _acc(value, low=None, high=None):
    return {"accuracy": value, "ci95": [low if low is not None else value - 0.05, high or value + 0.05], "count": 100}


def _diff(value, low, high):
    return {"difference": value, "ci95": [low, high]}


def _defended(value, noise, low):
    return {**_acc(value), "noise": _acc(noise), "minus_noise": _diff(value - noise, low, value - noise + 0.05),
            "reversal_norm": 2.0}


def _row(none, base40, ours1, noise1, low, clean_drop):
    steps = {t: _defended(v, noise1, low) for t, v in (("1", none), ("5", none), ("20", base40), ("40", base40))}
    ours = {t: _defended(ours1, noise1, low) for t in ("1", "5", "20", "40")}
    block = {"no_defense": _acc(none), "landscape_1": _defended(ours1, noise1, low),
             "baseline_40": _defended(base40, noise1, low), "landscape_1_minus_no_defense": _diff(0.1, 0.05, 0.15)}
    loss = {"steps": [0, 1], "baseline": [3.0, 2.9], "landscape": [3.0, 2.7], "speedup_at_20": 1.0,
            "improvement_at_200": 0.1, "steps_to_baseline_200": 1, "baseline_lr": 0.03, "count": 100,
            "final_step": 1, "seconds_per_step": {}}
    return {"clean": _acc(0.8), "no_defense": _acc(none), "ssl_gap": 0.05, "ssl_gap_ci95": [0.01, 0.09],
            "ssl_gap_positive_fraction": 0.6, "view_vote": {"clean": 0.8, "attacked": 0.55},
            "baseline_steps": steps, "landscape_steps": ours, "loss": loss,
            "landscape_1_minus_baseline_40": _diff(ours1 - base40, -0.02, 0.05),
            "landscape_1_minus_no_defense": _diff(ours1 - none, 0.05, 0.15),
            "baseline_40_minus_no_defense": _diff(base40 - none, 0.02, 0.1),
            "clean_with_defense": _acc(0.8 - clean_drop), "clean_drop": _diff(clean_drop, 0.0, 0.03),
            "clean_with_baseline_40": _acc(0.79), "clean_subset": _acc(0.8),
            "torchattacks": {"autoattack": block}, "epsilon_sweep": {"0.8": block, "1.6": block},
            "adaptive": {"adaptive_only": _acc(0.3), "worst_of_both": _acc(0.3)}}


def test_targets_follow_the_numbers():
    good = _row(0.45, 0.52, 0.56, 0.48, 0.02, 0.01)
    bad = _row(0.45, 0.52, 0.47, 0.46, -0.03, 0.04)
    assert all(_targets(good).values())
    checks = _targets(bad)
    assert not any(checks.values())
    summary = {"test_images": 100, "subset_images": 50, "seed": 0, "threads": 1, "seconds": 1.0,
               "attack": {"main": {"eps": 1.6, "alpha": 0.4, "steps": 50}},
               "defense": {"lambda": 1.0, "radius": 3.2, "baseline_init_std": 0.01},
               "models": {"good": {**good, "targets": _targets(good)}, "bad": {**bad, "targets": checks}}}
    text = summary_markdown(summary)
    assert "| good | 45.0 | 45.0 | 45.0 | 52.0 | 52.0 | 56.0 | 56.0 | 56.0 |" in text
    assert "ours_1_step_at_least_baseline_40_steps: NO" in text and "| 0.8 |" in text


def test_attack_cache_lives_in_the_runs_folder_and_is_reused(tmp_path, monkeypatch):
    """Adversarial examples are cached under RUNS/defense-cache (not in the user's working directory)."""
    from landform.tasks.defense.task import _cached

    monkeypatch.setenv("LANDFORM_RUNS", str(tmp_path / "elsewhere"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    x, calls = torch.rand(3, 1, 28, 28), []

    def make():
        calls.append(1)
        return x + 0.01

    first = _cached("pgd", "probe", {"eps": 1.0}, x, make)
    again = _cached("pgd", "probe", {"eps": 1.0}, x, make)
    assert calls == [1] and torch.equal(first, again)
    assert len(list((tmp_path / "elsewhere" / "defense-cache").glob("pgd-probe-*.safetensors"))) == 1
    assert list((tmp_path / "cwd").iterdir()) == []


def test_an_interrupted_defense_report_leaves_the_old_report_whole(tmp_path, monkeypatch):
    """The demo's report folder is replaced as one unit (the evaluation faked: seconds, not an hour)."""
    from report_faults import check_report_writes, fake_figure

    from landform.tasks.defense import figures, task

    monkeypatch.setattr(task, "entry_file", lambda recipe, name: None)
    monkeypatch.setattr(task, "evaluate", lambda recipe, **options: {"row": {"recipe": recipe}, "images": {}})
    monkeypatch.setattr(task, "summary_markdown", lambda summary: "# the new report\n")
    monkeypatch.setattr(figures, "plot_robust_accuracy", fake_figure)
    monkeypatch.setattr(figures, "plot_examples", fake_figure)
    folder, recipes = tmp_path / "defense", ("pgd", "trades")
    assert task.report_files(recipes) == ("robust_accuracy.png", "examples_pgd.png", "examples_trades.png",
                                          "summary.json", "summary.md")
    check_report_writes(folder, task.report_files(recipes),
                        lambda: task.demo(folder, recipes=recipes, progress=False), monkeypatch)
