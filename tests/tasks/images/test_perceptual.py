import pytest
import torch
import torch.nn.functional as functional

from landform.tasks.images.perceptual import ImageLoss, imagenet_normalize, load_efficientnet


def test_efficientnet_classifies_chelsea_as_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    photo = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float().div(255)[None]
    photo = functional.interpolate(photo, size=(224, 224), mode="bilinear", antialias=True)
    probabilities = load_efficientnet()(imagenet_normalize(photo)).softmax(dim=1)[0]
    assert int(probabilities.argmax()) in range(281, 286)  # ImageNet's domestic cats
    assert float(probabilities[281:286].sum()) > 0.5


def test_loss_is_per_example_zero_on_identity_and_differentiable():
    loss = ImageLoss()
    a = torch.rand(3, 1, 28, 28, requires_grad=True)
    values = loss(a, a.detach())
    assert values.shape == (3,) and torch.allclose(values, torch.zeros(3), atol=1e-6)
    b = torch.rand(3, 1, 28, 28)
    different = loss(a, b)
    assert (different > 0).all()
    different.sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    mse_only = ImageLoss(perceptual=False)(a, b)
    assert torch.allclose(mse_only, (a - b).pow(2).flatten(1).mean(1))
    assert (different > mse_only).all()


def test_perceptual_term_prefers_the_right_structure():
    """A slightly shifted copy is perceptually much closer to the original than noise is."""
    loss = ImageLoss()
    image = torch.zeros(1, 1, 28, 28)
    image[..., 8:20, 10:18] = 1.0
    shifted = torch.roll(image, shifts=2, dims=-1)
    assert float(loss.perceptual(shifted, image)) < float(loss.perceptual(torch.rand_like(image), image))


def test_the_fast_loss_and_generator_are_the_same_functions_and_prepare_changes_nothing():
    """Fitting's models (BatchNorm folded into the convolutions, channels-last) agree with the plain ones up to
    float rounding, values and gradients; ``prepare`` hands back exactly what the loss would compute from y."""
    from landform.tasks.images.generator import load_generator
    from landform.tasks.images.task import fast_generator

    generator = load_generator()
    w = generator.sample_w(6, torch.Generator().manual_seed(0)).detach().requires_grad_(True)
    y = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    plain, fast = ImageLoss(), ImageLoss(fast=True)
    values = plain(generator(w), y)
    (grad,) = torch.autograd.grad(values.sum(), [w])
    fast_values = fast(fast_generator(generator)(w), y)
    (fast_grad,) = torch.autograd.grad(fast_values.sum(), [w])
    assert torch.allclose(fast_values, values, rtol=1e-4, atol=1e-6)
    assert float((fast_grad - grad).norm() / grad.norm()) < 1e-3
    image = generator(w).detach()
    assert torch.equal(plain(image, y, plain.prepare(y)), plain(image, y))
    assert torch.equal(plain(image[2:4], y[2:4], tuple(t[2:4] for t in plain.prepare(y))), plain(image[2:4], y[2:4]))
    assert ImageLoss(perceptual=False).prepare(y) == ()
