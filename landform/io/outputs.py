"""Report sets: several result files in one output folder, replaced as one unit by one rename.

The caller writes the set into a staging folder; a manifest (run id, sizes, SHA-256) is added and the folder
renamed to ``.landform-commit``, which is the commit; its files are then moved over their targets, the
manifest last. A reader calls :func:`settle_outputs` first, so it sees the files of one run, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from landform.errors import LandformError
from landform.io import fs
from landform.io.fs import discard, json_bytes, make_dirs, read_json, write_error, writes_files
from landform.io.locks import commit_lock

REPORT_MANIFEST = ".landform-report.json"
_REPORT_LOCK = ".landform-report.lock"
_REPORT_COMMIT = ".landform-commit"
_STAGING = ".landform-staging-"


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
                    fs.change("replace", commit / name, out / name)
            fs.change("fsync_dir", out)
            fs.change("replace", manifest, out / REPORT_MANIFEST)
            fs.change("fsync_dir", out)
        fs.change("rmtree", commit)
    except OSError as error:
        raise LandformError(f"cannot complete the report committed in {commit}: {error.strerror or error}; "
                            "the next write to the folder will") from None


def settle_outputs(out: str | Path) -> dict[str, Any] | None:
    """The manifest of the report set in ``out`` (its run id and each file's size and SHA-256; None if no set
    was written), after completing a commit that a kill cut short: what a reader calls before trusting the
    report files (see :func:`atomic_outputs`)."""
    out = Path(out)
    if writes_files() and (out / _REPORT_COMMIT).is_dir():
        with commit_lock(out / _REPORT_LOCK):
            _settle(out)
    path = out / REPORT_MANIFEST
    return read_json(path, "report manifest") if path.exists() or path.is_symlink() else None


def _alive(pid: str) -> bool:
    """Whether the process ``pid`` may still run (so its staging folder is left alone)."""
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
    make_dirs(out)
    with commit_lock(out / _REPORT_LOCK):
        _settle(out)
        for entry in out.iterdir():  # the staging folders of writers that were killed
            if entry.name.startswith(_STAGING) and not _alive(entry.name[len(_STAGING):].split("-")[0]):
                discard(entry)
    run = f"{os.getpid()}-{secrets.token_hex(4)}"
    stage = out / f"{_STAGING}{run}"
    try:
        fs.change("mkdir", stage)
    except OSError as error:
        raise write_error(stage, error) from None
    try:
        yield stage
        files = {}
        for name in names:
            if stage.joinpath(name).is_symlink() or not stage.joinpath(name).is_file():
                raise LandformError(f"the report for {out} lacks {name}; its previous files, if any, are kept")
            files[name] = _sync_and_hash(stage / name)
        manifest = {"run": run, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files}
        fs.change("write", stage / REPORT_MANIFEST, json_bytes(manifest))
        fs.change("fsync_dir", stage)
        with commit_lock(out / _REPORT_LOCK):
            _settle(out)
            fs.change("replace", stage, out / _REPORT_COMMIT)  # the commit
            fs.change("fsync_dir", out)
            _settle(out)
    except OSError as error:
        raise LandformError(f"cannot write the report in {out}: {error.strerror or error}; its previous files, "
                            "if any, are kept") from None
    finally:
        if stage.exists() or stage.is_symlink():
            discard(stage)
