"""Issue 23, a first measurement: the pose VAE retrained on every motion capture source, by the existing trainer.

``train.train_vae`` with its data swapped for ``mocap.union.load_union_splits()`` (same settings, seed 0, 6000
steps, 1 thread; about 8 minutes on a busy 2-core machine), against the shipped VAE (DeepMimic only):
reconstruction through the latent mean on each source's held-out clips. Resumes from RUNS/run.

    .venv/bin/python experiments/pose_union_vae.py [RUNS]     # default runs/pose-union-vae
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from landform.tasks.pose import train
from landform.tasks.pose.kinematics import Kinematics
from landform.tasks.pose.mocap import union
from landform.tasks.pose.model import PoseVAE, load_vae

RESULTS = Path(__file__).parent / "results" / "pose-union-vae"


@torch.no_grad()
def reconstruction(vae: PoseVAE, splits: union.UnionSplits, kinematics: Kinematics) -> dict[str, dict]:
    """Pose-parameter MSE and mean joint error (cm) through the latent mean, per split and source."""
    blocks = {f"{split}/{source}": pose for split in ("test", "validation")
              for source, pose in union.by_source(splits, split).items()}
    blocks["ood/deepmimic"] = splits.ood
    out = {}
    for name, pose in blocks.items():
        recon = vae.decoder(vae.encoder(pose)[0])
        joint_error = (kinematics(recon) - kinematics(pose)).norm(dim=-1).mean()
        out[name] = {"frames": pose.shape[0], "pose_mse": round(float((recon - pose).pow(2).mean()), 4),
                     "joint_error_cm": round(float(100 * joint_error), 2)}
    return out


def main() -> None:
    torch.set_num_threads(1)
    runs = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/pose-union-vae")
    splits = union.load_union_splits()
    kinematics = Kinematics()
    shipped = reconstruction(load_vae().eval(), splits, kinematics)
    train.load_splits = lambda: splits  # the existing trainer, pointed at the union
    started = time.perf_counter()
    vae = train.train_vae(progress=False, directory=runs / "zoo", run=runs / "run", resume=True).eval()
    seconds = time.perf_counter() - started
    retrained = reconstruction(vae, splits, kinematics)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(
        {"split": splits.describe(), "shipped_vae": shipped, "union_vae": retrained,
         "union_train_seconds": json.loads((runs / "zoo" / "pose-vae.json").read_text())["train_seconds"],
         "this_run_seconds": round(seconds, 1)}, indent=1))
    rows = ["| split / source | frames | shipped VAE (DeepMimic): MSE, cm | union VAE: MSE, cm |", "|---|---|---|---|"]
    for name, before in shipped.items():
        after = retrained[name]
        rows.append(f"| {name} | {before['frames']} | {before['pose_mse']:.4f}, {before['joint_error_cm']:.2f} | "
                    f"{after['pose_mse']:.4f}, {after['joint_error_cm']:.2f} |")
    (RESULTS / "results.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
