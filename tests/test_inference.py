import copy

import pytest
import torch

from landform import DescentSettings, LandformError, Mapping, invert, sweep_lr


def test_landscape_beats_baseline_at_steps_2_5_20(problem, fitted, test_observations):
    """The method's claim on a hard landscape: Z-space descent is ahead of X-space descent at every
    early step, against the baseline's best learning rate from the sweep at each step."""
    y = test_observations
    ours = invert(problem.forward, problem.loss, y, mapping=fitted, steps=20, lr=0.1).losses.mean(1)
    best_baseline = torch.stack([
        invert(problem.forward, problem.loss, y, x_shape=(16,), steps=20, lr=lr).losses.mean(1)
        for lr in (0.5, 0.1, 0.05, 0.01, 0.001)
    ]).min(dim=0).values
    for step in (2, 5, 20):
        assert ours[step] < best_baseline[step], step


def test_baseline_matches_a_hand_written_torch_optim_loop(problem, test_observations):
    y = test_observations[:8]
    result = invert(problem.forward, problem.loss, y, x_shape=(16,), steps=15, lr=0.05)
    x = torch.zeros(8, 16, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=0.05)
    curve = []
    for _ in range(15):
        optimizer.zero_grad()
        values = problem.loss(problem.forward(x), y)
        curve.append(values.detach())
        values.sum().backward()
        optimizer.step()
    curve.append(problem.loss(problem.forward(x), y).detach())
    assert torch.allclose(result.x, x.detach(), atol=1e-6)
    assert torch.allclose(result.losses, torch.stack(curve), atol=1e-6)
    assert result.z is None and result.seconds_per_step > 0


@pytest.mark.parametrize("optimizer", ["adam", torch.optim.SGD, "rmsprop"])
def test_an_example_does_not_depend_on_its_batch(problem, fitted, test_observations, optimizer):
    # In float64: in float32, Adam's sign-like first step turns rounding noise of near-zero gradient
    # entries (which differs between batched and single matrix products) into visible differences.
    forward, mapping = copy.deepcopy(problem.forward).double(), copy.deepcopy(fitted).double()
    y = test_observations[:6].double()
    together = invert(forward, problem.loss, y, mapping=mapping, steps=10, optimizer=optimizer, lr=0.05)
    for i in range(6):
        alone = invert(forward, problem.loss, y[i:i + 1], mapping=mapping, steps=10, optimizer=optimizer, lr=0.05)
        assert torch.allclose(alone.x[0], together.x[i], atol=1e-9)
        assert torch.allclose(alone.losses[:, 0], together.losses[:, i], atol=1e-9)


def test_mask_hidden_entries_give_no_loss_and_no_gradient(problem, fitted, test_observations):
    y = test_observations[:4]
    mask = torch.zeros(32, dtype=torch.bool)
    mask[:16] = True
    scrambled = y.clone()
    scrambled[:, 16:] = torch.randn(4, 16) * 100
    a = invert(problem.forward, problem.loss, y, mapping=fitted, steps=10, mask=mask)
    b = invert(problem.forward, problem.loss, scrambled, mapping=fitted, steps=10, mask=mask)
    assert torch.allclose(a.x, b.x, atol=1e-6)
    full = invert(problem.forward, problem.loss, y, mapping=fitted, steps=10)
    assert not torch.allclose(a.x, full.x, atol=1e-4)
    with pytest.raises(LandformError, match="hides every entry"):
        invert(problem.forward, problem.loss, y, mapping=fitted, steps=1, mask=torch.zeros(32, dtype=torch.bool))


def test_gaussian_init_gives_seeded_distinct_hypotheses(problem, fitted, test_observations):
    y = test_observations[:1].expand(3, -1)
    first = invert(problem.forward, problem.loss, y, mapping=fitted, steps=0, init="gaussian", seed=3)
    again = invert(problem.forward, problem.loss, y, mapping=fitted, steps=0, init="gaussian", seed=3)
    other = invert(problem.forward, problem.loss, y, mapping=fitted, steps=0, init="gaussian", seed=4)
    assert torch.equal(first.z, again.z) and not torch.equal(first.z, other.z)
    assert not torch.allclose(first.z[0], first.z[1])
    init = torch.ones(3, 16)
    assert torch.equal(invert(problem.forward, problem.loss, y, mapping=fitted, steps=0, init=init).z, init)


