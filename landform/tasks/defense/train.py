"""Trainers of the defense zoo entries (``landform zoo train NAME``).

``defense-<recipe>`` (recipe: pgd, trades, mart): a SmallCNN made robust against L∞ ε = 0.1 with that
recipe, then a contrastive SSL head trained on its frozen features. ``defense-<recipe>-theta``: the
additive Θ (x = a + Θ(z)) fitted with Algorithm 1 on attacked training images. Checkpoints go to
runs/<name>/ (safetensors + json) after every epoch/round and a rerun resumes from them; the zoo entry is
written only when training is complete.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from landform import zoo
from landform.errors import LandformError
from landform.tasks.defense import attack
from landform.tasks.defense.data import eval_subset, load_split
from landform.tasks.defense.models import RECIPES, RobustModel, half, model_name, theta_name
from landform.tasks.defense.ssl import ssl_loss
from landform.zoo import load_optimizer_tensors, load_pair, optimizer_tensors, save_pair

RUNS = Path("runs")
CLASSIFIER_SETTINGS = {"train_size": 20000, "epochs": 6, "batch_size": 128, "lr": 2e-3, "eps": 0.1,
                       "pgd_steps": 5, "pgd_step": 0.03, "beta": 6.0}
SSL_SETTINGS = {"ssl_epochs": 2, "ssl_batch_size": 256, "ssl_lr": 1e-3}
EVAL_SIZE = 500

def _save_checkpoint(run: Path, state: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                     meta: dict) -> None:
    tensors = {f"model.{k}": v for k, v in state.items()}
    tensors.update(optimizer_tensors(optimizer))
    save_pair(run / "state.safetensors", tensors, {**meta, "param_groups": optimizer.state_dict()["param_groups"]})


def _load_checkpoint(run: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    tensors, meta = load_pair(run / "state.safetensors")
    module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
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


def train_robust(recipe: str, *, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True,
                 settings: dict | None = None) -> RobustModel:
    """Phase 1: robust training of the classifier; phase 2: SSL head on its frozen features. Writes the zoo
    entry ``defense-<recipe>`` with a card giving clean and robust test accuracy."""
    if recipe not in RECIPES:
        raise LandformError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    cfg = {**CLASSIFIER_SETTINGS, **SSL_SETTINGS, **(settings or {})}
    name = model_name(recipe)
    run = RUNS / name
    torch.manual_seed(seed)
    x_all, y_all = load_split("train")
    order = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(seed))[:cfg["train_size"]]
    x_train, y_train = x_all[order].to(device), y_all[order].to(device)
    model = RobustModel().to(device)
    n = x_train.shape[0]
    per_epoch = (n + cfg["batch_size"] - 1) // cfg["batch_size"]

    # Phase 1: the classifier.
    optimizer = torch.optim.Adam(model.classifier.parameters(), lr=cfg["lr"])
    total = cfg["epochs"] * per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg["lr"], total_steps=total)
    epoch, elapsed = 0, 0.0
    if resume and (run / "state.json").exists():
        meta = _load_checkpoint(run, model, optimizer)
        epoch, elapsed = meta["epoch"], meta["seconds"]
        with warnings.catch_warnings():  # fast-forward the schedule to where the checkpoint left it
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(epoch * per_epoch):
                schedule.step()
    bar = tqdm(total=total, initial=epoch * per_epoch, disable=not progress, desc=f"{name} ({recipe})")
    while epoch < cfg["epochs"]:
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        perm = torch.randperm(n, generator=generator)
        model.classifier.train()
        for i in range(per_epoch):
            index = perm[i * cfg["batch_size"]:(i + 1) * cfg["batch_size"]].to(device)
            loss = robust_loss(recipe, model.classifier, x_train[index], y_train[index], cfg,
                               seed=seed * 100000 + epoch * 1000 + i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        epoch += 1
        elapsed += time.perf_counter() - started
        _save_checkpoint(run, model.state_dict(), optimizer, {"epoch": epoch, "seconds": elapsed, "settings": cfg})
    bar.close()
    classifier_seconds = elapsed

    # Phase 2: the SSL head on the frozen classifier's features, clean training images.
    model.classifier.requires_grad_(False).eval()
    ssl_run = RUNS / f"{name}-ssl"
    head_optimizer = torch.optim.Adam(model.ssl.parameters(), lr=cfg["ssl_lr"])
    ssl_epoch, ssl_elapsed = 0, 0.0
    if resume and (ssl_run / "state.json").exists():
        meta = _load_checkpoint(ssl_run, model, head_optimizer)
        ssl_epoch, ssl_elapsed = meta["epoch"], meta["seconds"]
    ssl_batches = n // cfg["ssl_batch_size"]
    bar = tqdm(total=cfg["ssl_epochs"], initial=ssl_epoch, disable=not progress, desc=f"{name} SSL head")
    last_ssl = float("nan")
    while ssl_epoch < cfg["ssl_epochs"]:
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(seed * 1000 + 500 + ssl_epoch)
        perm = torch.randperm(n, generator=generator)
        for i in range(ssl_batches):
            index = perm[i * cfg["ssl_batch_size"]:(i + 1) * cfg["ssl_batch_size"]].to(device)
            loss = ssl_loss(model, x_train[index], generator=generator).mean()
            head_optimizer.zero_grad()
            loss.backward()
            head_optimizer.step()
            last_ssl = loss.item()
        ssl_epoch += 1
        ssl_elapsed += time.perf_counter() - started
        bar.update(1)
        bar.set_postfix(ssl=f"{last_ssl:.3f}")
        _save_checkpoint(ssl_run, model.state_dict(), head_optimizer,
                         {"epoch": ssl_epoch, "seconds": ssl_elapsed, "loss": last_ssl})
    bar.close()

    metrics = evaluate_model(model, seed=seed, device=device, progress=progress)
    metrics.update(classifier_seconds=round(classifier_seconds, 1), ssl_seconds=round(ssl_elapsed, 1),
                   ssl_loss_last_batch=round(last_ssl, 4))
    config = {"kind": "defense.RobustModel", "recipe": recipe, "settings": cfg, "metrics": metrics}
    zoo.save(name, half(model.state_dict()), config, _model_card(name, recipe, cfg, metrics))
    return model


@torch.no_grad()
def _clean(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return attack.accuracy(model, x, y)


def evaluate_model(model: RobustModel, *, seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """Clean, L2 PGD-200 and L∞ PGD-50 accuracy on the seeded 500-image test subset."""
    x, y = eval_subset(EVAL_SIZE, seed=seed)
    x, y = x.to(device), y.to(device)
    out = {"eval_images": EVAL_SIZE, "clean": _clean(model, x, y)}
    x_l2 = attack.pgd(model, x, y, norm="l2", eps=attack.L2_EPS, step=attack.L2_STEP, steps=attack.ATTACK_STEPS,
                      seed=seed)
    out["robust_l2"] = _clean(model, x_l2, y)
    x_inf = attack.pgd(model, x, y, norm="linf", eps=attack.LINF_EPS, step=attack.LINF_STEP, steps=50, seed=seed)
    out["robust_linf"] = _clean(model, x_inf, y)
    return out


def _model_card(name: str, recipe: str, cfg: dict, m: dict) -> str:
    title = {"pgd": "PGD adversarial training (Madry et al. 2018)", "trades": "TRADES (Zhang et al. 2019)",
             "mart": "MART (Wang et al. 2020)"}[recipe]
    return f"""# {name}

