"""What the command line checks before any computation, and how it fails.

Every bad input, failed write or error in a user's model ends the ``landform`` command with one line on
stderr (``landform: error: ...``) and exit status 2, before any computation where it can be known
before. Ctrl-C (SIGINT) and SIGTERM stop the same clean way, with exit status 130 and 143: files are only
ever replaced whole (``landform.io``), so whatever was written before the signal is intact.
Set ``LANDFORM_DEBUG=1`` to get the traceback of an unexpected error instead.

This module imports torch only inside functions, so the command starts (and can be interrupted) cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from landform.errors import LandformError, first_line

# Bounds on the command line's sizes: far above any sensible run, far below what exhausts memory.
LIMITS: dict[str, tuple[int, int]] = {
    "count": (1, 100_000), "trajectories": (1, 100_000), "steps": (1, 100_000), "rounds": (1, 1_000_000),
    "batch_size": (1, 1_000_000), "buffer_rounds": (1, 1_000), "hidden": (1, 65_536), "z_dim": (1, 1 << 20),
    "threads": (1, 1024), "seed": (0, 2**63 - 1),
}
MAX_CELLS = 50_000_000  # (steps + 1) x count losses, or buffered samples: 200 MB of float32
EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM = 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it stops on the same clean path as Ctrl-C."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (``landform: error: ...``) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        print(f"landform: error: {command}{_one_line(message)} (see --help)", file=sys.stderr)
        sys.exit(EXIT_ERROR)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def run(build_parser: Callable[[], argparse.ArgumentParser], handlers: dict[str, Callable],
        argv: list[str] | None = None, prepare: Callable[[argparse.Namespace], None] | None = None) -> int:
    """Parse, check and run one command; returns the exit status (0, 2, 130 or 143). ``prepare(args)``, if
    given, runs first, before torch is imported (to fill in defaults, or refuse options that do nothing)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    args = None
    try:
        try:
            args = build_parser().parse_args(argv)
            return _dispatch(args, handlers, prepare)
        except Terminated:
            _close_progress_bars()
            print(f"landform: terminated (SIGTERM); {_kept(args)}", file=sys.stderr)
            return EXIT_SIGTERM
        except KeyboardInterrupt:
            _close_progress_bars()
            print(f"landform: interrupted; {_kept(args)}", file=sys.stderr)
            return EXIT_SIGINT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _kept(args: argparse.Namespace | None) -> str:
    if args is not None and getattr(args, "command", None) == "fit":
        # Read the pointer without landform.io: torch may be half-imported if the signal came during start-up.
        try:
            name = (Path(args.out) / "LATEST").read_text()[:64].strip()
        except (OSError, UnicodeDecodeError):
            name = ""
        match = re.match(r"^ckpt-(\d+)", name)
        if match:
            return f"the checkpoint in {args.out} (round {int(match.group(1))}) is intact: continue with --resume"
        return f"no round was completed, so no checkpoint was written to {args.out}"
    return "files already written are whole; the one being written was not put in place"


def _close_progress_bars() -> None:
    """End any progress bar an exception left open, so the message starts on a line of its own."""
    tqdm = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or []):
        with contextlib.suppress(Exception):
            bar.close()


def _machine_load(load: float | None = None, cores: int | None = None) -> tuple[float, int] | None:
    """The one-minute load average and the core count (each as given, else read), or None where the system
    reports no load average."""
    try:
        load = os.getloadavg()[0] if load is None else load
    except OSError:
        return None
    return load, cores or os.cpu_count() or 1


def threads_beside_busy_cores(threads: int, load: float | None = None, cores: int | None = None) -> int | None:
    """The thread count for the cores other jobs leave idle (load average) where torch's ``threads`` would share
    busy ones, else None: every parallel operation then waits for its slowest thread (beside one single-thread
    job on 2 cores, the README's one-minute fit ran 102-147 s with torch's two threads, 53 s with one; its
    learned steps got 1 s of training instead of 19)."""
    machine = _machine_load(load, cores)
    if machine is None:
        return None
    idle = machine[1] - machine[0]
    if threads <= 1 or idle >= threads - 0.5:
        return None
    return max(1, round(idle))


