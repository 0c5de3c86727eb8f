"""The never-worse inference modes (residual, handoff, candidate starts) and the one evaluation path."""

import copy

import pytest
import torch

from landform import LandformError, Mapping, invert
from landform.comparison import Method, compare, default_methods, summarize_methods
from landform.metrics import bootstrap_ci, improvement_at


def test_residual_starts_where_pure_starts_and_ends_lower(problem, fitted, test_observations):
    y = test_observations
    pure = invert(problem.forward, problem.loss, y, mapping=fitted, mode="pure", steps=200)
    residual = invert(problem.forward, problem.loss, y, mapping=fitted, mode="residual", steps=200, lr_x=0.05)
    assert torch.equal(pure.losses[0], residual.losses[0])
    assert residual.losses[-1].mean() < pure.losses[-1].mean()
    assert pure.evaluations == residual.evaluations == 201


def test_residual_with_a_frozen_mapping_direction_is_descent_on_x(problem, test_observations):
    """With lr on z far below lr_x, the residual mode is the baseline started at Θ(0): its x moves as
    descent on x does (a check that δ really is optimized with lr_x)."""
    y = test_observations[:8]
    mapping = Mapping(16, (16,), hidden=32)
    start = mapping(torch.zeros(8, 16)).detach()
    residual = invert(problem.forward, problem.loss, y, mapping=mapping, mode="residual", lr=1e-12, lr_x=0.05,
                      steps=30)
    descent = invert(problem.forward, problem.loss, y, init=start, lr=0.05, steps=30)
    assert torch.allclose(residual.losses, descent.losses, atol=1e-5)


def test_candidate_starts_pick_the_better_start_and_then_run_the_baseline(problem, fitted, test_observations):
    y = test_observations[:16]
    good = invert(problem.forward, problem.loss, y, x_shape=(16,), steps=100, lr=0.05).x  # a better start
    bad = torch.full((16, 16), 5.0)
    result = invert(problem.forward, problem.loss, y, mapping=fitted, mode="residual", starts=[bad, good],
                    steps=20, lr_x=0.05)
    assert result.evaluations == 21 + 2
    own_start = problem.loss(problem.forward(fitted(torch.zeros(16, 16))), y)
    picked = result.start
    assert (picked != 1).all()  # the bad candidate never wins
    from_good = picked == 2
    assert from_good.any()
    expected = torch.where(from_good, problem.loss(problem.forward(good), y), own_start)
    assert torch.allclose(result.losses[0], expected.detach(), atol=1e-6)
    # An example that starts at a candidate is refined by descent on x alone: the baseline from there.
    # x = Θ(z0) + δ with δ = good - Θ(z0) is good up to float rounding, which 20 Adam steps on this non-convex
    # landscape magnify to ~1e-5 (0.04% here, with the Θ the faster fit gives).
    baseline = invert(problem.forward, problem.loss, y, init=good, lr=0.05, steps=20)
    assert torch.allclose(result.losses[:, from_good], baseline.losses[:, from_good], rtol=2e-3, atol=1e-6)


def test_handoff_follows_pure_then_stops_z(problem, fitted, test_observations):
    y = test_observations[:8]
    pure = invert(problem.forward, problem.loss, y, mapping=fitted, mode="pure", steps=5)
    handoff = invert(problem.forward, problem.loss, y, mapping=fitted, mode="handoff", handoff=5, steps=25,
                     lr_x=0.05)
    assert torch.allclose(handoff.losses[:6], pure.losses, atol=1e-6)
    assert torch.allclose(handoff.z, pure.z, atol=1e-6)  # z frozen after the handoff
    assert handoff.losses[-1].mean() < pure.losses[-1].mean()


def test_residual_is_batch_independent(problem, fitted, test_observations):
    forward, mapping = copy.deepcopy(problem.forward).double(), copy.deepcopy(fitted).double()
    y = test_observations[:4].double()
    start = torch.zeros(4, 16, dtype=torch.float64)
    together = invert(forward, problem.loss, y, mapping=mapping, mode="residual", steps=10, starts=[start])
    for i in range(4):
        alone = invert(forward, problem.loss, y[i:i + 1], mapping=mapping, mode="residual", steps=10,
                       starts=[start[i:i + 1]])
        assert torch.allclose(alone.losses[:, 0], together.losses[:, i], atol=1e-9)


