"""Run the Θ fits of the paper's Tables 2, 3 and 6 ahead of the tables, in parallel processes (one thread each).

Each fit is ``landform.paper.tables.fit_image_theta`` with the checkpoint name, sampler and options the table
uses (``planned_fits``), so ``landform reproduce table2|table3|table6`` afterwards finds the finished
checkpoints in RUNS/paper and only evaluates. A worker takes every ``--workers``-th fit starting at ``--worker``;
an interrupted worker resumes its fit where its last round was committed.

    .venv/bin/python experiments/paper_table_fits.py --worker 0 --workers 2 &
    .venv/bin/python experiments/paper_table_fits.py --worker 1 --workers 2 &
"""

from __future__ import annotations

import argparse
import time

import torch

from landform.paper.registry import ReproductionScale
from landform.paper.tables import fit_image_theta, planned_fits
from landform.tasks.images.task import load_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scale = ReproductionScale(quick=False, progress=False)
    models = load_models(scale.device)
    for name, sampler, options in planned_fits(scale)[args.worker::args.workers]:
        started = time.perf_counter()
        _, fit_seconds = fit_image_theta(models, sampler(), scale, name, **options)
        print(f"{name}: {fit_seconds / 60:.1f} min of fitting ({(time.perf_counter() - started) / 60:.1f} min now)",
              flush=True)


if __name__ == "__main__":
    main()
