"""The fast-inversion recipe in the core: learned start, anchored Θ, tuned settings, one artifact."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import forked_cli
import pytest
import torch

from landform import LandformError, Problem, learned_parts, recipe
from landform.examples import decoder, renderer
from landform.io import load_pair
from landform.landscape import InferenceSettings, Landscape, artifact_path, landscape_methods, problem_with_start
from landform.mapping import Mapping
from landform.recipe import learn
from landform.start import RefinedStart, StartEncoder, train_start
from landform.steps import LearnedSteps
from landform.tuning import (
    MAX_RISE,
    START_LR_FACTORS,
    START_TRAP,
    baseline_sweep,
    best_lead,
    check_start,
    settings_rank,
    tune,
)


@pytest.fixture(scope="module")
def learned(problem, tmp_path_factory):
    """The recipe learned on the synthetic problem at tiny settings (seconds)."""
    directory = tmp_path_factory.mktemp("recipe")
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipe, "TUNE_COUNT", 16)
        landscape = learn(problem, directory, seconds=60, rounds=3, trajectories=32, start_steps=300, seed=0,
                          progress=False, log=lambda _: None)
    return directory, landscape


def test_start_architecture_follows_the_observations_and_begins_at_the_baselines_start():
    vector = StartEncoder((32,), (16,))
    image = StartEncoder((1, 16, 16), (8,))
    assert (vector.architecture, image.architecture) == ("mlp", "conv")
    y = torch.randn(5, 1, 16, 16)
    assert torch.equal(image(y), torch.zeros(5, 8))  # zero head: an untrained start is x = 0
    rebuilt = StartEncoder.from_config(image.config(), "test")
    assert rebuilt.config() == image.config()
    with pytest.raises(LandformError, match="observations of shape"):
        vector(torch.randn(2, 31))
    with pytest.raises(LandformError, match="no landform StartEncoder"):
        StartEncoder.from_config({"kind": "other"}, "test")


def test_train_start_lowers_the_held_out_loss_through_the_frozen_forward_model(problem):
    generator = torch.Generator().manual_seed(0)
    train, val = problem.train_observations(2048, generator), problem.train_observations(128, generator)
    encoder = StartEncoder(tuple(train.shape[1:]), problem.x_shape, hidden=64)
    record = train_start(encoder, problem.forward, problem.loss, train, val, seconds=60, max_steps=400,
                         check_every=100, progress=False)
    first, best = record.validation[0][1], min(v for _, v in record.validation)
    assert best < 0.5 * first
    with torch.no_grad():
        assert float(problem.loss(problem.forward(encoder(val)), val).mean()) == pytest.approx(best, rel=1e-5)


def test_start_depth_is_part_of_its_config_and_out_of_range_depths_are_refused():
    deep = StartEncoder((12,), (4,), hidden=16, layers=3)
    assert sum(isinstance(m, torch.nn.Linear) for m in deep.body) == 3 and "x 3" in deep.describe()
    assert StartEncoder.from_config(deep.config(), "test").layers == 3
    legacy = {k: v for k, v in deep.config().items() if k != "layers"}  # configs written before depth was one
    assert StartEncoder.from_config(legacy, "test").layers == 2
    with pytest.raises(LandformError, match="out of range"):
        StartEncoder.from_config({**deep.config(), "layers": 0}, "test")


def test_the_prior_term_pulls_the_start_towards_the_latents_of_prior_draws(problem):
    generator = torch.Generator().manual_seed(0)
    train, val = problem.train_observations(1024, generator), problem.train_observations(64, generator)

    def prior(n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randn(n, *problem.x_shape, generator=g)

    def latent_error(encoder: StartEncoder) -> float:
        x = prior(256, torch.Generator().manual_seed(1))
        with torch.no_grad():
            return float((encoder(problem.forward(x)) - x).pow(2).mean())

    errors = []
    for weight in (0.0, 10.0):
        torch.manual_seed(0)
        encoder = StartEncoder(tuple(train.shape[1:]), problem.x_shape, hidden=32)
        train_start(encoder, problem.forward, problem.loss, train, val, seconds=60, max_steps=80, check_every=40,
                    progress=False, prior=prior, prior_weight=weight, prior_batch=64)
        errors.append(latent_error(encoder))
    assert errors[1] < errors[0]


def test_a_landscapes_state_rebuilds_it_from_half_precision_weights(learned, problem):
    _, landscape = learned
    tensors, config = landscape.state()
    rebuilt = Landscape.from_state({k: v.half() for k, v in tensors.items()}, json.loads(json.dumps(config)), "x")
    assert rebuilt.settings == landscape.settings and rebuilt.start.config() == landscape.start.config()
    y = problem.test_observations(4, torch.Generator().manual_seed(0))
    assert torch.allclose(rebuilt.start(y), landscape.start(y), atol=1e-2, rtol=1e-2)
    with pytest.raises(LandformError, match="not a landform Landscape"):
        Landscape.from_state(tensors, {**config, "kind": "other"}, "x")


def test_learn_uses_a_tasks_start_and_its_own_held_out_observations(problem, tmp_path):
    held = problem.test_observations(24, torch.Generator().manual_seed(5))
    start = StartEncoder(tuple(held.shape[1:]), problem.x_shape, hidden=24, layers=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipe, "TUNE_COUNT", 8)
        landscape = learn(problem, tmp_path, seconds=60, rounds=2, trajectories=16, start_steps=40, pool_size=256,
                          start=start, validation=held, progress=False, log=lambda _: None)
    assert landscape.start is start and landscape.start.layers == 1
    assert landscape.record["observations"] == {"train": 256, "held_out": 24}
    assert landscape.record["tuning"]["count"] == 8


def test_the_fits_progress_bar_shows_the_held_out_speedup_once_scored():
    from landform.fitting import _postfix
    from landform.replay import FitRound

    def record(loss_last: float, **scores: float) -> FitRound:
        return FitRound(loss_first=1.0, loss_last=loss_last, collect_curve=[1.0, loss_last], train_loss=0.5,
                        theta_updates=1, trajectory_steps_per_second=1.0, scores=scores)

    history = [record(0.5), record(0.4, validation_speedup=20.0, validation_loss_ratio=0.61), record(0.3)]
    assert _postfix(history[:1]) == {"loss": "0.5"}
    assert _postfix(history) == {"loss": "0.3", "val speedup": "20.0x", "val loss/baseline": "0.61"}


def test_learn_writes_one_artifact_that_reloads_the_same_landscape(learned, problem):
    directory, landscape = learned
    assert artifact_path(directory) == directory / "landscape.safetensors"
    loaded = Landscape.load(directory)
    assert loaded.settings == landscape.settings
    y = problem.test_observations(16, torch.Generator().manual_seed(3))
    assert torch.equal(loaded.start(y), landscape.start(y))
    z = torch.randn(16, landscape.mapping.z_dim)
    assert torch.equal(loaded.mapping(z, y[:, :16]), landscape.mapping(z, y[:, :16]))
    record = json.loads((directory / "landscape.json").read_text())["record"]
    assert record["theta"]["rounds"] <= 3 and record["costs"]["forward_ms_per_batch"] > 0
    assert record["tuning"]["chosen"] in record["tuning"]["candidates"]


def test_tuned_settings_reach_the_answer_first_and_never_overshoot_where_another_setting_does_not(learned):
    _, landscape = learned
    tuning = landscape.record["tuning"]
    candidates = tuning["candidates"]
    chosen = candidates[tuning["chosen"]]
    assert settings_rank(chosen) == min(settings_rank(c) for c in candidates.values())
    steady = [c for c in candidates.values() if c["steps_to_answer_1pct"] is not None and c["max_rise"] <= 0.05]
    if steady:
        assert chosen["steps_to_answer_1pct"] is not None and chosen["max_rise"] <= MAX_RISE
        assert chosen["seconds_to_answer_1pct"] <= 1.06 * min(c["seconds_to_answer_1pct"] for c in steady
                                                              if settings_rank(c)[0] == settings_rank(chosen)[0])
    assert any(c["learned_steps"] for c in candidates.values())  # tuned with and without the learned steps
    assert 1 <= landscape.settings.steps <= 200


def test_landscape_inverts_with_its_settings_and_beats_plain_descent_early(learned, problem):
    _, landscape = learned
    y = problem.test_observations(32, torch.Generator().manual_seed(5))
    ours = landscape.invert(y, problem, steps=20)
    plain = landscape_methods(landscape)[0].run(problem, y, 0.1, steps=20)
    assert ours.losses.shape == (21, 32)
    assert ours.losses[0].mean() < plain.losses[0].mean()  # the learned start
    assert ours.losses[20].mean() < plain.losses[20].mean()


def test_resume_reuses_the_saved_start(learned, problem, monkeypatch):
    directory, landscape = learned
    messages = []
    monkeypatch.setattr(recipe, "TUNE_COUNT", 16)
    again = learn(problem, directory, seconds=60, rounds=4, trajectories=32, start_steps=300, resume=True,
                  progress=False, log=messages.append)
    assert any("is reused" in m for m in messages)
    y = problem.test_observations(4, torch.Generator().manual_seed(1))
    assert torch.equal(again.start(y), landscape.start(y))


def test_the_learned_steps_get_the_time_theta_leaves_once_even_across_a_resume(problem, tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "TUNE_COUNT", 16)
    monkeypatch.setattr(learned_parts, "STEPS_AGAIN_SHORTEST", 1.0)  # the 20-second fit's few seconds count
    options = {"seconds": 20, "rounds": 2, "trajectories": 16, "start_steps": 200, "pool_size": 2048,
               "progress": False}
    first: list[str] = []
    landscape = learn(problem, tmp_path, log=first.append, **options)
    again = landscape.record["start"]["learned_steps"].get("again")
    assert again and again["iterations"] > 0 and any("more iterations" in m for m in first)
    resumed: list[str] = []
    learn(problem, tmp_path, resume=True, log=resumed.append, **options)
    assert not any("more iterations" in m for m in resumed)  # the saved steps had their second turn


def test_a_problem_with_its_own_base_keeps_it(problem, tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "TUNE_COUNT", 16)
    base_problem = replace(problem, base=lambda y: torch.zeros(y.shape[0], 16))
    landscape = learn(base_problem, tmp_path, seconds=30, rounds=2, trajectories=32, progress=False,
                      log=lambda _: None)
    assert landscape.start is None
    assert (tmp_path / "start.safetensors").exists() is False
    with pytest.raises(LandformError, match="has none"):
        Landscape.load(tmp_path).invert(problem.test_observations(2, torch.Generator()), problem)


def test_a_corrupt_landscape_is_refused_in_one_line(learned, tmp_path):
    directory, _ = learned
    for name in ("landscape.safetensors", "landscape.json"):
        (tmp_path / name).write_bytes((directory / name).read_bytes())
    config = json.loads((tmp_path / "landscape.json").read_text())
    config["settings"]["lr_x"] = -1.0
    (tmp_path / "landscape.json").write_text(json.dumps(config))
    with pytest.raises(LandformError, match="out of range"):
        Landscape.load(tmp_path)


def test_example_problems_are_well_posed():
    for module in (decoder, renderer):
        problem = module.make_problem()
        y = problem.test_observations(4, torch.Generator().manual_seed(0))
        x = torch.zeros(4, *problem.x_shape)
        assert problem.loss(problem.forward(x), y).shape == (4,)
        assert not torch.equal(y, problem.train_observations(4, torch.Generator().manual_seed(0)))


def test_probe_problems_are_well_posed_and_have_the_faults_the_readme_names(monkeypatch):
    """benchmarks/probe_problems.py and heldout_problems.py: every problem is well posed; |Ax|² has exactly zero
    gradient at 0 and the blob renderer draws a blank image once its colour logits are far negative (the two faults
    they found)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import heldout_problems
    import probe_problems
    import recipe_examples

    modules = {"probe_problems": probe_problems, "heldout_problems": heldout_problems}
    for spec in [*recipe_examples.PROBES.values(), *recipe_examples.HELD_OUT.values()]:
        module, factory = spec.split(":")
        problem = getattr(modules[module], factory)()
        y = problem.test_observations(4, torch.Generator().manual_seed(0))
        x = torch.zeros(4, *problem.x_shape, requires_grad=True)
        values = problem.loss(problem.forward(x), y)
        assert values.shape == (4,) and torch.isfinite(values).all()
        assert not torch.equal(y, problem.train_observations(4, torch.Generator().manual_seed(0)))
        (grad,) = torch.autograd.grad(values.sum(), x)
        assert (grad.abs().max() == 0) == (problem.name == "phase_retrieval")
    blobs = probe_problems.blob_renderer()
    x = torch.randn(4, 3, 6)
    x[:, :, 3:] = -50.0
    assert float(blobs.forward(x.view(4, 18)).abs().max()) < 1e-20


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "landform", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def _forked_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    """``_cli``'s command in a child of a process that has imported torch already (tests/forked_cli.py)."""
    return forked_cli.run(list(args), dict(os.environ), cwd=cwd, timeout=600)


