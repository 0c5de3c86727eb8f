"""Does the defense hold against an attacker who knows it, and which remedies make it hold?

The defense under adaptive attacks (Tramèr et al. 2020, Croce et al. 2022), written to report/defense/adaptive/,
and with ``--remedies`` the remedies tried, written to report/defense/adaptive_remedies/ (summary.json and
summary.md each):

    .venv/bin/python experiments/defense_adaptive.py --threads 1 --out report/defense/adaptive
    .venv/bin/python experiments/defense_adaptive.py --remedies --threads 1 --out report/defense/adaptive_remedies

The defended classifier is a function of a batch (the contrastive loss takes its negatives from the other
images of the chunk), so every attack and every evaluation runs on the same fixed chunks of ``CHUNK`` test
images, and an attack's examples are scored by the deployed defense on their whole chunk
(``landform.tasks.defense.scoring``: ``scored``, and ``Defended``, the composite the attacks see).

Per robust model, on ``ADAPTIVE_SIZE`` seeded test images (the first of the ``MAIN_SIZE`` images of the
non-adaptive table):

- transfer attacks (computed on the undefended classifier): torchattacks PGD-L2 and AutoAttack (standard);
  AutoAttack's accuracy on the undefended classifier is the bar (``autoattack_no_defense``);
- APGD-CE and APGD-DLR (torchattacks, the attacks of AutoAttack's version for randomized defenses) on the
  composite model, with gradients through the defense's unrolled step (``landform.unroll``, second order):
  with the start's draw fixed to the deployed one (the attacker knows the seed), and with expectation over
  transformation (``EOT_DRAWS`` fresh draws of the random start and of the views per gradient);
- BPDA: APGD-CE where the defense's step is the identity on the backward pass;
- per image the worst of all of them (``adaptive_worst``); beside every number the same-norm noise control.

The baseline (Mao et al.'s 40-step reversal) is attacked with the transfer attacks and BPDA (its 40 steps
are too long to unroll on this machine). The non-adaptive table (PGD-L2 transfer, ours after 1 step against
the baseline's 40) runs on ``MAIN_SIZE`` images. Attacks are cached per chunk under RUNS/defense-adaptive/;
the seconds each evaluation took are recorded. The remedies (``remedies``) rerun the attacks on randomized and
longer variants of the defense, the hardened one (``HARDENED``) among them.

defense_attack_strength.py and defense_hardened_long_attack.py run longer attacks on the remedies' images, from
this module's transfer attacks and attack chain (``transfer_attacks``, ``attack_chain``, their cache).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import NamedTuple

import torch

from landform import zoo
from landform.errors import LandformError
from landform.report import markdown_table, write_json, write_text
from landform.tasks import runs_dir
from landform.tasks.defense import attack
from landform.tasks.defense.data import eval_subset
from landform.tasks.defense.defense import HARDENED, load_theta
from landform.tasks.defense.models import SHIPPED, entry_file, load_model, model_name, theta_name
from landform.tasks.defense.scoring import CHUNK, Defended, accuracy, difference, percent, predict, scored

MAIN_SIZE = 1000
ADAPTIVE_SIZE = 500
EOT_DRAWS = 20
# APGD steps per attack: through the step with the draw fixed, BPDA on ours, EOT (x EOT_DRAWS gradients each),
# BPDA on the baseline (each of its gradients runs the baseline's 40 steps). AutoAttack's 100 steps where the
# 2-core CPU finishes them in minutes; EOT (20 gradients a step) and the baseline's BPDA shorter, so that the whole
# evaluation takes about half an hour per model (the report names the steps beside every number).
STEPS = {"fixed_draw": 100, "bpda": 100, "eot": 10, "baseline_bpda": 20}
AUTOATTACK_STEPS = 100  # APGD's steps in AutoAttack's standard and rand versions
# The remedies report's attacks (report/defense/adaptive_remedies): EOT as strong as the main report's; the fixed
# draw's attack shorter than there (its 100-step figure is the main report's, on these images among others).
REMEDY_FIXED_STEPS, REMEDY_EOT_STEPS = 10, STEPS["eot"]
# An attack is not started once this many seconds have passed in a model's evaluation (the report then says
# which were not run): the shared 2-core machine this was written on ran every job many times slower.
ATTACK_BUDGET_S = 3300
BASELINE_STEPS = 40
PGD_STEPS = 50
EVAL_SEED = 0  # the deployed defense's draw (the demo's seed)


# ----------------------------------------------------------------------------------------------- numbers
def _block(result: dict, seconds: float | None = None) -> dict:
    """A ``scored`` result as a report block: the defense's accuracy, its noise control's, the undefended
    classifier's, defense minus noise, and the mean reversal norm."""
    out = {**accuracy(result["_correct"]), "noise": accuracy(result["_noise"]),
           "undefended": accuracy(result["_undefended"]),
           "minus_noise": difference(result["_correct"], result["_noise"]), "reversal_norm": result["reversal_norm"]}
    if seconds is not None:
        out["seconds"] = round(seconds, 1)
    return out


