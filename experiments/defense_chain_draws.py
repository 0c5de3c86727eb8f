"""The hardened defense's whole attack chain scored over R fresh draws of the defense.

The remedies report (experiments/defense_adaptive.py) scores every attack of the hardened defense's chain
(transfer PGD-L2 and AutoAttack on the undefended classifier, then BPDA-APGD-CE, APGD-CE and APGD-DLR through
its 5 unrolled steps, each with EOT over 20 draws) on one draw of the defense. A randomized defense scored on
one draw is inflated, so here each attack's images (read from the chain's per-chunk cache) are scored again on
R fresh draws (``scoring.scored_over_draws``): per image, right on the first draw, on more than half, on every
draw; and the per-image worst over the chain for each. Beside them: the clean images over the same draws (the
clean drop against the undefended classifier) and the bar, AutoAttack on the undefended classifier. Written to
report/defense/chain_draws/ (summary.json and summary.md):

    .venv/bin/python experiments/defense_chain_draws.py --threads 1 --count 500 --out report/defense/chain_draws

Each later attack of the chain ran only on the images still right after the ones before it, on the report's
one draw; an image that draw let through was not attacked further, which can only flatter the "more than half"
column (on "every draw" such an image already counts as broken).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from defense_adaptive import REMEDY_SIZE, hardened_chain
from defense_draws import SCORES, draws_arguments

from landform.report import markdown_table, write_json, write_text
from landform.tasks.defense.defense import HARDENED
from landform.tasks.defense.models import SHIPPED, model_name
from landform.tasks.defense.scoring import accuracy, difference, percent, predict, scored_over_draws

LABELS = {"pgd_transfer": "transfer PGD", "autoattack_transfer": "transfer AutoAttack",
          "bpda_apgd_ce_eot": "BPDA-APGD-CE-EOT", "apgd_ce_eot": "APGD-CE-EOT", "apgd_dlr_eot": "APGD-DLR-EOT"}


def main() -> None:
    args, seeds = draws_arguments(__doc__.splitlines()[0], "report/defense/chain_draws")
    began = time.perf_counter()
    count = min(args.count, REMEDY_SIZE)
    summary: dict = {"count": count, "draws": args.draws, "seed": args.seed, "threads": args.threads, "models": {}}
    rows = []
    for recipe in SHIPPED:
        examples: dict = {}
        chain = hardened_chain(recipe, seed=args.seed, examples=examples)
        model, mapping, lr_z, x, y, x_aa = chain.model, chain.mapping, chain.lr_z, chain.x, chain.y, chain.x_aa
        settings = {"lr": lr_z, "steps": HARDENED["steps"], "seeds": seeds, "start_scale": HARDENED["start_scale"]}
        scores = {"clean": scored_over_draws(model, mapping, x[:count], y[:count], **settings)}
        for label in LABELS:
            scores[label] = scored_over_draws(model, mapping, examples[label][:count], y[:count], **settings)
        worst = {key: torch.stack([scores[label][key] for label in LABELS]).all(0) for key in SCORES}
        clean_undefended = (predict(model, x[:count]) == y[:count]).cpu()
        autoattack = (predict(model, x_aa[:count]) == y[:count]).cpu()
        block = {"settings": {k: v for k, v in settings.items() if k != "seeds"},
                 "undefended": {"clean": accuracy(clean_undefended), "autoattack": accuracy(autoattack)},
                 "attacks": {label: {key.strip("_"): accuracy(scores[label][key]) for key in SCORES}
                             for label in ["clean", *LABELS]},
                 "worst": {key.strip("_"): accuracy(worst[key]) for key in SCORES},
                 "worst_minus_autoattack_undefended": {key.strip("_"): difference(worst[key], autoattack)
                                                       for key in SCORES},
                 "clean_drop": {key.strip("_"): difference(clean_undefended, scores["clean"][key])
                                for key in SCORES}}
        summary["models"][model_name(recipe)] = block
        name = model_name(recipe)
        rows.append([name, "undefended: clean", percent(block["undefended"]["clean"]), "", ""])
        rows.append([name, "undefended: AutoAttack (the bar)", percent(block["undefended"]["autoattack"]), "", ""])
        for label in ["clean", *LABELS]:
            rows.append([name, LABELS.get(label, "clean")]
                        + [percent(block["attacks"][label][key.strip("_")]) for key in SCORES])
        rows.append([name, "**worst over the chain**"] + [percent(block["worst"][key.strip("_")]) for key in SCORES])
        rows.append([name, "worst − AutoAttack undefended"]
                    + [percent(block["worst_minus_autoattack_undefended"][key.strip("_")]) for key in SCORES])
        rows.append([name, "clean drop (undefended − defended)"]
                    + [percent(block["clean_drop"][key.strip("_")]) for key in SCORES])
    summary["seconds"] = round(time.perf_counter() - began, 1)
    out = Path(args.out)
    write_json(out / "summary.json", summary)
    table = markdown_table(["model", "images", *[f"accuracy, right on {v}" for v in SCORES.values()]], rows)
    command = f"python experiments/defense_chain_draws.py --threads {args.threads} --count {count} --out {args.out}"
    write_text(out / "summary.md", f"# The hardened defense's attack chain over {args.draws} draws\n\n{table}\n\n"
               f"`{command}`: the remedies report's first {count} test images per model; each attack's images from "
               f"its chain (EOT over 20 draws, 10 APGD steps through the {HARDENED['steps']} unrolled steps; start "
               f"scale {HARDENED['start_scale']}) scored on {args.draws} fresh draws of the hardened defense; worst: "
               "per image, right against every attack; % with 95% bootstrap intervals over images; "
               f"{summary['seconds'] / 60:.1f} min. An image the chain's one scoring draw let through was not "
               "attacked by the later attacks, which can only flatter the middle column.\n")
    print(table)


if __name__ == "__main__":
    main()
