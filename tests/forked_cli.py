"""Run the ``landform`` command (or ``torchrun``'s launcher) in a process of its own without paying torch's
import for each run.

A forkserver imports numpy, torch, torchrun's launcher and ``landform.cli`` once; every run is a child forked
from it, with the isolation of the console script: its own environment, working directory, stdout, stderr and
exit status, and nothing it patches (a test problem that fakes a full disk) reaches the test process. On this
2-core machine a console-script start costs 3-5 s of importing; a forked child starts in a few milliseconds.
Start-up itself (the entry point, Ctrl-C during imports) stays tested through the real console script, and so
does the README's torchrun command.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CONTEXT: multiprocessing.context.ForkServerContext | None = None


def _context() -> multiprocessing.context.ForkServerContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["numpy", "torch", "torch.distributed.run", "landform.cli"])
    return _CONTEXT


def _child(argv: list[str], env: dict[str, str], cwd: str, out_path: str, err_path: str,
           program: str = "landform") -> None:
    """In the forked child: the console script's work (``landform``, or ``torchrun``'s launcher), with its
    streams sent to the two files."""
    for fd, path in ((1, out_path), (2, err_path)):
        handle = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (the child's whole life)
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path[:0] = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if program == "torchrun":
        from torch.distributed.run import main
    else:
        from landform.cli import main

    try:
        status = main(argv)
    except SystemExit as done:  # argparse's usage errors
        status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except Exception:  # torchrun's launcher raises when a worker failed (the console script exits 1)
        import traceback

        traceback.print_exc()
        status = 1
    status = status or 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run(argv: list[str], env: dict[str, str], cwd: str | Path | None = None,
        timeout: float = 180, program: str = "landform") -> subprocess.CompletedProcess:
    """``landform ARGV`` (or ``torchrun ARGV``: its launcher, whose workers are processes of their own as
    under the console script) in a forked child; the result as ``subprocess.run(..., capture_output=True,
    text=True)`` gives it."""
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        out.touch()
        err.touch()
        process = _context().Process(target=_child, args=(list(argv), dict(env), str(cwd or os.getcwd()),
                                                          str(out), str(err), program))
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired([program, *argv], timeout)
        return subprocess.CompletedProcess([program, *argv], process.exitcode, out.read_text(), err.read_text())
