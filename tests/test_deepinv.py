"""The DeepInverse integration on a tiny generator (latent of 4 -> 1x8x8 images): Problems from deepinv physics,
a landscape fitted for one, and that landscape as a deepinv reconstructor."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

if importlib.util.find_spec("deepinv") is None:
    pytest.skip('deepinv is not installed (pip install "landform[deepinv]")', allow_module_level=True)

import torch
from torch import nn

from landform.integrations import deepinv as integration
from landform.problem import Problem
from landform.recipe import Landscape, learn

dinv = integration.dinv
LATENT = (4,)
SIZE = (1, 8, 8)


def tiny_generator() -> nn.Module:
    """A small random generator: latent [B, 4] -> images [B, 1, 8, 8] in (0, 1)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 64), nn.Sigmoid(), nn.Unflatten(1, SIZE))
    return net.eval().requires_grad_(False)


def physics_of(kind: str) -> dinv.physics.Physics:
    noise = dinv.physics.GaussianNoise(sigma=0.01)
    if kind == "blur":
        kernel = dinv.physics.functional.gaussian_blur(sigma=(1.0, 1.0))
        return dinv.physics.Blur(filter=kernel, padding="circular", noise_model=noise)
    if kind == "inpainting":
        return dinv.physics.Inpainting(img_size=SIZE, mask=0.5, noise_model=noise, rng=torch.Generator().manual_seed(0))
    return dinv.physics.CompressedSensing(m=24, img_size=SIZE, noise_model=noise, rng=torch.Generator().manual_seed(0))


def test_the_shim_lets_deepinv_import() -> None:
    assert integration.import_deepinv() is dinv
    loads = integration.torchvision_ops_load()
    # the shim acts exactly when torchvision's compiled ops cannot load beside this torch
    assert integration.declare_torchvision_ops() == (loads is False)
    assert hasattr(torch.ops.torchvision, "nms")


def test_without_deepinv_the_error_names_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepinv" else real(name, *a))
    with pytest.raises(integration.LandformError, match=r'pip install "landform\[deepinv\]"'):
        integration.import_deepinv()


@pytest.mark.parametrize("kind, shape", [("blur", SIZE), ("inpainting", SIZE), ("compressed sensing", (24,))])
def test_problem_from_physics(kind: str, shape: tuple[int, ...]) -> None:
    physics, generator = physics_of(kind), tiny_generator()
    problem = integration.problem_from_physics(physics, generator, latent_shape=LATENT, name=kind)
    assert isinstance(problem, Problem) and problem.x_shape == LATENT
    y = problem.train_observations(5, torch.Generator().manual_seed(1))
    assert y.shape == (5, *shape)
    assert torch.equal(y, problem.train_observations(5, torch.Generator().manual_seed(1)))  # seeded
    assert not torch.allclose(y, problem.test_observations(5, torch.Generator().manual_seed(1)))  # disjoint streams
    x = torch.randn(3, *LATENT)
    y_hat = problem.forward(x)
    assert y_hat.shape == (3, *shape)
    loss = problem.loss(y_hat, y[:3])
    assert loss.shape == (3,) and (loss > 0).all()
    assert torch.allclose(loss[0], problem.loss(y_hat[:1], y[:1])[0])  # per example, not a batch mean
    noiseless = physics.A(generator(x))
    assert torch.allclose(problem.loss(noiseless, y_hat), torch.zeros(3))


def test_observations_from_a_dataset() -> None:
    images = torch.rand(40, *SIZE)
    problem = integration.problem_from_physics(physics_of("inpainting"), tiny_generator(), latent_shape=LATENT,
                                               data=images)
    train, test = integration.split_data(images)
    assert train.shape[0] + test.shape[0] == 40
    assert not {tuple(t.flatten().tolist()) for t in train} & {tuple(t.flatten().tolist()) for t in test}
    assert problem.test_observations(7, torch.Generator()).shape == (7, *SIZE)


def test_a_loss_must_be_per_example() -> None:
    with pytest.raises(integration.LandformError, match="one value per example"):
        integration.problem_from_physics(physics_of("blur"), tiny_generator(), latent_shape=LATENT,
                                         loss=lambda a, b: (a - b).square().mean())


def test_a_fitted_landscape_reconstructs_through_deepinv(tmp_path) -> None:
    physics, generator = physics_of("compressed sensing"), tiny_generator()
    problem = integration.problem_from_physics(physics, generator, latent_shape=LATENT)
    learn(problem, tmp_path, seconds=15, pool_size=1024, progress=False, log=lambda line: None)
    model = integration.LandscapeReconstructor(tmp_path, generator, latent_shape=LATENT, steps=20)
    assert isinstance(model, dinv.models.Reconstructor)
    assert isinstance(Landscape.load(tmp_path), Landscape)

    rng = torch.Generator().manual_seed(2)
    x = generator(torch.randn(16, *LATENT, generator=rng))
    y = integration.measure(physics, x, seed=3)
    with torch.no_grad():  # as deepinv evaluates a reconstructor
        x_hat = model(y, physics)
    assert x_hat.shape == x.shape
    psnr = dinv.metric.PSNR()
    assert psnr(x_hat, x).mean() > psnr(torch.zeros_like(x), x).mean() + 10  # far better than no reconstruction
    assert psnr(x_hat, x).mean() > psnr(generator(torch.zeros(16, *LATENT)), x).mean() + 10  # than G(0)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    results = dinv.test(model, loader, physics, metrics=[dinv.metric.PSNR()], compare_no_learning=False,
                        verbose=False, show_progress_bar=False, plot_images=False)
    assert results["PSNR"] == pytest.approx(psnr(x_hat, x).mean().item(), abs=0.5)


def test_the_benchmarks_batched_csgm_is_deepinvs_csgm_image_by_image(monkeypatch):
    """benchmarks/deepinv_solvers.run_csgm_batched runs CSGMGenerator's algorithm on a whole batch (so the
    benchmark can afford its 2,500 steps on every image): same starts, same Adam, each image's own stop; it must
    give deepinv's own CSGMGenerator's images, run one at a time, up to float rounding."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import deepinv_solvers

    generator, physics = tiny_generator(), physics_of("blur")
    truth = generator(torch.randn(3, *LATENT, generator=torch.Generator().manual_seed(1)))
    y = integration.measure(physics, truth, seed=0)
    for steps in (30, 1000):  # by 1000 each image has stopped at its own step (CSGMGenerator's tolerance)
        alone, _ = deepinv_solvers.run_csgm(generator, LATENT[0], physics, y, steps, seed=0)
        batched, _ = deepinv_solvers.run_csgm_batched(generator, LATENT[0], physics, y, steps, seed=0)
        torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    never_stopped, _ = deepinv_solvers.run_csgm_batched(generator, LATENT[0], physics, y, 1000, seed=0, tolerance=-1)
    assert (never_stopped - alone).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # the stops are what the check tests