def test_mode_errors(problem, fitted, test_observations):
    y = test_observations[:2]
    with pytest.raises(LandformError, match="unknown inference mode"):
        invert(problem.forward, problem.loss, y, mapping=fitted, mode="fast")
    with pytest.raises(LandformError, match="need a mapping"):
        invert(problem.forward, problem.loss, y, x_shape=(16,), mode="residual")
    for bad in (float("nan"), float("inf"), -0.1, 0.0):
        with pytest.raises(LandformError, match="lr must be a finite number"):
            invert(problem.forward, problem.loss, y, mapping=fitted, lr=bad)
    with pytest.raises(LandformError, match="lr_x must be"):
        invert(problem.forward, problem.loss, y, mapping=fitted, mode="residual", lr_x=float("nan"))
    with pytest.raises(LandformError, match="NaN or Inf"):
        invert(problem.forward, problem.loss, y.clone().fill_(float("nan")), mapping=fitted)
    with pytest.raises(LandformError, match="no observations"):
        invert(problem.forward, problem.loss, y[:0], mapping=fitted)
    with pytest.raises(LandformError, match="does not fit"):
        invert(problem.forward, problem.loss, y, mapping=fitted, starts=[torch.zeros(3, 5)])
    with pytest.raises(LandformError, match="mask of shape"):
        invert(problem.forward, problem.loss, y, mapping=fitted, mask=torch.ones(5, dtype=torch.bool))


def test_a_forward_that_turns_nan_midway_is_an_error(problem, fitted, test_observations):
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        out = problem.forward(x)
        return out * float("nan") if calls["n"] > 3 else out

    with pytest.raises(LandformError, match="non-finite at step 3"):
        invert(flaky, problem.loss, test_observations[:2], mapping=fitted, steps=10)


def test_compare_sweeps_each_method_and_picks_its_best_rate(problem, fitted, test_observations):
    y, y_val = test_observations[:16], test_observations[16:32]
    methods = default_methods(problem, fitted, lrs=(0.5, 0.05, 0.001))
    result = compare(problem, y, methods, y_val=y_val, steps=40, bootstrap=200)
    sweep = result.sweeps["baseline"]
    assert result.lrs["baseline"] == min(sweep, key=lambda r: sweep[r]["final"])
    assert sweep[result.lrs["baseline"]]["final"] < max(v["final"] for v in sweep.values())
    summary = result.summary
    for key in ("baseline", "landscape", "landscape_pure", "speedup_at_20", "speedup_at_20_ci95",
                "improvement_at_200", "improvement_at_200_ci95", "steps_to_baseline_200", "seconds_to_baseline_200"):
        assert key in summary, key
    assert "landscape_pure" in summary["methods"]
    low, high = summary["improvement_at_200_ci95"]
    assert low <= summary["improvement_at_200"] <= high
    last = summary["steps"][-1]
    assert summary["baseline"][-1] == pytest.approx(float(result.baseline.losses[last].mean()))


def test_summary_puts_the_headline_on_top_and_others_under_methods():
    ref = torch.linspace(4, 1, 201)[:, None].expand(201, 8).clone()
    better = ref * 0.5
    block = summarize_methods({"baseline": ref, "landscape": better, "other": ref * 2}, bootstrap=50)
    assert block["improvement_at_200"] == pytest.approx(0.5)
    assert block["methods"]["other"]["improvement_at_200"] == pytest.approx(-1.0)
    assert block["landscape"][0] == pytest.approx(2.0)


def test_bootstrap_interval_covers_the_truth_and_narrows_with_examples():
    torch.manual_seed(0)
    def draw(n):
        base = torch.linspace(2, 1, 201)[:, None] + 0.3 * torch.rand(201, n)
        return base, base * 0.8 + 0.05 * torch.rand(201, n)

    widths = []
    for n in (16, 256):
        b, o = draw(n)
        low, high = bootstrap_ci(lambda x, y: improvement_at(x, y, 200), b, o, resamples=300)
        assert low < improvement_at(b, o, 200) < high
        widths.append(high - low)
    assert widths[1] < widths[0]


def test_a_method_needing_a_base_is_refused_without_one(problem, test_observations):
    with pytest.raises(LandformError, match="needs a Problem with a base"):
        Method("encoder_init", use_base=True, lr=0.1).run(problem, test_observations[:2], 0.1, steps=1)