# -------------------------------------------------------------------------------------------------- cache
def _cache_path(recipe: str, label: str, settings: dict, index: int) -> Path:
    digest = hashlib.sha256(zoo.fingerprint(model_name(recipe)).encode())
    digest.update(zoo.fingerprint(theta_name(recipe)).encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return runs_dir() / "defense-adaptive" / f"{recipe}-{label}-{index}-{digest.hexdigest()[:16]}.safetensors"


def _chunked_attack(recipe: str, label: str, settings: dict, x: torch.Tensor, y: torch.Tensor, make,
                    log=None) -> tuple[torch.Tensor, float]:
    """``make(x_chunk, y_chunk)`` on every chunk of CHUNK images, each cached (a crash loses one chunk); returns
    the examples and the seconds they took (the cached chunks' recorded seconds included)."""
    parts, seconds = [], 0.0
    for index, start in enumerate(range(0, x.shape[0], CHUNK)):
        path = _cache_path(recipe, label, settings, index)
        xc, yc = x[start:start + CHUNK], y[start:start + CHUNK]
        if path.exists():
            try:
                tensors, meta = zoo.load_pair(path)
                if tensors["x"].shape == xc.shape:
                    parts.append(tensors["x"])
                    seconds += float(meta.get("seconds", 0.0))
                    continue
            except LandformError:
                pass
        started = time.perf_counter()
        x_adv = make(xc, yc).detach().cpu()
        took = time.perf_counter() - started
        zoo.save_pair(path, {"x": x_adv}, {**settings, "seconds": took})
        parts.append(x_adv)
        seconds += took
        if log is not None:
            log(f"{recipe} {label} chunk {index}: {took:.0f} s")
    return torch.cat(parts), seconds


def _seeded(seed: int, run):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return run()


def _pgd_transfer(recipe: str, model, x: torch.Tensor, y: torch.Tensor, *, seed: int,
                  log=None) -> tuple[torch.Tensor, float]:
    """torchattacks PGD-L2 (ε, step ε/4, PGD_STEPS, random start) on the undefended classifier, cached per chunk."""
    import torchattacks

    eps = attack.L2_EPS
    settings = {"tool": "torchattacks.PGDL2", "eps": eps, "alpha": eps / 4, "steps": PGD_STEPS, "seed": seed}
    return _chunked_attack(recipe, "pgd", settings, x, y, lambda xc, yc: _seeded(seed, lambda: torchattacks.PGDL2(
        model, eps=eps, alpha=eps / 4, steps=PGD_STEPS, random_start=True)(xc, yc)), log)


def _autoattack_transfer(recipe: str, model, x: torch.Tensor, y: torch.Tensor, *, seed: int,
                         log=None) -> tuple[torch.Tensor, float]:
    """torchattacks AutoAttack (standard, L2, ε) on the undefended classifier, cached per chunk: the bar."""
    import torchattacks

    eps = attack.L2_EPS
    settings = {"tool": "torchattacks.AutoAttack", "version": "standard", "norm": "L2", "eps": eps, "seed": seed}
    return _chunked_attack(recipe, "autoattack", settings, x, y, lambda xc, yc: _seeded(
        seed, lambda: torchattacks.AutoAttack(model, norm="L2", eps=eps, version="standard", n_classes=10,
                                              seed=seed)(xc, yc)), log)


# ------------------------------------------------------------------------------------------------- model
def evaluate(recipe: str, *, main_size: int = MAIN_SIZE, size: int = ADAPTIVE_SIZE, eot: int = EOT_DRAWS,
             steps: dict | None = None, baseline_steps: int = BASELINE_STEPS, seed: int = 0,
             budget_s: float = ATTACK_BUDGET_S, log=None) -> dict:
    """Every number of one robust model (see the module docstring)."""
    import torchattacks

    n_steps = {**STEPS, **(steps or {})}
    begun = time.perf_counter()
    model = load_model(recipe)
    mapping, theta = load_theta(recipe)
    lr_z, base_lr = theta["settings"]["lr_z"], theta["baseline"]["lr"]
    x, y = eval_subset(main_size, seed=seed)
    eps = attack.L2_EPS
    ours = {"mapping": mapping, "lr": lr_z, "steps": 1}
    base = {"mapping": None, "lr": base_lr, "steps": baseline_steps}
    row: dict = {"main_images": main_size, "adaptive_images": size, "seconds": {}}
    secs = row["seconds"]

    def timed(label: str, run):
        started = time.perf_counter()
        value = run()
        secs[label] = round(time.perf_counter() - started, 1)
        if log is not None:
            log(f"{recipe} {label}: {secs[label]} s")
        return value

    # The non-adaptive table on main_size images: PGD-L2 transfer, ours 1 step against the baseline's 40.
    x_pgd, secs["attack_pgd_transfer"] = _pgd_transfer(recipe, model, x, y, seed=seed, log=log)
    clean_ok = (predict(model, x) == y).cpu()
    pgd_ours = timed("score_pgd_ours", lambda: scored(model, mapping, x_pgd, y, lr=lr_z, steps=1, seed=EVAL_SEED))
    clean_ours = timed("score_clean_ours", lambda: scored(model, mapping, x, y, lr=lr_z, steps=1, seed=EVAL_SEED))
    row["clean"] = accuracy(clean_ok)
    row["clean_with_defense"] = accuracy(clean_ours["_correct"])
    row["clean_drop"] = difference(clean_ok, clean_ours["_correct"])

    # The adaptive evaluation on the first `size` images: ours first, then the baseline (the slow one).
    xs, ys = x[:size], y[:size]
    x_aa, secs["attack_autoattack_no_defense"] = _autoattack_transfer(recipe, model, xs, ys, seed=seed, log=log)
    adaptive: dict[str, dict] = {}
    transfer = {"ours": {"pgd_transfer": {k: (v[:size] if k.startswith("_") else v) for k, v in pgd_ours.items()},
                         "autoattack_transfer": scored(model, mapping, x_aa, ys, lr=lr_z, steps=1, seed=EVAL_SEED)}}
    row["autoattack_no_defense"] = accuracy(transfer["ours"]["autoattack_transfer"]["_undefended"])

    def apgd(composite, loss: str, draws: int, steps: int):
        def make(xc, yc):
            return torchattacks.APGD(composite, norm="L2", eps=eps, steps=steps, n_restarts=1, seed=seed, loss=loss,
                                     eot_iter=draws)(xc, yc)
        return make

    runs = {  # defense: [(label, composite, loss, EOT draws, steps)], in order; each attacks the images left
        "ours": [
            ("apgd_ce_fixed_draw", Defended(model, mapping, lr=lr_z, steps=1, seed=EVAL_SEED), "ce", 1,
             n_steps["fixed_draw"]),
            ("apgd_dlr_fixed_draw", Defended(model, mapping, lr=lr_z, steps=1, seed=EVAL_SEED), "dlr", 1,
             n_steps["fixed_draw"]),
            ("bpda_apgd_ce", Defended(model, mapping, lr=lr_z, steps=1, seed=EVAL_SEED, bpda=True), "ce", 1,
             n_steps["bpda"]),
            ("apgd_ce_eot", Defended(model, mapping, lr=lr_z, steps=1, seed=None), "ce", eot, n_steps["eot"]),
            ("apgd_dlr_eot", Defended(model, mapping, lr=lr_z, steps=1, seed=None), "dlr", eot, n_steps["eot"])],
        "baseline": [
            ("bpda_apgd_ce", Defended(model, None, lr=base_lr, steps=baseline_steps, seed=EVAL_SEED, bpda=True), "ce",
             1, n_steps["baseline_bpda"])]}
    state = {}
    for which in ("ours", "baseline"):
        if which == "baseline":
            # The non-adaptive table on main_size images: ours 1 step against the baseline's 40 (PGD-L2 transfer).
            pgd_base = timed("score_pgd_baseline", lambda: scored(model, None, x_pgd, y, lr=base_lr,
                                                                    steps=baseline_steps, seed=EVAL_SEED))
            row["pgd_transfer"] = {"no_defense": accuracy(pgd_ours["_undefended"]), "ours_1": _block(pgd_ours),
                                   "baseline_40": _block(pgd_base)}
            row["ours1_minus_baseline40"] = difference(pgd_ours["_correct"], pgd_base["_correct"])
            row["ours1_minus_no_defense"] = difference(pgd_ours["_correct"], pgd_ours["_undefended"])
            transfer["baseline"] = {
                "pgd_transfer": {k: (v[:size] if k.startswith("_") else v) for k, v in pgd_base.items()},
                "autoattack_transfer": timed("score_autoattack_baseline", lambda: scored(
                    model, None, x_aa, ys, lr=base_lr, steps=baseline_steps, seed=EVAL_SEED))}
        done = transfer[which]
        first = done["pgd_transfer"]["_correct"] & done["autoattack_transfer"]["_correct"]
        # The example that broke each image so far (it fills the image's slot when its chunk is attacked again).
        held = torch.where(done["pgd_transfer"]["_correct"].view(-1, 1, 1, 1), x_aa, x_pgd[:size])
        st = state[which] = {"robust": first.clone(), "held": held,
                             "noise": done["pgd_transfer"]["_noise"] & done["autoattack_transfer"]["_noise"]}
        adaptive[which] = {label: {**_block(done[label]), "robust_after": accuracy(first)}
                           for label in ("pgd_transfer", "autoattack_transfer")}
        defense = ours if which == "ours" else base
        for label, composite, loss, draws, steps in runs[which]:
            settings = {"tool": "torchattacks.APGD", "loss": loss, "eot_iter": draws, "steps": steps, "eps": eps,
                        "norm": "L2", "seed": seed, "defense": which, "defense_steps": composite.steps,
                        "bpda": composite.bpda, "draw": "fixed" if composite.seed is not None else "fresh per call"}
            left = st["robust"].clone()
            if steps == 0:
                adaptive[which][label] = {"not_run": "0 steps (not run by default: each gradient runs the "
                                                     "baseline's 40 steps)", "settings": settings}
                continue
            if time.perf_counter() - begun > budget_s:
                adaptive[which][label] = {"not_run": f"time budget ({budget_s} s) spent before it started",
                                          "settings": settings}
                if log is not None:
                    log(f"{recipe} {which} {label}: not run (time budget)")
                continue
            parts, took = [], 0.0
            for index, begin in enumerate(range(0, size, CHUNK)):
                mask = left[begin:begin + CHUNK]
                held = st["held"][begin:begin + CHUNK].clone()
                if mask.any():
                    key = {**settings, "attacked": hashlib.sha256(mask.numpy().tobytes()).hexdigest()[:12]}
                    x_adv, seconds = _chunked_attack(recipe, f"{which}-{label}-c{index}", key,
                                                     xs[begin:begin + CHUNK][mask], ys[begin:begin + CHUNK][mask],
                                                     apgd(composite, loss, draws, steps), log)
                    held[mask] = x_adv
                    took += seconds
                parts.append(held)
            x_adv = torch.cat(parts)
            result = scored(model, defense["mapping"], x_adv, ys, lr=defense["lr"], steps=defense["steps"],
                             seed=EVAL_SEED)
            broke = st["robust"] & ~result["_correct"]
            st["held"][broke] = x_adv[broke]
            st["robust"] &= result["_correct"]
            st["noise"] &= result["_noise"]
            adaptive[which][label] = {**_block(result, took), "attacked_images": int(left.sum()),
                                      "robust_after": accuracy(st["robust"]), "settings": settings}
            if log is not None:
                log(f"{recipe} {which} {label}: robust after {st['robust'].double().mean():.3f}")

    for which in ("ours", "baseline"):
        blocks, st = adaptive[which], state[which]
        blocks["worst"] = {**accuracy(st["robust"]), "noise": accuracy(st["noise"]),
                           "minus_noise": difference(st["robust"], st["noise"]),
                           "attacks": [k for k, b in blocks.items() if "not_run" not in b],
                           "not_run": [k for k, b in blocks.items() if "not_run" in b]}
        blocks["worst_minus_autoattack_no_defense"] = difference(
            st["robust"], transfer["ours"]["autoattack_transfer"]["_undefended"])
    row["adaptive"] = adaptive
    row["adaptive_worst"] = {k: adaptive["ours"]["worst"][k] for k in ("accuracy", "ci95", "count")}
    row["adaptive_worst_baseline"] = {k: adaptive["baseline"]["worst"][k] for k in ("accuracy", "ci95", "count")}
    row["targets"] = targets(row)
    return row


def targets(row: dict) -> dict[str, bool]:
    """The bar the adaptive report holds a model's row to: the adaptive worst at least 5 points over AutoAttack
    on the undefended model, and a clean drop of at most 1 point."""
    return {"adaptive_worst_at_least_autoattack_no_defense_plus_5":
            row["adaptive_worst"]["accuracy"] >= row["autoattack_no_defense"]["accuracy"] + 0.05,
            "clean_drop_at_most_1_point": row["clean_drop"]["difference"] <= 0.01}


# ----------------------------------------------------------------------------------------------- remedies
REMEDY_SIZE = ADAPTIVE_SIZE
REMEDY_SCORE_SEED = 987_654  # the randomized defense's draw when scored (not one the attacker's EOT draws)
HARDENED_VARIANT = "fresh_draw_5_steps_small_start"  # defense.HARDENED, as the remedies name it


def transfer_attacks(recipe: str, model, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0,
                     log=None) -> tuple[torch.Tensor, torch.Tensor]:
    """torchattacks PGD-L2 and AutoAttack (standard) on the undefended classifier, cached per chunk."""
    return (_pgd_transfer(recipe, model, x, y, seed=seed, log=log)[0],
            _autoattack_transfer(recipe, model, x, y, seed=seed, log=log)[0])


def five_step_attacks(eot: int = EOT_DRAWS, steps: int = REMEDY_EOT_STEPS) -> list[tuple]:
    """The attacks on a 5-step randomized defense, in order (label, bpda, loss, EOT draws, APGD steps): BPDA, then
    APGD-CE and APGD-DLR through the unrolled steps, each with EOT."""
    return [("bpda_apgd_ce_eot", True, "ce", eot, steps), ("apgd_ce_eot", False, "ce", eot, steps),
            ("apgd_dlr_eot", False, "dlr", eot, steps)]


def attack_chain(recipe: str, model, mapping, x: torch.Tensor, y: torch.Tensor, x_pgd: torch.Tensor,
                 x_aa: torch.Tensor, *, name: str, steps: int, scale: float, score_seed: int, runs: list, lr_z: float,
                 seed: int = 0, log=None, examples: dict | None = None
                 ) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One remedy's attacks in order (``runs``: label, bpda, loss, EOT draws, APGD steps), each on the images still
    robust after the transfer attacks and the attacks before it, scored by the variant's defense. Returns the
    per-attack blocks, the per-image robust and noise-control masks, and the per-image strongest examples so far.
    ``examples``, where given, receives each attack's images by label (the strongest so far where it did not
    attack an image), so that a study can score them again."""
    import torchattacks

    eps = attack.L2_EPS
    fixed = name.startswith("fixed")
    first = {label: scored(model, mapping, a, y, lr=lr_z, steps=steps, seed=score_seed, start_scale=scale)
             for label, a in (("pgd_transfer", x_pgd), ("autoattack_transfer", x_aa))}
    robust = first["pgd_transfer"]["_correct"] & first["autoattack_transfer"]["_correct"]
    noise = first["pgd_transfer"]["_noise"] & first["autoattack_transfer"]["_noise"]
    held = torch.where(first["pgd_transfer"]["_correct"].view(-1, 1, 1, 1), x_aa, x_pgd)
    blocks = {label: {**_block(b), "robust_after": accuracy(robust)} for label, b in first.items()}
    if examples is not None:
        examples.update(pgd_transfer=x_pgd, autoattack_transfer=x_aa)
    for label, bpda, loss, draws, n in runs:
        composite = Defended(model, mapping, lr=lr_z, steps=steps, seed=EVAL_SEED if fixed else None, bpda=bpda,
                             start_scale=scale)
        settings = {"tool": "torchattacks.APGD", "loss": loss, "eot_iter": draws, "steps": n, "eps": eps,
                    "norm": "L2", "seed": seed, "defense": f"ours-{name}", "bpda": bpda,
                    "attacked": hashlib.sha256(robust.numpy().tobytes()).hexdigest()[:12]}
        if scale != 1.0:
            settings["start_scale"] = scale
        left = robust.clone()
        x_adv = held.clone()
        took = 0.0
        if left.any():
            adv, took = _chunked_attack(recipe, f"remedy-{name}-{label}", settings, x[left], y[left],
                                        lambda xc, yc, c=composite, loss=loss, d=draws, n=n: torchattacks.APGD(
                                            c, norm="L2", eps=eps, steps=n, n_restarts=1, seed=seed, loss=loss,
                                            eot_iter=d)(xc, yc), log)
            x_adv[left] = adv
        if examples is not None:
            examples[label] = x_adv.clone()
        result = scored(model, mapping, x_adv, y, lr=lr_z, steps=steps, seed=score_seed, start_scale=scale)
        broke = robust & ~result["_correct"]
        held[broke] = x_adv[broke]
        robust &= result["_correct"]
        noise &= result["_noise"]
        blocks[label] = {**_block(result, took), "attacked_images": int(left.sum()),
                         "robust_after": accuracy(robust), "settings": settings}
    return blocks, robust, noise, held


class HardenedChain(NamedTuple):
    """The hardened defense's chain on the remedies report's images: the classifier, Θ (``mapping``) and its step
    size, the images and labels, AutoAttack's transfer images, and per image whether it stays right (``robust``)
    and its strongest attacked image (``held``)."""

    model: torch.nn.Module
    mapping: torch.nn.Module
    lr_z: float
    x: torch.Tensor
    y: torch.Tensor
    x_aa: torch.Tensor
    robust: torch.Tensor
    held: torch.Tensor


def hardened_chain(recipe: str, *, seed: int = 0, examples: dict | None = None) -> HardenedChain:
    """The remedies report's chain against the hardened defense, on its REMEDY_SIZE images (from the cache where
    the report or a study built it); ``examples`` as ``attack_chain``'s."""
    model, (mapping, theta) = load_model(recipe), load_theta(recipe)
    lr_z = theta["settings"]["lr_z"]
    x, y = eval_subset(REMEDY_SIZE, seed=seed)
    x_pgd, x_aa = transfer_attacks(recipe, model, x, y, seed=seed)
    _, robust, _, held = attack_chain(recipe, model, mapping, x, y, x_pgd, x_aa, name=HARDENED_VARIANT,
                                      steps=HARDENED["steps"], scale=HARDENED["start_scale"],
                                      score_seed=REMEDY_SCORE_SEED, runs=five_step_attacks(), lr_z=lr_z, seed=seed,
                                      examples=examples)
    return HardenedChain(model, mapping, lr_z, x, y, x_aa, robust, held)


