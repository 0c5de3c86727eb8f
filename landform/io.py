"""Every file landform reads or writes: safetensors + JSON pairs, bounded reads, atomic writes, checkpoints.

Reads are bounded and validated: only regular files are opened (never a FIFO or a device, even through a
link), JSON and tensor files have size caps, JSON is strict (no NaN or Infinity) and a tensor file's header
(names, dtypes, shapes) is checked with ``safetensors.safe_open`` before any tensor is materialized.

Writes are atomic: a file is written in full to ``NAME.tmp``, flushed to disk, then renamed over ``NAME``.
A :class:`Checkpoint` is one atomic unit made of several files: a round directory ``ckpt-000012/`` is
written complete (with a manifest of sizes and SHA-256 hashes), then the one-line pointer file ``LATEST``
is replaced atomically; older round directories and stale temporary files are removed afterwards. A kill
at any point leaves either the previous checkpoint or the new one, never a mix. A set of report files
(:func:`atomic_outputs`) is committed the same way, by one rename of a staged folder, and a folder written
by a long run is held with :func:`folder_lock`, so a second landform writer is refused instead of racing.

Every change to the file system goes through :func:`_fs`, so tests can inject a failure at every point (the
one exception is a lock file, written in place through its locked descriptor: replacing it would drop the
lock).

Why one file: that one hook, the size caps and the header checks are shared by every
reader and writer here, the checkpoint included; kept together, "every read is bounded, every write atomic
and through ``_fs``" can be checked by reading one module.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from collections.abc import Mapping as MappingType
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from landform.errors import LandformError, first_line

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no advisory locks, folder_lock does nothing
    fcntl = None  # type: ignore[assignment]

MAX_JSON_BYTES = 16 * 2**20
MAX_TENSOR_FILE_BYTES = 16 * 2**30
POINTER = "LATEST"
MANIFEST = "manifest.json"
_ROUND_DIR = re.compile(r"^ckpt-(\d{6,})(?:-(\d+))?$")
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
_NUMERIC_DTYPES = _FLOAT_DTYPES | {"BOOL", "U8", "I8", "I16", "I32", "I64", "U16", "U32", "U64"}
_SHA_KEY = "weights_sha256"  # written into X.json by save_pair, checked and removed by load_pair


# ----------------------------------------------------------------------------------------------- writes

def _fs(op: str, *args: Any) -> None:
    """The one place that changes the file system (tests patch it to inject faults)."""
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


def _write_error(path: Path, error: OSError) -> LandformError:
    reason = error.strerror or str(error)
    return LandformError(f"cannot write {path}: {reason}; the previous version, if any, is kept")


def _mkdirs(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _write_error(directory, error) from None


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
    _mkdirs(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    try:
        _fs("write", tmp, data)
        _fs("replace", tmp, path)
        _fs("fsync_dir", path.parent)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _write_error(path, error) from None
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


def tensor_bytes(tensors: MappingType[str, torch.Tensor], source: str | Path = "tensors") -> bytes:
    """Tensors serialized as safetensors, in memory."""
    try:
        return save_safetensors_bytes({key: value.detach().cpu().contiguous() for key, value in tensors.items()})
    except (SafetensorError, ValueError, TypeError, RuntimeError) as error:
        raise LandformError(f"cannot serialize {source}: {first_line(error)}") from None


def save_pair(weights_path: str | Path, state: MappingType[str, torch.Tensor], config: MappingType[str, Any]) -> Path:
    """Write ``X.safetensors`` and then ``X.json``, each atomically. The JSON records the weights' SHA-256,
    so a pair whose two halves come from different saves (a crash between them) is refused on load."""
    weights_path = Path(weights_path)
    data = tensor_bytes(state, weights_path)
    write_bytes(weights_path, data)
    write_json(weights_path.with_suffix(".json"), {**config, _SHA_KEY: hashlib.sha256(data).hexdigest()})
    return weights_path


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


def tensor_header(path: str | Path, limit: int = MAX_TENSOR_FILE_BYTES,
                  what: str = "weights file") -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` of a safetensors file, read from its header only (no tensor is loaded)."""
    path = Path(path)
    size = file_size(path, what, limit)
    if size < 8:
        raise LandformError(f"corrupted {what} {path}: {size} bytes is too short for a safetensors file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: (handle.get_slice(key).get_dtype(), tuple(handle.get_slice(key).get_shape()))
                    for key in handle.keys()}  # noqa: SIM118 - safe_open is not a dict
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise LandformError(f"corrupted {what} {path}: {first_line(error)}") from None


