"""GAN inversion (paper §4.1) on a generator trained on Fashion-MNIST; MNIST is out of distribution."""

from landform.tasks.images.encoder import train_encoder
from landform.tasks.images.generator import train_generator
from landform.tasks.images.task import demo, image_problem, load_models, train_anchored_landscape, train_landscape
from landform.tasks.images.user import compare_inputs, invert_inputs

TRAINERS = {"images-generator": train_generator, "images-encoder": train_encoder,
            "images-landscape": train_landscape, "images-landscape-anchored": train_anchored_landscape}

__all__ = ["TRAINERS", "compare_inputs", "demo", "image_problem", "invert_inputs", "load_models"]
