"""One writer per folder, and report sets replaced as one unit.

A second ``landform fit`` (or ``zoo train``) into a folder another process holds is refused in one line naming
the holder's pid; the lock of a SIGKILLed holder is taken over. A writer of a report set (``compare``'s curves
and summary) SIGKILLed at random moments, and at every file-system change it makes, leaves the whole old set
or the whole new set, never a mix, and never touches the user's other files.

The holders and writers are children forked from the test process (torch already imported: they start in
milliseconds); the command itself runs in the test process, where it must refuse before any computation."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import random
import signal
import time
import types
from pathlib import Path

import pytest

import landform.io as lio
import landform.io.fs as lfs
import landform.io.locks as llocks
from landform import LandformError, tasks
from landform.cli import main
from landform.io import atomic_outputs, folder_lock, settle_outputs

FORK = multiprocessing.get_context("fork")
NAMES = ["curves.csv", "curves.png", "summary.json"]


def _hold(folder: Path, ready, seconds: float = 30.0) -> None:
    """In a child: take the folder's lock, say so, and keep it (until killed or ``seconds`` pass)."""
    with folder_lock(folder):
        ready.set()
        time.sleep(seconds)


@contextlib.contextmanager
def _holder(folder: Path):
    """A child process holding ``folder``'s lock for the block; SIGKILLed at its end."""
    ready = FORK.Event()
    child = FORK.Process(target=_hold, args=(folder, ready))
    child.start()
    try:
        assert ready.wait(10), "the child never took the lock"
        yield child
    finally:
        child.kill()
        child.join()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------ folder locks

def test_a_second_fit_into_a_held_folder_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    with _holder(out) as child:
        status = main(["fit", "--problem", "landform.synthetic:synthetic_problem", "--out", str(out),
                       "--time", "5s"])
        line = _one_line(capsys.readouterr().err)
        assert status == 2, line
        assert line.startswith("landform: ") and str(out) in line and f"pid {child.pid}" in line, line
        with pytest.raises(LandformError, match=f"pid {child.pid}"), folder_lock(out):  # as any writer calls it
            pass
    assert sorted(p.name for p in out.iterdir()) == [".landform.lock"]  # nothing written, the file of the dead


def test_a_second_zoo_train_of_one_entry_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    calls = []

    def trainer(*, device, seed, resume, progress, run_dir, zoo_dir):
        calls.append(run_dir)

    monkeypatch.setattr(tasks, "find_trainer", lambda name: (tasks.get("synthetic"), trainer))
    argv = ["zoo", "train", "probe-entry", "--runs-dir", str(tmp_path)]
    with _holder(tmp_path / "probe-entry") as child:
        assert main(argv) == 2
        line = _one_line(capsys.readouterr().err)
        assert str(tmp_path / "probe-entry") in line and f"pid {child.pid}" in line, line
    assert calls == []
    assert main(argv) == 0 and calls == [tmp_path / "probe-entry"]  # the holder is gone: the lock is free


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path):
    with _holder(tmp_path) as child:
        pass  # SIGKILLed on leaving, holding the lock: its file stays behind, with its pid
    assert child.exitcode == -signal.SIGKILL
    assert (tmp_path / ".landform.lock").read_text().strip() == str(child.pid)
    started = time.monotonic()
    with folder_lock(tmp_path):
        assert (tmp_path / ".landform.lock").read_text().strip() == str(os.getpid())
    assert time.monotonic() - started < 1
    assert not (tmp_path / ".landform.lock").exists()  # released: removed


