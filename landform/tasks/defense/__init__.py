"""Defense (paper §4.3): one-step test-time reversal of adversarial attacks with a learned landscape.

Robust Fashion-MNIST classifiers (PGD-AT, TRADES, MART) with contrastive SSL heads; the defense of Mao et
al. 2021 adds r to the attacked image a by descending Eq. 7 (SSL loss of a + r plus λ‖r‖²), on r directly
(baseline) or on z with r = Θ(z) (ours, an additive Mapping fitted with Algorithm 1).
"""

from landform.tasks.defense.task import compare_inputs, demo, invert_inputs
from landform.tasks.defense.train import TRAINERS

__all__ = ["TRAINERS", "compare_inputs", "demo", "invert_inputs"]
