"""The text of the defense demo's report (report/defense/summary.md), written from its summary.

Apart from the evaluation (``landform.tasks.defense.task``) so that the table layout can be read and tested on
its own, from numbers alone.
"""

from __future__ import annotations

from landform.report import markdown_table, summary_table
from landform.tasks.defense.scoring import CHUNK, percent


def summary_markdown(s: dict) -> str:
    """summary.md of the demo's report, from its summary.json (``task.demo``): the precondition, robust accuracy
    under the main attack with the noise control, the Eq. 7 loss per step, AutoAttack and the adaptive attack, the
    budget sweep and the targets."""
    a, d = s["attack"], s["defense"]
    n, m = s["test_images"], s["subset_images"]
    lines = [
        "# Defense: test-time reversal of adversarial attacks (paper §4.3, Table 1 analog)", "",
        f"Fashion-MNIST, a fixed seeded subset of {n} test images (seed {s['seed']}; a subset of the first {m} for "
        "AutoAttack, the budget sweep, the adaptive attack and the baseline on clean images). Accuracies in %, "
        "[95% bootstrap interval over images]; differences are paired (same images). Main attack: "
        f"torchattacks PGD-L2, ε = {a['main']['eps']}, step {a['main']['alpha']}, {a['main']['steps']} steps, "
        f"random start. Eq. 7: contrastive SSL loss (in-batch negatives, chunks of {CHUNK} images) + λ‖r‖² "
        f"(λ = {d['lambda']}, summed over pixels), r kept in the L2 ball of radius {d['radius']} (2ε, Mao et al.'s "
        "bound). Baseline: Adam on r from "
        f"N(0, {d['baseline_init_std']}²), lr chosen on its own Eq. 7 loss; ours: Adam on z with r = Θ(z).", "",
        "## The precondition: does the SSL loss see the attack?", "",
        markdown_table(["model", "clean", "no defense", "SSL gap (attacked − clean)", "share with gap > 0",
                        "view vote: clean", "view vote: attacked"],
                       [[name, percent(r["clean"]), percent(r["no_defense"]),
                         f"{r['ssl_gap']:.3f} [{r['ssl_gap_ci95'][0]:.3f}, {r['ssl_gap_ci95'][1]:.3f}]",
                         f"{100 * r['ssl_gap_positive_fraction']:.0f}%", percent(r["view_vote"]["clean"], False),
                         percent(r["view_vote"]["attacked"], False)] for name, r in s["models"].items()])]
    lines += ["", "View vote: the accuracy of the majority prediction over the SSL views (the best a view-consistency "
              "objective could restore, if the views themselves are classified).", "",
              "## Robust accuracy under the main attack", "",
              markdown_table(["model", "no defense", "baseline 1", "baseline 5", "baseline 20", "baseline 40", "ours 1",
                              "ours 5", "ours 40"],
                             [[name, percent(r["no_defense"], False),
                               *(percent(b, False) for b in r["baseline_steps"].values()),
                               *(percent(r["landscape_steps"][t], False) for t in ("1", "5", "40"))]
                              for name, r in s["models"].items()]),
              "", "Noise control (x_adv + Gaussian noise of the same L2 norm as each image's reversal vector):", ""]
    noise = []
    for name, r in s["models"].items():
        o, b = r["landscape_steps"]["1"], r["baseline_steps"]["40"]
        noise.append([name, percent(o), percent(o["noise"]), percent(o["minus_noise"]), f"{o['reversal_norm']:.2f}",
                      percent(b), percent(b["noise"]), percent(b["minus_noise"]), f"{b['reversal_norm']:.2f}"])
    lines += [markdown_table(["model", "ours 1", "its noise", "ours 1 − noise", "‖r‖ ours 1", "baseline 40",
                              "its noise", "baseline 40 − noise", "‖r‖ baseline 40"], noise), ""]
    lines.append(markdown_table(
        ["model", "ours 1 − no defense", "ours 1 − baseline 40", "baseline 40 − no defense", "clean", "clean + ours 1",
         "clean drop", "clean + baseline 40 (subset; clean on it)"],
        [[name, percent(r["landscape_1_minus_no_defense"]), percent(r["landscape_1_minus_baseline_40"]),
          percent(r["baseline_40_minus_no_defense"]), percent(r["clean"], False),
          percent(r["clean_with_defense"], False), percent(r["clean_drop"]),
          f"{percent(r['clean_with_baseline_40'], False)} ({percent(r['clean_subset'], False)})"]
         for name, r in s["models"].items()]))
    lines += ["", "Eq. 7 loss (mean over images) per step, the core's comparison (`landform.compare`):", ""]
    for name, r in s["models"].items():
        lines += [f"**{name}**", "", summary_table(r["loss"]), ""]
    autoattack = []
    for name, r in s["models"].items():
        aa, ad = r["torchattacks"]["autoattack"], r["adaptive"]
        autoattack.append([name, percent(aa["no_defense"]), percent(aa["landscape_1"]),
                           percent(aa["landscape_1"]["noise"]), percent(aa["baseline_40"]),
                           percent(aa["baseline_40"]["noise"]), percent(ad["adaptive_only"]),
                           percent(ad["worst_of_both"])])
    lines += ["## torchattacks AutoAttack (standard, L2, ε = 1.6) and the adaptive attack", "",
              markdown_table(["model", "AutoAttack: no defense", "ours 1", "its noise", "baseline 40", "its noise",
                              "adaptive through ours 1", "worst of transfer and adaptive"], autoattack),
              "", f"## Attack budget sweep (torchattacks PGD-L2, {m} images)", "",
              markdown_table(["model", "ε", "no defense", "ours 1", "its noise", "baseline 40", "its noise"],
                             [[name, e, percent(block["no_defense"]), percent(block["landscape_1"]),
                               percent(block["landscape_1"]["noise"]), percent(block["baseline_40"]),
                               percent(block["baseline_40"]["noise"])]
                              for name, r in s["models"].items() for e, block in r["epsilon_sweep"].items()])]
    lines += ["", "## Targets (measured, per model)", ""]
    for name, r in s["models"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in r["targets"].items()))
    lines += ["", f"Figures: robust_accuracy.png, examples_<model>.png. Job time: {s['seconds']} s on "
              f"{s['threads']} thread(s). The design iterations behind these models (what was tried and what each "
              "measured): experiments.md.", ""]
    return "\n".join(lines)
