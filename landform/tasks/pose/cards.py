"""The model cards of the pose task's zoo entries (the .md beside each weights file): what each model is,
how to reproduce it, and how it did when it was trained."""

from __future__ import annotations

from landform.report import format_interval, markdown_table
from landform.tasks.pose.load import encoder_name, theta_name
from landform.tasks.pose.model import VAE_NAME


def vae_card(cfg: dict, metrics: dict, seconds: float, split: str, pca: dict[str, float]) -> str:
    order = [k for k in ("train", "validation", "test", "ood") if k in metrics]
    table = markdown_table(["split", "pose-parameter MSE", "mean joint error (cm)"],
                           [[k, f"{metrics[k]['pose_mse']:.4f}", f"{metrics[k]['joint_error_cm']:.2f}"] for k in order])
    explained = ", ".join(f"{100 * pca[k]:.0f}% (k = {k})" for k in sorted((k for k in pca if k.isdigit()), key=int))
    return f"""# pose-vae: VPoser-style pose prior (F of the pose task)

Reproduce: `landform zoo train {VAE_NAME}` (seed 0, CPU, 1 thread; {seconds:.0f} s).

Data: the DeepMimic humanoid motion capture clips in the `pybullet==3.2.7` wheel
(`pybullet_data/data/motions/humanoid3d_*.txt`), body pose only (the root is dropped), quaternions
normalized. Split: {split}

Model: encoder 76 -> 512 -> 512 -> 2x{cfg['latent_dim']} (Gaussian); decoder {cfg['latent_dim']} -> 512 -> 512 -> 52
with LeakyReLU(0.2) and dropout {cfg['dropout']}: a 6D rotation per spherical joint (8, Gram-Schmidt to
a rotation matrix) and an angle per hinge (knees, elbows). Pose parameters: 8 row-major rotation
matrices then 4 hinge angles (76 numbers).

Latent size X = {cfg['latent_dim']}, the paper's (§7.2, VPoser's). There are only {pca['distinct_frames']} distinct
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

Reconstruction through the latent mean:

{table}
"""


def encoder_card(kind: str, cfg: dict, metrics: dict[str, float], seconds: float, split: str) -> str:
    table = markdown_table(["split", f"mean {kind} loss"], [[name, value] for name, value in metrics.items()])
    return f"""# {encoder_name(kind)}: the learned start for the pose task, {kind} loss

Reproduce: `landform zoo train {encoder_name(kind)}` (needs `pose-vae`; seed 0, CPU, 1 thread; {seconds:.0f} s).

What it is: an MLP from a {kind} observation to a guess of the VAE latent x ({cfg['layers']} hidden layers of
{cfg['hidden']}, LeakyReLU(0.2)). It is the start of the default mode (x = E(y) + Θ(z) + δ) and of the
`encoder_init` comparison (descent on x from E(y), the pipeline practitioners run).

Training: {cfg['steps']} Adam steps (lr {cfg['lr']}, cosine to lr/100), batch {cfg['batch_size']} of Θ's training
observations (training side only: prior samples, recombined and joint-noised training frames and their mirror
images; see `pose-theta-{kind}`), loss = the {kind} loss of F(E(y)) against y + {cfg['latent_weight']} x
|E(F(x)) - x|^2 on {cfg['prior_batch']} latents drawn from the prior. Weights stored as float16.

Data and split (the same as pose-vae): {split}

Loss of F(E(y)) per split (no descent):

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


def anchored_card(kind: str, cfg: dict, seconds: float, evaluation: dict, split: str, latent: int,
                   selected: int, rates: tuple[float, float], rate_selection: dict) -> str:
    name = theta_name(kind, anchored=True)
    return f"""# {name}: the default mode's Θ for the pose task, {kind} loss

Reproduce: `landform zoo train {name}` (needs `pose-vae`, `{theta_name(kind)}` and `{encoder_name(kind)}`;
seed 0, CPU, 1 thread; {seconds:.0f} s of fitting).

Θ: Z {cfg['z_dim']} -> X {latent}, 3-layer MLP, hidden {cfg['hidden']}, LeakyReLU(0.2), anchored at the learned
start: x = E(y) + Θ(z) (the paper's additive form of §4.3, with E = `{encoder_name(kind)}`). The default mode
descends on z and δ with x = E(y) + Θ(z) + δ. Θ's last layer starts at {cfg['output_scale']} x its usual
initialization with zero bias, so every trajectory of the first round starts at E's guess.

Fitting: Algorithm 1 (`landform.fit`, buffer), T = {cfg['steps']} Adam steps on z from z0 = 0 (lr {cfg['lr_z']}),
N = {cfg['trajectories']} per round, up to B = {cfg['rounds']} rounds; AdamW on Θ (lr {cfg['lr']}, weight decay
{cfg['weight_decay']}, batch {cfg['batch_size']}). T = {cfg['steps']}, not §7.2's 200: this Θ refines a guess that
is already past the baseline's step-20 loss, and the horizon that matters is the first 20 steps (the issue's
target); with T = 200 a round costs ten times as much. Training observations: those of `{theta_name(kind)}`
(training side only). Selected after {selected} rounds ({cfg['trajectories'] * selected:,} trajectories) by the
mean log loss of Eq. 3 over steps 0-{cfg['select_steps']} on the validation frames.

Step sizes of the default mode, chosen on the validation frames (among the pairs at or below the baseline from
step 5, the one that reaches the baseline's step-200 loss first; by lr_z/lr_x, the worst ratio, the speedup at
20 and that step: {_rate_choices(rate_selection)}): lr_z = {rates[0]}, lr_x = {rates[1]}. Weights stored as
float16.

Data and split (the same as pose-vae): {split}

Evaluation after fitting (200 steps; baseline = Adam on the VAE latent from 0, learning rate swept on the
validation frames; default = x = E(y) + Θ(z) + δ; pure = Eq. 3 with `{theta_name(kind)}`; up to 128 frames per
split; [95% bootstrap interval over frames]; the full report is `landform demo pose`):

{_evaluation_table(evaluation)}
"""
