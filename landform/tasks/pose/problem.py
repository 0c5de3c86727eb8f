"""The pose task as a ``landform.Problem``: the report's splits, Θ's training observations (training side
only) and the observations of known poses under each loss."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from landform.errors import LandformError
from landform.problem import Problem
from landform.tasks.pose.data import UPPER_JOINTS, jitter_poses, joint_mask
from landform.tasks.pose.losses import observation, pose_entry_joint
from landform.tasks.pose.mocap.union import UnionSplits, by_source, deepmimic_weighted, load_union_splits
from landform.tasks.pose.model import PoseVAE
from landform.tasks.pose.settings import THETA_SETTINGS, VAE_SETTINGS

SPLIT_NAMES = {"in_distribution": "test", "ood": "ood"}


@functools.lru_cache(maxsize=1)
def cached_splits() -> UnionSplits:
    """The pose data's splits, loaded once per process: the DeepMimic clips and every other motion capture
    source (``mocap.union``)."""
    return load_union_splits()


SOURCE_SPLIT = "test_"  # "test_amp": the test frames of one motion capture source


def report_splits() -> list[str]:
    """The report's splits: in distribution (every source's test frames), out of distribution, and each
    source's test frames on their own (``test_SOURCE``)."""
    return ["in_distribution", "ood", *(SOURCE_SPLIT + source for source in by_source(cached_splits(), "test"))]


SWEEP_COUNT = 128  # validation frames the swept step sizes are chosen on (a seeded subset of every source's)


def sweep_poses(seed: int = 0) -> torch.Tensor:
    """The validation frames that step sizes are swept on: ``SWEEP_COUNT`` of them, seeded."""
    return split_poses("validation", count=SWEEP_COUNT, seed=seed)


def split_poses(split: str, *, count: int | None = None, seed: int = 0) -> torch.Tensor:
    """Pose parameters of a report split: ``in_distribution`` (held-out test frames of every source), ``ood``,
    ``validation`` or ``test_SOURCE`` (one source's test frames)."""
    if split.startswith(SOURCE_SPLIT):
        sources = by_source(cached_splits(), "test")
        if split[len(SOURCE_SPLIT):] not in sources:
            raise LandformError(f"unknown pose split {split!r}; the sources are {', '.join(sources)}")
        poses = sources[split[len(SOURCE_SPLIT):]]
    else:
        poses = getattr(cached_splits(), SPLIT_NAMES.get(split, split))
    if count is not None and count < poses.shape[0]:
        index = torch.randperm(poses.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
        poses = poses[index.sort().values]
    return poses


def training_observations(kind: str, vae: PoseVAE, cfg: dict, *, device: str = "cpu"):
    """Θ's training observations, a sampler ``(n, generator) -> y`` (training side only):

    - a fraction ``prior_fraction`` of poses decoded from latents drawn from the VAE prior N(0, I);
    - the rest training frames (all in-distribution clips of every source and their mirror images, the DeepMimic
      frames a share ``VAE_SETTINGS["deepmimic_share"]`` of the draws, as the VAE saw them), of which a fraction
      ``mix_fraction`` recombined (one frame's upper body with another's lower body), all with joint
      noise (``jitter_poses``) of a random level between 0 and ``rotation_noise`` / ``hinge_noise``: poses
      the VAE cannot draw exactly, as held-out frames are.
    """
    obs = observation(kind, vae.decoder)
    splits = cached_splits()
    train_poses = splits.train.to(device)
    weights = deepmimic_weighted(splits, VAE_SETTINGS["deepmimic_share"])
    upper = joint_mask(UPPER_JOINTS)[pose_entry_joint()].to(device)

    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        a = torch.multinomial(weights, n, replacement=True, generator=generator).to(device)
        b = torch.multinomial(weights, n, replacement=True, generator=generator).to(device)
        mixed = (torch.rand(n, 1, generator=generator) < cfg["mix_fraction"]).to(device)
        frames = torch.where(mixed & upper, train_poses[b], train_poses[a])
        frames = jitter_poses(frames, generator, rotation_std=cfg["rotation_noise"], hinge_std=cfg["hinge_noise"],
                              scale=torch.rand(n, generator=generator))
        prior = (torch.rand(n, 1, generator=generator) < cfg["prior_fraction"]).to(device)
        latent = torch.randn(n, vae.latent_dim, generator=generator).to(device)
        with torch.no_grad():
            return obs.target(torch.where(prior, vae.decoder(latent), frames))

    return draw


def pose_problem(kind: str, vae: PoseVAE, mask: torch.Tensor | None = None, *, device: str = "cpu",
                 base: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Problem:
    """The pose task of loss ``kind`` as a ``landform.Problem``: F = the observation model around the frozen
    decoder, x = the VAE latent, ``base`` = the learned start E(y) where given; training observations as Θ is
    fitted on, test observations the held-out test frames. ``mask`` (units, see ``losses``) hides joints
    from the loss."""
    obs = observation(kind, vae.decoder, mask)
    test = cached_splits().test.to(device)

    def test_observations(n: int, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return obs.target(test[torch.randint(test.shape[0], (n,), generator=generator).to(device)])

    return Problem(forward=obs.forward, loss=obs.loss, x_shape=(vae.latent_dim,),
                   train_observations=training_observations(kind, vae, THETA_SETTINGS, device=device),
                   test_observations=test_observations, base=base, name=f"pose/{kind}")


def observe(kind: str, vae: PoseVAE, poses: torch.Tensor) -> torch.Tensor:
    """The noiseless observations of known poses under loss ``kind``."""
    with torch.no_grad():
        return observation(kind, vae.decoder).target(poses)
