"""Trainers of the defense zoo entries (``landform zoo train NAME``).

``defense-<recipe>`` (recipe: pgd, trades, mart): a CNN made robust against L∞ ε = 0.1 with that recipe
(phase 1), then a contrastive SSL branch trained on its frozen features (phase 2, see ``ssl.py``).
``defense-<recipe>-theta``: the additive Θ (x = a + Θ(z)) fitted with Algorithm 1 on attacked training
images (``defense.py``). Checkpoints go to runs/<name>/ (safetensors + json) after every epoch and a rerun
resumes from them; the zoo entry is written only when training is complete.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from landform import zoo
from landform.errors import LandformError
from landform.progress import progress_bar
from landform.report import markdown_table
from landform.tasks import runs_dir
from landform.tasks.defense import attack
from landform.tasks.defense.data import load_split
from landform.tasks.defense.models import ARCHITECTURE, RECIPES, RobustModel, model_name, theta_name
from landform.zoo import load_optimizer_tensors, load_pair, optimizer_tensors, save_pair

CLASSIFIER_SETTINGS = {"train_size": 55000, "epochs": 8, "batch_size": 128, "lr": 2e-3, "eps": 0.1,
                       "pgd_steps": 3, "pgd_step": 0.04, "beta": 6.0,
                       "augment": {"flip": 0.5, "crop_scale": [0.6, 1.0]}}


def training_views(x: torch.Tensor, augment: dict | None, seed: int) -> torch.Tensor:
    """The data augmentation of robust training (kornia: random horizontal flip and resized crop), seeded per
    batch so that a resumed run sees the same views: the classifier learns to be invariant to the views the
    SSL branch compares, on clean data."""
    if not augment:
        return x
    import kornia.augmentation as K

    steps = [K.RandomHorizontalFlip(p=augment["flip"])]
    if augment.get("crop_scale"):
        steps.append(K.RandomResizedCrop((28, 28), scale=tuple(augment["crop_scale"]), ratio=(0.75, 4 / 3)))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        return K.AugmentationSequential(*steps)(x).clamp(0.0, 1.0)


def _save_checkpoint(run: Path, module: torch.nn.Module, prefix: str, optimizer: torch.optim.Optimizer,
                     meta: dict) -> None:
    """The trained part of the model (``prefix``: classifier or ssl) and its optimizer, after an epoch."""
    tensors = {f"model.{prefix}.{k}": v for k, v in module.state_dict().items()}
    tensors.update(optimizer_tensors(optimizer))
    save_pair(run / "state.safetensors", tensors, {**meta, "param_groups": optimizer.state_dict()["param_groups"]})


def _load_checkpoint(run: Path, module: torch.nn.Module, prefix: str, optimizer: torch.optim.Optimizer | None) -> dict:
    tensors, meta = load_pair(run / "state.safetensors")
    head = f"model.{prefix}."
    module.load_state_dict({k[len(head):]: v for k, v in tensors.items() if k.startswith(head)})
    if optimizer is not None:
        load_optimizer_tensors(optimizer, tensors, meta["param_groups"])
    return meta


def robust_loss(recipe: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: dict,
                seed: int) -> torch.Tensor:
    """One minibatch loss of a robust-training recipe: PGD-AT (Madry et al.), TRADES (Zhang et al.,
    β·KL(f(x') ‖ f(x))) or MART (Wang et al., boosted CE + β·KL weighted by 1 − p_y(x))."""
    kw = {"norm": "linf", "eps": cfg["eps"], "step": cfg["pgd_step"], "steps": cfg["pgd_steps"], "seed": seed}
    if recipe == "pgd":
        model.eval()
        x_adv = attack.pgd(model, x, y, **kw)
        model.train()
        return F.cross_entropy(model(x_adv), y)
    if recipe == "trades":
        model.eval()
        with torch.no_grad():
            clean = model(x)
        x_adv = attack.pgd(model, x, y, loss="kl", clean_logits=clean, **kw)
        model.train()
        logits, logits_adv = model(x), model(x_adv)
        kl = F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits, 1), reduction="batchmean")
        return F.cross_entropy(logits, y) + cfg["beta"] * kl
    if recipe == "mart":
        model.eval()
        x_adv = attack.pgd(model, x, y, **kw)
        model.train()
        logits, logits_adv = model(x), model(x_adv)
        probs_adv = F.softmax(logits_adv, 1)
        top2 = probs_adv.clone().scatter_(1, y[:, None], -1.0).argmax(1)
        bce = F.cross_entropy(logits_adv, y) - torch.log(1.0001 - probs_adv.gather(1, top2[:, None]).squeeze(1)).mean()
        probs = F.softmax(logits, 1)
        kl = (F.kl_div(torch.log(probs_adv + 1e-12), probs, reduction="none").sum(1)
              * (1.0 - probs.gather(1, y[:, None]).squeeze(1))).mean()
        return bce + cfg["beta"] * kl
    raise LandformError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")


def train_classifier(recipe: str, model: RobustModel, cfg: dict, run: Path, *, device: str = "cpu", seed: int = 0,
                     resume: bool = True, progress: bool = True) -> float:
    """Phase 1: robust training of ``model.classifier`` with ``recipe``, an epoch per checkpoint. Returns the
    training seconds (summed over resumed runs)."""
    if recipe not in RECIPES:
        raise LandformError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    torch.manual_seed(seed)
    x_all, y_all = load_split("train")
    order = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(seed))[:cfg["train_size"]]
    x_train, y_train = x_all[order].to(device), y_all[order].to(device)
    n = x_train.shape[0]
    per_epoch = (n + cfg["batch_size"] - 1) // cfg["batch_size"]
    optimizer = torch.optim.Adam(model.classifier.parameters(), lr=cfg["lr"])
    total = cfg["epochs"] * per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg["lr"], total_steps=total)
    epoch, elapsed = 0, 0.0
    if resume and (run / "state.json").exists():
        meta = _load_checkpoint(run, model.classifier, "classifier", optimizer)
        epoch, elapsed = meta["epoch"], meta["seconds"]
        with warnings.catch_warnings():  # fast-forward the schedule to where the checkpoint left it
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(epoch * per_epoch):
                schedule.step()
    bar = progress_bar(total=total, enabled=progress, initial=epoch * per_epoch,
                     desc=f"{model_name(recipe)} ({recipe})")
    while epoch < cfg["epochs"]:
        started = time.perf_counter()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        model.classifier.train()
        for i in range(per_epoch):
            index = perm[i * cfg["batch_size"]:(i + 1) * cfg["batch_size"]].to(device)
            batch_seed = seed * 100000 + epoch * 1000 + i
            views = training_views(x_train[index], cfg.get("augment"), batch_seed)
            loss = robust_loss(recipe, model.classifier, views, y_train[index], cfg, seed=batch_seed)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        epoch += 1
        elapsed += time.perf_counter() - started
        _save_checkpoint(run, model.classifier, "classifier", optimizer,
                         {"epoch": epoch, "seconds": elapsed, "settings": cfg})
    bar.close()
    model.classifier.eval()
    return elapsed


