"""Fault injection (issue 12): interruptions and failures at every point of a checkpoint write, real
SIGTERM/SIGKILL of the console script, a full disk, and every bad input of the issue through the ``landform``
command (in a process of its own: the console script, or a child forked after torch's import, see
``THROUGH_THE_CONSOLE_SCRIPT``). Each must give one line and exit status 2 (130/143 for signals), leave the previous
checkpoint or output intact, and a resume must equal the uninterrupted run bitwise or refuse in one line."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import forked_cli
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import landform.io.fs as lfs
from landform import LandformError, Mapping, fit
from landform.fitting import checkpoint_rounds
from landform.io import Checkpoint, json_safe

LANDFORM = str(Path(sys.executable).with_name("landform"))
SMALL = {"trajectories": 16, "steps": 4, "lr": 1e-3, "batch_size": 16, "seed": 3, "progress": False}
CLI_SMALL = ["--trajectories", "16", "--recipe", "paper", "--steps", "4", "--hidden", "16", "--batch-size", "16",
             "--threads", "1"]  # the first two are left out where a case gives its own --trajectories

PROBE = '''
"""Problems for the fault tests, loaded by the landform command as --problem probe:NAME."""
import errno, os, time

import torch

import landform.io.fs as lfs
from landform.synthetic import synthetic_problem


def _patch_writer():
    mode, log = os.environ.get("PROBE_MODE", ""), os.environ.get("PROBE_LOG")
    delay = float(os.environ.get("PROBE_DELAY", "0"))
    real = lfs.change

    def fs(op, *args):
        if log:
            with open(log, "a") as handle:
                handle.write(f"{op} {args[0]}\\n")
        if mode == "enospc" and op == "write":
            raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))
        if delay:
            time.sleep(delay)
        return real(op, *args)

    lfs.change = fs


def problem():
    _patch_writer()
    return synthetic_problem()


def raising_factory():
    raise ValueError("the factory exploded")


def raising_forward():
    p = synthetic_problem()

    def forward(x):
        raise TypeError("the forward model exploded")

    p.forward = forward
    return p


def nan_midway():
    p = synthetic_problem()
    inner, calls = p.forward, {"n": 0}

    def forward(x):
        calls["n"] += 1
        y = inner(x)
        return y * float("nan") if calls["n"] > 5 else y

    p.forward = forward
    return p


def marker():
    open(os.environ["PROBE_MARKER"], "w").close()
    return synthetic_problem()
'''


def _fresh(seed=0):
    torch.manual_seed(seed)
    return Mapping(16, (16,), hidden=16)


def _same(a: Mapping, b: Mapping) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (or the file itself) and its bytes: to check nothing was changed."""
    folder = Path(folder)
    if folder.is_file():
        return {"": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _Injector:
    """Replaces landform.io.fs.change: counts every file-system change and fails at the ``at``-th one, before it
    happens or (``partial``) after writing half of a file."""

    def __init__(self, at: int | None, error: BaseException | None = None, partial: bool = False):
        self.at, self.error, self.partial, self.calls = at, error, partial, 0
        self.real = lfs.change

    def __call__(self, op, *args):
        self.calls += 1
        if self.calls == self.at:
            if self.partial and op == "write":
                path, data = args
                Path(path).write_bytes(data[: len(data) // 2])
            raise self.error
        return self.real(op, *args)


# ------------------------------------------------------------------------------- checkpoint write faults

def test_a_fault_at_every_point_of_the_checkpoint_writes_resumes_exactly(problem, tmp_path, monkeypatch):
    rounds = 3
    reference = _fresh()
    counter = _Injector(None)
    with monkeypatch.context() as patch:
        patch.setattr(lfs, "change", counter)
        fit(reference, problem.forward, problem.loss, problem.train_observations, rounds=rounds,
            checkpoint_dir=tmp_path / "ref", **SMALL)
    total = counter.calls
    assert total >= rounds * 8  # mkdir, 4 files, manifest, renames, fsyncs and the pointer, every round

    faults = [("interrupt", KeyboardInterrupt(), False),
              ("disk full, half-written file", OSError(errno.ENOSPC, "No space left on device"), True)]
    for at in range(1, total + 1):
        for name, error, partial in faults:
            folder = tmp_path / f"{at}-{name[:4]}"
            injector = _Injector(at, error, partial)
            with monkeypatch.context() as patch:
                patch.setattr(lfs, "change", injector)
                try:
                    fit(_fresh(), problem.forward, problem.loss, problem.train_observations, rounds=rounds,
                        checkpoint_dir=folder, **SMALL)
                except (KeyboardInterrupt, LandformError) as raised:
                    assert isinstance(error, KeyboardInterrupt) or "No space left" in str(raised)
            committed = Checkpoint(folder).step()  # never raises: the committed state is always whole
            assert committed is None or 0 < committed <= rounds
            resumed = _fresh() if committed is None else _fresh(seed=99)  # from the checkpoint, if any
            result = fit(resumed, problem.forward, problem.loss, problem.train_observations, rounds=rounds,
                         checkpoint_dir=folder, resume=True, **SMALL)
            assert _same(resumed, reference), (at, name)
            assert [h.round for h in result.history] == list(range(1, rounds + 1))
            assert sorted(p.name for p in folder.iterdir()) == ["LATEST", f"ckpt-{rounds:06d}"], (at, name)


def test_resume_with_a_multi_round_buffer_and_global_randomness_is_exact(problem, tmp_path):
    """The replay buffer (buffer_rounds > 1) and torch's global random state are part of the checkpoint: a
    forward model that draws from the global generator makes any missing state visible."""
    def noisy(x):
        return problem.forward(x) + 1e-3 * torch.randn(x.shape[0], 32)

    settings = {**SMALL, "buffer_rounds": 3}
    whole = _fresh()
    fit(whole, noisy, problem.loss, problem.train_observations, rounds=5, **settings)
    part = _fresh()
    fit(part, noisy, problem.loss, problem.train_observations, rounds=2, checkpoint_dir=tmp_path, **settings)
    torch.manual_seed(12345)  # the caller's global state must not leak in
    resumed = _fresh(seed=7)
    fit(resumed, noisy, problem.loss, problem.train_observations, rounds=5, checkpoint_dir=tmp_path, resume=True,
        **settings)
    assert _same(resumed, whole)


def _two_checkpoints(problem, tmp_path):
    early, late = tmp_path / "early", tmp_path / "late"
    fit(_fresh(), problem.forward, problem.loss, problem.train_observations, rounds=2, checkpoint_dir=early, **SMALL)
    fit(_fresh(), problem.forward, problem.loss, problem.train_observations, rounds=3, checkpoint_dir=late, **SMALL)
    return Checkpoint(early).current(), Checkpoint(late).current()


def _rewrite_manifest(folder: Path) -> None:
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "manifest.json"}
    manifest = {"step": 3, "files": {k: {"bytes": len(v), "sha256": hashlib.sha256(v).hexdigest()}
                                     for k, v in files.items()}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


TAMPERING = {
    "weights changed": (lambda e, c: _flip_byte(c / "mapping.safetensors"), "inconsistent checkpoint"),
    "state truncated": (lambda e, c: (c / "state.safetensors").write_bytes(
        (c / "state.safetensors").read_bytes()[:100]), "inconsistent checkpoint"),
    "manifest missing": (lambda e, c: (c / "manifest.json").unlink(), "checkpoint manifest not found"),
    "pointer to nothing": (lambda e, c: (c.parent / "LATEST").write_text("ckpt-000009\n"), "does not exist"),
    "pointer garbage": (lambda e, c: (c.parent / "LATEST").write_text("../../etc\n"), "corrupted checkpoint pointer"),
    # Round 2's Θ beside round 3's optimizer, random states and round count, with a manifest that matches:
    "rounds mixed": (lambda e, c: (shutil.copy(e / "mapping.safetensors", c), shutil.copy(e / "mapping.json", c),
                                   _rewrite_manifest(c)), "disagree on the rounds"),
    "old four-file layout": (lambda e, c: (shutil.rmtree(c), (c.parent / "LATEST").unlink(),
                                           [shutil.copy(p, c.parent) for p in e.iterdir()]), "older landform"),
}


@pytest.mark.parametrize("damage", sorted(TAMPERING))
def test_resume_refuses_an_inconsistent_checkpoint_in_one_line(damage, problem, tmp_path):
    early, current = _two_checkpoints(problem, tmp_path)
    change, message = TAMPERING[damage]
    change(early, current)
    with pytest.raises(LandformError, match=message) as raised:
        fit(_fresh(), problem.forward, problem.loss, problem.train_observations, rounds=4,
            checkpoint_dir=current.parent, resume=True, **SMALL)
    assert "\n" not in str(raised.value)


def test_stale_temporaries_are_cleaned_and_other_files_kept(problem, tmp_path):
    fit(_fresh(), problem.forward, problem.loss, problem.train_observations, rounds=2, checkpoint_dir=tmp_path,
        **SMALL)
    (tmp_path / "ckpt-000003.tmp").mkdir()
    (tmp_path / "ckpt-000003.tmp" / "mapping.safetensors").write_bytes(b"half")
    (tmp_path / "LATEST.tmp").write_text("ckpt-000003\n")
    (tmp_path / "ckpt-000001").mkdir()  # renamed but never committed
    (tmp_path / "pool.safetensors").write_bytes(b"a task's own file")
    fit(_fresh(), problem.forward, problem.loss, problem.train_observations, rounds=3, checkpoint_dir=tmp_path,
        resume=True, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "ckpt-000003", "pool.safetensors"]


def test_a_pair_whose_halves_come_from_different_saves_is_refused(tmp_path, monkeypatch):
    first, second = Mapping(2, 2, hidden=4), Mapping(2, 2, hidden=4)
    first.save(tmp_path / "theta")
    before = _tree(tmp_path)
    with monkeypatch.context() as patch:  # disk full while writing the weights: the old pair stays
        patch.setattr(lfs, "change", _Injector(1, OSError(errno.ENOSPC, "No space left on device"), partial=True))
        with pytest.raises(LandformError, match="No space left"):
            second.save(tmp_path / "theta")
    assert _tree(tmp_path) == before
    assert _same(Mapping.load(tmp_path / "theta"), first)
    with monkeypatch.context() as patch:  # killed between the weights and their config
        patch.setattr(lfs, "change", _Injector(4, KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            second.save(tmp_path / "theta")
    with pytest.raises(LandformError, match="different saves"):
        Mapping.load(tmp_path / "theta")


def test_first_round_failure_names_no_checkpoint_that_does_not_exist(problem, tmp_path):
    def nan_loss(y_hat, y):
        return problem.loss(y_hat, y) * float("nan")

    with pytest.raises(LandformError, match="no checkpoint was written") as raised:
        fit(_fresh(), problem.forward, nan_loss, problem.train_observations, rounds=2,
            checkpoint_dir=tmp_path / "new", **SMALL)
    assert "last good checkpoint" not in str(raised.value)


def test_strict_json_has_no_bare_nan(tmp_path):
    from landform.report import write_json

    path = write_json(tmp_path / "s.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}})
    assert json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(name)) == \
        {"a": None, "b": [None, 1.5], "c": {"d": None}}
    assert json_safe(torch.tensor(float("nan"))) is None


# ------------------------------------------------------------------------------- the real console script

@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.py").write_text(PROBE)
    return folder


def _env(probe: Path, **extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(probe), **extra}


def _run(argv, env, cwd=None, timeout=180):
    return subprocess.run([LANDFORM, *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def reference_fit(probe, tmp_path_factory):
    """An uninterrupted 4-round fit through the command (a forked child), and a 2-round one to resume from."""
    root = tmp_path_factory.mktemp("reference")
    for rounds in (4, 2):
        run = forked_cli.run(["fit", "--problem", "probe:problem", "--out", str(root / f"r{rounds}"), "--rounds",
                              str(rounds), *CLI_SMALL], _env(probe))
        assert run.returncode == 0, run.stderr
    return root


def _wait_for(log: Path, needle: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text():
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError(f"{needle} never written to {log}")


def _hear_ctrl_c() -> None:
    """In the child, before exec: SIGINT back to its default. A suite started in the background by a
    non-interactive shell (`cmd &`) inherits SIGINT ignored, and Python keeps an inherited SIG_IGN, so the
    Ctrl-C these tests send would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig, needle, status", [
    (signal.SIGTERM, "ckpt-000002.tmp/state.safetensors", 143),  # while writing round 2's files
    (signal.SIGKILL, "LATEST.tmp", -9),                               # round 1 renamed, pointer not yet switched
    (signal.SIGINT, "ckpt-000003.tmp/mapping.json", 130),             # Ctrl-C while writing round 3
])
def test_a_real_signal_during_a_checkpoint_write_then_resume_equals_the_uninterrupted_run(
        sig, needle, status, probe, reference_fit, tmp_path):
    out, log = tmp_path / "run", tmp_path / "ops.log"
    argv = ["fit", "--problem", "probe:problem", "--out", str(out), "--rounds", "4", *CLI_SMALL]
    process = subprocess.Popen([LANDFORM, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_env(probe, PROBE_LOG=str(log), PROBE_DELAY="0.15"), preexec_fn=_hear_ctrl_c)
    try:
        _wait_for(log, needle, process)
        process.send_signal(sig)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == status, err
    assert "Traceback" not in err
    if sig != signal.SIGKILL:
        last = err.strip().splitlines()[-1]
        assert last.startswith("landform: ") and "is intact: continue with --resume" in last, last
    run = _run([*argv, "--resume"], _env(probe))
    assert run.returncode == 0, run.stderr
    assert _same(Mapping.load(out), Mapping.load(reference_fit / "r4"))
    assert checkpoint_rounds(out) == 4
    assert sorted(p.name for p in out.iterdir()) == ["LATEST", "ckpt-000004"]


def test_interrupting_the_start_up_prints_one_line(tmp_path):
    """Ctrl-C while the command is still importing torch: no traceback and no abort, one line, exit 130."""
    for delay in (0.3, 0.8, 1.6):  # before, in and after the import of torch on a slow machine
        process = subprocess.Popen([LANDFORM, "fit", "--recipe", "paper", "--out", str(tmp_path / "o"),
                                    "--rounds", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_hear_ctrl_c)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        assert "Traceback" not in err, err
        if process.returncode == 130:
            assert err.strip().splitlines()[-1].startswith("landform: interrupted")
        else:
            assert process.returncode in (0, -signal.SIGINT), err


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb, 60 bytes on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bad_files(probe, reference_fit, tmp_path_factory):
    """Every bad file of the issue, beside a good Θ (``theta``) and a good previous output (``previous``)."""
    root = tmp_path_factory.mktemp("bad")
    theta = reference_fit / "r2"
    good = Mapping.load(theta)
    config = Mapping.config_of(theta)
    state = {k: v.contiguous() for k, v in good.state_dict().items()}

    def mapping_dir(name, weights=None, config_text=None):
        folder = root / name
        folder.mkdir()
        save_file(weights if weights is not None else state, str(folder / "mapping.safetensors"))
        (folder / "mapping.json").write_text(config_text if config_text is not None else json.dumps(config))
        return folder

    mapping_dir("huge_hidden", config_text=json.dumps({**config, "hidden": 10**9}))
    big = Mapping(16, (16,), hidden=20)
    mapping_dir("hidden_20000", weights={k: v.contiguous() for k, v in big.state_dict().items()},
                config_text=json.dumps({**config, "hidden": 20000}))
    mapping_dir("missing_key", config_text=json.dumps({k: v for k, v in config.items() if k != "hidden"}))
    mapping_dir("wrong_types", config_text=json.dumps({**config, "hidden": "16", "additive": "no"}))
    mapping_dir("a_list", config_text=json.dumps([config]))
    mapping_dir("nan_weights", weights={**state, "net.0.bias": state["net.0.bias"] * float("nan")})
    mapping_dir("int_weights", weights={k: v.to(torch.int32) for k, v in state.items()})
    folder = mapping_dir("json_dev_zero")
    (folder / "mapping.json").unlink()
    (folder / "mapping.json").symlink_to("/dev/zero")
    folder = mapping_dir("fifo_weights")
    (folder / "mapping.safetensors").unlink()
    os.mkfifo(folder / "mapping.safetensors")

    y = np.random.default_rng(0).normal(size=(4, 32)).astype(np.float32)
    np.save(root / "good.npy", y)
    np.save(root / "nan.npy", np.where(np.arange(32) == 3, np.nan, y).astype(np.float32))
    np.save(root / "inf.npy", np.where(np.arange(32) == 3, np.inf, y).astype(np.float32))
    np.save(root / "empty.npy", np.zeros((0, 32), dtype=np.float32))
    np.save(root / "zero_d.npy", np.array(1.5, dtype=np.float32))
    np.save(root / "structured.npy", np.zeros(4, dtype=[("a", "f4"), ("b", "i4")]))
    np.save(root / "strings.npy", np.array(["a", "b"]))
    (root / "zero_byte.npy").write_bytes(b"")
    np.save(root / "mask_wrong.npy", np.ones(5, dtype=bool))
    (root / "bomb.png").write_bytes(_png_header(20000, 20000))
    (root / "a_file").write_text("not a folder")

    previous = root / "previous"
    previous.mkdir()
    (previous / "inversion.safetensors").write_bytes(b"the previous result")
    (previous / "summary.json").write_text("{}\n")
    return root


# (argv, expected text in the one line). OUT is a folder holding a previous output; CKPT a copy of a
# 2-round checkpoint (fit commands resume it, so the error asked for is the one that shows); F names a file.
BAD_INPUTS = {
    "invert --lr -0.1": (["invert", "--lr", "-0.1", "--out", "OUT"], "--lr must be a finite number > 0"),
    "invert --lr nan": (["invert", "--lr", "nan", "--out", "OUT"], "--lr must be a finite number > 0"),
    "invert --lr inf": (["invert", "--lr", "inf", "--out", "OUT"], "--lr must be a finite number > 0"),
    "fit --lr -0.1": (["fit", "--lr", "-0.1", "--out", "CKPT", "--resume"], "--lr must be a finite number > 0"),
    "fit --lr nan": (["fit", "--lr", "nan", "--out", "CKPT", "--resume"], "--lr must be a finite number > 0"),
    "fit --lr inf": (["fit", "--lr", "inf", "--out", "CKPT", "--resume"], "--lr must be a finite number > 0"),
    "fit --lr-z 0": (["fit", "--lr-z", "0", "--out", "CKPT", "--resume"], "--lr-z must be a finite number > 0"),
    "--device cuda without CUDA": (["invert", "--device", "cuda", "--out", "OUT"], "CUDA is not available"),
    "--device foo": (["invert", "--device", "foo", "--out", "OUT"], "unknown --device 'foo'"),
    "fit --device foo": (["fit", "--device", "foo", "--out", "CKPT", "--resume"], "unknown --device"),
    "mask of the wrong shape": (["invert", "--observations", "F/good.npy", "--mask", "F/mask_wrong.npy",
                                 "--out", "OUT"], "does not broadcast"),
    "--count -1": (["invert", "--count", "-1", "--out", "OUT"], "--count must be an integer from 1"),
    "--count 0": (["invert", "--count", "0", "--out", "OUT"], "--count must be an integer from 1"),
    "compare --count 0": (["compare", "--mapping", "CKPT", "--count", "0", "--out", "OUT"], "--count must be"),
    "--count 1e8": (["invert", "--count", "1e8", "--out", "OUT"], "invalid int value: '1e8'"),
    "--count 100000000": (["invert", "--count", "100000000", "--out", "OUT"], "--count must be an integer"),
    "--trajectories 1e8": (["fit", "--trajectories", "1e8", "--out", "CKPT"], "invalid int value"),
    "--trajectories 100000000": (["fit", "--trajectories", "100000000", "--out", "CKPT", "--resume"],
                                 "--trajectories must be an integer"),
    "--count x --steps too large": (["invert", "--count", "100000", "--steps", "100000", "--out", "OUT"],
                                    "more than the"),
    "0-byte .npy": (["invert", "--observations", "F/zero_byte.npy", "--out", "OUT"], "cannot read"),
    "0-d .npy": (["invert", "--observations", "F/zero_d.npy", "--out", "OUT"], "0-d array"),
    "structured .npy": (["invert", "--observations", "F/structured.npy", "--out", "OUT"], "must be numbers"),
    "string .npy": (["invert", "--observations", "F/strings.npy", "--out", "OUT"], "must be numbers"),
    "(0, d) observations": (["invert", "--observations", "F/empty.npy", "--out", "OUT"], "are empty"),
    "NaN observations": (["invert", "--observations", "F/nan.npy", "--out", "OUT"], "non-finite"),
    "Inf observations": (["invert", "--observations", "F/inf.npy", "--out", "OUT"], "non-finite"),
    "compare NaN observations": (["compare", "--mapping", "CKPT", "--observations", "F/nan.npy", "--out", "OUT"],
                                 "non-finite"),
    "NaN weights": (["invert", "--mapping", "F/nan_weights", "--out", "OUT"], "non-finite values"),
    "int32 weights": (["invert", "--mapping", "F/int_weights", "--out", "OUT"], "must be floating point"),
    "hidden 10^9": (["invert", "--mapping", "F/huge_hidden", "--out", "OUT"], "hidden must be an integer"),
    "hidden 20000 beside small weights": (["compare", "--mapping", "F/hidden_20000", "--out", "OUT"],
                                          "do not match their config"),
    "config linked to /dev/zero": (["invert", "--mapping", "F/json_dev_zero", "--out", "OUT"],
                                   "is not a regular file"),
    "FIFO as weights": (["invert", "--mapping", "F/fifo_weights", "--out", "OUT"], "is not a regular file"),
    "config without a key": (["invert", "--mapping", "F/missing_key", "--out", "OUT"], "lacks hidden"),
    "config of wrong types": (["invert", "--mapping", "F/wrong_types", "--out", "OUT"], "hidden must be"),
    "config that is a list": (["invert", "--mapping", "F/a_list", "--out", "OUT"], "expected a JSON object"),
    "factory raises (invert)": (["invert", "--problem", "probe:raising_factory", "--out", "OUT"],
                                "the factory exploded"),
    "factory raises (fit)": (["fit", "--problem", "probe:raising_factory", "--out", "CKPT", "--resume"],
                             "the factory exploded"),
    "factory raises (compare)": (["compare", "--problem", "probe:raising_factory", "--mapping", "CKPT", "--out",
                                  "OUT"], "the --problem factory probe:raising_factory failed: ValueError: the "
                                          "factory exploded"),
    "forward raises (invert)": (["invert", "--problem", "probe:raising_forward", "--out", "OUT"],
                                "the forward model exploded"),
    "forward raises (fit)": (["fit", "--problem", "probe:raising_forward", "--out", "CKPT", "--resume",
                              "--rounds", "3"], "the forward model exploded"),
    "forward turns NaN mid-way (invert)": (["invert", "--problem", "probe:nan_midway", "--out", "OUT"],
                                           "non-finite"),
    "disk full (fit)": (["fit", "--problem", "probe:problem", "--out", "CKPT", "--resume", "--rounds", "3"],
                        "No space left on device"),
    "disk full (invert)": (["invert", "--problem", "probe:problem", "--steps", "3", "--out", "OUT"],
                           "No space left on device"),
    "disk full (compare)": (["compare", "--problem", "probe:problem", "--mapping", "CKPT", "--steps", "3",
                             "--count", "4", "--out", "OUT"], "No space left on device"),
    "decompression bomb": (["invert", "--task", "images", "F/bomb.png", "--out", "OUT"], "DecompressionBomb"),
    "zoo show ../../README": (["zoo", "show", "../../README"], "invalid zoo entry name"),
    "--out is a file": (["invert", "--problem", "probe:marker", "--out", "F/a_file"], "is not a directory"),
    "--out under a file": (["fit", "--problem", "probe:marker", "--out", "F/a_file/sub"], "cannot be written"),
    "fit --out holding a fit": (["fit", "--out", "CKPT"], "already holds a fit"),
}


# These go through the real console script; the others through a child forked from a process that has
# imported torch once (tests/forked_cli.py: the same command, 3-5 s of start-up less each).
THROUGH_THE_CONSOLE_SCRIPT = {"invert --lr -0.1", "zoo show ../../README", "factory raises (fit)",
                              "disk full (invert)", "decompression bomb"}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_through_the_command_is_one_line_and_changes_nothing(case, probe, bad_files, reference_fit,
                                                                       tmp_path):
    if case == "--device cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv, message = BAD_INPUTS[case]
    out, checkpoint = tmp_path / "out", tmp_path / "ckpt"
    shutil.copytree(bad_files / "previous", out)
    shutil.copytree(reference_fit / "r2", checkpoint)
    argv = [a.replace("OUT", str(out)).replace("CKPT", str(checkpoint)).replace("F/", f"{bad_files}/")
            for a in argv]
    if argv[0] == "fit" and "--problem" not in argv:
        argv += ["--problem", "probe:problem"]
    if argv[0] == "fit":
        argv += CLI_SMALL if "--trajectories" not in argv else CLI_SMALL[2:]
    before = {"out": _tree(out), "ckpt": _tree(checkpoint), "file": _tree(bad_files / "a_file")}
    env = _env(probe, PROBE_MARKER=str(tmp_path / "marker"), PROBE_MODE="enospc" if "disk full" in case else "")
    run = (_run if case in THROUGH_THE_CONSOLE_SCRIPT else forked_cli.run)(argv, env, cwd=tmp_path)
    err = run.stderr.strip()
    assert run.returncode == 2, (run.returncode, err[-2000:])
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "landform: " in line]
    assert len(lines) == 1 and lines[0].startswith("landform: error: ") and err.endswith(lines[0]), err[-2000:]
    assert message in lines[0], lines[0]
    after = {"out": _tree(out), "ckpt": _tree(checkpoint), "file": _tree(bad_files / "a_file")}
    assert after["ckpt"] == before["ckpt"] and after["file"] == before["file"]
    assert {name: after["out"].get(name) for name in before["out"]} == before["out"]  # new files may appear
    assert not (tmp_path / "marker").exists() or "--out" not in case  # --out is checked before the problem loads
