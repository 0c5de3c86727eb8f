"""Checkpoints: a resumable state kept as one atomic unit of several files, and the weights a user names.

A round directory ``ckpt-000012/`` is written complete (with a manifest of sizes and SHA-256 hashes), then
the one-line pointer file ``LATEST`` is replaced atomically; older round directories and stale temporary
files are removed afterwards. A kill at any point leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping as MappingType
from pathlib import Path

from landform.errors import LandformError
from landform.io import fs
from landform.io.fs import discard, file_size, json_bytes, make_dirs, read_bytes, read_json, write_bytes, write_error

POINTER = "LATEST"
MANIFEST = "manifest.json"
_ROUND_DIR = re.compile(r"^ckpt-(\d{6,})(?:-(\d+))?$")


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
        make_dirs(self.directory)
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
            fs.change("mkdir", tmp)
            for key, data in files.items():
                fs.change("write", tmp / key, data)
            fs.change("write", tmp / MANIFEST, json_bytes(manifest))
            fs.change("fsync_dir", tmp)
            fs.change("replace", tmp, final)
            fs.change("fsync_dir", self.directory)
        except OSError as error:
            discard(tmp)
            discard(final)
            raise write_error(final, error) from None
        except BaseException:
            discard(tmp)
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
                discard(entry)


def resolve_weights(path: str | Path, stem: str = "mapping") -> Path:
    """``stem.safetensors`` of what a user names: a checkpoint directory (its committed round), a plain
    directory, or a path with or without the ``.safetensors`` suffix."""
    path = Path(path)
    if path.is_dir():
        checkpoint = Checkpoint(path)
        folder = checkpoint.current() if checkpoint.exists() else path
        return folder / f"{stem}.safetensors"
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")