def _contend(folder: Path, rounds: int, failures) -> None:
    """In a child: take and release the lock ``rounds`` times, slow between opening the lock file and locking
    it (where a holder may remove it); inside it, a marker only one holder can create."""
    chooser, real = random.Random(os.getpid()), fcntl.flock

    def slow_flock(fd: int, operation: int) -> None:
        time.sleep(chooser.uniform(0, 0.001))
        real(fd, operation)

    llocks.fcntl = types.SimpleNamespace(flock=slow_flock, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB)
    for _ in range(rounds):
        with contextlib.suppress(LandformError), folder_lock(folder):
            try:
                fd = os.open(folder / "holder", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                failures.value += 1
                continue
            os.close(fd)
            os.unlink(folder / "holder")


def test_two_processes_never_hold_the_lock_at_once(tmp_path):
    """The lock file is removed on release; a taker that locked a removed file retries, so two never both win."""
    failures = FORK.Value("i", 0)
    children = [FORK.Process(target=_contend, args=(tmp_path, 300, failures)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert failures.value == 0
    assert list(tmp_path.iterdir()) == []


def test_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    """Under torchrun rank 0 alone writes, so the other ranks neither take nor wait for the lock."""
    with _holder(tmp_path):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")
        with folder_lock(tmp_path), folder_lock(tmp_path / "other"):
            assert not (tmp_path / "other").exists()


# ------------------------------------------------------------------------------------------- report sets

def _content(name: str, run: int) -> bytes:
    return f"{name} of run {run}\n".encode() * (200 + 37 * NAMES.index(name))


def _write_set(out: Path, run: int) -> None:
    with atomic_outputs(out, NAMES) as stage:
        for name in NAMES:
            lio.write_bytes(stage / name, _content(name, run))


def _run_of(out: Path) -> int:
    """The run the report files in ``out`` come from, checked to be one run for all (and their manifest's)."""
    runs = set()
    for name in NAMES:
        first = (out / name).read_bytes().split(b"\n", 1)[0].decode()
        runs.add(int(first.rsplit(" ", 1)[1]))
        assert (out / name).read_bytes() == _content(name, int(first.rsplit(" ", 1)[1])), name
    assert len(runs) == 1, f"a mix of runs {sorted(runs)}"
    manifest = json.loads((out / lio.REPORT_MANIFEST).read_text())
    assert {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in NAMES} == \
        {name: entry["sha256"] for name, entry in manifest["files"].items()}
    return runs.pop()


def _writer(out: Path, first: int, slow: float, kill_at: int | None) -> None:
    """In a child: write the sets ``first``, ``first + 1``, ... (slowed before every rename, or SIGKILLed by
    itself at its ``kill_at``-th file-system change)."""
    real, calls = lfs.change, [0]

    def fs(op, *args):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if slow and op == "replace":
            time.sleep(slow)
        return real(op, *args)

    lfs.change = fs
    run = first
    while True:
        _write_set(out, run)
        run += 1


def _after_a_kill(out: Path, old: int, new: set[int] | range) -> int:
    """Check ``out`` after a writer was killed: before completion, the whole old set unless a commit is
    pending; after ``settle_outputs``, the old set or a new one. Returns the run found."""
    if not (out / ".landform-commit").exists():
        assert _run_of(out) in {old, *new}
    manifest = settle_outputs(out)
    found = _run_of(out)
    assert found == old or found in new, (old, found)
    assert manifest["files"].keys() == set(NAMES)
    assert (out / "notes.txt").read_text() == "the user's own" and (out / "curves.txt").read_text() == "mine"
    return found


def _leftovers(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()} - {*NAMES, "notes.txt", "curves.txt", lio.REPORT_MANIFEST}


@pytest.fixture
def report(tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own")
    (out / "curves.txt").write_text("mine")
    _write_set(out, 0)
    assert _run_of(out) == 0 and _leftovers(out) == set()
    return out


def test_a_report_writer_killed_at_random_moments_leaves_the_old_set_or_the_new(report):
    chooser, old = random.Random(0), 0
    for kill in range(1, 11):
        first = 1000 * kill
        child = FORK.Process(target=_writer, args=(report, first, 0.004, None))
        child.start()
        time.sleep(chooser.uniform(0.01, 0.2))
        child.kill()
        child.join()
        old = _after_a_kill(report, old, range(first, first + 1000))
    _write_set(report, 1)  # the next writer clears the killed writers' staging folders and lock files
    assert _run_of(report) == 1 and _leftovers(report) == set()


def test_a_report_writer_killed_at_every_file_system_change_leaves_the_old_set_or_the_new(report, monkeypatch):
    counter = []
    real = lfs.change
    monkeypatch.setattr(lfs, "change", lambda op, *args: (counter.append(op), real(op, *args))[1])
    _write_set(report, 1)
    monkeypatch.setattr(lfs, "change", real)
    assert counter.count("replace") == 2 * len(NAMES) + 2  # staged, moved; the commit and the manifest
    old, outcomes = 1, set()
    for at in range(1, len(counter) + 1):
        child = FORK.Process(target=_writer, args=(report, 100 + at, 0.0, at))
        child.start()
        child.join(30)
        assert child.exitcode == -signal.SIGKILL, at
        found = _after_a_kill(report, old, {100 + at})
        outcomes.add(found == old)
        old = found
        for stale in _leftovers(report):  # what the next writer would clear, so every child starts alike
            lfs.discard(report / stale)
    assert outcomes == {True, False}  # killed both before and after its commit


def test_a_failed_report_keeps_the_old_set_and_leaves_nothing(report):
    with pytest.raises(ValueError, match="exploded"), atomic_outputs(report, NAMES) as stage:
        lio.write_bytes(stage / "curves.csv", b"half of a new set")
        raise ValueError("the plot exploded")
    with pytest.raises(LandformError, match=r"lacks summary\.json"), atomic_outputs(report, NAMES) as stage:
        for name in NAMES[:2]:
            lio.write_bytes(stage / name, _content(name, 5))
    assert _run_of(report) == 0 and _leftovers(report) == set()
