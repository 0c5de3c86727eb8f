"""The contrastive SSL loss: kornia views, per-example shape and gradient, the negative bank, and the gap."""

import math

import torch

from landform.tasks.defense.models import RobustModel
from landform.tasks.defense.ssl import augment, info_nce, negative_bank, ssl_gap, ssl_loss, view_vote


def test_augment_keeps_shape_range_and_gradient():
    x = torch.rand(5, 1, 28, 28, requires_grad=True)
    torch.manual_seed(0)
    view = augment(x)
    assert view.shape == x.shape and view.min() >= 0 and view.max() <= 1
    (grad,) = torch.autograd.grad(view.sum(), [x])
    assert grad.abs().sum() > 0
    torch.manual_seed(0)
    assert torch.equal(view, augment(x))  # the global seed decides the draw
    assert not torch.equal(view, augment(x))


def test_ssl_loss_shape_grad_and_bank():
    torch.manual_seed(0)
    model = RobustModel().eval()
    x = torch.rand(6, 1, 28, 28, requires_grad=True)
    values = ssl_loss(model, x)  # the bank is still zero: in-batch negatives
    assert values.shape == (6,) and torch.isfinite(values).all()
    (grad,) = torch.autograd.grad(values.sum(), [x])
    assert grad.abs().sum() > 0
    model.bank.copy_(negative_bank(model, torch.rand(model.bank.shape[0], 1, 28, 28)))
    torch.manual_seed(1)
    alone = ssl_loss(model, x[:2])
    torch.manual_seed(1)
    assert torch.allclose(ssl_loss(model, x[:2].detach()), alone.detach())


def test_info_nce_with_a_bank_matches_its_definition():
    torch.manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(3, 2, 8), dim=2)
    bank = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    got = info_nce(e, 0.5, bank=bank)
    for b in range(2):
        total = 0.0
        for v in range(3):
            logits = [float(e[v, b] @ e[w, b]) / 0.5 for w in range(3) if w != v]
            logits += [float(e[v, b] @ bank[k]) / 0.5 for k in range(5)]
            norm = math.log(sum(math.exp(value) for value in logits))
            total += -sum(value - norm for value in logits[:2]) / 2
        assert abs(got[b].item() - total / 3) < 1e-4


def test_info_nce_prefers_agreeing_views():
    torch.manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    agreeing = anchors.expand(4, 8, 16)
    random = torch.nn.functional.normalize(torch.randn(4, 8, 16), dim=2)
    assert (info_nce(agreeing) < info_nce(random)).all()


def test_gap_is_zero_without_attack_and_vote_reports_both():
    torch.manual_seed(0)
    model = RobustModel().eval()
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(ssl_gap(model, x, x.clone()), torch.zeros(4), atol=1e-6)
    vote = view_vote(model, x, x, torch.zeros(4, dtype=torch.long), views=2)
    assert set(vote) == {"clean", "attacked"} and vote["clean"] == vote["attacked"]
