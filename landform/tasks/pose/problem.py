"""The pose task as a ``landform.Problem``: the report's splits, Θ's training observations (training side
only) and the observations of known poses under each loss."""

from __future__ import annotations

import functools

import torch

from landform.problem import Problem
from landform.tasks.pose.data import UPPER_JOINTS, jitter_poses, joint_mask, load_splits
from landform.tasks.pose.losses import observation, pose_entry_joint
from landform.tasks.pose.model import ObservationEncoder, PoseVAE
from landform.tasks.pose.settings import THETA_SETTINGS

SPLIT_NAMES = {"in_distribution": "test", "ood": "ood"}


@functools.lru_cache(maxsize=1)
def cached_splits():
    """The pose data's splits, loaded once per process."""
    return load_splits()


def split_poses(split: str, *, count: int | None = None, seed: int = 0) -> torch.Tensor:
    """Pose parameters of a report split: ``in_distribution`` (held-out test segments), ``ood`` or
    ``validation``."""
    poses = getattr(cached_splits(), SPLIT_NAMES.get(split, split))
    if count is not None and count < poses.shape[0]:
        index = torch.randperm(poses.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
        poses = poses[index.sort().values]
    return poses


def training_observations(kind: str, vae: PoseVAE, cfg: dict, *, device: str = "cpu"):
    """Θ's training observations, a sampler ``(n, generator) -> y`` (training side only):

    - a fraction ``prior_fraction`` of poses decoded from latents drawn from the VAE prior N(0, I);
    - the rest training frames (all in-distribution clips and their mirror images), of which a fraction
      ``mix_fraction`` recombined (one frame's upper body with another's lower body), all with joint
      noise (``jitter_poses``) of a random level between 0 and ``rotation_noise`` / ``hinge_noise``: poses
      the VAE cannot draw exactly, as held-out frames are.
    """
    obs = observation(kind, vae.decoder)
    train_poses = load_splits().train.to(device)
    upper = joint_mask(UPPER_JOINTS)[pose_entry_joint()].to(device)

    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        a = torch.randint(train_poses.shape[0], (n,), generator=generator).to(device)
        b = torch.randint(train_poses.shape[0], (n,), generator=generator).to(device)
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
                 encoder: ObservationEncoder | None = None) -> Problem:
    """The pose task of loss ``kind`` as a ``landform.Problem``: F = the observation model around the frozen
    decoder, x = the VAE latent, base = the learned start E(y) where given; training observations as Θ is
    fitted on, test observations the held-out test frames. ``mask`` (units, see ``losses``) hides joints
    from the loss."""
    obs = observation(kind, vae.decoder, mask)
    test = cached_splits().test.to(device)

    def test_observations(n: int, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return obs.target(test[torch.randint(test.shape[0], (n,), generator=generator).to(device)])

    return Problem(forward=obs.forward, loss=obs.loss, x_shape=(vae.latent_dim,),
                   train_observations=training_observations(kind, vae, THETA_SETTINGS, device=device),
                   test_observations=test_observations, base=encoder, name=f"pose/{kind}")


def observe(kind: str, vae: PoseVAE, poses: torch.Tensor) -> torch.Tensor:
    """The noiseless observations of known poses under loss ``kind``."""
    with torch.no_grad():
        return observation(kind, vae.decoder).target(poses)
