"""Plain files: the one hook for file-system changes, atomic writes, bounded reads and strict JSON.

Every change to the file system goes through :func:`change`, so tests can inject a failure at every point.
The other modules of ``landform.io`` call it as ``fs.change`` (never a copy imported by name), so that
patching ``landform.io.fs.change`` reaches every writer.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
from collections.abc import Mapping as MappingType
from pathlib import Path
from typing import Any

import torch

from landform.errors import LandformError, first_line

MAX_JSON_BYTES = 16 * 2**20


# ----------------------------------------------------------------------------------------------- writes

def change(op: str, *args: Any) -> None:
    """The one place that changes the file system (tests patch it to inject faults): ``write`` (path, data;
    flushed to disk), ``replace``, ``mkdir``, ``rmtree``, ``unlink`` or ``fsync_dir``."""
    if op == "write":
        path, data = args
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    elif op == "replace":
        os.replace(*args)
    elif op == "mkdir":
        os.mkdir(args[0])
    elif op == "rmtree":
        shutil.rmtree(args[0])
    elif op == "unlink":
        os.unlink(args[0])
    elif op == "fsync_dir":
        _fsync_dir(args[0])
    else:  # pragma: no cover - programming error
        raise ValueError(op)


def _fsync_dir(directory: Path) -> None:
    """Flush a folder's entries to disk (best effort: some file systems cannot)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(path: Path, error: OSError) -> LandformError:
    """The one-line error of a failed write to ``path``."""
    reason = error.strerror or str(error)
    return LandformError(f"cannot write {path}: {reason}; the previous version, if any, is kept")


def make_dirs(directory: Path) -> None:
    """``directory`` and its parents, with a one-line error if they cannot be made."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(directory, error) from None


def discard(path: Path) -> None:
    """Remove a file or folder through :func:`change`, quietly: what is left is cleaned up by the next writer."""
    try:
        if path.is_dir() and not path.is_symlink():
            change("rmtree", path)
        elif path.exists() or path.is_symlink():
            change("unlink", path)
    except OSError:
        pass


def writes_files() -> bool:
    """False in the processes of a torchrun launch other than rank 0: landform's files (checkpoints, zoo
    entries, results) are written by rank 0 alone, so K processes never race on one path."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 or os.environ.get("RANK", "0") == "0"


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: ``path.tmp`` in full, flushed, then renamed over ``path``
    (under torchrun, on rank 0 only: see ``writes_files``)."""
    path = Path(path)
    if not writes_files():
        return path
    make_dirs(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    try:
        change("write", tmp, data)
        change("replace", tmp, path)
        change("fsync_dir", path.parent)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise write_error(path, error) from None
        raise
    return path


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, MappingType):
        return {str(key): json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return json_safe(obj.item())
    return obj


def json_bytes(obj: Any, *, sort_keys: bool = True) -> bytes:
    """Strict, indented JSON (non-finite floats become null)."""
    return (json.dumps(json_safe(obj), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n").encode()


def write_json(path: str | Path, obj: Any, *, sort_keys: bool = True) -> Path:
    """Atomic strict JSON."""
    return write_bytes(path, json_bytes(obj, sort_keys=sort_keys))


# ------------------------------------------------------------------------------------------------ reads

def file_size(path: str | Path, what: str = "file", limit: int | None = None) -> int:
    """The size of a regular file, with one-line errors for a missing path, a non-regular file (FIFO,
    device, folder) or a file over ``limit`` bytes."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise LandformError(f"{what} not found: {path}") from None
    except OSError as error:
        raise LandformError(f"cannot read {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise LandformError(f"{path} is not a regular file")
    if limit is not None and info.st_size > limit:
        raise LandformError(f"{path} is {info.st_size} bytes, more than the {limit} allowed for a {what}")
    return info.st_size


def read_bytes(path: str | Path, limit: int, what: str = "file") -> bytes:
    """At most ``limit`` bytes of a regular file (opened without blocking, so a FIFO is refused, not read)."""
    path = Path(path)
    file_size(path, what, limit)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise LandformError(f"cannot read {path}: {error.strerror or error}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise LandformError(f"{path} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise LandformError(f"{path} is more than the {limit} bytes allowed for a {what}")
    return data


def _reject_constant(name: str) -> None:
    """``json.loads``' hook for NaN, Infinity and -Infinity, which strict JSON has not."""
    raise ValueError(f"{name} is not valid JSON")


def read_json(path: str | Path, what: str = "config file", limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """A strict JSON object from a regular file of at most ``limit`` bytes."""
    return parse_json(read_bytes(path, limit, what), path, what)


def parse_json(data: bytes, source: str | Path, what: str = "config file") -> dict[str, Any]:
    """A strict JSON object (no NaN or Infinity) from bytes, with a one-line error naming ``source``."""
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise LandformError(f"corrupted {what} {source}: {first_line(error)}") from None
    if not isinstance(value, dict):
        raise LandformError(f"corrupted {what} {source}: expected a JSON object, got {type(value).__name__}")
    return value
