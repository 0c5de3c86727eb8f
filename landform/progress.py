"""Progress bars that show on a terminal only: on a pipe or a log file they stay silent (no \\r floods)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def on_terminal() -> bool:
    """Whether progress would be seen by a person: standard error is a terminal."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """``tqdm`` that draws only when ``enabled`` and standard error is a terminal (delay 1 s, so quick
    loops print nothing)."""
    kwargs.setdefault("delay", 1.0)
    return tqdm(iterable, disable=not (enabled and on_terminal()), **kwargs)
