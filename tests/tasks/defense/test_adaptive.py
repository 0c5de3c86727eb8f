"""The adaptive evaluation's composite model: the same logits as the deployed defense, gradients through the
step (or the identity, BPDA), fresh draws for EOT; bad settings refused in one line."""

import pytest
import torch

from landform import Mapping
from landform.errors import LandformError
from landform.inference import initial_variable
from landform.tasks.defense.adaptive import Defended, demo, demo_remedies
from landform.tasks.defense.defense import reversal_of, reverse
from landform.tasks.defense.models import RobustModel


def _parts():
    torch.manual_seed(0)
    model = RobustModel().eval().requires_grad_(False)
    mapping = Mapping(784, (1, 28, 28), hidden=16, additive=True).requires_grad_(False)
    return model, mapping


def test_composite_is_the_deployed_defense_with_or_without_gradients():
    model, mapping = _parts()
    a = torch.rand(3, 1, 28, 28)
    deployed = model(reverse(model, a, mapping=mapping, steps=1, lr=0.05, seed=0).x)
    exact = Defended(model, mapping, lr=0.05, steps=1, seed=0)
    bpda = Defended(model, mapping, lr=0.05, steps=1, seed=0, bpda=True)
    with torch.no_grad():
        assert torch.allclose(exact(a), deployed, atol=1e-4)
    v = a.clone().requires_grad_(True)
    assert torch.allclose(exact(v), deployed, atol=1e-4) and torch.allclose(bpda(v), deployed, atol=1e-4)
    (g_exact,) = torch.autograd.grad(exact(v).logsumexp(1).sum(), [v])
    (g_bpda,) = torch.autograd.grad(bpda(v).logsumexp(1).sum(), [v])
    # BPDA: the classifier's gradient at the defended image, as if the defense were the identity.
    d = reverse(model, a, mapping=mapping, steps=1, lr=0.05, seed=0).x.requires_grad_(True)
    (g_at_defended,) = torch.autograd.grad(model(d).logsumexp(1).sum(), [d])
    assert torch.allclose(g_bpda, g_at_defended, atol=1e-5)
    assert g_exact.abs().sum() > 0 and not torch.allclose(g_exact, g_bpda)
    fresh = Defended(model, mapping, lr=0.05, steps=1, seed=None)
    with torch.no_grad():
        assert not torch.allclose(fresh(a), fresh(a))  # a new draw of the start at every call (EOT)


def test_bad_settings_are_refused():
    with pytest.raises(LandformError, match="between 1"):
        demo("unused", main_size=10, size=20)
    with pytest.raises(LandformError, match="CPU"):
        demo("unused", device="cuda")
    with pytest.raises(LandformError, match="at least 1"):
        demo_remedies("unused", size=0)



def test_a_smaller_random_start_is_the_same_defense_from_a_smaller_z0():
    model, mapping = _parts()
    a = torch.rand(3, 1, 28, 28)
    z0 = initial_variable("gaussian", (3, 784), seed=0)
    # 0 steps: the defended image is the start itself, a + P(Θ(0.5 z0)) (the deployed defense: a + P(Θ(z0)))
    start = reverse(model, a, mapping=mapping, steps=0, lr=0.05, seed=0, start_scale=0.5).x
    assert torch.allclose(start, reversal_of(mapping(0.5 * z0, a), a), atol=1e-6)
    assert not torch.allclose(start, reverse(model, a, mapping=mapping, steps=0, lr=0.05, seed=0).x, atol=1e-4)
    # the attacker's composite runs the same defense from the same smaller start
    deployed = model(reverse(model, a, mapping=mapping, steps=2, lr=0.05, seed=0, start_scale=0.5).x)
    v = a.clone().requires_grad_(True)
    assert torch.allclose(Defended(model, mapping, lr=0.05, steps=2, seed=0, start_scale=0.5)(v), deployed, atol=1e-4)
    assert not torch.allclose(Defended(model, mapping, lr=0.05, steps=2, seed=0)(v), deployed, atol=1e-4)
