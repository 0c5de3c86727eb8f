"""The defense tests run on one thread: the machine is shared, and these small models gain nothing from more."""

import torch

torch.set_num_threads(1)
