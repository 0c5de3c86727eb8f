"""The Landscape artifact (one nn.Module), its learned update steps, the answer metrics and the fingerprint of
the forward model it was fitted for."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import pytest
import torch

from landform import zoo
from landform.comparison import Method
from landform.errors import LandformError
from landform.landscape import (
    InferenceSettings,
    Landscape,
    fingerprint,
    fingerprint_difference,
)
from landform.mapping import Mapping
from landform.metrics import max_rise, speedup_to_answer
from landform.problem import Problem
from landform.start import StartEncoder
from landform.steps import SHORTEST_SIZED, SMALLEST_BATCH, LearnedSteps, affordable_batch, held_out_losses, train_steps
from landform.summary import answer_stats
from landform.tuning import settings_rank


def _decoder(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))
    return net.requires_grad_(False).eval()


def _mse(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (y_hat - y).pow(2).flatten(1).mean(1)


def _problem(forward=None) -> Problem:
    forward = forward if forward is not None else _decoder()

    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return forward(torch.randn(n, 4, generator=generator))
    return Problem(forward=forward, loss=_mse, x_shape=(4,), train_observations=draw, test_observations=draw,
                   name="tiny")


def _landscape(steps: LearnedSteps | None = None, learned: int = 0) -> Landscape:
    start = StartEncoder((8,), (4,), hidden=16)
    refiner = StartEncoder((2 * 8 + 4,), (4,), architecture="mlp", hidden=16)
    return Landscape(start=start, mapping=Mapping(4, (4,), hidden=16, additive=True), refiner=refiner, steps=steps,
                     settings=InferenceSettings("start", 0.1, 0.01, 0, 20, learned))


def test_to_moves_every_part_and_state_holds_them_all():
    landscape = _landscape(LearnedSteps((4,), (8,), count=3, hidden=16), learned=3)
    moved = landscape.to("meta")
    parts = {"start": moved.start, "refiner": moved.refiner, "steps": moved.steps, "mapping": moved.mapping}
    for name, part in parts.items():
        assert all(p.device.type == "meta" for p in part.parameters()), name
        assert all(b.device.type == "meta" for b in part.buffers()), name
    names = {key.split(".")[0] for key in _landscape(LearnedSteps((4,), (8,), count=3)).state()[0]}
    assert names == {"theta", "start", "refine", "steps"}


def test_save_load_round_trip_keeps_learned_steps_and_settings(tmp_path):
    steps = LearnedSteps((4,), (8,), count=2, hidden=16)
    with torch.no_grad():
        steps.head.weight.normal_()
    landscape = _landscape(steps, learned=2)
    landscape.requires = {"forward": fingerprint(_decoder(), (4,))}
    landscape.save(tmp_path)
    loaded = Landscape.load(tmp_path)
    assert loaded.settings == landscape.settings
    assert loaded.steps is not None and loaded.steps.count == 2
    assert torch.equal(loaded.steps.head.weight, steps.head.weight)
    assert loaded.requires == landscape.requires


def test_float16_storage_keeps_the_statistics_a_learned_step_divides_by():
    """A feature whose spread is 1e-6 (3D joints in metres): its mean rounded to float16 moves it by many spreads."""
    problem = _problem()
    y = problem.train_observations(256, torch.Generator().manual_seed(0)) * 1e-4 + 0.0123
    steps = LearnedSteps((4,), (8,), count=2, hidden=16)
    steps.standardize_with(torch.zeros(256, 4), y, problem.forward, problem.loss)
    landscape = _landscape(steps, learned=2)
    assert {"start.y_mean", "start.y_scale", "steps.feature_mean", "steps.feature_scale"} <= landscape.statistics()
    tensors, config = landscape.state()
    stored = zoo.half(tensors, keep=landscape.statistics())
    assert stored["steps.feature_scale"].dtype == torch.float32 and stored["steps.head.weight"].dtype == torch.float16
    loaded = Landscape.from_state({k: v.float() for k, v in stored.items()}, config, "stored")
    assert torch.equal(loaded.steps.feature_mean, steps.feature_mean)
    rounded = steps.feature_mean.half().float()
    assert ((rounded - steps.feature_mean).abs() / steps.feature_scale).max() > 1.0  # what plain float16 would do


def test_settings_asking_for_more_learned_steps_than_shipped_are_refused(tmp_path):
    landscape = _landscape(LearnedSteps((4,), (8,), count=2, hidden=16), learned=2)
    tensors, config = landscape.state()
    config["settings"]["learned_steps"] = 4
    with pytest.raises(LandformError, match="learned steps"):
        Landscape.from_state(tensors, config, tmp_path / "x")


def test_fingerprint_refuses_changed_weights_and_another_function_and_accepts_the_same_model():
    problem = _problem()
    landscape = _landscape()
    landscape.requires = {"forward": fingerprint(problem.forward, (4,))}
    landscape.check_problem(_problem(_decoder()))  # the same weights rebuilt: accepted
    changed = _decoder()
    with torch.no_grad():
        changed[0].weight[0, 0] += 1e-6  # a retrained model's weights differ slightly
    with pytest.raises(LandformError, match="parameters differ"):
        landscape.check_problem(_problem(changed))
    plain = Problem(forward=lambda x: problem.forward(x) * 1.01, loss=_mse, x_shape=(4,),
                    train_observations=problem.train_observations, test_observations=problem.test_observations)
    with pytest.raises(LandformError, match="outputs on the probe inputs differ"):
        landscape.check_problem(plain)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        landscape.check_problem(plain, allow_other_model=True)
    assert any("used anyway" in str(w.message) for w in caught)
    same_function = fingerprint(lambda x: problem.forward(x), (4,))
    assert fingerprint_difference(landscape.requires["forward"], same_function) is None


def test_untrained_learned_steps_are_small_gradient_steps_and_training_lowers_the_held_out_loss():
    problem = _problem()
    generator = torch.Generator().manual_seed(0)
    y_train, y_val = problem.train_observations(512, generator), problem.train_observations(128, generator)
    x_train, x_val = torch.zeros(512, 4), torch.zeros(128, 4)
    steps = LearnedSteps((4,), (8,), count=3, hidden=32)
    steps.standardize_with(x_train, y_train, problem.forward, problem.loss)
    before = held_out_losses(steps, problem.forward, problem.loss, x_val, y_val)
    assert before[1] <= before[0]  # an untrained step is a small descent step, never a jump
    train_steps(steps, problem.forward, problem.loss, x_train, y_train, x_val, y_val, seconds=20, max_iterations=300,
                batch_size=64, check_every=50, progress=False)
    after = held_out_losses(steps, problem.forward, problem.loss, x_val, y_val)
    assert after[-1] < 0.7 * before[-1]


def test_a_short_budget_buys_the_learned_steps_more_iterations_of_smaller_minibatches():
    assert affordable_batch(256, 0.1, 50.0, 2000) == 64  # 2,000 iterations of 64 take 50 s
    assert affordable_batch(256, 0.001, 50.0, 2000) == 256  # they fit already
    assert affordable_batch(256, 1.0, 1.0, 2000) == SMALLEST_BATCH
    assert affordable_batch(16, 1.0, 1.0, 2000) == 16  # never raised
    problem = _problem()
    generator = torch.Generator().manual_seed(0)
    y_train, y_val = problem.train_observations(512, generator), problem.train_observations(64, generator)
    x_train = torch.zeros(512, 4)
    sizes = {}
    for name, seconds, wanted in (("sized", SHORTEST_SIZED, 10**9), ("fixed", SHORTEST_SIZED, None),
                                  ("no clock", math.inf, 10**9), ("too short to size", 1.0, 10**9)):
        steps = LearnedSteps((4,), (8,), count=2, hidden=16)
        record = train_steps(steps, problem.forward, problem.loss, x_train, y_train, x_train[:64], y_val,
                             seconds=seconds, max_iterations=20, check_every=10, progress=False,
                             iterations_wanted=wanted)
        sizes[name] = record.batch_size
        assert record.as_dict()["batch_size"] == record.batch_size
    # without a clock (a seeded, resumable fit), without a wish or with under a minute it stays as asked
    assert sizes == {"sized": SMALLEST_BATCH, "fixed": 256, "no clock": 256, "too short to size": 256}


def test_a_method_led_by_learned_steps_keeps_the_step_count_and_counts_their_evaluations():
    problem = _problem()
    y = problem.test_observations(16, torch.Generator().manual_seed(1))
    steps = LearnedSteps((4,), (8,), count=3, hidden=16)
    steps.standardize_with(torch.zeros(16, 4), y, problem.forward, problem.loss)
    base_problem = Problem(**{**problem.__dict__, "base": lambda obs: torch.zeros(obs.shape[0], 4)})
    led = Method("led", lr=0.05, use_base=True, init="origin", lead=steps, lead_count=3).run(base_problem, y, 0.05,
                                                                                            steps=10)
    plain = Method("plain", lr=0.05, use_base=True, init="origin").run(base_problem, y, 0.05, steps=10)
    assert led.losses.shape == plain.losses.shape == (11, 16)
    assert led.evaluations == plain.evaluations  # a learned step is one evaluation of F, as a descent step is
    assert led.elapsed is not None and len(led.elapsed) == 11 and bool((led.elapsed.diff() >= 0).all())
    first = held_out_losses(steps, problem.forward, problem.loss, torch.zeros(16, 4), y)
    assert torch.allclose(led.losses.mean(1)[:4].double(), first.double(), rtol=1e-5)
    kept = Method("led", lr=0.05, use_base=True, init="origin", lead=steps, lead_count=3).run(
        base_problem, y, 0.05, steps=10, snapshots=(0, 2, 3, 7, 10))
    assert sorted(kept.snapshots) == [0, 2, 3, 7, 10]  # counted from the start, learned steps included
    for step, x in kept.snapshots.items():
        assert torch.allclose(problem.loss(problem.forward(x), y), kept.losses[step], rtol=1e-4, atol=1e-7), step


def test_descent_with_an_anchored_theta_begins_where_the_learned_steps_end():
    problem = _problem()
    y = problem.test_observations(16, torch.Generator().manual_seed(1))
    steps = LearnedSteps((4,), (8,), count=3, hidden=16)
    steps.standardize_with(torch.zeros(16, 4), y, problem.forward, problem.loss)
    torch.manual_seed(0)
    anchored = Mapping(3, (4,), hidden=8, additive=True)  # Θ(0) is far from 0: it would move x off the steps' end
    base_problem = Problem(**{**problem.__dict__, "base": lambda obs: torch.zeros(obs.shape[0], 4)})
    for mode in ("residual", "pure"):
        led = Method("led", mapping=anchored, mode=mode, lr=1e-9, lr_x=1e-9, use_base=True, lead=steps,
                     lead_count=3).run(base_problem, y, 1e-9, steps=6)
        ends = held_out_losses(steps, problem.forward, problem.loss, torch.zeros(16, 4), y)[-1]
        assert float(led.losses[3].mean()) == pytest.approx(float(ends), rel=1e-5), mode
        assert float(led.losses[6].mean()) == pytest.approx(float(ends), rel=1e-4), mode  # no step moves it


def test_answer_metrics_count_time_to_within_one_percent_uncapped():
    baseline = torch.linspace(1.0, 0.1, 201).unsqueeze(1).repeat(1, 4)  # reaches 0.101 near its end
    ours = torch.full((201, 4), 0.1005)
    ours[0] = 0.5
    ours[1] = 0.2
    elapsed = torch.arange(201, dtype=torch.float64) * 0.01
    stats = answer_stats(baseline, ours, reference_elapsed=elapsed, elapsed=elapsed, bootstrap=0)
    assert stats["steps_to_answer_1pct"] == 2 and stats["steps_to_answer"] is None
    baseline_steps = int(torch.nonzero(baseline.mean(1) <= 0.1 * 1.01)[0, 0])
    assert stats["speedup_to_answer"] == pytest.approx(baseline_steps / 2)
    assert speedup_to_answer(baseline.mean(1), ours.mean(1), elapsed, elapsed, start=0.02) == \
        pytest.approx(baseline_steps * 0.01 / (0.02 + 0.02))
    assert max_rise(torch.tensor([1.0, 0.5, 1.1, 1.0])) == pytest.approx(1.2)
    assert max_rise(torch.tensor([1.0, 0.5, 0.4])) == 0.0


def test_tuning_ranks_an_overshooting_setting_below_one_that_reaches_the_answer_later():
    def judged(seconds: float, rise: float, worst: float = 1.0, final: float = 1.0) -> dict:
        return {"seconds_to_answer_1pct": seconds, "time_ratio": seconds, "max_rise": rise,
                "worst_ratio_from_1": worst, "final_ratio": final}
    steady, overshoot = judged(2.0, 0.0), judged(1.0, 1.2)
    never = judged(math.inf, 0.0, final=1.5)
    assert settings_rank(steady) < settings_rank(overshoot) < settings_rank(never)
    assert settings_rank(judged(1.0, 0.0)) < settings_rank(judged(2.0, 0.0))
    # a tie on time: the lower end first
    assert settings_rank(judged(1.0, 0.0, final=0.99)) < settings_rank(judged(1.01, 0.0, final=1.0))


def test_learned_steps_train_first_order_where_f_cannot_be_differentiated_twice_and_never_start_uphill():
    from landform.steps import second_order_works

    anchors = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(2))

    def distances(x: torch.Tensor) -> torch.Tensor:  # cdist has no second derivative in torch
        return torch.cdist(x.unsqueeze(1), anchors.expand(x.shape[0], -1, -1)).squeeze(1)
    problem = _problem(distances)
    generator = torch.Generator().manual_seed(0)
    y_train, y_val = problem.train_observations(256, generator), problem.train_observations(64, generator)
    steps = LearnedSteps((4,), (8,), count=2, hidden=16)
    x0 = torch.full((256, 4), 0.1)
    assert not second_order_works(steps, problem.forward, problem.loss, x0[:8], y_train[:8])
    assert second_order_works(steps, _problem().forward, _problem().loss, x0[:8], y_train[:8])
    record = train_steps(steps, problem.forward, problem.loss, x0, y_train, x0[:64], y_val, seconds=20,
                         max_iterations=100, batch_size=32, check_every=50, progress=False, create_graph=True)
    assert record.iterations == 100
    stiff = _problem(lambda x: _decoder()(x * torch.tensor([1.0, 1.0, 1.0, 300.0])))
    steps = LearnedSteps((4,), (8,), count=2, hidden=16)
    y = stiff.train_observations(256, generator)
    steps.standardize_with(torch.randn(256, 4), y, stiff.forward, stiff.loss)
    curve = held_out_losses(steps, stiff.forward, stiff.loss, torch.randn(256, 4), y)
    assert curve[1] <= curve[0]  # the untrained step's size is cut until it does not go uphill


def test_a_zoo_entry_fitted_on_another_entry_is_refused_in_one_line(tmp_path):
    """``zoo.check_fitted_on`` reads ``requires["zoo"]`` and, for entries written before it, the old config key."""
    (tmp_path / "dep-model.safetensors").write_bytes(b"some weights")
    current = zoo.fingerprint("dep-model", tmp_path)
    fitted_on = {"dep-model": "old_key"}
    written = {"requires": zoo.requirements(fitted_on, tmp_path)}
    assert written["requires"]["zoo"] == {"dep-model": current}
    assert zoo.check_fitted_on("theta", written, fitted_on, tmp_path) == {"dep-model": current}
    zoo.check_fitted_on("theta", {"old_key": current}, fitted_on, tmp_path)  # an entry of the old layout
    for config in ({"old_key": "0123456789abcdef"}, {},
                   {"requires": {"zoo": {"dep-model": "0123456789abcdef"}}, "old_key": current}):
        with pytest.raises(LandformError, match="theta was fitted for another dep-model") as error:
            zoo.check_fitted_on("theta", config, fitted_on, tmp_path)
        assert "`landform zoo train theta`" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(LandformError, match="missing; train it with `landform zoo train absent-model`"):
        zoo.check_fitted_on("theta", written, {"absent-model": None}, tmp_path)


def test_a_landscape_shipped_as_parts_loads_as_one_through_from_zoo(tmp_path):
    """A Θ entry, the entry of its learned start and the task's settings load as one checked Landscape, and a
    saved Landscape entry loads as it is."""
    (tmp_path / "dep-model.safetensors").write_bytes(b"some weights")
    requires = zoo.requirements(["dep-model"], tmp_path)
    torch.manual_seed(0)
    mapping, start = Mapping(3, (4,), hidden=8, additive=True), StartEncoder((8,), (4,), hidden=16)
    zoo.save("part-theta", mapping.state_dict(), {**mapping.config(), "requires": requires}, "card", tmp_path)
    zoo.save("part-start", start.state_dict(), {"start": start.config(), "requires": requires}, "card", tmp_path)
    settings = InferenceSettings(mode="residual", lr_z=0.1, lr_x=0.5, warmup=20, steps=200)
    landscape = zoo.load_landscape("part-theta", {"dep-model": None}, directory=tmp_path, start="part-start",
                                   settings=settings)
    assert landscape.settings == settings and landscape.requires["zoo"] == requires["zoo"]
    y = torch.randn(2, 8)
    assert torch.equal(landscape.start(y), start.eval()(y))
    z = torch.randn(2, 3)
    assert torch.equal(landscape.mapping(z, y[:, :4]), mapping(z, y[:, :4]))
    with pytest.raises(LandformError, match="needs its inference settings"):
        zoo.load_landscape("part-theta", {"dep-model": None}, directory=tmp_path)
    steps = LearnedSteps((4,), (8,), count=2, hidden=16)
    zoo.save("part-steps", steps.state_dict(), {"steps": steps.config(), "requires": requires}, "card", tmp_path)
    led = zoo.load_landscape("part-theta", {"dep-model": None}, directory=tmp_path, start="part-start",
                             steps="part-steps", settings=replace(settings, learned_steps=2))
    assert led.steps is not None and led.steps.count == 2 and led.method().lead_count == 2
    unled = zoo.load_landscape("part-theta", {"dep-model": None}, directory=tmp_path, start="part-start",
                               steps="part-steps", settings=settings)  # settings without learned steps: none used
    assert unled.steps is None
    tensors, config = landscape.state()
    zoo.save("whole-landscape", tensors, config, "card", tmp_path)
    again = zoo.load_landscape("whole-landscape", {"dep-model": None}, directory=tmp_path)
    assert again.settings == settings and torch.equal(again.start(y), landscape.start(y))
    (tmp_path / "dep-model.safetensors").write_bytes(b"retrained weights")
    with pytest.raises(LandformError, match="whole-landscape was fitted for another dep-model"):
        zoo.load_landscape("whole-landscape", {"dep-model": None}, directory=tmp_path)