def busy_cores_note(threads: int, load: float | None = None, cores: int | None = None) -> str | None:
    """A one-line note where torch's ``threads`` would share cores that other jobs keep busy; None on an idle
    machine (``threads_beside_busy_cores``)."""
    machine = _machine_load(load, cores)
    fewer = None if machine is None else threads_beside_busy_cores(threads, *machine)
    if fewer is None:
        return None
    return (f"note: about {machine[0]:.1f} of {machine[1]} cores are busy; torch's {threads} threads would "
            f"wait on them, --threads {fewer} is faster beside other jobs")


def _choose_threads(args: argparse.Namespace, torch_threads: int) -> None:
    """``--threads`` where given. Without it, a fit under a time budget (already not reproducible to the bit: it
    stops on the clock) takes the cores other jobs leave idle and says so in its output; any other command
    keeps torch's count (a seed reproduces it), with a note on a terminal where fewer threads would be faster."""
    import torch

    if getattr(args, "threads", None) is not None:
        torch.set_num_threads(args.threads)
        return
    if not hasattr(args, "threads"):
        return
    budgeted = args.command == "fit" and getattr(args, "seconds", None) is not None and math.isfinite(args.seconds)
    machine = _machine_load() if budgeted else None
    fewer = None if machine is None else threads_beside_busy_cores(torch_threads, *machine)
    if fewer is not None:
        torch.set_num_threads(fewer)
        print(f"fit: other jobs keep about {machine[0]:.1f} of {machine[1]} cores busy; torch runs {fewer} "
              f"thread(s) instead of {torch_threads} (--threads chooses)")
    elif sys.stderr.isatty() and (note := busy_cores_note(torch_threads)):
        print(note, file=sys.stderr)  # on a terminal only, like the progress bars: logs keep one line per error


