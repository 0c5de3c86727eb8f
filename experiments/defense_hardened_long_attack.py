"""Does AutoAttack's 100-step APGD take images the remedies report's 10-step attacks leave robust?

The hardened defense's chain of the remedies report (transfer attacks, then BPDA-APGD-CE, APGD-CE and APGD-DLR
through its 5 unrolled steps, each with EOT over 20 draws x 10 steps; all read from the report's per-chunk cache)
leaves a set of images robust. On those among the first ``--count`` of the report's images, this runs APGD
(``--loss``: DLR or CE) with EOT over 20 draws and ``--steps`` (AutoAttack's 100) iterations through the 5 steps,
starting from the clean images, and scores every image as the report does. It reports the per-image worst
before and after, on those ``--count`` images: how much the report's 10-step figure overstates the defense. The
remedies report and its attack chain are defense_adaptive.py's (beside this script), the scoring
``landform.tasks.defense.scoring``'s.

    .venv/bin/python experiments/defense_hardened_long_attack.py --threads 1 --recipe RECIPE --count 100 \\
        --out experiments/results/defense_hardened_long_attack_RECIPE.json
    .venv/bin/python experiments/defense_hardened_long_attack.py --threads 1 --recipe RECIPE --count 100 --loss ce \\
        --out experiments/results/defense_hardened_long_attack_ce_RECIPE.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from defense_adaptive import EOT_DRAWS, REMEDY_SCORE_SEED, REMEDY_SIZE, hardened_chain

from landform.tasks.defense import attack
from landform.tasks.defense.defense import HARDENED
from landform.tasks.defense.scoring import Defended, accuracy, difference, scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="pgd")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--loss", choices=("dlr", "ce"), default="dlr", help="APGD's loss (default dlr)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import torchattacks

    chain = hardened_chain(args.recipe, seed=args.seed)
    model, mapping, lr_z, x, y, robust, held = chain.model, chain.mapping, chain.lr_z, chain.x, chain.y, \
        chain.robust, chain.held
    score = {"lr": lr_z, "steps": HARDENED["steps"], "seed": REMEDY_SCORE_SEED, "start_scale": HARDENED["start_scale"]}
    first = torch.arange(REMEDY_SIZE) < args.count
    target = robust & first
    composite = Defended(model, mapping, lr=lr_z, steps=HARDENED["steps"], seed=None,
                         start_scale=HARDENED["start_scale"])
    began = time.perf_counter()
    adv = torchattacks.APGD(composite, norm="L2", eps=attack.L2_EPS, steps=args.steps, n_restarts=1, seed=args.seed,
                            loss=args.loss, eot_iter=EOT_DRAWS)(x[target], y[target]).detach()
    seconds = time.perf_counter() - began
    x_adv = held.clone()
    x_adv[target] = adv
    after = robust & scored(model, mapping, x_adv, y, **score)["_correct"]
    out = {"recipe": args.recipe, "count": args.count, "apgd_steps": args.steps, "loss": args.loss, "eot": EOT_DRAWS,
           "attacked_images": int(target.sum()), "seconds": round(seconds, 1), "threads": args.threads,
           "worst_10_step_chain": accuracy(robust[first]), "worst_with_long_attack": accuracy(after[first]),
           "long_minus_10_step": difference(after[first], robust[first])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
