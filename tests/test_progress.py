"""Progress bars draw on a terminal only: on a pipe or a log file (CI, ``cmd > log 2>&1``) they print nothing,
so a log holds no carriage-return floods (``test_imports``: every bar goes through ``landform.progress``)."""

from __future__ import annotations

import io

from landform import progress
from landform.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_silent_off_a_terminal(capsys):
    for _ in progress_bar(range(50), enabled=True, delay=0, mininterval=0):
        pass
    assert capsys.readouterr().err == ""  # pytest's capture is not a terminal


def test_a_bar_draws_on_a_terminal_unless_disabled(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert progress.on_terminal()
    for _ in progress_bar(range(5), enabled=True, delay=0, file=terminal):
        pass
    assert "\r" in terminal.getvalue()
    quiet = _Terminal()
    for _ in progress_bar(range(5), enabled=False, delay=0, file=quiet):
        pass
    assert quiet.getvalue() == ""
