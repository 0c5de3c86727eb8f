"""Example forward models a user might bring, each a ``make_problem`` factory for ``--problem``.

- ``landform.examples.decoder:make_problem``: a smooth MLP decoder from an 8-dimensional latent to a
  16x16 image, the common VAE/GAN case, where plain descent converges but slowly.
- ``landform.examples.renderer:make_problem``: a soft rasterizer of two disks (shape parameters to a 24x24
  image), whose landscape has local minima: a disk that does not overlap its target gets no gradient.

The core knows nothing of them; the README's "bring your own model" table and the tests use them.
"""