def _fail(message: str) -> int:
    _close_progress_bars()
    print(f"landform: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


@contextlib.contextmanager
def _signals_held():
    """Hold Ctrl-C and SIGTERM while torch is imported and raise them after: raised inside torch's C++
    start-up code (a Python call made from pybind11) they abort the process instead of stopping it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    heard: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda signum, frame: heard.append(signum)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if heard:
        raise Terminated() if heard[0] == signal.SIGTERM else KeyboardInterrupt()


def _dispatch(args: argparse.Namespace, handlers: dict[str, Callable],
              prepare: Callable[[argparse.Namespace], None] | None = None) -> int:
    try:
        if prepare is not None:
            prepare(args)
        check_args(args)  # before torch is imported: a bad number is refused at once
        with _signals_held():
            # numpy first, on its own: torch imports it inside a try/except, so a Ctrl-C that lands in
            # numpy's import would be swallowed there and surface later as "cannot load module more than once".
            import numpy  # noqa: F401
            import torch

        check_choices(args)
        _choose_threads(args, torch.get_num_threads())
        if hasattr(args, "device"):
            args.device = resolve_device(args.device)
        handlers[args.command](args)
    except LandformError as error:
        return _fail(str(error))
    except MemoryError:
        return _fail(OUT_OF_MEMORY)
    except OSError as error:
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        return _fail(f"{error.strerror or first_line(error)}{':' if where else ''}{where}")
    except Exception as error:
        if os.environ.get("LANDFORM_DEBUG"):
            raise
        if type(error).__name__ == "OutOfMemoryError" or (isinstance(error, RuntimeError)
                                                          and "allocate" in str(error)):
            return _fail(OUT_OF_MEMORY)
        return _fail(f"{type(error).__name__}: {first_line(error)} (set LANDFORM_DEBUG=1 for the traceback)")
    return 0


OUT_OF_MEMORY = "out of memory; use a smaller --count, --trajectories, --steps or --hidden"


# ------------------------------------------------------------------------------------------- arguments

def check_args(args: argparse.Namespace) -> None:
    """Sizes, rates and choices of a parsed command line, checked before anything is loaded or computed."""
    for name, (low, high) in LIMITS.items():
        value = getattr(args, name, None)
        if value is not None and not low <= value <= high:
            raise LandformError(f"--{name.replace('_', '-')} must be an integer from {low} to {high}, got {value}")
    for name in ("lr", "lr_z"):
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise LandformError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")
    decay = getattr(args, "weight_decay", None)
    if decay is not None and not (math.isfinite(decay) and decay >= 0):
        raise LandformError(f"--weight-decay must be a finite number >= 0, got {decay}")
    init = getattr(args, "init", None)
    if init is not None and init not in ("zeros", "gaussian"):
        raise LandformError(f"unknown --init {init!r}; use zeros or gaussian")
    if args.command == "fit":
        cells = args.trajectories * (args.steps + 1) * args.buffer_rounds
        if cells > MAX_CELLS:
            raise LandformError(f"--trajectories x (--steps + 1) x --buffer-rounds = {cells} is more than the "
                                f"{MAX_CELLS} buffered samples allowed")
    elif args.command in ("invert", "compare") and not getattr(args, "task", None):
        cells = args.count * (args.steps + 1)
        if cells > MAX_CELLS:
            raise LandformError(f"--count x (--steps + 1) = {cells} is more than the {MAX_CELLS} allowed")


def check_choices(args: argparse.Namespace) -> None:
    """The optimizer and fit method named, checked against the library's own lists (this imports torch)."""
    if getattr(args, "optimizer", None) is not None:
        from landform.inference import resolve_optimizer

        resolve_optimizer(args.optimizer)
    if args.command == "fit":
        from landform.fitting import METHODS

        if args.method not in METHODS:
            raise LandformError(f"unknown --method {args.method!r}; use one of {', '.join(METHODS)}")


def resolve_device(text: str | None) -> str:
    """The torch device a ``--device`` names (default cpu), refused in one line if unknown or absent here."""
    import torch

    if text is None:
        return "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise LandformError(f"unknown --device {text!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LandformError(f"--device {text}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise LandformError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return str(device)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise LandformError(f"--device {text}: MPS is not available on this machine; use --device cpu")
        return str(device)
    raise LandformError(f"unsupported --device {text!r}; use cpu, cuda or cuda:N")


def prepare_out(text: str | Path) -> Path:
    """``--out`` as a folder that exists and can be written, checked before any computation."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise LandformError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".landform-write-test-"):
            pass
    except OSError as error:
        raise LandformError(f"--out {out} cannot be written: {error.strerror or error}") from None
    return out


def prepare_fit_out(text: str | Path, resume: bool) -> Path:
    """``fit --out``: writable, never holding a Θ or a fit that would be overwritten, and, with ``--resume``,
    a checkpoint that is consistent (verified now, not after the first round)."""
    from landform.io import Checkpoint

    out = prepare_out(text)
    store = Checkpoint(out)
    holds_fit = store.exists() or (out / "state.json").exists()
    holds_theta = any((out / name).exists() for name in ("mapping.safetensors", "mapping.json"))
    if not resume and (holds_fit or holds_theta):
        what = "a fit" if holds_fit else "a Θ"
        raise LandformError(f"{out} already holds {what}; pass --resume to continue it or choose another --out")
    if resume and holds_theta and not holds_fit:
        raise LandformError(f"{out} holds a Θ but no checkpoint to resume; choose another --out")
    if resume and store.exists():
        store.current()
    return out


# --------------------------------------------------------------------------------------------- tensors

def load_tensor(path: str | Path, what: str = "observations"):
    """A numeric tensor from ``.npy`` or ``.safetensors`` (its only tensor, or the one named y), read with a
    size cap from a regular file; pickles, strings, structured arrays and 0-d arrays are refused."""
    import io

    import numpy as np
    import torch

    from landform.io import MAX_TENSOR_FILE_BYTES, load_tensors, read_bytes

    file = Path(path)
    if file.suffix == ".npy":
        data = read_bytes(file, MAX_TENSOR_FILE_BYTES, f"{what} file")
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError, OSError, TypeError, UnicodeError) as error:
            raise LandformError(f"cannot read {file}: {first_line(error)}") from None
        if not isinstance(array, np.ndarray) or array.dtype.names is not None or array.dtype.kind not in "biuf":
            kind = getattr(array, "dtype", type(array).__name__)
            raise LandformError(f"{file} holds {kind} values; {what} must be numbers")
        if array.ndim == 0:
            raise LandformError(f"{file} holds a single number (a 0-d array); {what} need a batch dimension")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    elif file.suffix == ".safetensors":
        tensors = load_tensors(file, limit=MAX_TENSOR_FILE_BYTES, what=f"{what} file")
        if len(tensors) != 1 and "y" not in tensors:
            raise LandformError(f"{file} holds {len(tensors)} tensors; name the {what} 'y'")
        tensor = tensors["y"] if "y" in tensors else next(iter(tensors.values()))
    else:
        from landform.io import file_size

        file_size(file, f"{what} file")
        raise LandformError(f"unsupported file type {file.suffix!r} for {file}; use .npy or .safetensors")
    return tensor


def check_observations(y, source: str = "observations"):
    """A non-empty, finite float batch of at most ``LIMITS['count']`` observations."""
    import torch

    if not isinstance(y, torch.Tensor):
        raise LandformError(f"{source} must be a tensor, got {type(y).__name__}")
    if y.dim() == 0 or y.shape[0] == 0 or y.numel() == 0:
        raise LandformError(f"{source} are empty (shape {tuple(y.shape)}); give at least one observation")
    if y.shape[0] > LIMITS["count"][1]:
        raise LandformError(f"{source} hold {y.shape[0]} observations; at most {LIMITS['count'][1]} at once")
    y = y.float()
    if not torch.isfinite(y).all():
        raise LandformError(f"{source} hold non-finite values (NaN or Inf)")
    return y


def check_mask(mask, y):
    """A mask of observed entries: booleans (or 0/1) that broadcast to the observations' shape."""
    import torch

    if mask.dtype != torch.bool:
        if not mask.is_floating_point() and mask.dtype not in (torch.uint8, torch.int8, torch.int16, torch.int32,
                                                                torch.int64):
            raise LandformError(f"the mask must hold booleans or 0/1, got {mask.dtype}")
        if not ((mask == 0) | (mask == 1)).all():
            raise LandformError("the mask must hold booleans or 0/1 only")
    try:
        shape = torch.broadcast_shapes(tuple(mask.shape), tuple(y.shape))
    except RuntimeError:
        shape = None
    if shape != tuple(y.shape):
        raise LandformError(f"the mask has shape {tuple(mask.shape)}, which does not broadcast to the "
                            f"observations' shape {tuple(y.shape)}")
    return mask.bool()


def check_finite_losses(losses, what: str = "inversion") -> None:
    """Refuse a result whose loss turned NaN or Inf (nothing is written then)."""
    import torch

    bad = ~torch.isfinite(losses)
    if bad.any():
        step = int(bad.any(dim=-1).nonzero()[0, 0]) if losses.dim() > 1 else int(bad.nonzero()[0, 0])
        raise LandformError(f"the {what} loss became non-finite (NaN or Inf) at step {step}; nothing was written "
                            "(lower --lr, or check the forward model)")


def load_problem(spec: str, device: str | None = None, autocast: str | None = None):
    """``landform.problem.load_problem`` with an error in the user's factory turned into one line; with
    ``autocast`` (bf16, fp16), F is moved to ``device`` and run under ``torch.autocast``."""
    import torch

    from landform.accel import autocast_forward
    from landform.problem import load_problem as _load

    try:
        problem = _load(spec)
    except (LandformError, KeyboardInterrupt):
        raise
    except Exception as error:
        raise LandformError(f"the --problem factory {spec} failed: {type(error).__name__}: "
                            f"{first_line(error)}") from None
    if autocast is not None:
        forward = problem.forward.to(device) if isinstance(problem.forward, torch.nn.Module) else problem.forward
        problem.forward = autocast_forward(forward, device or "cpu", autocast)
    return problem
