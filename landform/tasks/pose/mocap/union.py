"""The pose task's split over every motion capture source: a drop-in for ``data.load_splits``.

The DeepMimic clips keep their split exactly (``data.load_splits``: held-out segments of every clip, the
acrobatic clips out of distribution). Every other source adds its training clips to training and its
held-out clips (``sources.HELD_OUT``; segments for the single ASF/AMC clip) to validation and test; none
of them is acrobatic, so the out-of-distribution split is unchanged. Mirror images are added to the
training side of the union, as ``data.load_splits`` does. ``sources`` names each frame
"SOURCE/CLIP" (DeepMimic clips keep their bare names), so ``by_source`` can report each source's test
frames on their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from landform.tasks.pose.data import POSE_DIM, PoseSplits, load_splits, mirror_pose
from landform.tasks.pose.mocap import sources as mocap_sources

ADDED = ("walker", "amp", "cmu_humanoid", "asf_amc")


@dataclass
class UnionSplits(PoseSplits):
    """``PoseSplits`` over several sources (see the module's docstring)."""

    added: tuple[str, ...] = ADDED

    def describe(self) -> str:
        counts = ", ".join(f"{k} {getattr(self, k).shape[0]}" for k in ("train", "validation", "test", "ood"))
        per_source = "; ".join(f"{name}: test {tensor.shape[0]}" for name, tensor in by_source(self, "test").items())
        return (f"frames: {counts} ({per_source}). The DeepMimic clips are split as before (held-out segments, "
                "acrobatic clips out of distribution); the other sources hold out whole clips "
                "(landform.tasks.pose.mocap.sources.HELD_OUT; segments of the single ASF/AMC clip); the "
                "training frames are the rest, plus their left-right mirror images.")


def source_of(name: str) -> str:
    """The source of a frame's clip name in ``UnionSplits.sources`` ("amp/walk" -> "amp", "walk" -> "deepmimic")."""
    name = name.removesuffix(" (mirrored)")
    return name.split("/", 1)[0] if "/" in name else "deepmimic"


def load_union_splits(added: tuple[str, ...] = ADDED, *, mirror_train: bool = True) -> UnionSplits:
    """The fixed split over DeepMimic and the ``added`` sources (deterministic: no randomness involved)."""
    base = load_splits(mirror_train=False)
    parts = {split: [getattr(base, split)] for split in ("train", "validation", "test", "ood")}
    names = {split: list(base.sources[split]) for split in parts}
    for source in added:
        for clip, pose in mocap_sources.pose_clips(source).items():
            labels = mocap_sources.split_of_clip(source, clip, pose.shape[0])
            for split in ("train", "validation", "test"):
                index = [i for i, label in enumerate(labels) if label == split]
                if index:
                    parts[split].append(pose[index])
                    names[split] += [(f"{source}/{clip}", i) for i in index]
    tensors = {split: torch.cat(p) if p else torch.zeros(0, POSE_DIM) for split, p in parts.items()}
    if mirror_train:
        tensors["train"] = torch.cat([tensors["train"], mirror_pose(tensors["train"])])
        names["train"] = names["train"] + [(f"{name} (mirrored)", i) for name, i in names["train"]]
    return UnionSplits(**tensors, sources=names, added=tuple(added))


def by_source(splits: PoseSplits, split: str) -> dict[str, torch.Tensor]:
    """One split's frames [n, 76] per source, in order of first appearance."""
    frames = getattr(splits, split)
    index: dict[str, list[int]] = {}
    for row, (name, _) in enumerate(splits.sources[split]):
        index.setdefault(source_of(name), []).append(row)
    return {source: frames[rows] for source, rows in index.items()}


def deepmimic_weighted(splits: PoseSplits, share: float) -> torch.Tensor:
    """Sampling probabilities over the training frames that give the DeepMimic frames (and their mirror images)
    ``share`` of the draws together and the other sources the rest, uniform within each side (all DeepMimic
    when there is nothing else)."""
    deepmimic = torch.tensor([source_of(name) == "deepmimic" for name, _ in splits.sources["train"]])
    others = int((~deepmimic).sum())
    if others == 0 or int(deepmimic.sum()) == 0:
        return torch.full((deepmimic.numel(),), 1.0 / deepmimic.numel())
    return torch.where(deepmimic, share / deepmimic.sum(), (1 - share) / others).double()
