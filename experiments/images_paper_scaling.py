"""The paper suite's scaling figure (``landform.paper.figures.scaling``) on a smaller evaluation, while the
paper-budget fit is still running: pure Eq. 3's loss against the trajectory steps fitted, at the snapshots and
checkpoint the fit has so far, on ``--images`` images per split and ``--steps`` inversion steps.

    .venv/bin/python experiments/images_paper_scaling.py --threads 1 --images 8 --steps 200 \
        --out report/paper/scaling-preliminary
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from landform.paper import figures  # noqa: F401  (registers the reproductions)
from landform.paper.registry import REPRODUCTIONS, ReproductionScale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="report/paper/scaling-preliminary")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    class Smaller(ReproductionScale):
        @property
        def images(self) -> int:
            return args.images

        @property
        def long_steps(self) -> int:
            return args.steps

    summary = REPRODUCTIONS["scaling"](Smaller(quick=False, progress=False), Path(args.out))
    summary["evaluation"] = {"images": args.images, "steps": args.steps, "threads": args.threads,
                             "command": "experiments/images_paper_scaling.py"}
    from landform.report import write_json

    write_json(Path(args.out) / "summary.json", summary)


if __name__ == "__main__":
    main()
