"""The check every report writer's test runs: a report folder is replaced whole or not at all.

``check_report_writes`` writes an old report into a folder (beside a user's own file there and one in the parent
folder), then runs the writer of a new one (its expensive computation faked by the caller) once per
file-system change it makes, interrupted at that change through the ``landform.io.fs.change`` hook (as a Ctrl-C
or a kill would cut it short). After each, once ``settle_outputs`` has completed a commit cut short, the folder
holds the whole old report or the whole new one, never a mix, and the user's files are untouched.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import landform.io as lio
import landform.io.fs as lfs

OLD = b"the previous report's "


def fake_figure(path: str | Path, *args: Any, **kwargs: Any) -> Path:
    """Stands in for a figure writer (a plot, an image grid): a few bytes at ``path``, written as figures are."""
    return lfs.write_bytes(path, f"a new figure, {Path(path).name}\n".encode())


class _Interrupt:
    """Replaces ``landform.io.fs.change``: counts the changes and raises KeyboardInterrupt at the ``at``-th."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.calls, self.real = at, 0, lfs.change

    def __call__(self, op: str, *args: Any) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt(f"interrupted at change {self.at} ({op})")
        return self.real(op, *args)


def _write_old(folder: Path, files: Sequence[str]) -> None:
    with lio.atomic_outputs(folder, list(files)) as stage:
        for name in files:
            lfs.write_bytes(stage / name, OLD + name.encode())


def _which(folder: Path, files: Sequence[str]) -> str:
    """``"old"`` or ``"new"``: which whole report ``folder`` holds once a commit cut short is completed
    (asserting it is one of them, every file present and each the one its manifest names)."""
    manifest = lio.settle_outputs(folder)
    assert not (folder / ".landform-commit").exists()
    contents = {name: (folder / name).read_bytes() for name in files}
    if all(data == OLD + name.encode() for name, data in contents.items()):
        return "old"
    assert not any(data.startswith(OLD) for data in contents.values()), f"a mix of two reports in {folder}"
    assert manifest is not None and set(manifest["files"]) == set(files)
    assert {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()} == \
        {name: entry["sha256"] for name, entry in manifest["files"].items()}
    return "new"


def _others(folder: Path, files: Sequence[str]) -> dict[str, bytes]:
    """The user's files: the parent folder's other entries and the report folder's files that are not the
    report's (landform's own dot files aside)."""
    seen = {f"../{p.name}": p.read_bytes() if p.is_file() else b"<folder>"
            for p in folder.parent.iterdir() if p.name != folder.name}
    seen.update({p.name: p.read_bytes() for p in folder.iterdir()
                 if p.is_file() and not p.name.startswith(".") and p.name not in files})
    return seen


def check_report_writes(folder: Path, files: Sequence[str], write: Callable[[], Any],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``write()`` (which writes the report ``files`` into ``folder``) replaces the old report whole, and
    interrupted at any of its file-system changes leaves the old report whole or (cut short after its commit,
    then settled) the new one; files that are not the report's, in ``folder`` or its parent, are never touched."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # what is checked is the order of changes, not durability
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("the user's own, beside the report")
    (folder.parent / "mine.txt").write_text("the user's own, beside the report folder")
    _write_old(folder, files)
    others = _others(folder, files)
    counter = _Interrupt()
    monkeypatch.setattr(lfs, "change", counter)
    write()
    monkeypatch.setattr(lfs, "change", counter.real)
    assert _which(folder, files) == "new"
    assert _others(folder, files) == others
    assert {p.name for p in folder.iterdir() if not p.name.startswith(".")} == {*files, "notes.txt"}
    assert {p.name for p in folder.iterdir() if p.name.startswith(".")} == {lio.REPORT_MANIFEST}
    outcomes = []
    for at in range(1, counter.calls + 1):
        _write_old(folder, files)
        monkeypatch.setattr(lfs, "change", _Interrupt(at))
        with pytest.raises(KeyboardInterrupt):
            write()
        monkeypatch.setattr(lfs, "change", counter.real)
        outcomes.append(_which(folder, files))
        assert _others(folder, files) == others, at
        for stale in folder.glob(".landform-staging-*"):  # what the next writer clears after a real kill
            lfs.discard(stale)
    assert outcomes[0] == "old" and outcomes[-1] == "new", outcomes  # cut short before and after the commit
    assert outcomes == sorted(outcomes, key=["old", "new"].index), outcomes  # the old report until the commit