def test_default_mode_with_an_untrained_mapping_catches_up_with_the_baseline(problem, test_observations):
    """The never-worse property at its hardest: Θ knows nothing (random weights, as on data unlike its
    training data). The default mode (residual, δ at the baseline's step size, warmed up over 20 steps)
    still ends at or below the baseline from step 50 on; the paper's pure Eq. 3 does not."""
    torch.manual_seed(0)
    untrained = Mapping(16, (16,), hidden=256)
    y = test_observations
    baseline = invert(problem.forward, problem.loss, y, x_shape=(16,), lr=0.05, steps=200).losses.mean(1)
    default = invert(problem.forward, problem.loss, y, mapping=untrained, mode="residual", lr_x=0.05, warmup=20,
                     steps=200).losses.mean(1)
    pure = invert(problem.forward, problem.loss, y, mapping=untrained, steps=200).losses.mean(1)
    assert (default[50:] <= baseline[50:] * 1.02).all()
    assert pure[200] > baseline[200]


def test_warmup_keeps_the_first_steps_pure(problem, fitted, test_observations):
    y = test_observations[:8]
    pure = invert(problem.forward, problem.loss, y, mapping=fitted, steps=1)
    warm = invert(problem.forward, problem.loss, y, mapping=fitted, mode="residual", lr_x=0.05, warmup=20, steps=30)
    assert torch.allclose(warm.losses[:2], pure.losses, atol=1e-6)  # δ's step size is 0 at step 0
    with pytest.raises(LandformError, match="warmup must be"):
        invert(problem.forward, problem.loss, y, mapping=fitted, mode="residual", warmup=-1)


def test_lr_x_baseline_takes_the_swept_rate(problem, fitted, test_observations):
    y, y_val = test_observations[:8], test_observations[8:16]
    result = compare(problem, y, default_methods(problem, fitted, lrs=(0.05, 0.001)), y_val=y_val, steps=30,
                     bootstrap=0)
    assert result.summary["lr_x"]["landscape"] == result.lrs["baseline"] == 0.05
    with pytest.raises(LandformError, match="run it through compare"):
        Method("x", mapping=fitted, mode="residual", lr=0.1, lr_x="baseline").run(problem, y, 0.1, steps=1)


def test_a_tuple_lr_x_is_swept_on_validation(problem, fitted, test_observations):
    y, y_val = test_observations[:8], test_observations[8:16]
    method = Method("landscape", mapping=fitted, mode="residual", lr=0.1, lr_x=(0.05, 1e-4), warmup=5)
    result = compare(problem, y, [Method("baseline", lr=0.05), method], y_val=y_val, steps=40, bootstrap=0)
    sweep = result.sweeps["landscape"]
    assert set(sweep) == {"0.1/0.05", "0.1/0.0001"}
    best = min(sweep.values(), key=lambda e: e["final"])
    assert result.summary["lr_x"]["landscape"] == best["lr_x"]


def test_the_package_exports_the_function_compare_even_after_its_module_is_imported():
    import subprocess
    import sys

    code = ("import types\nimport landform.comparison\nfrom landform import compare, Method\n"
            "assert callable(compare) and not isinstance(compare, types.ModuleType)\n"
            "assert compare is landform.comparison.compare and Method is landform.comparison.Method")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_every_list_of_the_modes_is_the_registry():
    """``invert``'s check, the command line's --mode choices and the inference-modes page's table of modes for a
    plain Θ all name the registry's modes, so a mode added there is offered and documented everywhere."""
    import re
    from pathlib import Path

    from landform.cli import build_parser
    from landform.modes import MODES

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("invert", "compare"):
        option = next(a for a in commands.choices[name]._actions if a.dest == "mode")
        assert list(option.choices) == list(MODES)
    page = (Path(__file__).resolve().parents[1] / "docs" / "inference-modes.md").read_text()
    section = page.split("## Modes for a plain Θ")[1].split("\n## ")[0]
    assert sorted(re.findall(r"^\| `(\w+)`", section, re.M)) == sorted(MODES)


def test_the_summary_is_typed_and_reads_as_the_block_it_saves(problem, fitted, test_observations):
    from landform.io import json_bytes

    result = compare(problem, test_observations[:8], default_methods(problem, fitted, lrs=(0.05,)), steps=10,
                     bootstrap=0)
    summary, block = result.summary, result.summary.as_dict()
    assert summary.baseline_lr == 0.05 and summary.lr_x == {"landscape": 0.05}
    assert summary.curves["landscape"] == block["landscape"] and summary.methods is block["methods"]
    assert dict(summary) == block and list(summary) == list(block) and "speedup_at_20" in summary
    assert json_bytes({"test": summary}, sort_keys=False) == json_bytes({"test": block}, sort_keys=False)
    ref = torch.linspace(4, 1, 41)[:, None].expand(41, 4).clone()
    keys = list(summarize_methods({"baseline": ref, "other": ref * 2, "landscape": ref / 2}, bootstrap=0))
    assert keys.index("methods") < keys.index("speedup_at_20")  # the block keeps the methods' order, as it did
