"""Is 10 APGD steps enough against the 5-step fresh-draw defense? (the remedies report of defense_adaptive.py runs
10 steps with EOT over 20 draws; AutoAttack's rand version runs 100.)

On ``--count`` of the remedies report's images (the first ones), APGD-DLR with EOT over 20 fresh draws, through
the defense's 5 unrolled steps, with ``--steps`` iterations each (10 and a longer attack), from the clean
images; each attack's robust accuracy with the defense scored by its own draw (as the report scores it), and
the worst of them per image. If the longer attack takes many more images than the 10-step one, the report's
figure overstates the defense. Means with 95% bootstrap intervals over images. The report's settings come from
defense_adaptive.py beside this script, the scoring from ``landform.tasks.defense.scoring``.

    .venv/bin/python experiments/defense_attack_strength.py --threads 1 --recipe pgd --count 40 --steps 10 40 \
        --out experiments/results/defense_attack_strength.json

The hardened defense (``HARDENED``: 5 steps from z0 ~ N(0, 0.5²)) against AutoAttack's 100 steps, per model:

    .venv/bin/python experiments/defense_attack_strength.py --threads 1 --recipe RECIPE --count 40 --steps 10 100 \
        --start-scale 0.5 --out experiments/results/defense_attack_strength_hardened_RECIPE.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from defense_adaptive import EOT_DRAWS, REMEDY_SCORE_SEED

from landform.tasks.defense import attack
from landform.tasks.defense.data import eval_subset
from landform.tasks.defense.defense import load_theta
from landform.tasks.defense.models import load_model
from landform.tasks.defense.scoring import Defended, accuracy, difference, predict, scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="pgd")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--defense-steps", type=int, default=5)
    parser.add_argument("--start-scale", type=float, default=1.0,
                        help="the random start's scale (the hardened defense: HARDENED['start_scale'])")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import torchattacks

    model, (mapping, theta) = load_model(args.recipe), load_theta(args.recipe)
    lr_z = theta["settings"]["lr_z"]
    x, y = eval_subset(args.count, seed=args.seed)
    score = {"lr": lr_z, "steps": args.defense_steps, "seed": REMEDY_SCORE_SEED, "start_scale": args.start_scale}
    clean = scored(model, mapping, x, y, **score)["_correct"]
    out = {"recipe": args.recipe, "count": args.count, "defense_steps": args.defense_steps,
           "start_scale": args.start_scale, "eot": EOT_DRAWS,
           "eps": attack.L2_EPS, "threads": args.threads, "clean_with_defense": accuracy(clean),
           "clean_no_defense": accuracy((predict(model, x) == y).cpu()), "attacks": {}}
    worst = clean.clone()
    correct = {}
    for steps in args.steps:
        composite = Defended(model, mapping, lr=lr_z, steps=args.defense_steps, seed=None,
                             start_scale=args.start_scale)
        began = time.perf_counter()
        adv = torchattacks.APGD(composite, norm="L2", eps=attack.L2_EPS, steps=steps, n_restarts=1, seed=args.seed,
                                loss="dlr", eot_iter=EOT_DRAWS)(x, y)
        seconds = time.perf_counter() - began
        correct[steps] = scored(model, mapping, adv, y, **score)["_correct"] & clean
        worst &= correct[steps]
        out["attacks"][f"apgd_dlr_eot_{steps}"] = {**accuracy(correct[steps]), "seconds": round(seconds, 1)}
        print(f"{steps} steps: {out['attacks'][f'apgd_dlr_eot_{steps}']['accuracy']:.3f} ({seconds:.0f} s)", flush=True)
    out["worst"] = accuracy(worst)
    first, last = args.steps[0], args.steps[-1]
    out[f"steps_{last}_minus_{first}"] = difference(correct[last], correct[first])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "attacks"}, indent=1))


if __name__ == "__main__":
    main()
