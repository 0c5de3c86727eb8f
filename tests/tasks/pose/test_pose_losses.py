"""Masked losses: hidden joints give no loss and no gradient; bad masks fail with one line."""

from __future__ import annotations

import pytest
import torch

from landform import invert
from landform.errors import LandformError
from landform.tasks.pose import data
from landform.tasks.pose.kinematics import KEYPOINTS
from landform.tasks.pose.losses import LOSS_NAMES, MaskedMSE, observation
from landform.tasks.pose.model import PoseDecoder


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    return PoseDecoder(16).eval().requires_grad_(False)


@pytest.mark.parametrize("kind", LOSS_NAMES)
def test_hidden_joints_give_no_gradient(decoder, kind):
    obs = observation(kind, decoder)
    pose = data.frames_to_pose(data.read_frames("jump")[:3])
    y = obs.target(pose)
    joints = data.joint_mask(data.LOWER_JOINTS)
    masked = observation(kind, decoder, obs.mask_from_joints(joints))
    y_changed = y.clone()
    units = masked.loss.entry_mask(y)
    y_changed[~units] = 1e3  # garbage at hidden joints only
    latent = torch.zeros(3, 16, requires_grad=True)
    value = masked.loss(masked.forward(latent), y)
    grad = torch.autograd.grad(value.sum(), latent)[0]
    latent2 = torch.zeros(3, 16, requires_grad=True)
    value2 = masked.loss(masked.forward(latent2), y_changed)
    grad2 = torch.autograd.grad(value2.sum(), latent2)[0]
    assert torch.allclose(value, value2) and torch.allclose(grad, grad2)
    assert grad.abs().sum() > 0
    # unmasked, the garbage matters
    assert obs.loss(obs.forward(latent.detach()), y_changed).min() > 1e3


def test_masked_mean_is_over_observed_entries():
    loss = MaskedMSE(2, torch.tensor([True, False]))
    y_hat, y = torch.tensor([[[1.0, 1.0], [5.0, 5.0]]]), torch.zeros(1, 2, 2)
    assert torch.allclose(loss(y_hat, y), torch.tensor([1.0]))
    assert torch.allclose(MaskedMSE(2)(y_hat, y), torch.tensor([13.0]))


def test_mask_that_hides_everything_is_refused():
    with pytest.raises(LandformError, match="hides every joint"):
        MaskedMSE(len(KEYPOINTS), torch.zeros(2, len(KEYPOINTS), dtype=torch.bool))
    with pytest.raises(LandformError, match="entries per observation"):
        MaskedMSE(len(KEYPOINTS), torch.ones(5, dtype=torch.bool))


def test_inversion_with_masked_pose_parameters_fits_the_observed_joints(decoder):
    obs = observation("pose_params", decoder)
    y = obs.target(decoder(torch.randn(4, 16, generator=torch.Generator().manual_seed(1))))
    masked = observation("pose_params", decoder, data.joint_mask(data.UPPER_JOINTS))
    result = invert(masked.forward, masked.loss, y, x_shape=(16,), lr=0.05, steps=60)
    assert result.losses[-1].mean() < 0.5 * result.losses[0].mean()
