"""The hardened defense scored in each batch it may run in: its contrastive loss takes its negatives from the other
images of its batch, so an image's defended prediction depends on its neighbours.

Per robust model, on seeded test images, clean and under the transfer PGD-L2 attack of the demo's table (computed
on the undefended classifier), the hardened defense's accuracy with each image defended

- **alone** (a batch of one: its only contrast is between its own augmented views), over R draws;
- **among clean images** (a batch of ``CHUNK``: the image and ``CHUNK`` − 1 clean test images from a disjoint
  set, as a server that defends each request beside traffic it trusts), on the first draw;
- **among attacked images** (chunks of ``CHUNK`` images that are all attacked: an attacker who controls the whole
  batch; the scoring of the demo and of experiments/defense_draws.py), over R draws.

R draws are scored as experiments/defense_draws.py scores them (right on the first draw, on more than half, on
every one). Written to report/defense/batch_context/ (summary.json and summary.md):

    .venv/bin/python experiments/defense_batch_context.py --threads 1 --out report/defense/batch_context

The defense's runs are cached by batch (RUNS/defense-adaptive/scores), so an interrupted run resumes.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from defense_draws import draws_arguments

from landform.progress import progress_bar
from landform.report import markdown_table, write_json, write_text
from landform.tasks.defense import attack
from landform.tasks.defense.data import eval_subset
from landform.tasks.defense.defense import load_landscape, ours_settings
from landform.tasks.defense.models import SHIPPED, load_model, model_name
from landform.tasks.defense.scoring import CHUNK, accuracy, percent, scored, scored_over_draws

CONTEXTS = {"alone": "alone", "all_of_its_kind": "all of its kind", "among_clean": "with {} clean images"}
SCORES = {"_first": "first draw", "_majority": "more than half of the draws", "_every": "every draw"}


def alone(model, settings: dict, images: torch.Tensor, labels: torch.Tensor, seeds: list[int]) -> dict:
    """Each image defended in a batch of one, once per draw in ``seeds`` (scored as ``scored_over_draws``)."""
    hits = torch.zeros(3, images.shape[0], dtype=torch.bool)
    bar = progress_bar(total=images.shape[0], desc="alone")
    for i in range(images.shape[0]):
        draws = scored_over_draws(model, settings["mapping"], images[i:i + 1], labels[i:i + 1], lr=settings["lr"],
                                  steps=settings["steps"], seeds=seeds, start_scale=settings["start_scale"])
        hits[0, i], hits[1, i], hits[2, i] = draws["_first"][0], draws["_majority"][0], draws["_every"][0]
        bar.update(1)
    bar.close()
    return {"_first": hits[0], "_majority": hits[1], "_every": hits[2]}


def among_clean(model, settings: dict, images: torch.Tensor, labels: torch.Tensor, clean: torch.Tensor,
                clean_labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Whether each image is defended right in a batch with ``CHUNK`` − 1 clean images (one draw)."""
    neighbours, neighbour_labels = clean[:CHUNK - 1], clean_labels[:CHUNK - 1]
    hits = torch.zeros(images.shape[0], dtype=torch.bool)
    bar = progress_bar(total=images.shape[0], desc="among clean")
    for i in range(images.shape[0]):
        batch = torch.cat([images[i:i + 1], neighbours])
        batch_labels = torch.cat([labels[i:i + 1], neighbour_labels])
        hits[i] = scored(model, settings["mapping"], batch, batch_labels, lr=settings["lr"], steps=settings["steps"],
                         seed=seed, start_scale=settings["start_scale"])["_correct"][0]
        bar.update(1)
    bar.close()
    return hits


def main() -> None:
    args, seeds = draws_arguments(__doc__.splitlines()[0], "report/defense/batch_context")
    began = time.perf_counter()
    x, y = eval_subset(args.count + CHUNK - 1, seed=args.seed)
    x, y, clean, clean_labels = x[:args.count], y[:args.count], x[args.count:], y[args.count:]
    summary: dict = {"count": args.count, "draws": args.draws, "seed": args.seed, "threads": args.threads,
                     "batch": CHUNK, "attack": f"transfer PGD-L2 (eps {attack.L2_EPS}) on the undefended classifier",
                     "models": {}}
    rows = []
    for recipe in SHIPPED:
        model, landscape = load_model(recipe), load_landscape(recipe)
        settings = ours_settings(landscape, hardened=True)
        attacked = attack.pgd(model, x, y, seed=args.seed)
        block: dict = {}
        for name, images in (("clean", x), ("transfer_pgd", attacked)):
            contexts = {"alone": alone(model, settings, images, y, seeds),
                        "all_of_its_kind": scored_over_draws(model, settings["mapping"], images, y, lr=settings["lr"],
                                                             steps=settings["steps"], seeds=seeds,
                                                             start_scale=settings["start_scale"])}
            if name == "transfer_pgd":
                contexts["among_clean"] = {"_first": among_clean(model, settings, images, y, clean, clean_labels,
                                                                 seeds[0])}
            undefended = scored(model, settings["mapping"], images, y, lr=settings["lr"], steps=settings["steps"],
                                seed=seeds[0], start_scale=settings["start_scale"])["_undefended"]  # cached
            block[name] = {"undefended": accuracy(undefended, seed=args.seed)}
            rows.append([model_name(recipe), name.replace("_", " "), "undefended", percent(block[name]["undefended"]),
                         "", ""])
            for context, hits in contexts.items():
                block[name][context] = {key.strip("_"): accuracy(hits[key], seed=args.seed)
                                        for key in SCORES if key in hits}
                rows.append([model_name(recipe), name.replace("_", " "), CONTEXTS[context].format(CHUNK - 1)]
                            + [percent(block[name][context].get(key.strip("_"))) for key in SCORES])
        summary["models"][model_name(recipe)] = block
    summary["seconds"] = round(time.perf_counter() - began, 1)
    out = Path(args.out)
    write_json(out / "summary.json", summary)
    headers = ["model", "images", "defended in a batch", *[f"accuracy, right on the {v}" if k == "_first"
                                                           else f"accuracy, right on {v}" for k, v in SCORES.items()]]
    table = markdown_table(headers, rows)
    print(table)
    write_text(out / "summary.md", f"# The hardened defense in each batch it may run in\n\n{table}"
               f"\n\n`python experiments/defense_batch_context.py --threads {args.threads} --out {args.out}`: "
               f"{args.count} seeded test images per model; {summary['attack']}; the hardened defense "
               f"({settings['steps']} steps from a random start of scale {settings['start_scale']}); *undefended*: the "
               f"robust classifier alone; *alone*: a batch "
               f"of one; *with {CHUNK - 1} clean images*: the image and {CHUNK - 1} clean test images of a disjoint "
               f"set (first draw only: n/a on the others); *all of its kind*: chunks of {CHUNK} images all clean or "
               f"all attacked, as the demo scores them; {args.draws} draws; % with 95% bootstrap intervals over "
               f"images; {summary['seconds'] / 60:.1f} min.\n")


if __name__ == "__main__":
    main()