def remedies(recipe: str, *, size: int = REMEDY_SIZE, eot: int = EOT_DRAWS, eot_steps: int = REMEDY_EOT_STEPS,
             seed: int = 0, log=None) -> dict:
    """The literature's cheapest remedies, on the first ``size`` images: the defense with a fresh random start
    (and fresh views) at every call, which the attacker can only average (EOT), after 1 step, after 5 steps
    (attacked with BPDA and through the unrolled steps), and after 5 steps from a smaller start (``HARDENED``, the
    one that holds). Attacks run in order on the images still robust, after the transfer attacks; the fixed-draw
    deployed defense (attacked through its step, the draw known) on the same images beside them. ``hardened``
    in the result: the hardened defense's record, with its clean drop on the main table's images too."""
    model = load_model(recipe)
    mapping, theta = load_theta(recipe)
    lr_z = theta["settings"]["lr_z"]
    x, y = eval_subset(size, seed=seed)
    x_pgd, x_aa = transfer_attacks(recipe, model, x, y, seed=seed, log=log)
    five_steps = five_step_attacks(eot, eot_steps)
    variants = {  # name: (defense steps, z0's scale, scoring draw, attacks: (label, bpda, loss, EOT draws, APGD steps))
        "fixed_draw_1_step": (1, 1.0, EVAL_SEED, [("apgd_ce", False, "ce", 1, REMEDY_FIXED_STEPS),
                                                  ("apgd_dlr", False, "dlr", 1, REMEDY_FIXED_STEPS)]),
        "fresh_draw_1_step": (1, 1.0, REMEDY_SCORE_SEED, [("apgd_ce_eot", False, "ce", eot, eot_steps),
                                                          ("apgd_dlr_eot", False, "dlr", eot, eot_steps),
                                                          ("bpda_apgd_ce_eot", True, "ce", eot, eot_steps)]),
        "fresh_draw_5_steps": (5, 1.0, REMEDY_SCORE_SEED, five_steps),
        HARDENED_VARIANT: (HARDENED["steps"], HARDENED["start_scale"], REMEDY_SCORE_SEED, five_steps),
    }
    clean_undefended = (predict(model, x) == y).cpu()
    out = {"images": size, "autoattack_no_defense": accuracy((predict(model, x_aa) == y).cpu()),
           "clean": accuracy(clean_undefended)}
    for name, (steps, scale, score_seed, runs) in variants.items():
        started = time.perf_counter()
        blocks, robust, noise, _ = attack_chain(recipe, model, mapping, x, y, x_pgd, x_aa, name=name, steps=steps,
                                                scale=scale, score_seed=score_seed, runs=runs, lr_z=lr_z, seed=seed,
                                                log=log)
        clean = scored(model, mapping, x, y, lr=lr_z, steps=steps, seed=score_seed, start_scale=scale)
        blocks["worst"] = {**accuracy(robust), "noise": accuracy(noise), "minus_noise": difference(robust, noise)}
        blocks["worst_minus_autoattack_no_defense"] = difference(robust, (predict(model, x_aa) == y).cpu())
        blocks["clean_with_defense"] = accuracy(clean["_correct"])
        blocks["clean_drop"] = difference(clean_undefended, clean["_correct"])
        blocks["seconds"] = round(time.perf_counter() - started, 1)
        out[name] = blocks
        if log is not None:
            log(f"{recipe} remedy {name}: worst {blocks['worst']['accuracy']:.3f} ({blocks['seconds']} s)")
    # For the record: the hardened defense's figures, and its clean drop on the main table's images.
    hardened = out[HARDENED_VARIANT]
    x_main, y_main = eval_subset(MAIN_SIZE, seed=seed)
    clean_main = scored(model, mapping, x_main, y_main, lr=lr_z, steps=HARDENED["steps"], seed=REMEDY_SCORE_SEED,
                         start_scale=HARDENED["start_scale"])
    out["hardened"] = {"variant": HARDENED_VARIANT, **HARDENED,
                       "adaptive_worst": {k: hardened["worst"][k] for k in ("accuracy", "ci95", "count")},
                       "autoattack_no_defense": out["autoattack_no_defense"],
                       "worst_minus_autoattack_no_defense": hardened["worst_minus_autoattack_no_defense"],
                       "clean_drop": hardened["clean_drop"],
                       "clean_drop_main_images": difference(clean_main["_undefended"], clean_main["_correct"])}
    return out


