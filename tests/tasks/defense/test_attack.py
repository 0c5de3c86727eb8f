"""PGD: stays inside the ε-ball and [0, 1], and lowers the accuracy of a shipped robust model."""

import pytest
import torch

from landform import zoo
from landform.tasks.defense import attack
from landform.tasks.defense.data import eval_subset
from landform.tasks.defense.models import RobustModel, load_model


@pytest.mark.parametrize("norm,eps", [("l2", attack.L2_EPS), ("linf", attack.LINF_EPS)])
def test_pgd_stays_in_ball_and_range(norm, eps):
    torch.manual_seed(0)
    model = RobustModel().eval()
    x = torch.rand(8, 1, 28, 28)
    y = torch.randint(10, (8,))
    x_adv = attack.pgd(model, x, y, norm=norm, eps=eps, step=eps / 2, steps=5)
    delta = (x_adv - x).flatten(1)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
    assert (size <= eps + 1e-5).all()
    assert (size > eps / 10).all()  # it moved
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_pgd_raises_the_loss_and_rejects_bad_norm():
    torch.manual_seed(0)
    model = RobustModel().eval()
    x = torch.rand(16, 1, 28, 28)
    y = torch.randint(10, (16,))
    x_adv = attack.pgd(model, x, y, steps=5, random_start=False)
    ce = torch.nn.functional.cross_entropy
    assert ce(model(x_adv), y) > ce(model(x), y)
    with pytest.raises(ValueError):
        attack.pgd(model, x, y, norm="l1")


@pytest.mark.skipif(not zoo.path("defense-pgd").exists(), reason="defense-pgd weights not trained yet")
def test_pgd_lowers_accuracy_of_shipped_model():
    model = load_model("pgd")
    x, y = eval_subset(100, seed=0)
    clean = attack.accuracy(model, x, y)
    robust = attack.accuracy(model, attack.pgd(model, x, y, steps=20), y)
    assert clean > 0.6
    assert robust < clean - 0.1
