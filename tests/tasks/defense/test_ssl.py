"""The contrastive SSL loss: per-example shape, gradient to the input, and that it rewards agreeing views."""

import torch

from landform.tasks.defense.models import RobustModel
from landform.tasks.defense.ssl import augment, info_nce, ssl_loss


def test_augment_keeps_shape_range_and_gradient():
    x = torch.rand(5, 1, 28, 28, requires_grad=True)
    view = augment(x, torch.Generator().manual_seed(0))
    assert view.shape == x.shape
    assert view.min() >= 0 and view.max() <= 1
    (grad,) = torch.autograd.grad(view.sum(), [x])
    assert grad.abs().sum() > 0
    assert not torch.equal(view, augment(x, torch.Generator().manual_seed(1)))


def test_ssl_loss_shape_and_grad():
    torch.manual_seed(0)
    model = RobustModel().eval()
    x = torch.rand(6, 1, 28, 28, requires_grad=True)
    values = ssl_loss(model, x)
    assert values.shape == (6,)
    assert torch.isfinite(values).all()
    (grad,) = torch.autograd.grad(values.sum(), [x])
    assert grad.abs().sum() > 0


def test_info_nce_prefers_agreeing_views():
    torch.manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    agreeing = anchors.expand(4, 8, 16)
    random = torch.nn.functional.normalize(torch.randn(4, 8, 16), dim=2)
    assert (info_nce(agreeing) < info_nce(random)).all()
