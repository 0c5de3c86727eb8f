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
    .venv/bin/python experiments/defense_hardened_long_attack.py --table   # report/defense/long_attack/summary.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from defense_adaptive import EOT_DRAWS, REMEDY_SCORE_SEED, REMEDY_SIZE, hardened_chain

from landform.report import markdown_table, write_text
from landform.tasks.defense import attack
from landform.tasks.defense.defense import HARDENED
from landform.tasks.defense.models import model_name
from landform.tasks.defense.scoring import Defended, accuracy, difference, percent, scored

RESULTS = Path(__file__).resolve().parent / "results"
TABLE = Path("report/defense/long_attack/summary.md")


def table() -> str:
    """The 100-step checks committed in experiments/results/ as one table (both losses, both models)."""
    results = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("defense_hardened_long_attack_*.json"))]
    rows = []
    for r in sorted(results, key=lambda r: r.get("loss", "dlr") == "ce"):  # DLR first (written before --loss)
        change = dict(r["long_minus_10_step"])
        if "value" in change:  # written before the paired difference's key was renamed
            change["difference"] = change.pop("value")
        rows.append([model_name(r["recipe"]),
                     f"APGD-{r.get('loss', 'dlr').upper()}-EOT, {r['apgd_steps']} steps, {r['eot']} draws",
                     str(r["count"]), str(r["attacked_images"]), percent(r["worst_10_step_chain"]),
                     percent(r["worst_with_long_attack"]), percent(change)])
    return markdown_table(["model", "attack", "images", "attacked (left by the chain)", "worst of the chain",
                           "worst with the long attack", "difference (points)"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="pgd")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--loss", choices=("dlr", "ce"), default="dlr", help="APGD's loss (default dlr)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", action="store_true", help=f"write {TABLE} from the committed results and stop")
    args = parser.parse_args()
    if args.table:
        write_text(TABLE, "# The hardened defense under 100-step attacks\n\n" + table() + "\n\nRight on the one "
                   "scoring draw of the remedies report, % [95% bootstrap interval over images], the images among "
                   "the report's first ones that its chain leaves attacked again from the clean images "
                   "(`experiments/defense_hardened_long_attack.py`; docs/experiments.md).\n")
        return
    if args.out is None:
        parser.error("--out is required (or --table)")
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
