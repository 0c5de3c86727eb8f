import pytest
import torch

from landform import FitSettings, LandformError, Mapping, fit, invert
from landform.fitting import checkpoint_rounds, checkpoint_state
from landform.replay import FitRound


def _fresh(seed=0):
    torch.manual_seed(seed)
    return Mapping(16, (16,), hidden=32)


SMALL = {"trajectories": 32, "steps": 5, "lr": 1e-3, "batch_size": 16, "seed": 5, "progress": False}


def test_fit_lowers_the_loss_of_few_step_descent(problem, test_observations):
    mapping = _fresh()
    before = invert(problem.forward, problem.loss, test_observations, mapping=mapping, steps=5).losses[-1].mean()
    result = fit(mapping, problem.forward, problem.loss, problem.train_observations, rounds=10, **SMALL)
    after = invert(problem.forward, problem.loss, test_observations, mapping=mapping, steps=5).losses[-1].mean()
    assert after < 0.5 * before
    assert len(result.history) == 10 and result.history[0].theta_updates == 10
    assert result.history[-1].trajectory_steps_per_second > 0


def test_tensor_observations_and_the_ablations(problem):
    y = problem.train_observations(100, torch.Generator().manual_seed(0))
    random = _fresh()
    untouched = {k: v.clone() for k, v in random.state_dict().items()}
    fit(random, problem.forward, problem.loss, y, rounds=3, method="random", **SMALL)
    assert all(torch.equal(untouched[k], v) for k, v in random.state_dict().items())
    online = _fresh()
    history = fit(online, problem.forward, problem.loss, y, rounds=3, method="online", **SMALL).history
    assert len(history) == 3 and history[0].theta_updates == 5
    assert not torch.equal(untouched["net.0.weight"], online.state_dict()["net.0.weight"])
    with pytest.raises(LandformError, match="unknown fit method"):
        fit(_fresh(), problem.forward, problem.loss, y, method="maml")


def test_fit_is_reproducible_with_a_seed(problem):
    a, b = _fresh(), _fresh()
    fit(a, problem.forward, problem.loss, problem.train_observations, rounds=3, buffer_rounds=2, **SMALL)
    fit(b, problem.forward, problem.loss, problem.train_observations, rounds=3, buffer_rounds=2, **SMALL)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_a_settings_object_fits_as_the_same_keywords_do(problem):
    a, b = _fresh(), _fresh()
    settings = FitSettings(rounds=2, trajectories=32, steps=5, lr=1e-3, batch_size=16)
    fit(a, problem.forward, problem.loss, problem.train_observations, settings, seed=5, progress=False)
    fit(b, problem.forward, problem.loss, problem.train_observations, rounds=2, **SMALL)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*: round"):
        fit(a, problem.forward, problem.loss, problem.train_observations, settings, round=3)


class _Interrupting(torch.nn.Module):
    """Wraps F and raises KeyboardInterrupt at its n-th call, as a user's Ctrl-C would."""

    def __init__(self, forward, at_call):
        super().__init__()
        self.inner, self.at_call, self.calls = forward, at_call, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at_call:
            raise KeyboardInterrupt
        return self.inner(x)


def test_interrupted_and_resumed_fit_equals_an_uninterrupted_one(problem, tmp_path):
    whole = _fresh()
    fit(whole, problem.forward, problem.loss, problem.train_observations, rounds=4, **SMALL)

    # Rounds take 5 collection + 10 training calls of F; interrupt in the middle of round 3.
    interrupted = _Interrupting(problem.forward, at_call=2 * 15 + 7)
    with pytest.raises(KeyboardInterrupt):
        fit(_fresh(), interrupted, problem.loss, problem.train_observations, rounds=4,
            checkpoint_dir=tmp_path, **SMALL)
    assert checkpoint_rounds(tmp_path) == 2
    resumed = _fresh(seed=99)  # weights come from the checkpoint, not from this init
    result = fit(resumed, problem.forward, problem.loss, problem.train_observations, rounds=4,
                 checkpoint_dir=tmp_path, resume=True, **SMALL)
    assert [h.round for h in result.history] == [1, 2, 3, 4]
    saved = checkpoint_state(tmp_path)["history"]  # the JSON form, the resumed rounds read back from it
    assert saved == [h.as_dict() for h in result.history]
    assert [FitRound.from_dict(record, "x") for record in saved] == result.history
    with pytest.raises(LandformError, match="a round of its history is incomplete"):
        FitRound.from_dict({"round": 1}, "x")
    assert all(torch.equal(p, q) for p, q in zip(whole.parameters(), resumed.parameters(), strict=True))
    assert torch.equal(Mapping.load(tmp_path).net[0].weight, whole.net[0].weight)
    with pytest.raises(LandformError, match="settings differ"):
        fit(_fresh(), problem.forward, problem.loss, problem.train_observations, rounds=5,
            checkpoint_dir=tmp_path, resume=True, **{**SMALL, "lr": 1e-2})


