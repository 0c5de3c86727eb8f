"""One seam for every task (issue 11): the registry, a task defined here and run through the command line
with no change to cli.py, the options refused under --task, and the package's import rules."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from landform import tasks
from landform.cli import main
from landform.errors import LandformError
from landform.tasks import Task

PACKAGE = Path(tasks.__file__).resolve().parents[1]  # landform/
BUILTIN = {"images", "pose", "defense", "synthetic"}


# ------------------------------------------------------------------------------- a task defined here

def _tiny_problem():
    from landform import Problem

    weight = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))

    def forward(x):
        return torch.tanh(x @ weight.T)

    def draw(n, generator):
        return forward(torch.randn(n, 3, generator=generator) + 1.0)

    return Problem(forward, lambda y_hat, y: (y_hat - y).pow(2).mean(1), (3,), draw, draw, name="tiny")


def _compare(y: torch.Tensor, out: Path, *, steps: int, seed: int, device: str, progress: bool) -> dict:
    from landform import Mapping
    from landform.comparison import compare, default_methods
    from landform.report import write_json

    problem = _tiny_problem()
    mapping = Mapping(3, (3,), hidden=8)  # untrained: the seam is tested, not the method
    result = compare(problem, y, default_methods(problem, mapping, lrs=(0.1,)), steps=steps, seed=seed,
                     device=device, progress=progress, bootstrap=0)
    summary = {"test": result.summary, "steps": steps}
    write_json(Path(out) / "summary.json", summary)
    return summary


def tiny_demo(out, *, device="cpu", seed=0, progress=True) -> dict:
    y = _tiny_problem().test_observations(8, torch.Generator().manual_seed(seed))
    return _compare(y, out, steps=25, seed=seed, device=device, progress=progress)


def tiny_compare_inputs(inputs, out, *, device="cpu", seed=0, progress=True, steps=25) -> dict:
    """Observations from .npy files; ``steps`` is the only option it takes (read off this signature)."""
    if not inputs:
        raise LandformError("give .npy files of observations")
    y = torch.cat([torch.from_numpy(np.load(name)).float() for name in inputs])
    return _compare(y, out, steps=steps, seed=seed, device=device, progress=progress)


TRAINED: list[dict] = []


def tiny_trainer(*, device="cpu", seed=0, resume=True, progress=True, run_dir=None, zoo_dir=None) -> None:
    TRAINED.append({"run_dir": run_dir, "zoo_dir": zoo_dir, "resume": resume})


def tiny_old_trainer(*, device="cpu", seed=0, resume=True, progress=True) -> None:
    TRAINED.append({"old": True})


TINY = Task("tiny_test_task", "a task defined in a test module", demo=tiny_demo,
            compare_inputs=tiny_compare_inputs,
            trainers={"tiny-model": tiny_trainer, "tiny-old-model": tiny_old_trainer})
# The same task under another name, never registered here: found as --task package.module:attribute.
BY_SPEC = Task("tiny_spec_task", "the same, named by module", demo=tiny_demo, compare_inputs=tiny_compare_inputs)


@pytest.fixture
def tiny():
    tasks.register(TINY)
    TRAINED.clear()
    yield TINY
    tasks.unregister(TINY.name)
    tasks.unregister(BY_SPEC.name)


# ------------------------------------------------------------------------------------------ registry

def test_the_builtin_tasks_are_listed_without_importing_them():
    code = ("import sys; from landform import tasks; from landform.cli import build_parser; build_parser(); "
            "print(sorted(tasks.names())); print('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, torch_loaded = run.stdout.splitlines()
    assert set(eval(names)) >= BUILTIN and torch_loaded == "False"


def test_each_builtin_folder_registers_its_task_and_an_unknown_name_is_one_line(capsys):
    for name in BUILTIN - {"pose"}:  # pose loads its data on import; it is run by its own tests
        task = tasks.get(name)
        assert task.name == name and task.description and callable(task.function("demo"))
    with pytest.raises(LandformError, match="unknown task 'bogus'; use one of defense, images"):
        tasks.get("bogus")
    with pytest.raises(SystemExit) as exited:  # argparse's choice, in one line
        main(["demo", "bogus"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'bogus'" in err and len(err.splitlines()) == 1


def test_cli_names_no_task():
    source = (PACKAGE / "cli.py").read_text()
    for name in BUILTIN:
        assert f'"{name}"' not in source and f"'{name}'" not in source, name


# ------------------------------------------------------------------------- a new task, through the CLI

def test_demo_and_compare_of_a_task_registered_in_process(tiny, tmp_path, capsys):
    assert main(["demo", tiny.name, "--out", str(tmp_path / "report"), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"{tiny.name} / test" in printed and "speedup at 20" in printed
    assert json.loads((tmp_path / "report" / tiny.name / "summary.json").read_text())["steps"] == 25

    np.save(tmp_path / "y.npy", np.tanh(np.ones((3, 6), dtype=np.float32)))
    assert main(["compare", "--task", tiny.name, str(tmp_path / "y.npy"), "--steps", "7", "--out",
                 str(tmp_path / "cmp")]) == 0
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert summary["steps"] == 7 and summary["test"]["count"] == 3  # --steps reached the task as inversion steps
    # invert: the task has none, said in one line.
    assert main(["invert", "--task", tiny.name, str(tmp_path / "y.npy"), "--out", str(tmp_path / "inv")]) == 2
    assert "has no `invert`" in capsys.readouterr().err


def test_a_task_named_by_module_and_attribute(tiny, tmp_path):
    np.save(tmp_path / "y.npy", np.tanh(np.ones((2, 6), dtype=np.float32)))
    spec = f"{__name__}:BY_SPEC"
    assert main(["compare", "--task", spec, str(tmp_path / "y.npy"), "--steps", "3", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 3
    assert tasks.get(BY_SPEC.name) is BY_SPEC
    with pytest.raises(LandformError, match=r"not a landform\.tasks\.Task"):
        tasks.get(f"{__name__}:tiny_demo")


@pytest.mark.parametrize("argv, refused", [
    (["compare", "--task", "tiny_test_task", "--lr", "0.1"], "--lr"),
    (["compare", "--task", "tiny_test_task", "--mode", "pure", "--count", "4"], "--mode, --count"),
    (["compare", "--task", "tiny_test_task", "--optimizer", "sgd"], "--optimizer"),
    (["compare", "--task", "tiny_test_task", "--problem", "landform.synthetic:synthetic_problem"], "--problem"),
    (["compare", "--task", "images", "--mapping", "M"], "--mapping"),
    (["invert", "--task", "images", "--init", "gaussian", "--mask", "m.npy"], "--init, --mask"),
    (["invert", "--task", "images", "--observations", "y.npy"], "--observations"),
    (["invert", "--task", "images", "--autocast", "bf16"], "--autocast"),
    (["invert", "--task", "defense", "--steps", "3"], "--steps"),  # its steps are not inversion steps
    (["compare", "--task", "defense", "--steps", "3"], "--steps"),
])
def test_options_a_task_does_not_use_are_refused_in_one_line(tiny, argv, refused, tmp_path, capsys):
    assert main([*argv, "x.npy", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"does not use {refused} " in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was done


def test_inputs_without_a_task_are_refused(capsys, tmp_path):
    assert main(["compare", "a.npy", "--out", str(tmp_path)]) == 2
    assert "are for a task" in capsys.readouterr().err


def test_zoo_train_finds_the_trainer_in_the_registry_and_writes_to_the_runs_dir(tiny, tmp_path, monkeypatch,
                                                                                  capsys):
    from landform import zoo

    monkeypatch.setenv("LANDFORM_RUNS", str(tmp_path / "env-runs"))
    assert main(["zoo", "train", "tiny-model", "--restart"]) == 0
    assert TRAINED[-1] == {"run_dir": tmp_path / "env-runs" / "tiny-model", "zoo_dir": tmp_path / "env-runs" / "zoo",
                           "resume": False}
    assert main(["zoo", "train", "tiny-model", "--runs-dir", str(tmp_path / "r"), "--install"]) == 0
    assert TRAINED[-1]["run_dir"] == tmp_path / "r" / "tiny-model" and TRAINED[-1]["zoo_dir"] == zoo.ZOO_DIR
    # A trainer that cannot write elsewhere than the package runs only when asked to install.
    assert main(["zoo", "train", "tiny-old-model"]) == 2
    assert "pass --install" in capsys.readouterr().err
    assert main(["zoo", "train", "tiny-old-model", "--install"]) == 0 and TRAINED[-1] == {"old": True}
    with pytest.raises(LandformError, match="no trainer for 'no-such-model'"):
        tasks.find_trainer("no-such-model")


def test_the_runs_dir_default_is_per_user_and_the_paper_shares_it(tmp_path, monkeypatch):
    from landform.paper.tables import runs_root

    monkeypatch.delenv("LANDFORM_RUNS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert tasks.runs_dir() == tmp_path / "cache" / "landform" / "runs"
    assert runs_root() == tasks.runs_dir() / "paper"
    monkeypatch.setenv("LANDFORM_RUNS", str(tmp_path / "runs"))
    assert runs_root() == tmp_path / "runs" / "paper" and tasks.runs_dir("elsewhere") == Path("elsewhere")
    assert PACKAGE not in tasks.runs_dir().parents


# ------------------------------------------------------------------------------------- import rules

def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(every landform module ``name`` imports anywhere, the ones it imports when it is itself imported)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    everywhere, at_import = set(), set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            targets = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] +
                                    ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in child.names]
            for target in targets:
                if target == "landform" or target.startswith("landform."):
                    everywhere.add(target)
                    if top:
                        at_import.add(target)
            visit(child, top)

    visit(tree, True)
    return everywhere, at_import


def test_tasks_import_no_other_task_and_the_core_imports_no_task():
    modules = _modules()
    folders = {name.split(".")[2] for name, path in modules.items()
               if name.startswith("landform.tasks.") and path.name == "__init__.py"}
    problems = []
    for name, path in modules.items():
        everywhere, _ = _imports(name, path, modules)
        parts = name.split(".")
        if parts[:2] == ["landform", "tasks"] and len(parts) > 2 and parts[2] in folders:  # landform/tasks/<a>/
            for target in everywhere:
                other = target.split(".")
                other_task = other[:2] == ["landform", "tasks"] and len(other) > 2 and other[2] in folders \
                    and other[2] != parts[2]
                if (target == "landform.cli" or other_task):
                    problems.append(f"{name} imports {target}")
        elif len(parts) == 2 and name != "landform.cli":  # the core: landform/*.py
            problems += [f"{name} imports {target}" for target in everywhere
                         if target.split(".")[:2] in (["landform", "zoo"], ["landform", "tasks"])]
    assert not problems, problems


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported first, alone, in a fresh landform (a fork after the third-party libraries are
    loaded once, so this takes seconds, not a torch import per module)."""
    names = sorted(_modules())
    script = textwrap.dedent(f"""
        import importlib, os, sys
        names = {names!r}
        for name in names:  # load every third-party library once
            try:
                importlib.import_module(name)
            except Exception:
                pass
        for name in [m for m in sys.modules if m == "landform" or m.startswith("landform.")]:
            del sys.modules[name]
        failed = []
        for name in names:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException as error:
                    print(f"{{name}}: {{type(error).__name__}}: {{error}}", file=sys.stderr, flush=True)
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            if status:
                failed.append(name)
        print(failed)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr[-3000:]


def test_every_shipped_trainer_writes_where_the_cli_says():
    """`landform zoo train NAME` without --install writes into the runs folder: every trainer of our tasks
    takes zoo_dir (one without it could only overwrite the package's zoo), and every one that checkpoints
    takes run_dir (the encoder trains in one go, in minutes, and keeps no checkpoints)."""
    for name in tasks.builtin_names():
        for entry, trainer in tasks.get(name).trainer_table().items():
            assert tasks.takes_keyword(trainer, "zoo_dir"), entry
            assert tasks.takes_keyword(trainer, "run_dir") or entry == "images-encoder", entry


def test_a_zoo_dir_entry_shadows_the_package_one_and_falls_back_to_it(tmp_path):
    from landform import zoo

    name = zoo.names()[0]
    assert zoo.path(name, tmp_path) == zoo.path(name)  # not there: the package's
    (tmp_path / f"{name}.safetensors").write_bytes(zoo.path(name).read_bytes())
    assert zoo.path(name, tmp_path) == tmp_path / f"{name}.safetensors"


def test_every_zoo_entry_stays_small_and_the_zoo_under_40_mb():
    """Shipped weights: a few MB per file, 40 MB in all (the package has to install offline, quickly)."""
    from landform import zoo

    sizes = {path.name: path.stat().st_size for path in zoo.ZOO_DIR.iterdir() if path.is_file()}
    assert max(sizes.values()) < 8e6, max(sizes, key=sizes.get)
    assert sum(sizes.values()) < 40e6, sum(sizes.values())
