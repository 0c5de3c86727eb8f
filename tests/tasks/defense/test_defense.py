"""The defense: Eq. 7 with the bounded reversal, the baseline and additive-mapping paths through the core's
invert, the differentiable defense (landform.unroll) and the noise control."""

import torch

from landform import Mapping
from landform.tasks.defense.defense import (
    RADIUS,
    defended_logits,
    defense_loss,
    defense_problem,
    project,
    reversal_of,
    reverse,
)
from landform.tasks.defense.models import RobustModel
from landform.tasks.defense.scoring import noise_like
from landform.tasks.defense.ssl import ssl_loss


def _model():
    torch.manual_seed(0)
    return RobustModel().eval().requires_grad_(False)


def test_eq7_is_ssl_plus_lambda_square_of_the_bounded_reversal():
    model = _model()
    a = torch.rand(4, 1, 28, 28) * 0.5 + 0.25
    r = 0.05 * torch.randn_like(a)
    torch.manual_seed(3)
    total = defense_loss(model, lam=2.0)(a + r, a)
    torch.manual_seed(3)
    expected = ssl_loss(model, a + r, in_batch=True) + 2.0 * r.flatten(1).pow(2).sum(1)
    assert torch.allclose(total, expected, atol=1e-5)
    # The same attacked image twice in a batch (Θ's replay batches): the copies are not each other's negatives.
    doubled = torch.cat([a[:2], a[:2]])
    torch.manual_seed(3)
    with_copies = defense_loss(model, lam=0.0)(doubled, doubled)
    torch.manual_seed(3)
    assert not torch.allclose(with_copies, ssl_loss(model, doubled, in_batch=True))
    big = torch.randn_like(a) * 10
    assert torch.allclose(project(big).flatten(1).norm(dim=1), torch.full((4,), RADIUS), atol=1e-4)
    assert torch.equal(project(r), r)  # inside the ball: unchanged
    defended = reversal_of(a + big, a)
    assert defended.min() >= 0 and defended.max() <= 1
    assert ((defended - a).flatten(1).norm(dim=1) <= RADIUS + 1e-4).all()


def test_baseline_and_additive_paths():
    model = _model()
    a = torch.rand(6, 1, 28, 28)
    base = reverse(model, a, steps=3, lr=0.01, seed=0, snapshots=(0, 3))
    assert base.z is None and base.x.shape == a.shape and base.losses.shape == (4, 6)
    assert 0 < (base.snapshots[0] - a).abs().max() < 0.1  # the random start
    mapping = Mapping(784, (1, 28, 28), hidden=32, additive=True)
    ours = reverse(model, a, mapping=mapping, steps=3, lr=0.05, seed=0, snapshots=(1, 3))
    assert ours.z.shape == (6, 784)
    # x = a + P(Θ(z)): the defended image is the attacked one plus the mapping's output at the found z.
    assert torch.allclose(ours.x, reversal_of(a + mapping.net(ours.z).view(6, 1, 28, 28), a), atol=1e-5)
    assert set(ours.snapshots) == {1, 3}
    problem = defense_problem(model, pool=a)
    assert torch.equal(problem.base(a), a) and problem.train_observations(2, torch.Generator()).shape == (2, 1, 28, 28)


def test_differentiable_defense_matches_reverse():
    model = _model()
    mapping = Mapping(784, (1, 28, 28), hidden=32, additive=True).requires_grad_(False)
    a = torch.rand(5, 1, 28, 28, requires_grad=True)
    logits = defended_logits(model, mapping, a, lr=0.05, seed=2)
    defended = reverse(model, a.detach(), mapping=mapping, steps=1, lr=0.05, seed=2).x
    assert torch.allclose(logits, model(defended), atol=1e-4)
    (grad,) = torch.autograd.grad(logits.logsumexp(1).sum(), [a])
    assert grad.abs().sum() > 0
    baseline = defended_logits(model, None, a, lr=0.01, steps=2, seed=1)
    assert torch.allclose(baseline, model(reverse(model, a.detach(), steps=2, lr=0.01, seed=1).x), atol=1e-4)


def test_noise_control_has_the_reversal_norm():
    r = torch.randn(3, 1, 28, 28) * torch.tensor([0.1, 1.0, 2.0]).view(3, 1, 1, 1)
    noise = noise_like(r, seed=0)
    assert torch.allclose(noise.flatten(1).norm(dim=1), r.flatten(1).norm(dim=1), atol=1e-5)
    assert not torch.allclose(noise, r)


def test_compare_in_chunks_merges_every_image():
    from landform.comparison import Method
    from landform.tasks.defense import task
    from landform.tasks.defense.defense import baseline_start

    model = _model()
    mapping = Mapping(784, (1, 28, 28), hidden=16, additive=True).requires_grad_(False)
    a = torch.rand(5, 1, 28, 28)
    methods = [Method("baseline", lr=0.01, init=baseline_start(0), use_base=True),
               Method("landscape", mapping=mapping, mode="pure", lr=0.05, init="gaussian", use_base=True)]
    original = task.CHUNK
    task.CHUNK = 3
    try:
        snaps, summary = task.compare_chunks(model, a, methods, steps=2, snapshots=(0, 1, 2), seed=0, device="cpu")
        defended = task.defend(model, a, mapping=mapping, steps=1, lr=0.05, seed=0, device="cpu")
    finally:
        task.CHUNK = original
    assert snaps["landscape"][1].shape == a.shape and summary["count"] == 5 and summary["steps"] == [0, 1, 2]
    assert torch.allclose(defended, snaps["landscape"][1], atol=1e-5)  # the same function, chunk by chunk