def test_lbfgs_and_explicit_device(problem, fitted, test_observations):
    result = invert(problem.forward, problem.loss, test_observations[:4], mapping=fitted, steps=5,
                    optimizer="lbfgs", lr=0.5, device="cpu")
    assert result.losses.shape == (6, 4) and result.losses[-1].mean() < result.losses[0].mean()


def test_a_settings_object_and_keywords_describe_the_same_descent(problem, fitted, test_observations):
    y = test_observations[:8]
    settings = DescentSettings(mode="residual", steps=6, lr=0.05, lr_x=0.02, warmup=3)
    by_object = invert(problem.forward, problem.loss, y, settings, mapping=fitted)
    by_keywords = invert(problem.forward, problem.loss, y, mapping=fitted, mode="residual", steps=6, lr=0.05,
                         lr_x=0.02, warmup=3)
    assert torch.equal(by_object.losses, by_keywords.losses) and torch.equal(by_object.x, by_keywords.x)
    longer = invert(problem.forward, problem.loss, y, settings, mapping=fitted, steps=8)  # a keyword replaces
    assert longer.losses.shape[0] == 9 and torch.equal(longer.losses[:7], by_object.losses[:7])
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*: stesp"):
        invert(problem.forward, problem.loss, y, settings, mapping=fitted, stesp=8)


def test_additive_base_for_both_paths():
    forward = torch.nn.Identity()

    def loss(y_hat, y):
        return (y_hat - y).pow(2).sum(1)

    y = torch.randn(3, 4)
    base = y + 1.0
    baseline = invert(forward, loss, y, base=base, steps=0)
    assert torch.allclose(baseline.x, base)
    mapping = Mapping(4, (4,), hidden=8, additive=True)
    ours = invert(forward, loss, y, mapping=mapping, base=lambda obs: obs + 1.0, steps=0)
    assert torch.allclose(ours.x, base + mapping.net(torch.zeros(3, 4)))


def test_sweep_picks_the_lowest_final_loss(problem, test_observations):
    best, results = sweep_lr(problem.forward, problem.loss, test_observations[:16], lrs=(0.05, 0.001),
                             steps=30, x_shape=(16,))
    assert best == min(results, key=lambda lr: results[lr]["final"])
    assert results[0.05]["final"] < results[0.001]["final"]


def test_bad_inputs(problem, fitted, test_observations):
    y = test_observations[:2]
    with pytest.raises(LandformError, match="mapping outputs x of shape"):
        invert(problem.forward, problem.loss, y, mapping=Mapping(4, (8,), hidden=8), x_shape=(16,))
    with pytest.raises(LandformError, match="forward model failed"):
        invert(problem.forward, problem.loss, y, mapping=Mapping(4, (8,), hidden=8), steps=1)
    with pytest.raises(LandformError, match="observations have shape"):
        invert(problem.forward, problem.loss, y[:, :10], mapping=fitted, steps=1)
    with pytest.raises(LandformError, match="one value per example"):
        invert(problem.forward, lambda a, b: (a - b).pow(2).mean(), y, mapping=fitted, steps=1)
    with pytest.raises(LandformError, match="unknown optimizer"):
        invert(problem.forward, problem.loss, y, mapping=fitted, optimizer="adamm")
    with pytest.raises(LandformError, match="x_shape"):
        invert(problem.forward, problem.loss, y, steps=1)
    with pytest.raises(LandformError, match="unknown init"):
        invert(problem.forward, problem.loss, y, mapping=fitted, init="uniform")


