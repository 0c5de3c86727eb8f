"""``python -m landform ...`` is the ``landform`` command; so is ``python landform ...`` from the repository
root, which is what ``torchrun ... landform fit ...`` runs (torchrun starts ``python -u landform ...``)."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, "") and sys.path and os.path.abspath(sys.path[0]) == _HERE:
    # Run as a folder: its own modules (io, ...) must not shadow the standard library's.
    sys.path[0] = os.path.dirname(_HERE)

from landform.cli import main  # noqa: E402 (sys.path first)

sys.exit(main())