def test_cli_fit_compare_invert_with_the_recipe(tmp_path, learned):
    directory, _ = learned
    done = _forked_cli("compare", "--mapping", str(directory), "--count", "16", "--steps", "30", "--out",
                       str(tmp_path / "cmp"), "--threads", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "using " in done.stderr and "speedup to within 1%" in done.stdout
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())["test"]
    assert {"baseline", "encoder_init", "landscape", "landscape_pure"} <= set(summary)
    assert summary["start_seconds"] > 0 and summary["wallclock_speedup_at_20"] > 0
    done = _forked_cli("invert", "--mapping", str(directory), "--count", "8", "--out", str(tmp_path / "inv"),
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "observations" in done.stdout and (tmp_path / "inv" / "inversion.safetensors").exists()


@pytest.mark.parametrize("args, message", [
    (("fit", "--time", "soon"), "--time must be a positive duration"),
    (("fit", "--method", "online"), "apply to --recipe paper"),
    (("compare", "--mapping", "{landscape}", "--lr", "0.5"), "tuned step sizes"),
])
def test_cli_refuses_what_the_recipe_does_not_use_in_one_line(tmp_path, learned, args, message):
    directory, _ = learned
    args = tuple(a.format(landscape=directory) for a in args)
    done = _cli(*args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "landscape.safetensors").exists()


def test_cli_fit_with_a_forward_model_that_raises_is_one_line_and_keeps_the_users_files(tmp_path):
    (tmp_path / "broken.py").write_text(
        "import torch\nimport landform\n\n"
        "def forward(x):\n    raise ValueError('the forward model exploded')\n\n"
        "def make_problem():\n"
        "    draw = lambda n, g: torch.randn(n, 4, generator=g)\n"
        "    return landform.Problem(forward, lambda a, b: (a - b).pow(2).mean(1), (4,), draw, draw)\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    done = _forked_cli("fit", "--problem", "broken:make_problem", "--out", str(out), "--time", "20s", cwd=tmp_path)
    assert done.returncode == 2 and "the forward model exploded" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_the_readme_landscape_snippet_runs(tmp_path):
    """The README's Python example of a Landscape, with an 8-second budget instead of its 120."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "Landscape" in block)
    assert "seconds=120" in code
    done = subprocess.run([sys.executable, "-c", code.replace("seconds=120", "seconds=8")], capture_output=True,
                          text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "learned start" in done.stdout and (tmp_path / "runs/decoder-py/landscape.safetensors").exists()


def test_tuning_past_its_deadline_goes_on_down_the_step_sizes_until_one_does_not_overshoot(learned, problem):
    """Out of time before it starts: the start's step sizes (largest first; here they overshoot from the learned
    start) still run until one reaches the answer steadily, then every other candidate is skipped."""
    _, landscape = learned
    y = problem.train_observations(16, torch.Generator().manual_seed(9))
    settings, tuning = recipe.tune(problem_with_start(problem, landscape), landscape, y, deadline=0.0)
    judged = list(tuning["candidates"].values())

    def steady(row: dict) -> bool:
        return row["steps_to_answer_1pct"] is not None and row["max_rise"] <= MAX_RISE

    assert len(judged) > 3 and not any(steady(row) for row in judged[:-1]) and steady(judged[-1])
    assert settings.mode == "start" and tuning["candidates"][tuning["chosen"]]["max_rise"] <= MAX_RISE
    assert any(key.startswith("pure") for key in tuning["skipped"])


def _linear_problem(noise: float, start: str) -> Problem:
    """F(x) = A x from 4 numbers to 16, y = F(x) + noise; its base (start) at the least-squares answer or at 0."""
    a = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))

    def forward(x: torch.Tensor) -> torch.Tensor:
        return x @ a.T

    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        return forward(torch.randn(n, 4, generator=generator)) + noise * torch.randn(n, 16, generator=generator)

    def base(y: torch.Tensor) -> torch.Tensor:
        return torch.linalg.lstsq(a, y.T).solution.T if start == "answer" else torch.zeros(y.shape[0], 4)

    return Problem(forward, lambda y_hat, y: (y_hat - y).pow(2).mean(1), (4,), draw, draw, base=base)


def test_a_start_at_the_answer_gets_step_sizes_low_enough_that_descent_does_not_throw_it_back():
    """From a start at the least-squares answer, every step size of START_LR_FACTORS throws Adam's first steps far
    above it; the tuning goes on down (LOWER_START_LR_FACTORS) and keeps one that does not overshoot."""
    problem = _linear_problem(1e-3, "answer")
    landscape = Landscape(None, Mapping(2, (4,), hidden=8), InferenceSettings("start", 0.1, 0.1, 0, 200))
    settings, tuning = tune(problem, landscape, problem.train_observations(64, torch.Generator().manual_seed(1)))
    usual = {key: row for key, row in tuning["candidates"].items() if key.startswith("start")}
    assert len(usual) > len(START_LR_FACTORS)
    assert all(row["max_rise"] > MAX_RISE for row in list(usual.values())[:len(START_LR_FACTORS)])
    assert settings.mode == "start" and settings.lr_x < tuning["baseline_lr"] * min(START_LR_FACTORS)
    assert tuning["candidates"][tuning["chosen"]]["max_rise"] <= MAX_RISE


def test_the_tuning_leaves_out_a_last_learned_step_that_raises_the_loss():
    """Learned steps whose last step throws x away: the tuning runs only those before it."""
    problem = _linear_problem(1e-2, "zero")
    steps = LearnedSteps((4,), (16,), count=4, hidden=8).eval()
    with torch.no_grad():
        steps.log_rate.copy_(torch.tensor([0.1, 0.1, 0.1, 100.0]).log())  # plain gradient steps, the last far too long
    y = problem.train_observations(64, torch.Generator().manual_seed(1))
    assert best_lead(steps, problem, y) == 3
    landscape = Landscape(None, Mapping(2, (4,), hidden=8), InferenceSettings("start", 0.1, 0.1, 0, 200), steps=steps)
    _, tuning = tune(problem, landscape, y)
    assert any(key.endswith("after 3 learned steps") for key in tuning["candidates"])
    assert not any(key.endswith("after 4 learned steps") for key in tuning["candidates"])


def test_a_start_at_a_critical_point_of_the_loss_still_learns(phase_retrieval):
    forward, loss = phase_retrieval
    generator = torch.Generator().manual_seed(1)
    train, val = (forward(torch.randn(n, 8, generator=generator)) for n in (512, 64))
    torch.manual_seed(0)  # the encoder's initial weights: the test must not depend on the tests run before it
    encoder = StartEncoder((24,), (8,), hidden=32)
    record = train_start(encoder, forward, loss, train, val, seconds=60, max_steps=150, check_every=50,
                         batch_size=64, progress=False)
    first, best = record.validation[0][1], min(v for _, v in record.validation)
    assert best < 0.5 * first  # with a zero head it would stay at x = 0, where |Ax|² has no gradient


def test_a_start_that_traps_descent_is_dropped_and_a_fair_one_kept():
    """Descent from a start where F saturates (sigmoid at -50: no usable gradient) ends far above the baseline;
    the check zeroes its head, so it guesses x = 0 like the baseline. A start at x = 0 itself is kept."""
    def forward(x):
        return torch.sigmoid(x)

    def loss(y_hat, y):
        return (y_hat - y).pow(2).mean(dim=1)
    y = torch.sigmoid(torch.randn(16, 4, generator=torch.Generator().manual_seed(0)))
    problem = Problem(forward=forward, loss=loss, x_shape=(4,), train_observations=None, test_observations=None)
    runs = baseline_sweep(problem, y, seed=0, device="cpu")
    trap, fair = StartEncoder((4,), (4,), hidden=8), StartEncoder((4,), (4,), hidden=8)
    with torch.no_grad():
        trap.head.bias.fill_(-50.0)
    checked = check_start(problem, trap, y, runs, seed=0, device=torch.device("cpu"))
    assert checked["dropped"] and checked["ratio"] > 10
    assert torch.equal(trap(y), torch.zeros(16, 4))
    checked = check_start(problem, fair, y, runs, seed=0, device=torch.device("cpu"))
    assert not checked["dropped"] and checked["ratio"] <= START_TRAP


def test_sizing_measures_work_not_waiting_so_a_busy_machine_sizes_the_same():
    """On the CPU a pass costs its thread's CPU time on one intra-op thread: time spent waiting (here a sleep,
    on a busy machine other processes' turns) is not counted, and the thread count is restored."""
    import time

    threads = torch.get_num_threads()

    def waits(x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05)
        return x * 2

    assert recipe.seconds_per_pass(waits, torch.zeros(4, 3), repeats=2) < 0.02
    assert recipe.seconds_per_pass(waits, torch.zeros(4, 3), repeats=2, backward=False) < 0.02
    big = recipe.seconds_per_pass(torch.nn.Linear(512, 512), torch.zeros(512, 512), repeats=2)
    small = recipe.seconds_per_pass(torch.nn.Linear(512, 512), torch.zeros(8, 512), repeats=2)
    assert big > small > 0 and torch.get_num_threads() == threads


def test_a_conv_start_that_traps_descent_gets_one_try_of_the_mlp_start(tmp_path):
    """Image observations size a conv start and an MLP fallback; if the conv start is dropped as a trap, the MLP
    start is trained, checked and kept (the record says which start it replaced), and saved for --resume."""
    problem = renderer.make_problem()
    y = problem.train_observations(64, torch.Generator().manual_seed(0))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipe, "START_SHARE", 1e6)  # every start fits F's cost: the richest conv, then the MLP
        starts, _, _ = recipe.sized_models(problem, y, 32)
    assert [s.architecture for s in starts] == ["conv", "mlp"] and starts[0].channels == 32 and starts[1].hidden == 512
    flat = recipe.sized_models(problem, y.flatten(1).view(64, 1, 1, -1), 32)[0]
    assert [s.architecture for s in flat] == ["mlp"]

    real = check_start
    checked = []

    def conv_traps(problem, start, *args, **kwargs):
        checked.append(start.architecture)
        if start.architecture == "conv":
            return {"baseline_final": 1.0, "start_final": 2.5, "ratio": 2.5, "dropped": True}
        return real(problem, start, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:  # small starts keep it to seconds
        patch.setattr(recipe, "START_SHARE", 1e6)
        patch.setattr(recipe, "START_CHOICES", (("conv", 4), ("mlp", 32)))
        patch.setattr(recipe, "TUNE_COUNT", 8)
        patch.setattr(recipe, "check_start", conv_traps)  # read by learn, in recipe
        landscape = learn(problem, tmp_path, seconds=60, rounds=2, trajectories=16, start_steps=40, pool_size=256,
                          progress=False, log=lambda _: None)
    assert checked == ["conv", "mlp"] and landscape.start.architecture == "mlp"
    record = landscape.record["start"]
    assert record["kind"] == "mlp" and record["replaced"]["kind"] == "conv" and record["replaced"]["check"]["dropped"]
    saved = load_pair(tmp_path / "start.safetensors")[1]
    assert saved["start"]["architecture"] == "mlp"


def test_the_error_feedback_step_begins_as_the_start_learns_through_f_and_keeps_f_out_of_its_state():
    """x1 = x0 + R([y, F(x0) - y, x0]): an untrained R keeps E's guess; trained through a frozen F (an nn.Module
    here) it lowers the held-out loss below E's, F's weights are neither trained nor part of the state."""
    torch.manual_seed(0)
    forward = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))
    frozen = {k: v.clone() for k, v in forward.state_dict().items()}

    def loss(y_hat, y):
        return (y_hat - y).pow(2).mean(1)

    with torch.no_grad():
        train, val = forward(2 * torch.randn(2048, 4)), forward(2 * torch.randn(128, 4))
    start = StartEncoder((8,), (4,), hidden=8, layers=1)  # a weak start: R has something to correct
    train_start(start, forward, loss, train, val, seconds=60, max_steps=200, check_every=100, progress=False)
    refined = RefinedStart(start, forward, hidden=64, layers=2)
    assert torch.equal(refined(val), start(val))
    assert not any(k.startswith(("_forward", "0.", "2.")) for k in refined.state_dict())
    record = train_start(refined, forward, loss, train, val, seconds=60, max_steps=600, check_every=100,
                         progress=False)
    assert min(v for _, v in record.validation) < 0.8 * record.validation[0][1]
    assert all(torch.equal(v, frozen[k]) for k, v in forward.state_dict().items())
    with pytest.raises(LandformError, match="refiner for this start takes 20 features"):
        RefinedStart(start, forward, StartEncoder((8,), (4,)))