def check_header(header: dict[str, tuple[str, tuple[int, ...]]], expected: MappingType[str, tuple[int, ...]],
                 source: str | Path, floating: bool = True) -> None:
    """Refuse a tensor file whose names or shapes differ from ``expected`` (or, with ``floating``, whose
    tensors are not floating point), naming the first difference."""
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        raise LandformError(f"weights in {source} do not match their config: {'; '.join(parts)}")
    for key, shape in expected.items():
        dtype, found = header[key]
        if tuple(found) != tuple(shape):
            raise LandformError(f"weights in {source} do not match their config: {key} has shape "
                                f"{list(found)}, the config needs {list(shape)}")
        if floating and dtype not in _FLOAT_DTYPES:
            raise LandformError(f"weights in {source} must be floating point; {key} is {dtype}")


def _check_dtypes(header: dict[str, tuple[str, tuple[int, ...]]], source: str | Path, what: str, *,
                  floating: bool, numeric: bool = False) -> None:
    """Refuse tensors that are not floating point (with ``floating``) or not numeric (with ``numeric``)."""
    for key, (dtype, _shape) in header.items():
        if floating and dtype not in _FLOAT_DTYPES:
            raise LandformError(f"{what} {source} must hold floating point tensors; {key} is {dtype}")
        if numeric and dtype not in _NUMERIC_DTYPES:
            raise LandformError(f"{what} {source} holds {key} of unsupported dtype {dtype}")


