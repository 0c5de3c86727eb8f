"""The report's target checks and table come from the measured numbers."""

from landform.tasks.defense.task import _markdown, _targets


def _row(clean, none, base5, ours1):
    return {"clean": clean, "no_defense": none, "clean_with_defense": clean - 0.01, "clean_with_baseline_5": clean,
            "baseline": {"1": none, "3": none, "5": base5}, "landscape": {"1": ours1, "3": ours1, "5": ours1},
            "linf": {"no_defense": 0.6, "baseline": {"1": 0.6, "3": 0.6, "5": 0.6},
                     "landscape": {"1": 0.6, "3": 0.6, "5": 0.6}},
            "adaptive": 0.3, "adaptive_only": 0.3, "ssl_loss_clean": 2.7, "ssl_loss_attacked": 2.8}


def test_targets_follow_the_numbers():
    rows = {"good": _row(0.8, 0.4, 0.45, 0.55), "bad": _row(0.8, 0.4, 0.45, 0.44)}
    checks = _targets(rows)
    assert all(checks["good"].values())
    assert not checks["bad"]["ours_1_step_at_least_no_defense_plus_10"]
    assert not checks["bad"]["ours_1_step_at_least_baseline_5_steps"]
    summary = {"test_images": 10, "seed": 0, "steps": [1, 3, 5], "models": rows, "targets": checks, "seconds": 1.0,
               "defense": {"baseline_init_std": 0.01},
               "attack": {"l2": {"eps": 1.6, "step": 0.4, "steps": 200},
                          "linf": {"eps": 0.1, "step": 0.01, "steps": 50},
                          "adaptive": {"eps": 1.6, "step": 0.2, "steps": 20}}}
    text = _markdown(summary)
    assert "| good | 80.0 | 40.0 | 40.0 | 40.0 | 45.0 | 55.0 | 55.0 | 55.0 |" in text
    assert "NO" in text