def test_the_error_feedback_step_is_kept_only_where_its_tuned_inference_is_faster_and_round_trips(problem, tmp_path):
    """learn trains the step after the start, tunes the inference from it and from the start alone, and keeps it
    only where it reaches the answer sooner (the tuning is stubbed to force either outcome: it is
    tested above); a kept step is saved in the landscape (rebuilt from its state: the same guesses) and a
    resumed fit reuses the saved step."""
    def tuned(refined_wins):
        def stub(problem, landscape, y_val, **kwargs):
            value = 1.0 if (landscape.refiner is not None) == refined_wins else 2.0
            entry = {"worst_ratio_from_1": 0.5, "seconds_to_answer_1pct": value, "time_ratio": value,
                     "max_rise": 0.0, "final_ratio": 1.0}
            return recipe.InferenceSettings("start", 0.1, 0.1, 0, 20), {"candidates": {"k": entry}, "chosen": "k"}
        return stub

    y = problem.test_observations(4, torch.Generator().manual_seed(0))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipe, "TUNE_COUNT", 8)
        patch.setattr(learned_parts, "REFINE_GAIN", 10.0)  # any trained step is a candidate
        common = {"seconds": 60, "rounds": 1, "trajectories": 16, "start_steps": 200, "pool_size": 512,
                  "progress": False, "refine": None, "learned_steps": False}
        messages: list[str] = []
        for refined_wins in (True, False):
            patch.setattr(recipe, "tune", tuned(refined_wins))
            landscape = learn(problem, tmp_path, resume=not refined_wins, log=messages.append, **common)
            record = landscape.record["start"]["refine"]
            assert record["candidate"] and record["kept"] is refined_wins
            assert isinstance(landscape.start_of(problem), RefinedStart) is refined_wins
            rebuilt = Landscape.load(tmp_path)
            assert (rebuilt.refiner is not None) is refined_wins
            assert torch.allclose(rebuilt.start_of(problem)(y), landscape.start_of(problem)(y), atol=1e-5)
            if refined_wins:
                tensors, config = landscape.state()
                assert any(k.startswith("refine.") for k in tensors)
                with pytest.raises(LandformError, match="no start to refine"):
                    Landscape.check_config({**config, "start": None}, "x")
    assert any("error-feedback step saved" in m for m in messages)  # the resumed fit reused the trained step