def _remedy_worker(recipe: str, kwargs: dict, threads: int, progress: bool) -> dict:
    torch.set_num_threads(threads)
    return remedies(recipe, **kwargs, log=(lambda line: print(line, flush=True)) if progress else None)


def remedies_report(out: Path, *, seed: int = 0, progress: bool = True, recipes: tuple[str, ...] = SHIPPED,
                    size: int = REMEDY_SIZE, eot: int = EOT_DRAWS, eot_steps: int = REMEDY_EOT_STEPS) -> dict:
    """Write OUT/summary.json and OUT/summary.md: the remedies (``remedies``) per model, on the CPU (one worker
    process per model)."""
    if size < 1:
        raise LandformError(f"the remedies need at least 1 image, got {size}")
    for recipe in recipes:
        for name in (model_name(recipe), theta_name(recipe)):
            entry_file(recipe, name)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    kwargs = {"size": size, "eot": eot, "eot_steps": eot_steps, "seed": seed}
    if len(recipes) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(len(recipes), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {r: pool.submit(_remedy_worker, r, kwargs, threads, progress) for r in recipes}
            rows = {model_name(r): f.result() for r, f in futures.items()}
    else:
        rows = {model_name(r): _remedy_worker(r, kwargs, threads, progress) for r in recipes}
    summary = {"settings": {"eps": attack.L2_EPS, **kwargs, "score_seed": REMEDY_SCORE_SEED, "chunk": CHUNK},
               "threads": threads, "processes": len(recipes), "models": rows,
               "seconds": round(time.perf_counter() - started, 1)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    header = ["model", "variant", "attack", "accuracy", "its noise control", "robust after", "attacked", "seconds"]
    rows_md = []
    for name, r in rows.items():
        for variant, blocks in r.items():
            if not isinstance(blocks, dict) or "worst" not in blocks:
                continue
            for label, b in blocks.items():
                if isinstance(b, dict) and "robust_after" in b:
                    rows_md.append([name, variant, label, percent(b), percent(b["noise"]), percent(b["robust_after"]),
                                    b.get("attacked_images", ""), b.get("seconds", "")])
            w = blocks["worst"]
            rows_md.append([name, variant, "**worst of all**", percent(w), percent(w["noise"]), "", "",
                            blocks["seconds"]])
    header2 = ["model", "variant", "worst", "AutoAttack, no defense", "worst minus AutoAttack, no defense",
               "clean with the defense", "clean, no defense", "clean drop"]
    rows2 = [[name, v, percent(b["worst"]), percent(r["autoattack_no_defense"]),
              percent(b["worst_minus_autoattack_no_defense"]), percent(b["clean_with_defense"]), percent(r["clean"]),
              percent(b["clean_drop"])]
             for name, r in rows.items() for v, b in r.items() if isinstance(b, dict) and "worst" in b]
    text = "\n".join([
        "# Defense under adaptive attacks: the remedies tried", "",
        f"The first {size} of the adaptive evaluation's images. Variants of ours: the deployed draw "
        f"fixed (as shipped; the attacker knows it and differentiates through the unrolled step, {REMEDY_FIXED_STEPS} "
        "APGD steps: the main report's 100-step figure is the one to compare), a fresh random "
        "start and fresh views at every call (the attacker averages gradients over "
        f"{eot} draws, EOT, {eot_steps} APGD steps, through the unrolled step or with BPDA), the same after 5 "
        f"steps, and after {HARDENED['steps']} steps from a smaller random start (z0 ~ N(0, "
        f"{HARDENED['start_scale']}²) instead of N(0, 1): `{HARDENED_VARIANT}`, the hardened defense). "
        "A randomized variant is scored with a draw of its own (seed "
        f"{REMEDY_SCORE_SEED}). Attacks in order on the images still robust after the transfer attacks "
        "(torchattacks PGD-L2 and AutoAttack on the undefended classifier). Accuracies in %, [95% bootstrap "
        f"interval]. {len(recipes)} worker process(es) of {threads} thread(s).", "",
        markdown_table(header2, rows2), "",
        f"The hardened defense's clean drop on the main table's {MAIN_SIZE} images (the undefended classifier "
        "against it, its scoring draw): " + "; ".join(
            f"{name} {percent(r['hardened']['clean_drop_main_images'])} points" for name, r in rows.items()) + ".", "",
        markdown_table(header, rows_md), "",
        f"Job time: {summary['seconds']} s.", ""])
    write_text(out / "summary.md", text)
    return summary


# --------------------------------------------------------------------------------------------------- demo
def _worker(recipe: str, kwargs: dict, threads: int, progress: bool) -> dict:
    torch.set_num_threads(threads)
    return evaluate(recipe, **kwargs, log=(lambda line: print(line, flush=True)) if progress else None)


def _reading(c: dict) -> str:
    """How strong the adaptive attacks were against the bar, from the settings the report ran with."""
    steps = c["apgd_steps"]
    baseline = (f"the transfer attacks and BPDA ({steps['baseline_bpda']} APGD-CE steps, each gradient through its "
                f"{c['baseline_steps']} steps treated as the identity)" if steps["baseline_bpda"] else
                "the transfer attacks only (its BPDA is not run)")
    attacks = {"APGD through the step with the draw fixed": steps["fixed_draw"], "BPDA": steps["bpda"],
               f"EOT over {c['eot']} draws": steps["eot"]}
    ran = "; ".join(f"{name}, {n} steps" for name, n in attacks.items())
    short = [name for name, n in attacks.items() if n < AUTOATTACK_STEPS]
    against = (f"{' and '.join(short)} shorter than AutoAttack's {AUTOATTACK_STEPS}, so the comparison favours the "
               "defense and the margin over AutoAttack is an upper bound on what a stronger adaptive attack would "
               "leave" if short else f"each as long as AutoAttack's {AUTOATTACK_STEPS}")
    return (f"Reading: the adaptive attacks here ran 1 restart each ({ran}): {against}. The bar is AutoAttack on "
            f"the undefended classifier, its full standard version (APGD-CE and APGD-T, {AUTOATTACK_STEPS} steps "
            "each, FAB-T, Square). The noise control is only evaluated on the examples made against ours (no attack "
            "adapts to the noise), so ours − noise under an adaptive attack is not a like-for-like comparison. The "
            f"baseline is attacked by {baseline}.")


def _markdown(s: dict) -> str:
    c = s["settings"]
    lines = [
        "# Defense under adaptive attacks", "",
        f"Fashion-MNIST, L2 ε = {c['eps']}; the non-adaptive table on {c['main_size']} seeded test images, the "
        f"adaptive evaluation on the first {c['adaptive_size']} of them, in fixed chunks of {CHUNK} (the "
        "defense's contrastive negatives come from the chunk). Accuracies in %, [95% bootstrap interval over "
        "images]; differences paired. Every defended number is scored by the deployed defense (ours: 1 step, "
        f"draw seed {EVAL_SEED}; baseline: Mao et al.'s {c['baseline_steps']} steps), its noise control (the "
        "attacked image plus Gaussian noise of the reversal's L2 norm) beside it. Attacks: torchattacks APGD "
        f"(L2, 1 restart) on the composite model, through the unrolled step (`landform.unroll`, second order) "
        f"with the draw fixed ({c['apgd_steps']['fixed_draw']} steps), or with EOT over {c['eot']} fresh draws "
        f"per gradient ({c['apgd_steps']['eot']} steps); BPDA (identity backward, APGD-CE, "
        f"{c['apgd_steps']['bpda']} steps on ours, {c['apgd_steps']['baseline_bpda']} on the baseline); transfer "
        "attacks (torchattacks PGD-L2, 50 steps, and AutoAttack standard, on the undefended classifier). Worst: per "
        f"image, wrong under any attack. {s['processes']} worker process(es) (one per model) of {s['threads']} CPU "
        "thread(s) each; seconds per attack on all images.", "",
        "## Targets", ""]
    header = ["model", "clean", "clean + ours 1", "clean drop", "AutoAttack, no defense", "adaptive worst (ours 1)",
              "worst − AutoAttack no defense", "adaptive worst (baseline 40)"]
    rows = []
    for name, r in s["models"].items():
        a = r["adaptive"]
        rows.append([name, percent(r["clean"]), percent(r["clean_with_defense"]), percent(r["clean_drop"]),
                     percent(r["autoattack_no_defense"]), percent(r["adaptive_worst"]),
                     percent(a["ours"]["worst_minus_autoattack_no_defense"]), percent(r["adaptive_worst_baseline"])])
    lines += [markdown_table(header, rows), ""]
    for name, r in s["models"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in r["targets"].items()))
    lines += ["", "## Every attack", ""]
    header = ["model", "defense", "attack", "accuracy", "its noise control", "minus noise", "undefended on "
              "these images", "‖r‖", "seconds"]
    rows = []
    for name, r in s["models"].items():
        for which, blocks in r["adaptive"].items():
            for label, b in blocks.items():
                if label in ("worst", "worst_minus_autoattack_no_defense"):
                    continue
                if "not_run" in b:
                    rows.append([name, which, label, "not run: " + b["not_run"], "", "", "", "", ""])
                    continue
                rows.append([name, which, label, percent(b), percent(b["noise"]), percent(b["minus_noise"]),
                             percent(b["undefended"]), f"{b['reversal_norm']:.2f}", b.get("seconds", "")])
            w = blocks["worst"]
            rows.append([name, which, "**worst of all**", percent(w), percent(w["noise"]), percent(w["minus_noise"]),
                         "", "", ""])
    lines += [markdown_table(header, rows), "",
              "Seconds: an attack's own time, summed over its chunks as recorded when each was computed (attacks "
              "are cached per chunk, so a rerun shows the times of the run that computed them); the transfer "
              "attacks' are under `seconds` in summary.json; the job time is this run's.", "",
              _reading(c), "",
              f"## Non-adaptive table (torchattacks PGD-L2 transfer, {c['main_size']} images)", ""]
    header = ["model", "no defense", "ours 1", "its noise", "baseline 40", "its noise", "ours 1 − baseline 40",
              "ours 1 − no defense"]
    rows = []
    for name, r in s["models"].items():
        p = r["pgd_transfer"]
        rows.append([name, percent(p["no_defense"]), percent(p["ours_1"]), percent(p["ours_1"]["noise"]),
                     percent(p["baseline_40"]), percent(p["baseline_40"]["noise"]),
                     percent(r["ours1_minus_baseline40"]), percent(r["ours1_minus_no_defense"])])
    lines += [markdown_table(header, rows), "", f"Job time: {s['seconds']} s.", ""]
    return "\n".join(lines)


def adaptive_report(out: Path, *, seed: int = 0, progress: bool = True, recipes: tuple[str, ...] = SHIPPED,
                    main_size: int = MAIN_SIZE, size: int = ADAPTIVE_SIZE, eot: int = EOT_DRAWS,
                    steps: dict | None = None, baseline_steps: int = BASELINE_STEPS) -> dict:
    """Write OUT/summary.json and OUT/summary.md (see the module docstring), on the CPU (one worker process per
    model)."""
    if size > main_size or size < 1:
        raise LandformError(f"the adaptive images ({size}) must be between 1 and the main images ({main_size})")
    for recipe in recipes:
        for name in (model_name(recipe), theta_name(recipe)):
            entry_file(recipe, name)
    started = time.perf_counter()
    n_steps = {**STEPS, **(steps or {})}
    kwargs = {"main_size": main_size, "size": size, "eot": eot, "steps": n_steps, "baseline_steps": baseline_steps,
              "seed": seed}
    threads = torch.get_num_threads()
    if len(recipes) > 1:  # one worker process per model, each on `threads` threads
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(len(recipes), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {r: pool.submit(_worker, r, kwargs, threads, progress) for r in recipes}
            rows = {model_name(r): f.result() for r, f in futures.items()}
    else:
        rows = {model_name(r): _worker(r, kwargs, threads, progress) for r in recipes}
    summary = {"settings": {"eps": attack.L2_EPS, "main_size": main_size, "adaptive_size": size, "eot": eot,
                            "apgd_steps": n_steps, "baseline_steps": baseline_steps,
                            "chunk": CHUNK, "eval_seed": EVAL_SEED, "seed": seed},
               "threads": threads, "processes": len(recipes), "models": rows,
               "seconds": round(time.perf_counter() - started, 1)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", _markdown(summary))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--remedies", action="store_true",
                        help="the remedies tried (report/defense/adaptive_remedies) instead of the adaptive attacks")
    parser.add_argument("--out", type=Path, default=None,
                        help="the report's folder (default report/defense/adaptive, or adaptive_remedies)")
    parser.add_argument("--recipes", nargs="+", default=list(SHIPPED), help="the robust models, one process each")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    write = remedies_report if args.remedies else adaptive_report
    out = args.out or Path("report/defense") / ("adaptive_remedies" if args.remedies else "adaptive")
    try:
        write(out, seed=args.seed, recipes=tuple(args.recipes))
    except LandformError as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
