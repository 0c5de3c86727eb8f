"""Defense (paper §4.3): one-step test-time reversal of adversarial attacks with a learned landscape.

Robust Fashion-MNIST classifiers (PGD-AT, TRADES) with contrastive SSL branches; the defense of Mao et al.
2021 adds r to the attacked image a by descending Eq. 7 (SSL loss of a + r plus λ‖r‖²), on r directly
(baseline) or on z with r = Θ(z) (ours, an additive Mapping fitted with Algorithm 1).
"""

from __future__ import annotations

from landform.tasks import Task, register

__all__ = ["TRAINERS", "compare_inputs", "demo", "invert_inputs"]


def __getattr__(name: str):
    # Lazy: importing the package (to register the task) loads neither torch nor the models.
    if name == "TRAINERS":
        from landform.tasks.defense.train import TRAINERS

        return TRAINERS
    if name in ("compare_inputs", "demo", "invert_inputs"):
        from landform.tasks.defense import task

        return getattr(task, name)
    raise AttributeError(f"module 'landform.tasks.defense' has no attribute {name!r}")


# Registered lazily (functions by name); options=(): its `steps` keywords are not inversion steps.
register(Task("defense", "test-time reversal of adversarial attacks (§4.3)", demo=f"{__name__}:demo",
              invert_inputs=f"{__name__}:invert_inputs", compare_inputs=f"{__name__}:compare_inputs",
              trainers=f"{__name__}:TRAINERS", options=()))