def test_snapshots_keep_x_at_the_asked_steps(problem, fitted, test_observations):
    y = test_observations[:3]
    result = invert(problem.forward, problem.loss, y, mapping=fitted, steps=4, snapshots=(0, 2, 4))
    assert sorted(result.snapshots) == [0, 2, 4]
    assert torch.equal(result.snapshots[4], result.x)
    assert torch.equal(result.snapshots[0], fitted(torch.zeros(3, 16)))
    shorter = invert(problem.forward, problem.loss, y, mapping=fitted, steps=2)
    assert torch.allclose(result.snapshots[2], shorter.x)


def test_origin_init_leaves_a_critical_point_at_zero_and_is_zeros_elsewhere(problem, test_observations,
                                                                            phase_retrieval):
    forward, loss = phase_retrieval
    y = forward(torch.randn(6, 8, generator=torch.Generator().manual_seed(1)))
    stuck = invert(forward, loss, y, x_shape=(8,), lr=0.1, steps=30)
    moved = invert(forward, loss, y, x_shape=(8,), lr=0.1, steps=30, init="origin", seed=3)
    assert torch.equal(stuck.losses[-1], stuck.losses[0])  # zeros: no gradient, no step
    assert (moved.losses[-1] < 0.5 * moved.losses[0]).all()
    assert moved.evaluations == stuck.evaluations + 1
    again = invert(forward, loss, y, x_shape=(8,), lr=0.1, steps=30, init="origin", seed=3)
    assert torch.equal(again.x, moved.x)
    # Where the gradient at 0 is not zero, "origin" is plain zeros: the same steps bit for bit.
    y = test_observations[:8]
    plain = invert(problem.forward, problem.loss, y, x_shape=problem.x_shape, lr=0.05, steps=10)
    origin = invert(problem.forward, problem.loss, y, x_shape=problem.x_shape, lr=0.05, steps=10, init="origin")
    assert torch.equal(plain.losses, origin.losses)


def test_the_sweep_goes_past_the_grids_edge_only_while_the_best_step_size_lies_there():
    import math

    from landform.comparison import sweep_rates

    grid = (0.5, 0.1, 0.01)

    def valley(best):
        def final_of(rate):
            return (math.log(rate) - math.log(best)) ** 2
        return final_of

    def tried(final_of, rates=grid):
        best, finals = sweep_rates(rates, final_of)
        return best, list(finals)[len(rates):]

    assert tried(valley(0.1)) == (0.1, [])  # inside the grid: nothing more
    assert tried(valley(1.0)) == (0.5, [2.5])  # 2.5 is worse than 0.5: no further
    assert tried(valley(3.0)) == (2.5, [2.5, 12.5])
    assert tried(valley(1e6)) == (12.5, [2.5, 12.5])  # at most two each way
    assert tried(valley(1e-4)) == (0.0001, [0.001, 0.0001])
    assert tried(lambda rate: math.inf) == (0.0001, [0.001, 0.0001])  # all diverge: smaller ones
    # past the grid a rate must end clearly lower (EDGE_GAIN) to be chosen, and the sweep stops there
    assert tried(lambda rate: {0.5: 1.0, 2.5: 0.95}.get(rate, 2.0)) == (0.5, [2.5])
    assert tried(valley(3.0), rates=(0.5,)) == (0.5, [])


def test_a_baseline_in_physical_units_gets_step_sizes_above_the_grid():
    """x = 100 + noise, F = identity: from 0, Adam needs steps far above 0.5; the sweep and compare find them."""
    from landform import Problem
    from landform.comparison import Method, compare

    def forward(x):
        return x

    def loss(y_hat, y):
        return (y_hat - y).pow(2).mean(dim=1)

    y = 100 + torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    best, results = sweep_lr(forward, loss, y, steps=50, x_shape=(4,))
    assert best > 0.5 and results[best]["final"] < results[0.5]["final"]
    problem = Problem(forward=forward, loss=loss, x_shape=(4,), train_observations=None, test_observations=None)
    comparison = compare(problem, y, [Method("baseline", lr=(0.5, 0.1), init="origin")], y_val=y, steps=50,
                         bootstrap=0)
    assert comparison.lrs["baseline"] > 0.5 and "2.5" in comparison.summary["lr_sweep"]["baseline"]
