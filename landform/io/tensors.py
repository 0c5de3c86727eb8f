"""Tensor files: safetensors in memory and on disk, X.safetensors + X.json pairs, optimizer and module states.

A tensor file's header (names, dtypes, shapes) is checked before any tensor is materialized, and every read
is bounded by a size cap, so a corrupt, mismatched or oversized file is refused in one line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping as MappingType
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from landform.errors import LandformError, first_line
from landform.io.fs import file_size, parse_json, read_bytes, read_json, write_bytes, write_json

MAX_TENSOR_FILE_BYTES = 16 * 2**30
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
_NUMERIC_DTYPES = _FLOAT_DTYPES | {"BOOL", "U8", "I8", "I16", "I32", "I64", "U16", "U32", "U64"}
_SHA_KEY = "weights_sha256"  # written into X.json by save_pair, checked and removed by load_pair


# ----------------------------------------------------------------------------------------------- writes

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


def pair_committed(weights_path: str | Path) -> bool:
    """Whether a pair ``save_pair`` wrote is whole: its config, written after its weights, is there (a save
    killed between the two leaves weights alone, to be written again rather than read)."""
    weights_path = Path(weights_path)
    return weights_path.exists() and weights_path.with_suffix(".json").exists()


# ------------------------------------------------------------------------------------------------ reads

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
    """The SHA-256 of a regular file of at most ``limit`` bytes, as hex."""
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