def load_tensors(path: str | Path, *, limit: int = MAX_TENSOR_FILE_BYTES, what: str = "weights file",
                 expected: MappingType[str, tuple[int, ...]] | None = None, floating: bool = False,
                 numeric: bool = True, finite: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, after checking its header (and, if asked, every value)."""
    path = Path(path)
    header = tensor_header(path, limit, what)
    if expected is not None:
        check_header(header, expected, path, floating)
    _check_dtypes(header, path, what, floating=floating, numeric=numeric)
    return tensors_from_bytes(read_bytes(path, limit, what), path, what=what, finite=finite)


def bytes_header(data: bytes, source: str | Path, what: str = "weights file") -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` from the header of safetensors bytes, checked to lie within them."""
    if len(data) < 8:
        raise LandformError(f"corrupted {what} {source}: too short for a safetensors file")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise LandformError(f"corrupted {what} {source}: its header claims {size} bytes")
    header = parse_json(data[8:8 + size], source, what)
    header.pop("__metadata__", None)
    try:
        return {key: (str(entry["dtype"]), tuple(int(d) for d in entry["shape"])) for key, entry in header.items()}
    except (KeyError, TypeError, ValueError):
        raise LandformError(f"corrupted {what} {source}: malformed header") from None


def tensors_from_bytes(data: bytes, source: str | Path, *, what: str = "weights file",
                       expected: MappingType[str, tuple[int, ...]] | None = None, floating: bool = False,
                       finite: bool = False) -> dict[str, torch.Tensor]:
    """The tensors in safetensors bytes, after checking the header (names, shapes, dtypes) against
    ``expected`` and, with ``finite``, every value."""
    if expected is not None or floating:
        header = bytes_header(data, source, what)
        if expected is not None:
            check_header(header, expected, source, floating)
        _check_dtypes(header, source, what, floating=floating)
    try:
        tensors = load_safetensors_bytes(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise LandformError(f"corrupted {what} {source}: {first_line(error)}") from None
    if finite:
        for key, value in tensors.items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise LandformError(f"{what} {source} holds non-finite values in {key}")
    return tensors


def load_pair(weights_path: str | Path, *, expected: MappingType[str, tuple[int, ...]] | None = None,
              floating: bool = False, finite: bool = False,
              limit: int = MAX_TENSOR_FILE_BYTES) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``X.safetensors`` and its ``X.json`` config (``{}`` if there is none), bounded and validated,
    with one-line errors for missing, corrupt or mismatched files."""
    weights_path = Path(weights_path)
    config_path = weights_path.with_suffix(".json")
    file_size(weights_path, "weights file", limit)
    config = read_json(config_path) if config_path.exists() or config_path.is_symlink() else {}
    data_check = config.pop(_SHA_KEY, None)
    state = load_tensors(weights_path, limit=limit, expected=expected, floating=floating, finite=finite)
    if data_check is not None:
        digest = sha256_file(weights_path, limit)
        if digest != data_check:
            raise LandformError(f"{weights_path} and {config_path} come from different saves (one was "
                                "interrupted or replaced); refusing to pair them")
    return state, config


def sha256_file(path: str | Path, limit: int = MAX_TENSOR_FILE_BYTES) -> str:
    return hashlib.sha256(read_bytes(path, limit)).hexdigest()


# ------------------------------------------------------------------------------- optimizers and modules

def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str = "optimizer") -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state as flat ``prefix.INDEX.NAME`` tensors, for a safetensors checkpoint
    (its param_groups are plain numbers: keep them in the JSON beside it)."""
    return {f"{prefix}.{index}.{key}": torch.as_tensor(value)
            for index, state in optimizer.state_dict()["state"].items() for key, value in state.items()}


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: MappingType[str, torch.Tensor],
                           param_groups: list[dict] | None = None, prefix: str = "optimizer") -> None:
    """Restore what ``optimizer_tensors`` wrote (and the saved ``param_groups``, if given); a state that does
    not fit the optimizer's parameters is refused in one line."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    try:
        for key, value in tensors.items():
            if key.startswith(prefix + "."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        for index, entry in state.items():
            if not 0 <= index < len(parameters):
                raise ValueError(f"state for parameter {index}, the optimizer has {len(parameters)}")
            for name, value in entry.items():
                if value.dim() > 0 and tuple(value.shape) != tuple(parameters[index].shape):
                    raise ValueError(f"{prefix}.{index}.{name} has shape {list(value.shape)}, the parameter "
                                     f"{list(parameters[index].shape)}")
        groups = param_groups if param_groups is not None else optimizer.state_dict()["param_groups"]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise LandformError(f"the saved optimizer state does not fit: {first_line(error)}") from None


def load_module_state(module: torch.nn.Module, state: MappingType[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict`` with a one-line error that names the first mismatch."""
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    found = {key: (str(value.dtype), tuple(value.shape)) for key, value in state.items()}
    check_header(found, expected, source, floating=False)
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        lines = str(error).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        raise LandformError(f"weights in {source} do not match the model: {detail}") from None


# ------------------------------------------------------------------------------------------ checkpoints

class Checkpoint:
    """A resumable state kept in ``directory`` as one atomic unit.

    ``write(step, files)`` makes ``ckpt-<step>.tmp/`` complete (every file plus a manifest with sizes and
    SHA-256 hashes), renames it to ``ckpt-<step>/`` and then atomically replaces the pointer ``LATEST`` with
    its name: that replacement is the commit. Older round directories and stale temporary files are
    removed afterwards. ``current()`` follows the pointer and verifies the manifest, so a checkpoint that
    was tampered with or half-copied is refused instead of resumed. Other files in ``directory`` are
    never touched.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def pointer(self) -> Path:
        return self.directory / POINTER

    def exists(self) -> bool:
        return self.pointer.exists() or self.pointer.is_symlink()

    def current(self) -> Path | None:
        """The verified round directory the pointer names, or None if nothing was committed yet."""
        folder = self._named()
        if folder is not None:
            self.verify(folder)
        return folder

    def _named(self) -> Path | None:
        if not self.exists():
            return None
        name = read_bytes(self.pointer, 256, "checkpoint pointer").decode("utf-8", "replace").strip()
        if not _ROUND_DIR.match(name):
            raise LandformError(f"corrupted checkpoint pointer {self.pointer}: {name[:40]!r}")
        folder = self.directory / name
        if not folder.is_dir():
            raise LandformError(f"inconsistent checkpoint in {self.directory}: {POINTER} names {name}, "
                                "which does not exist")
        return folder

    def verify(self, folder: Path) -> dict[str, bytes]:
        """Every file the manifest of ``folder`` lists, read and checked to be whole and unchanged."""
        manifest = read_json(folder / MANIFEST, "checkpoint manifest")
        files = manifest.get("files")
        if not isinstance(files, dict) or not files:
            raise LandformError(f"corrupted checkpoint manifest {folder / MANIFEST}: no files listed")
        contents = {}
        for name, entry in files.items():
            if not isinstance(entry, dict) or "/" in name or name.startswith(".") or name == MANIFEST:
                raise LandformError(f"corrupted checkpoint manifest {folder / MANIFEST}: bad entry {name!r}")
            size = file_size(folder / name, "checkpoint file")
            data = read_bytes(folder / name, size, "checkpoint file") if size == entry.get("bytes") else b""
            if len(data) != entry.get("bytes") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                raise LandformError(f"inconsistent checkpoint in {folder}: {name} is not the file that was "
                                    "saved (changed or truncated); refusing to resume from it")
            contents[name] = data
        return contents

    def load(self) -> tuple[Path, dict[str, bytes]] | None:
        """The committed round directory and its verified files (as bytes), or None if there is none."""
        folder = self._named()
        return None if folder is None else (folder, self.verify(folder))

    def step(self) -> int | None:
        """The step (round) of the committed checkpoint, or None."""
        folder = self.current()
        if folder is None:
            return None
        return int(_ROUND_DIR.match(folder.name).group(1))

    def write(self, step: int, files: MappingType[str, bytes]) -> Path:
        """Commit ``files`` as the checkpoint of ``step``; returns its round directory."""
        _mkdirs(self.directory)
        self.clean()
        base = f"ckpt-{step:06d}"
        name, suffix = base, 0
        while (self.directory / name).exists():
            suffix += 1
            name = f"{base}-{suffix}"
        final = self.directory / name
        tmp = self.directory / (name + ".tmp")
        manifest = {"step": step, "files": {key: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                                            for key, data in files.items()}}
        try:
            _fs("mkdir", tmp)
            for key, data in files.items():
                _fs("write", tmp / key, data)
            _fs("write", tmp / MANIFEST, json_bytes(manifest))
            _fs("fsync_dir", tmp)
            _fs("replace", tmp, final)
            _fs("fsync_dir", self.directory)
        except OSError as error:
            self._discard(tmp)
            self._discard(final)
            raise _write_error(final, error) from None
        except BaseException:
            self._discard(tmp)
            raise
        write_bytes(self.pointer, (name + "\n").encode())  # the commit
        self.clean()
        return final

    def clean(self) -> None:
        """Remove stale temporary files and every round directory the pointer does not name."""
        if not self.directory.is_dir():
            return
        keep = None
        if self.exists():
            try:
                keep = read_bytes(self.pointer, 256, "checkpoint pointer").decode("utf-8", "replace").strip()
            except LandformError:
                return  # a broken pointer: leave everything for the user to inspect
        for entry in self.directory.iterdir():
            stale_tmp = (entry.name.startswith("ckpt-") and entry.name.endswith(".tmp")) or \
                entry.name == POINTER + ".tmp"
            orphan = _ROUND_DIR.match(entry.name) and entry.name != keep
            if stale_tmp or orphan:
                self._discard(entry)

    @staticmethod
    def _discard(path: Path) -> None:
        try:
            if path.is_dir() and not path.is_symlink():
                _fs("rmtree", path)
            elif path.exists() or path.is_symlink():
                _fs("unlink", path)
        except OSError:
            pass


def resolve_weights(path: str | Path, stem: str = "mapping") -> Path:
    """``stem.safetensors`` of what a user names: a checkpoint directory (its committed round), a plain
    directory, or a path with or without the ``.safetensors`` suffix."""
    path = Path(path)
    if path.is_dir():
        checkpoint = Checkpoint(path)
        folder = checkpoint.current() if checkpoint.exists() else path
        return folder / f"{stem}.safetensors"
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


# ------------------------------------------------------------------------------- folder locks, report sets

LOCK = ".landform.lock"
REPORT_MANIFEST = ".landform-report.json"
_REPORT_LOCK = ".landform-report.lock"
_REPORT_COMMIT = ".landform-commit"
_STAGING = ".landform-staging-"
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
    _mkdirs(directory)
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
def _report_lock(out: Path) -> Iterator[None]:
    """Serializes the commits of report sets into ``out`` (held for milliseconds, so waited for)."""
    if fcntl is None:
        yield
        return
    path = out / _REPORT_LOCK
    fd = _acquire(path, wait=True)
    try:
        yield
    finally:
        _release(path, fd)


def _report_names(names: Any, source: Path) -> list[str]:
    """The file names of a report set: distinct plain names, none hidden (dot names are landform's own)."""
    if not isinstance(names, (list, tuple, dict)) or not all(isinstance(n, str) for n in names):
        raise LandformError(f"bad list of report files for {source}")
    names = list(names)
    bad = [n for n in names if not n or n.startswith(".") or "/" in n or os.sep in n]
    if bad or len(set(names)) != len(names):
        raise LandformError(f"bad report file name {(bad or names)[0]!r} for {source}")
    return names


def _sync_and_hash(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a staged file, flushed to disk first so that the commit never names a lost file."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(handle.fileno())
    return {"bytes": size, "sha256": digest.hexdigest()}


def _settle(out: Path) -> None:
    """Complete a report commit that a kill cut short: move the files the committed folder still holds over
    their targets, its manifest last, then remove it. Idempotent; the caller holds the report lock."""
    commit = out / _REPORT_COMMIT
    if commit.is_symlink() or not commit.is_dir():
        return
    manifest = commit / REPORT_MANIFEST
    try:
        if manifest.exists():
            for name in _report_names(read_json(manifest, "report manifest").get("files", {}), manifest):
                if (commit / name).exists():
                    _fs("replace", commit / name, out / name)
            _fs("fsync_dir", out)
            _fs("replace", manifest, out / REPORT_MANIFEST)
            _fs("fsync_dir", out)
        _fs("rmtree", commit)
    except OSError as error:
        raise LandformError(f"cannot complete the report committed in {commit}: {error.strerror or error}; "
                            "the next write to the folder will") from None


def settle_outputs(out: str | Path) -> dict[str, Any] | None:
    """The manifest of the report set in ``out`` (its run id and each file's size and SHA-256; None if no set
    was written), after completing a commit that a kill cut short: what a reader calls before trusting the
    report files (see :func:`atomic_outputs`)."""
    out = Path(out)
    if writes_files() and (out / _REPORT_COMMIT).is_dir():
        with _report_lock(out):
            _settle(out)
    path = out / REPORT_MANIFEST
    return read_json(path, "report manifest") if path.exists() or path.is_symlink() else None


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, OverflowError):
        return True  # not ours to signal, or not a pid we wrote: leave its folder alone
    return True


@contextlib.contextmanager
def atomic_outputs(out: str | Path, names: list[str] | tuple[str, ...]) -> Iterator[Path]:
    """Replace the report files ``names`` in ``out`` as one unit: the caller writes them into the yielded
    staging folder, which then gets a manifest (run id, sizes, SHA-256) and is renamed to
    ``out/.landform-commit``; that one rename is the commit, after which its files are moved over their
    targets, the manifest (``out/.landform-report.json``) last. A failure or kill before the commit leaves the
    old set untouched, and a kill during the moves leaves the commit folder, which the next write to ``out`` or
    :func:`settle_outputs` completes: so once no ``.landform-commit`` is left (``settle_outputs`` first), the
    files the manifest lists are those of one run, never a mix. Other files in ``out`` are never touched."""
    out = Path(out)
    names = _report_names(names, out)
    if not writes_files():
        with tempfile.TemporaryDirectory(prefix="landform-discarded-") as scratch:  # rank 0 alone keeps files
            yield Path(scratch)
        return
    _mkdirs(out)
    with _report_lock(out):
        _settle(out)
        for entry in out.iterdir():  # the staging folders of writers that were killed
            if entry.name.startswith(_STAGING) and not _alive(entry.name[len(_STAGING):].split("-")[0]):
                Checkpoint._discard(entry)
    run = f"{os.getpid()}-{secrets.token_hex(4)}"
    stage = out / f"{_STAGING}{run}"
    try:
        _fs("mkdir", stage)
    except OSError as error:
        raise _write_error(stage, error) from None
    try:
        yield stage
        files = {}
        for name in names:
            if stage.joinpath(name).is_symlink() or not stage.joinpath(name).is_file():
                raise LandformError(f"the report for {out} lacks {name}; its previous files, if any, are kept")
            files[name] = _sync_and_hash(stage / name)
        manifest = {"run": run, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files}
        _fs("write", stage / REPORT_MANIFEST, json_bytes(manifest))
        _fs("fsync_dir", stage)
        with _report_lock(out):
            _settle(out)
            _fs("replace", stage, out / _REPORT_COMMIT)  # the commit
            _fs("fsync_dir", out)
            _settle(out)
    except OSError as error:
        raise LandformError(f"cannot write the report in {out}: {error.strerror or error}; its previous files, "
                            "if any, are kept") from None
    finally:
        if stage.exists() or stage.is_symlink():
            Checkpoint._discard(stage)
