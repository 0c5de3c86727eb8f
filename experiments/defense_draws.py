"""The hardened defense scored over repeated draws, as a randomized defense should be scored.

A randomized defense scored on one draw of its randomness is inflated: an image counts as robust only if the
defense classifies it right on every one of R fresh draws (the repeated evaluation the AutoAttack maintainers
ask of randomized defenses). Per robust model, on seeded test images, clean and under the transfer PGD-L2
attack of the demo's table (computed on the undefended classifier), the hardened defense's accuracy on its first
draw, on every one of R draws and on more than half of them (``scoring.scored_over_draws``), written to
report/defense/draws/ (summary.json and summary.md):

    .venv/bin/python experiments/defense_draws.py --threads 1 --out report/defense/draws

The adaptive attacks (APGD with EOT through the steps, BPDA) are experiments/defense_adaptive.py's; rescoring
their images over R draws needs their cache (RUNS/defense-adaptive/), hours of CPU to build here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from landform.report import markdown_table, write_json, write_text
from landform.tasks.defense import attack
from landform.tasks.defense.data import eval_subset
from landform.tasks.defense.defense import load_landscape, ours_settings
from landform.tasks.defense.models import SHIPPED, load_model, model_name
from landform.tasks.defense.scoring import accuracy, percent, scored_over_draws

SCORES = {"_first": "the first draw", "_majority": "more than half of the draws", "_every": "every draw"}


def draws_arguments(description: str, out: str) -> tuple[argparse.Namespace, list[int]]:
    """The options of a repeated-draw study (images per model, R, seed, threads, output folder), with torch's
    threads set, and the seeds of its R draws (the same for every study of a seed)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--count", type=int, default=200, help="test images per model (default 200)")
    parser.add_argument("--draws", type=int, default=10, help="R, the draws of the defense (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=out)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args, [args.seed + 1000 + k for k in range(args.draws)]


def main() -> None:
    args, seeds = draws_arguments(__doc__.splitlines()[0], "report/defense/draws")
    began = time.perf_counter()
    x, y = eval_subset(args.count, seed=args.seed)
    summary: dict = {"count": args.count, "draws": args.draws, "seed": args.seed, "threads": args.threads,
                     "attack": f"transfer PGD-L2 (eps {attack.L2_EPS}) on the undefended classifier", "models": {}}
    rows = []
    for recipe in SHIPPED:
        model, landscape = load_model(recipe), load_landscape(recipe)
        settings = ours_settings(landscape, hardened=True)
        attacked = attack.pgd(model, x, y, seed=args.seed)
        block: dict = {"settings": {"steps": settings["steps"], "start_scale": settings["start_scale"],
                                    "lr": settings["lr"]}}
        for name, images in (("clean", x), ("transfer_pgd", attacked)):
            draws = scored_over_draws(model, settings["mapping"], images, y, lr=settings["lr"],
                                      steps=settings["steps"], seeds=seeds, start_scale=settings["start_scale"])
            block[name] = {key.strip("_"): accuracy(draws[key], seed=args.seed) for key in SCORES}
            rows.append([model_name(recipe), name.replace("_", " ")]
                        + [percent(block[name][key.strip("_")]) for key in SCORES])
        summary["models"][model_name(recipe)] = block
    summary["seconds"] = round(time.perf_counter() - began, 1)
    out = Path(args.out)
    write_json(out / "summary.json", summary)
    table = markdown_table(["model", "images", *[f"accuracy, right on {v}" for v in SCORES.values()]], rows)
    write_text(out / "summary.md", f"# The hardened defense over {args.draws} draws\n\n{table}\n\n"
               f"`python experiments/defense_draws.py --threads {args.threads} --out {args.out}`: {args.count} seeded "
               f"test images per model, the hardened defense ({settings['steps']} steps from a random start of scale "
               f"{settings['start_scale']}) drawn {args.draws} times; {summary['attack']}; % with 95% bootstrap "
               f"intervals over images; {summary['seconds'] / 60:.1f} min.\n")
    print(table)


if __name__ == "__main__":
    main()