Robust Fashion-MNIST classifier for the test-time defense (paper §4.3), recipe: {title}, plus a
contrastive self-supervised head (InfoNCE, 4 views, temperature 0.2) trained on its frozen conv features.

- Reproduce: `landform zoo train {name}`
- Architecture: SmallCNN (conv 16 - pool - conv 32 - pool - fc 128 - fc 10), SSL head MLP 1568-256-64.
- Data: Fashion-MNIST train split (Debian `dataset-fashion-mnist`, 5,000 held out as validation), a seeded
  subset of {cfg['train_size']} images; metrics on a seeded {m['eval_images']}-image subset of the test split.
- Robust training: L∞ ε = {cfg['eps']}, PGD-{cfg['pgd_steps']} step {cfg['pgd_step']}, {cfg['epochs']} epochs,
  batch {cfg['batch_size']}, Adam one-cycle max lr {cfg['lr']}{', β = ' + str(cfg['beta']) if recipe != 'pgd' else ''}.
- SSL head: {cfg['ssl_epochs']} epochs on clean training images, Adam lr {cfg['ssl_lr']}, batch
  {cfg['ssl_batch_size']}; final batch loss {m['ssl_loss_last_batch']}.
- Training time (1 CPU thread, shared machine): classifier {m['classifier_seconds']} s, SSL head {m['ssl_seconds']} s.

| metric | accuracy |
|---|---|
| clean | {m['clean']:.3f} |
| L2 PGD-200, ε = {attack.L2_EPS}, step {attack.L2_STEP} | {m['robust_l2']:.3f} |
| L∞ PGD-50, ε = {attack.LINF_EPS}, step {attack.LINF_STEP} | {m['robust_linf']:.3f} |
"""


def _trainer(recipe: str) -> Callable[..., None]:
    def run(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True) -> None:
        train_robust(recipe, device=device, seed=seed, resume=resume, progress=progress)
    run.__doc__ = f"Train zoo entry {model_name(recipe)}."
    return run


def _theta_trainer(recipe: str) -> Callable[..., None]:
    def run(*, device: str = "cpu", seed: int = 0, resume: bool = True, progress: bool = True) -> None:
        from landform.tasks.defense.defense import train_theta
        train_theta(recipe, device=device, seed=seed, resume=resume, progress=progress)
    run.__doc__ = f"Fit zoo entry {theta_name(recipe)}."
    return run


TRAINERS: dict[str, Callable[..., None]] = {
    **{model_name(r): _trainer(r) for r in RECIPES},
    **{theta_name(r): _theta_trainer(r) for r in RECIPES},
}
