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

Every change to the file system goes through ``landform.io.fs.change``, so tests can inject a failure at
every point (the one exception is a lock file, written in place through its locked descriptor: replacing it
would drop the lock).

Why one package: that one hook, the size caps and the header checks are shared by every reader and writer
here, the checkpoint included; kept together, "every read is bounded, every write atomic and through
``fs.change``" can be checked by reading one package. Its modules, by concern: ``fs`` (the hook, plain files
and JSON), ``tensors`` (safetensors files and pairs), ``checkpoint``, ``locks`` and ``outputs`` (report sets).
Everything public is importable from ``landform.io`` itself.
"""

from __future__ import annotations

from landform.io.checkpoint import MANIFEST, POINTER, Checkpoint, resolve_weights
from landform.io.fs import (
    MAX_JSON_BYTES,
    file_size,
    json_bytes,
    json_safe,
    parse_json,
    read_bytes,
    read_json,
    write_bytes,
    write_json,
    writes_files,
)
from landform.io.locks import LOCK, folder_lock
from landform.io.outputs import REPORT_MANIFEST, atomic_outputs, settle_outputs
from landform.io.tensors import (
    MAX_TENSOR_FILE_BYTES,
    bytes_header,
    check_header,
    load_module_state,
    load_optimizer_tensors,
    load_pair,
    load_tensors,
    optimizer_tensors,
    pair_committed,
    save_pair,
    sha256_file,
    tensor_bytes,
    tensor_header,
    tensors_from_bytes,
)

__all__ = [
    "LOCK",
    "MANIFEST",
    "MAX_JSON_BYTES",
    "MAX_TENSOR_FILE_BYTES",
    "POINTER",
    "REPORT_MANIFEST",
    "Checkpoint",
    "atomic_outputs",
    "bytes_header",
    "check_header",
    "file_size",
    "folder_lock",
    "json_bytes",
    "json_safe",
    "load_module_state",
    "load_optimizer_tensors",
    "load_pair",
    "load_tensors",
    "optimizer_tensors",
    "pair_committed",
    "parse_json",
    "read_bytes",
    "read_json",
    "resolve_weights",
    "save_pair",
    "settle_outputs",
    "sha256_file",
    "tensor_bytes",
    "tensor_header",
    "tensors_from_bytes",
    "write_bytes",
    "write_json",
    "writes_files",
]
