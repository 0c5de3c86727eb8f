"""Folder locks: one landform writer per folder, and short locks that serialize commits.

A lock is an advisory ``flock`` on a file in the folder (which records the holder's pid), so the kernel drops
it on any exit, SIGKILL included. A lock file is written in place through its locked descriptor, the one
file-system change that does not go through ``fs.change``: replacing the file would drop the lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from landform.errors import LandformError
from landform.io.fs import make_dirs, writes_files

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no advisory locks, folder_lock does nothing
    fcntl = None  # type: ignore[assignment]

LOCK = ".landform.lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


def _same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a lock file is removed when it is released)."""
    try:
        named, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _acquire(path: Path, *, wait: bool) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if need be), as its open descriptor; None where the file
    system has no locks. Without ``wait`` a lock held by another process raises LandformError naming the pid
    recorded in the file. The holder removes the file on release while still holding it, so a taker checks
    that the file it locked is still the one ``path`` names, and two processes never both hold it."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    while True:
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as error:
            raise LandformError(f"cannot lock {path.parent}: {error.strerror or error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise LandformError(f"{path.parent} is in use by another landform process (pid "
                                f"{holder if holder.isdigit() else 'unknown'}); wait for it to end or choose "
                                "another folder") from None
        except OSError as error:
            os.close(fd)
            if error.errno in _NO_LOCKS:
                return None  # advisory locking is best effort: this file system offers none
            raise LandformError(f"cannot lock {path.parent}: {error.strerror or error}") from None
        if _same_file(path, fd):
            return fd
        os.close(fd)  # released and removed while we opened it: lock the file that path names now


def _release(path: Path, fd: int | None) -> None:
    """Give back a lock that ``_acquire`` took, removing its file while still holding it."""
    if fd is None:
        return
    if _same_file(path, fd):
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked (see _acquire)
    os.close(fd)


@contextlib.contextmanager
def folder_lock(directory: str | Path) -> Iterator[Path]:
    """Hold ``directory`` for this process's writes: a second landform process that asks for it is refused in
    one line naming the folder and the pid that holds it. The lock is an advisory ``flock`` on
    ``directory/.landform.lock`` (which records the pid), so the kernel drops it on any exit, SIGKILL included,
    and a file left behind by a killed process is simply taken over; under torchrun only rank 0, the rank that
    writes, takes it."""
    directory = Path(directory)
    if fcntl is None or not writes_files():
        yield directory
        return
    make_dirs(directory)
    path = directory / LOCK
    fd = _acquire(path, wait=False)
    try:
        if fd is not None:
            record = f"{os.getpid()}\n".encode()
            with contextlib.suppress(OSError):  # the pid only serves the message of a refused writer
                os.pwrite(fd, record, 0)
                os.ftruncate(fd, len(record))
        yield directory
    finally:
        _release(path, fd)


@contextlib.contextmanager
def commit_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on the file ``path`` that serializes commits: held for milliseconds, so waited for
    rather than refused (nothing where the file system has no locks)."""
    if fcntl is None:
        yield
        return
    fd = _acquire(path, wait=True)
    try:
        yield
    finally:
        _release(path, fd)
