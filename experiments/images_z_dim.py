"""Z = X (the paper's §7.1) against a larger Z (its Table 3) for the image task's Θ, on validation images.

Fit both first (each about 20-30 minutes on 2 CPU cores):
    python -c "from landform.tasks.images.task import train_landscape as t; \
               t(z_dim=64, run_dir='runs/images-landscape-z64', zoo_dir='runs/images-landscape-z64')"
    landform zoo train images-landscape          # z_dim 256, runs/images-landscape
then: .venv/bin/python experiments/images_z_dim.py
"""

from __future__ import annotations

from landform import Mapping, invert
from landform.tasks.images.data import load_fashion_mnist, seeded_subset
from landform.tasks.images.generator import load_generator
from landform.tasks.images.perceptual import ImageLoss

STEPS = (1, 2, 5, 20, 50, 200)


def main() -> None:
    generator, loss = load_generator(), ImageLoss()
    val = seeded_subset(load_fashion_mnist("val")[0], 16, 1)
    for path in ("runs/images-landscape-z64/mapping", "runs/images-landscape/mapping"):
        curve = invert(generator, loss, val, mapping=Mapping.load(path), steps=200).losses.mean(1)
        print(path, [round(float(curve[s]), 4) for s in STEPS])
    baseline = invert(generator, loss, val, init=generator.w_mean.expand(16, -1), lr=0.5, steps=200).losses.mean(1)
    print("baseline lr 0.5", [round(float(baseline[s]), 4) for s in STEPS])


if __name__ == "__main__":
    main()
