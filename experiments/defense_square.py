"""A gradient-free check of the hardened defense: a noise-aware Square attack (L2) on the images its chain leaves.

If a query-only attack takes images the gradient attacks leave, the defense masks its gradients. Plain Square
does not test a randomized defense: it stops on an image as soon as one lucky draw misclassifies it, and the
margins it compares differ from draw to draw. Here every query's answer is the classifier's log-probabilities
averaged over ``--draws-per-query`` fresh draws of the defense (so an image counts as fooled only when it is on
average, never on one lucky draw), for up to ``--queries`` queries (torchattacks' Square, L2, the report's ε).

Attacked: the images among the remedies report's first ``--count`` that its whole chain (transfer attacks,
BPDA-APGD-CE, APGD-CE and APGD-DLR with EOT through the 5 steps, from the chain's cache) leaves right, starting
from the clean images, in chunks of the defense's batch size, each chunk cached when done (RUNS/defense-square/),
so a stopped run resumes. Scored over R fresh draws as experiments/defense_chain_draws.py scores the chain, and
the per-image worst of chain and Square. Writes report/defense/square/RECIPE.json; ``--table`` writes
summary.md from the JSON files there:

    .venv/bin/python experiments/defense_square.py --threads 1 --recipe pgd --count 200 --queries 5000
    .venv/bin/python experiments/defense_square.py --table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch
from defense_adaptive import REMEDY_SIZE, hardened_chain
from torch import nn

from landform import zoo
from landform.report import markdown_table, write_json, write_text
from landform.tasks import runs_dir
from landform.tasks.defense import attack
from landform.tasks.defense.defense import HARDENED
from landform.tasks.defense.models import SHIPPED, model_name
from landform.tasks.defense.scoring import CHUNK, Defended, accuracy, percent, scored_over_draws

OUT = Path("report/defense/square")
SCORE_KEYS = {"first": "the first draw", "majority": "more than half of the draws", "every": "every draw"}


class DrawAveraged(nn.Module):
    """The defended classifier's log-probabilities averaged over ``draws`` fresh draws of the defense: what a
    noise-aware query attack reads (one draw's margin is noise)."""

    def __init__(self, defended: Defended, draws: int) -> None:
        super().__init__()
        self.defended, self.draws = defended, draws

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.defended(x).log_softmax(1) for _ in range(self.draws)]).mean(0)


def _chunk_path(recipe: str, settings: dict, x: torch.Tensor) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(x.numpy().tobytes())
    return runs_dir() / "defense-square" / f"{recipe}-{digest.hexdigest()[:16]}.safetensors"


def square(recipe: str, args: argparse.Namespace, seeds: list[int]) -> dict:
    """Square on the images the chain leaves right (of the first ``args.count``), scored over R draws."""
    import torchattacks

    chain = hardened_chain(recipe, seed=args.seed)
    model, mapping, lr_z, x, y, robust, held = chain.model, chain.mapping, chain.lr_z, chain.x, chain.y, \
        chain.robust, chain.held
    count = min(args.count, REMEDY_SIZE)
    x, y, robust, held = x[:count], y[:count], robust[:count], held[:count]
    settings = {"queries": args.queries, "draws_per_query": args.draws_per_query, "eps": attack.L2_EPS,
                "seed": args.seed, "steps": HARDENED["steps"], "start_scale": HARDENED["start_scale"], "lr": lr_z}
    defended = Defended(model, mapping, lr=lr_z, steps=HARDENED["steps"], seed=None,
                        start_scale=HARDENED["start_scale"])
    target = robust.nonzero().flatten()
    adv, seconds = held.clone(), 0.0
    for part in target.split(CHUNK):
        path = _chunk_path(recipe, settings, x[part])
        if path.exists():
            tensors, meta = zoo.load_pair(path)
            adv[part], seconds = tensors["adv"], seconds + meta["seconds"]
            continue
        began = time.perf_counter()
        attacker = torchattacks.Square(DrawAveraged(defended, args.draws_per_query), norm="L2", eps=attack.L2_EPS,
                                       n_queries=args.queries, n_restarts=1, seed=args.seed, loss="margin")
        adv[part] = attacker(x[part], y[part]).detach()
        took = time.perf_counter() - began
        zoo.save_pair(path, {"adv": adv[part].contiguous()}, {"seconds": took})
        seconds += took
        print(f"{recipe}: chunk of {part.numel()} images in {took / 60:.1f} min", flush=True)
    score = {"lr": lr_z, "steps": HARDENED["steps"], "seeds": seeds, "start_scale": HARDENED["start_scale"]}
    chain = scored_over_draws(model, mapping, held, y, **score)
    after = scored_over_draws(model, mapping, adv, y, **score)
    out = {"recipe": recipe, "model": model_name(recipe), "count": count, "attacked_images": int(target.numel()),
           "draws": len(seeds), "settings": settings, "threads": args.threads, "seconds": round(seconds, 1)}
    for key in SCORE_KEYS:
        chain_right = chain[f"_{key}"] & robust  # right against every attack of the chain
        out[f"chain_{key}"] = accuracy(chain_right)
        out[f"square_left_{key}"] = accuracy(after[f"_{key}"][robust])  # of the images it attacked
        out[f"worst_{key}"] = accuracy(chain_right & after[f"_{key}"])
    return out


def table(folder: Path) -> str:
    """summary.md's table from the JSON files in ``folder``."""
    rows, count = [], None
    for recipe in SHIPPED:
        path = folder / f"{recipe}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        count = r["count"]
        for key, label in SCORE_KEYS.items():
            rows.append([r["model"], label, percent(r[f"chain_{key}"]), percent(r[f"square_left_{key}"]),
                         percent(r[f"worst_{key}"]), str(r["attacked_images"]),
                         f"{r['settings']['queries']} / {r['settings']['draws_per_query']} / {r['draws']}",
                         f"{r['seconds'] / 60:.0f}"])
    if not rows:
        return "(no results yet)"
    return markdown_table(["model", "scored right on", f"the chain (first {count} images)",
                           "Square leaves right (of the images it attacked)", "worst of chain and Square",
                           "attacked", "queries / draws per query / R", "min"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", choices=SHIPPED, default="pgd")
    parser.add_argument("--count", type=int, default=200, help="the report's first images (default 200)")
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--draws-per-query", type=int, default=8)
    parser.add_argument("--draws", type=int, default=10, help="R, the draws each image is scored on (default 10)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table", action="store_true", help="write summary.md from the JSON files in --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.table:
        seeds = [args.seed + 1000 + k for k in range(args.draws)]  # the draws of defense_draws.py's studies
        write_json(args.out / f"{args.recipe}.json", square(args.recipe, args, seeds))
    text = table(args.out)
    write_text(args.out / "summary.md", "# A noise-aware Square attack on the hardened defense\n\n" + text + "\n\n"
               "`python experiments/defense_square.py --threads 1 --recipe RECIPE --count N --queries Q`: "
               "torchattacks' Square (L2, ε of the report) on the images the hardened defense's chain leaves "
               "right, each query's log-probabilities averaged over fresh draws of the defense; every image scored "
               "on R fresh draws; % with 95% bootstrap intervals over images.\n")
    print(text)


if __name__ == "__main__":
    main()