def test_non_finite_loss_stops_with_round_and_step_and_keeps_the_checkpoint(problem, tmp_path):
    calls = {"n": 0}

    def exploding(y_hat, y):
        calls["n"] += 1
        values = problem.loss(y_hat, y)
        return values * float("nan") if calls["n"] > 2 * 15 + 3 else values

    mapping = _fresh()
    with pytest.raises(LandformError, match=r"round 3, collection step 4.*last good checkpoint"):
        fit(mapping, problem.forward, exploding, problem.train_observations, rounds=4,
            checkpoint_dir=tmp_path, **SMALL)
    saved = Mapping.load(tmp_path)
    assert all(torch.isfinite(p).all() for p in saved.parameters())
    assert checkpoint_rounds(tmp_path) == 2
    assert all(torch.equal(p, q) for p, q in zip(saved.parameters(), mapping.parameters(), strict=True))


def test_fit_bad_inputs(problem):
    with pytest.raises(LandformError, match="mapping outputs"):
        fit(Mapping(4, (8,), hidden=8), problem.forward, problem.loss, problem.train_observations,
            x_shape=(16,), rounds=1)
    with pytest.raises(LandformError, match="observations have shape"):
        fit(_fresh(), problem.forward, problem.loss, torch.randn(10, 5), rounds=1, **SMALL)
    with pytest.raises(LandformError, match="one value per example"):
        fit(_fresh(), problem.forward, lambda a, b: (a - b).pow(2).mean(), problem.train_observations,
            rounds=1, **SMALL)


class _PreparingLoss:
    """The problem's loss, with ``prepare``: what depends on the observations alone is handed back to every call
    (here a copy of them, so the fit must equal the plain loss's bit for bit)."""

    def __init__(self, loss):
        self.loss, self.prepares, self.calls, self.unprepared = loss, 0, 0, 0

    def prepare(self, y):
        self.prepares += 1
        return (y.clone(),)

    def __call__(self, y_hat, y, prepared=None):
        self.calls += 1
        if prepared is None:
            self.unprepared += 1
            prepared = self.prepare(y)
        assert torch.equal(prepared[0], y)  # the rows go with the observations they were prepared from
        return self.loss(y_hat, prepared[0])


@pytest.mark.parametrize("method,buffer_rounds", [("buffer", 1), ("buffer", 2), ("online", 1)])
def test_a_loss_that_prepares_its_observations_prepares_them_once_a_round(problem, method, buffer_rounds):
    plain, prepared = _fresh(), _fresh()
    loss = _PreparingLoss(problem.loss)
    options = {"rounds": 3, "method": method, "buffer_rounds": buffer_rounds, **SMALL}
    fit(plain, problem.forward, problem.loss, problem.train_observations, **options)
    fit(prepared, problem.forward, loss, problem.train_observations, **options)
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), prepared.parameters(), strict=True))
    assert loss.unprepared == 0 and loss.calls >= 3 * SMALL["steps"]
    # one prepare per round for its own observations, plus one per older round kept in the buffer
    assert loss.prepares == 3 + (sum(min(r, buffer_rounds - 1) for r in range(3)) if method == "buffer" else 0)
    assert all(p.requires_grad for p in prepared.parameters())  # Θ is frozen only while collecting