SSL_SETTINGS = {"ssl_train_size": 20000, "ssl_epochs": 2, "ssl_batch_size": 256, "ssl_lr": 1e-3, "ssl_views": 2}
EVAL_SIZE = 1000
ROBUST_EVAL = {"size": 500, "l2_steps": 50, "linf_steps": 20}


def train_ssl_head(model: RobustModel, cfg: dict, run: Path, *, device: str = "cpu", seed: int = 0,
                   resume: bool = True, progress: bool = True) -> tuple[float, float]:
    """Phase 2: the contrastive branch (SimCLR's in-batch InfoNCE over ``ssl_views`` kornia views of clean
    training images) on the frozen classifier's ``ssl_layer``; then the defense's negative bank. Returns
    (seconds, last batch loss)."""
    from landform.tasks.defense.ssl import negative_bank, ssl_loss

    model.classifier.requires_grad_(False).eval()
    x_all, _ = load_split("train")
    order = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(seed + 1))
    x_train = x_all[order[:cfg["ssl_train_size"]]].to(device)
    optimizer = torch.optim.Adam(model.ssl.parameters(), lr=cfg["ssl_lr"])
    epoch, elapsed, last = 0, 0.0, float("nan")
    if resume and (run / "state.json").exists():
        meta = _load_checkpoint(run, model.ssl, "ssl", optimizer)
        epoch, elapsed, last = meta["epoch"], meta["seconds"], meta["loss"]
    n, bs = x_train.shape[0], cfg["ssl_batch_size"]
    bar = progress_bar(total=cfg["ssl_epochs"], enabled=progress, initial=epoch, desc="SSL branch")
    while epoch < cfg["ssl_epochs"]:
        started = time.perf_counter()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + 500 + epoch))
        with torch.random.fork_rng():
            torch.manual_seed(seed * 1000 + 700 + epoch)  # the views' random draws
            for i in range(n // bs):
                loss = ssl_loss(model, x_train[perm[i * bs:(i + 1) * bs]], views=cfg["ssl_views"], in_batch=True).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                last = loss.item()
        epoch += 1
        elapsed += time.perf_counter() - started
        bar.update(1)
        bar.set_postfix(ssl=f"{last:.3f}")
        _save_checkpoint(run, model.ssl, "ssl", optimizer, {"epoch": epoch, "seconds": elapsed, "loss": last})
    bar.close()
    model.requires_grad_(False).eval()
    bank_images = x_all[order[-model.bank.shape[0]:]].to(device)  # disjoint from the head's training images
    model.bank.copy_(negative_bank(model, bank_images, seed=seed))
    return elapsed, last


def train_robust(recipe: str, *, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                 settings: dict | None = None, run_dir: str | Path | None = None,
                 zoo_dir: str | Path | None = None) -> RobustModel:
    """Phase 1 (robust classifier, checkpoints in ``run_dir``) and phase 2 (SSL branch, in ``run_dir``/ssl);
    writes the zoo entry ``defense-<recipe>`` (into ``zoo_dir``, default the package's zoo) with a card giving
    clean and robust test accuracy."""
    if recipe not in RECIPES:
        raise LandformError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    cfg = {**CLASSIFIER_SETTINGS, **SSL_SETTINGS, **(settings or {})}
    name = model_name(recipe)
    model = RobustModel(ARCHITECTURE).to(device)
    run = Path(run_dir) if run_dir is not None else runs_dir() / name
    classifier_seconds = train_classifier(recipe, model, cfg, run, device=device, seed=seed, resume=resume,
                                          progress=progress)
    ssl_seconds, last = train_ssl_head(model, cfg, run / "ssl", device=device, seed=seed, resume=resume,
                                       progress=progress)
    metrics = evaluate_model(model, seed=seed, device=device)
    metrics.update(classifier_seconds=round(classifier_seconds, 1), ssl_seconds=round(ssl_seconds, 1),
                   ssl_loss_last_batch=round(last, 4))
    config = {"kind": "defense.RobustModel", "recipe": recipe, "architecture": model.architecture,
              "views": model.views, "settings": cfg, "metrics": metrics}
    zoo.save(name, zoo.half(model.state_dict()), config, _model_card(name, recipe, cfg, model, metrics),
             directory=Path(zoo_dir) if zoo_dir is not None else None)
    return model


def evaluate_model(model: RobustModel, *, seed: int = 0, device: str = "cpu") -> dict:
    """Clean accuracy on a seeded EVAL_SIZE-image test subset; L2 PGD (ε = 1.6) and L∞ PGD (ε = 0.1) accuracy
    on its first ROBUST_EVAL['size'] images."""
    from landform.tasks.defense.data import eval_subset

    x, y = eval_subset(EVAL_SIZE, seed=seed)
    x, y = x.to(device), y.to(device)
    n = ROBUST_EVAL["size"]
    out = {"eval_images": EVAL_SIZE, "robust_eval_images": n, "clean": attack.accuracy(model, x, y)}
    x_l2 = attack.pgd(model, x[:n], y[:n], norm="l2", eps=attack.L2_EPS, step=attack.L2_STEP,
                      steps=ROBUST_EVAL["l2_steps"], seed=seed)
    out["robust_l2"] = attack.accuracy(model, x_l2, y[:n])
    x_inf = attack.pgd(model, x[:n], y[:n], norm="linf", eps=attack.LINF_EPS, step=attack.LINF_STEP,
                       steps=ROBUST_EVAL["linf_steps"], seed=seed)
    out["robust_linf"] = attack.accuracy(model, x_inf, y[:n])
    return out


def _model_card(name: str, recipe: str, cfg: dict, model: RobustModel, m: dict) -> str:
    title = {"pgd": "PGD adversarial training (Madry et al. 2018)", "trades": "TRADES (Zhang et al. 2019)",
             "mart": "MART (Wang et al. 2020)"}[recipe]
    arch, views = model.architecture, model.views
    c1, c2 = arch["channels"]
    layer, size = arch["ssl_layer"], model.classifier.sizes[arch["ssl_layer"]]
    beta = f", β = {cfg['beta']}" if recipe != "pgd" else ""
    robust = m["robust_eval_images"]
    l2 = f"L2 PGD-{ROBUST_EVAL['l2_steps']}, ε = {attack.L2_EPS}, step {attack.L2_STEP} ({robust} images)"
    linf = f"L∞ PGD-{ROBUST_EVAL['linf_steps']}, ε = {attack.LINF_EPS}, step {attack.LINF_STEP} ({robust} images)"
    accuracies = markdown_table(["metric", "accuracy"],
                                [[f"clean ({m['eval_images']} test images)", f"{m['clean']:.3f}"],
                                 [l2, f"{m['robust_l2']:.3f}"], [linf, f"{m['robust_linf']:.3f}"]])
    return f"""# {name}

Robust Fashion-MNIST classifier for the test-time defense (paper §4.3), recipe: {title}, plus a contrastive
self-supervised branch (InfoNCE, temperature {views['temperature']}) trained on its frozen `{layer}` features.

- Reproduce: `landform zoo train {name} --install --threads 1` (checkpoints under --runs-dir, resumable)
- Architecture: CNN conv {c1} - pool - conv {c2} - pool - fc {arch['hidden']} - fc 10; SSL branch MLP
  {size}-{arch['ssl_hidden']}-{arch['ssl_out']} on the `{layer}` features;
  float16 storage.
- Data: Fashion-MNIST train split (Debian `dataset-fashion-mnist`, 5,000 held out as validation), a seeded
  subset of {cfg['train_size']} images; metrics on a seeded subset of the test split.
- Robust training: L∞ ε = {cfg['eps']}, PGD-{cfg['pgd_steps']} step {cfg['pgd_step']}, {cfg['epochs']} epochs,
  batch {cfg['batch_size']}, Adam one-cycle max lr {cfg['lr']}{beta};
  kornia data augmentation (horizontal flip p = {cfg['augment']['flip']}, random resized crop of scale
  {cfg['augment']['crop_scale']}) so that the classifier is invariant, on clean images, to the views the SSL
  branch compares.
- SSL branch: {cfg['ssl_epochs']} epochs on {cfg['ssl_train_size']} clean training images, {cfg['ssl_views']} \
kornia views
  each (random resized crop of scale {views['crop_scale']}, flip p = {views['flip']}, brightness/contrast
  jitter {views['brightness']}/{views['contrast']} with p = {views['jitter_p']}), Adam lr {cfg['ssl_lr']},
  batch {cfg['ssl_batch_size']}; final batch loss {m['ssl_loss_last_batch']}. The defense compares
  {views['views']} views per image and takes its negatives from the batch (Mao et al.); a fixed bank (one view each of
  {arch['bank_size']} other training images, stored as `bank`) is kept for the ablation in
  report/defense/experiments.md.
- Training time (1 CPU thread, shared machine): classifier {m['classifier_seconds']} s, SSL branch \
{m['ssl_seconds']} s.

{accuracies}

The clean accuracy is a few points below the ~85% usual for robust Fashion-MNIST CNNs at L∞ ε = 0.1, which
train for tens of epochs on GPUs: {cfg['epochs']} epochs fit the CPU budget (the previous 3-epoch models reached
76.9% for PGD-AT), and the resized-crop augmentation costs about 6 points (a 3-epoch run without it reached
83.4%; see report/defense/experiments.md).
"""


def _trainer(recipe: str) -> Callable[..., None]:
    def run(*, device: str | None = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
            run_dir: str | Path | None = None, zoo_dir: str | Path | None = None) -> None:
        train_robust(recipe, device=device or "cpu", seed=seed, resume=resume, progress=progress, run_dir=run_dir,
                     zoo_dir=zoo_dir)
    run.__doc__ = f"Train zoo entry {model_name(recipe)}."
    return run


def _theta_trainer(recipe: str) -> Callable[..., None]:
    def run(*, device: str | None = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
            run_dir: str | Path | None = None, zoo_dir: str | Path | None = None) -> None:
        from landform.tasks.defense.defense import train_theta
        train_theta(recipe, device=device or "cpu", seed=seed, resume=resume, progress=progress, run_dir=run_dir,
                    zoo_dir=zoo_dir)
    run.__doc__ = f"Fit zoo entry {theta_name(recipe)}."
    return run


TRAINERS: dict[str, Callable[..., None]] = {
    **{model_name(r): _trainer(r) for r in RECIPES},
    **{theta_name(r): _theta_trainer(r) for r in RECIPES},
}
