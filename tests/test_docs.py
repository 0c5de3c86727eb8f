"""The documentation runs, and says what the code and the results files say.

- Every command of a fenced shell block (```bash, ```sh, ```console) in README.md and docs/*.md is run, in the
  order shown, in a temporary working directory per page (so a page's `fit` serves its `compare`), with the
  repository's .venv/bin first on PATH and OMP_NUM_THREADS=1. A command runs exactly as written, unless
  SMALLER names extra flags for it (appended: argparse keeps the last value) or NOT_RUN gives the reason it is
  not run here (printed). EXPECTED_FAILURES lists commands shown to fail, with their exit status.
- Every number in the README's results block, and in the docs' `<!-- numbers: FILE -->` blocks, is found in
  the JSON file the block cites.
- Every `landform SUB --flag` the pages show exists in `landform SUB --help`.
- The README stays short, and every relative link of the pages points to a file of the repository.
"""

from __future__ import annotations

import bisect
import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin" / "landform").exists() else Path(sys.executable).parent
SHELL_BLOCK = re.compile(r"^```(bash|sh|console)[ \t]*\n(.*?)^```", re.S | re.M)
README_MAX_LINES = 260

# Commands that take more than a minute as written, and the flags that make them small here (each key is a
# prefix of the command as shown; the longest matching key wins).
SMALLER = {
    "landform fit --problem landform.examples.decoder:make_problem": ["--time", "5s", "--trajectories", "32",
                                                                      "--rounds", "2"],
    "landform compare --problem landform.examples.decoder:make_problem": ["--count", "16", "--steps", "40"],
    "landform fit --problem mypkg.models:make_problem": ["--time", "5s", "--trajectories", "32", "--rounds", "2"],
    "landform compare --problem mypkg.models:make_problem": ["--count", "16", "--steps", "40"],
    "landform fit --recipe paper --out runs/theta": ["--rounds", "2", "--trajectories", "32", "--hidden", "64"],
    "landform compare --mapping runs/theta": ["--count", "16", "--steps", "40"],
}
# Commands not run here, and why.
NOT_RUN = {
    "pip install": "installs into the environment and needs the network",
    "make demo": "builds .venv from scratch and writes the image report (tens of minutes)",
    "make test": "runs the whole test suite, this test included",
    "landform demo images": "the image report takes about half an hour (report/images/summary.md gives its time)",
    "landform demo pose": "the pose report takes minutes (report/pose/summary.md)",
    "landform demo defense": "the defense report takes minutes (report/defense/summary.md)",
    "landform invert --task images": "tests/test_cli.py::test_the_readme_image_commands_run_as_written runs the "
                                     "README's copy with a picture for IMAGE...",
    "landform compare --task images": "tests/test_cli.py::test_the_readme_image_commands_run_as_written runs the "
                                      "README's copy with a folder for IMAGE_OR_FOLDER...",
    "landform reproduce table4 --threads 1": "the full reproduction takes tens of minutes; tests/test_paper.py runs "
                                             "every reproduction with --quick",
    "torchrun --standalone --nproc_per_node=2": "torchrun with 2 processes; tests/test_distributed.py runs this "
                                                "command from the repository root with small settings",
    "torchrun --nnodes=2": "needs two machines with GPUs",
    "landform compare --mapping DIR --out DIR/compare": "needs the Θ of the torchrun fit above (DIR)",
    "landform compare --problem landform.examples.decoder:make_problem --mapping DIR": "needs the landscape of the "
                                                                                        "torchrun fit above (DIR)",
    "python experiments/": "an experiment takes minutes to hours and rewrites committed results",
}
# Commands that could look slow but take under a minute as written (measured), so they run as shown.
AS_WRITTEN = {"landform demo synthetic"}
# Commands shown failing on purpose, and their exit status (one line on stderr).
EXPECTED_FAILURES = {"landform compare --mapping no-such-folder": 2}


# ------------------------------------------------------------------------------------------- commands

def _strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` after whitespace, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def shell_commands(text: str) -> list[str]:
    """The commands of the fenced shell blocks of a page, in order: ``console`` blocks give their ``$ `` lines,
    the others every line; comments dropped, backslash continuations joined."""
    commands = []
    for language, body in SHELL_BLOCK.findall(text):
        pending = ""
        for raw in body.splitlines():
            line = raw.strip()
            if language == "console" and not pending:
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            line = _strip_comment(line)
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            line = (pending + line).strip()
            pending = ""
            if line:
                commands.append(" ".join(line.split()))
    return commands


def _longest_key(command: str, table: dict) -> str | None:
    keys = [key for key in table if command.startswith(key)]
    return max(keys, key=len) if keys else None


def plan(command: str) -> tuple[str, list[str] | str]:
    """('skip', reason), ('fail', status) or ('run', extra flags) for one command."""
    if (key := _longest_key(command, NOT_RUN)) is not None:
        return "skip", NOT_RUN[key]
    if (key := _longest_key(command, EXPECTED_FAILURES)) is not None:
        return "fail", EXPECTED_FAILURES[key]
    return "run", SMALLER.get(_longest_key(command, SMALLER) or "", [])


def _environment(workdir: Path) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg", "LANDFORM_RUNS": str(workdir / "landform-runs")}
    env.pop("PYTHONPATH", None)  # a user's package is found from the working directory, as the README says
    return env


def _write_user_package(workdir: Path) -> None:
    """The README's `mypkg/models.py` (its Python block with `def make_problem`), and `y.npy`: four of its test
    observations, the file its `landform invert` command reads."""
    import numpy as np
    import torch

    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)
    code = next(block for block in blocks if "def make_problem" in block and "landform.Problem(" in block)
    package = workdir / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(code)
    spec = importlib.util.spec_from_file_location("readme_models", package / "models.py")
    module = importlib.util.module_from_spec(spec)
    with torch.random.fork_rng():
        spec.loader.exec_module(module)
        problem = module.make_problem()
    y = problem.test_observations(4, torch.Generator().manual_seed(0))
    np.save(workdir / "y.npy", y.numpy())


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_command_shown_runs(page, tmp_path):
    """The page's shell commands, in order, in one working directory (its fits serve its comparisons)."""
    commands = shell_commands(page.read_text())
    if page == README:
        _write_user_package(tmp_path)
    env = _environment(tmp_path)
    ran = []
    for command in dict.fromkeys(commands):  # a command shown twice runs once
        action, detail = plan(command)
        if action == "skip":
            print(f"not run: {command}\n    because {detail}")
            continue
        line = command if action == "fail" or not detail else f"{command} {shlex.join(detail)}"
        began = time.perf_counter()
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        ran.append((line, round(time.perf_counter() - began, 1)))
        if action == "fail":
            assert done.returncode == detail, (line, done.returncode, done.stderr[-2000:])
            assert done.stderr.startswith("landform: error:") and len(done.stderr.strip().splitlines()) == 1, \
                done.stderr[-2000:]
            continue
        assert done.returncode == 0, (line, done.stderr[-3000:])
        assert "Traceback" not in done.stderr, (line, done.stderr[-3000:])
    if page == README:  # the figure's script, on the quick start's comparison
        compared = tmp_path / "runs" / "decoder-compare"
        done = subprocess.run([str(BIN / "python"), str(ROOT / "docs" / "make_readme_plot.py"), str(compared),
                               "--out", str(tmp_path / "plot.png")], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0 and (tmp_path / "plot.png").stat().st_size > 0, done.stderr[-3000:]
    for line, seconds in ran:
        print(f"ran ({seconds} s): {line}")


NOT_RUN_HERE = [(page, command) for page in PAGES for command in dict.fromkeys(shell_commands(page.read_text()))
                if plan(command)[0] == "skip"]


@pytest.mark.parametrize("page, command", NOT_RUN_HERE,
                         ids=[f"{p.relative_to(ROOT).as_posix()}:{c[:40]}" for p, c in NOT_RUN_HERE])
def test_a_command_not_run_here_says_why(page, command):
    """Each command the pages show but this test does not run, as a skipped test with its reason (`pytest -rs`)."""
    pytest.skip(f"not run: `{command}`: {plan(command)[1]}")


def test_every_command_has_a_plan_that_is_used():
    """Each entry of SMALLER, NOT_RUN, EXPECTED_FAILURES and AS_WRITTEN matches a command some page shows (none
    is stale), and every `fit`, `demo`, `zoo train` and `reproduce` without --quick the pages show has an entry:
    a command runs as written only where it was measured to take under a minute."""
    commands = [command for page in PAGES for command in shell_commands(page.read_text())]
    for table in (SMALLER, NOT_RUN, EXPECTED_FAILURES, AS_WRITTEN):
        for key in table:
            assert any(command.startswith(key) for command in commands), f"no page shows a command {key!r}"
    slow = re.compile(r"(^|\s)landform (fit|demo|zoo train|reproduce (?!.*--quick))")
    for command in commands:
        if slow.search(command):
            action, detail = plan(command)
            assert action == "skip" or detail or command in AS_WRITTEN, f"a slow command runs as written: {command}"


# ---------------------------------------------------------------------------------------- the CLI's help

def _code_spans(text: str) -> list[str]:
    """Every piece of code a page shows: its shell commands and its inline code spans."""
    without_blocks = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return shell_commands(text) + re.findall(r"`([^`\n]+)`", without_blocks)


def _help(sub: str | None = None) -> str:
    argv = [str(BIN / "landform"), *([sub] if sub else []), "--help"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_subcommand_and_flag_shown_exists_in_the_help():
    main_help = _help()
    subcommands = re.search(r"\{([a-z,]+)\}", main_help).group(1).split(",")
    helps: dict[str, str] = {}
    shown = 0
    for page in PAGES:
        for code in _code_spans(page.read_text()):
            for match in re.finditer(r"(?:^|[\s(])landform ([a-z][a-z-]*)([^|`]*)", code.replace("\\|", " ")):
                sub, rest = match.group(1), match.group(2)
                where = f"{page.relative_to(ROOT)}: `{code}`"
                assert sub in subcommands, f"{where}: `landform {sub}` is not a subcommand ({subcommands})"
                text = helps.setdefault(sub, _help(sub))
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest):
                    shown += 1
                    assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), \
                        f"{where}: {flag} is not in `landform {sub} --help`"
    assert shown > 20  # the pages do show flags: the pattern found them


# ------------------------------------------------------------------------------------- one truth per number

# A number not inside a word ("x86_64", "step-20" gives 20) nor a label ("3D"; a trailing x is a speedup's).
NUMBER = re.compile(r"(?<![\w.])([-+−]?)(\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?(?:e[-+]?\d+)?)(?![A-Za-wyz_])")
SCALES = (1.0, 100.0, 1000.0, 1 / 60)  # as stored, a percentage, milliseconds from seconds, minutes from seconds
DEFINITIONAL = {1.0, 20.0, 95.0, 200.0, 1000.0}  # steps, the interval's level, resamples: terms, not results


def numbers_in(text: str) -> list[tuple[str, float, int]]:
    """(token, value, decimals) of every number in ``text``; a sign only where it is not a hyphen."""
    found = []
    for sign, digits in NUMBER.findall(text):
        value = float(digits.replace(",", ""))
        decimals = len(digits.split(".")[1].split("e")[0]) if "." in digits else 0
        found.append((sign + digits, -value if sign in "-−" and sign else value, decimals))
    return found


def leaves(value, keys: bool = True) -> list[float]:
    """Every number in a JSON value: numbers, numeric strings, and the numbers in its keys."""
    out: list[float] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if keys:
                out.extend(float(n) for n in re.findall(r"\d+(?:\.\d+)?", str(key)))
            out.extend(leaves(item, keys))
    elif isinstance(value, list):
        for item in value:
            out.extend(leaves(item, keys))
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, (int, float)):
        if math.isfinite(value):
            out.append(float(value))
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            out.extend(float(n) for n in re.findall(r"\d+(?:\.\d+)?", value) if len(value) < 40)
        else:
            if math.isfinite(number):
                out.append(number)
    return out


class Values:
    """The numbers of a JSON value, at each of SCALES, sorted for lookups."""

    def __init__(self, value) -> None:
        numbers = leaves(value)
        self.scaled = [sorted(scale * n for n in numbers) for scale in SCALES]

    def holds(self, value: float, decimals: int) -> bool:
        """Whether some number of the file, at some scale, rounds to ``value`` at ``decimals`` places."""
        tolerance = 0.5 * 10.0 ** -decimals * (1 + 1e-9) + 1e-12
        for column in self.scaled:
            i = bisect.bisect_left(column, value - tolerance)
            if i < len(column) and column[i] <= value + tolerance:
                return True
        return False


def _prose(line: str) -> str:
    """A line without its code spans, link targets and linked file names (a command's flags and a file's name
    are not results)."""
    line = re.sub(r"`[^`]*`", "", line)
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", lambda m: "" if " " not in m.group(1) else m.group(1), line)


def _table_rows(lines: list[str]) -> list[list[str]]:
    """The data rows of the markdown tables among ``lines`` (header and separator rows left out), as cells."""
    rows = []
    for i, line in enumerate(lines):
        if not line.startswith("|") or re.fullmatch(r"[|\s:-]+", line):
            continue
        if i + 1 < len(lines) and re.fullmatch(r"\|[\s:|-]+\|?", lines[i + 1].strip()):
            continue  # a header
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _missing(text: str, values: Values, *, definitional: bool = False) -> list[str]:
    return [token for token, value, decimals in numbers_in(text)
            if not values.holds(value, decimals) and not (definitional and abs(value) in DEFINITIONAL)]


def _find_entry(value, name: str):
    """The object stored under key ``name`` anywhere in a JSON value (None if there is none)."""
    if isinstance(value, dict):
        if isinstance(value.get(name), dict):
            return value[name]
        children = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        found = _find_entry(child, name)
        if found is not None:
            return found
    return None


def test_the_readme_results_block_agrees_with_the_json_it_cites():
    text = README.read_text()
    assert text.count("<!-- results:begin -->") == 1 and text.count("<!-- results:end -->") == 1
    block = text.split("<!-- results:begin -->")[1].split("<!-- results:end -->")[0]
    cited = set(re.findall(r"benchmarks/results/[\w.-]+\.json", block)) or \
        {path.replace(".md", ".json") for path in re.findall(r"benchmarks/results/[\w.-]+\.md", block)}
    assert len(cited) == 1, f"the results block must cite one results file, it cites {cited}"
    data = json.loads((ROOT / cited.pop()).read_text())
    lines = [line.strip() for line in block.strip().splitlines()]
    rows = _table_rows(lines)
    assert rows, "the results block has no table"
    for cells in rows:
        entry = _find_entry(data, cells[0])
        assert entry is not None, f"the results file has no entry {cells[0]!r}"
        missing = _missing(" | ".join(cells[1:]), Values(entry))
        assert not missing, f"row {cells[0]!r}: {missing} not in its entry of the results file"
    whole = Values(data)
    for line in lines:
        if not line.startswith("|"):
            missing = _missing(_prose(line), whole, definitional=True)
            assert not missing, f"{missing} of {line!r} not in the results file"


# <!-- numbers: FILE --> checks every number of the block against all of FILE; with "rows: KEY; KEY; ..." the
# i-th table row is checked against the object under KEY alone (a path of keys: "a > b").
NUMBERS_BLOCK = re.compile(r"<!-- numbers: (\S+?)(?: rows: (.*?))? -->\n(.*?)<!-- /numbers -->", re.S)


def _entry_at(data, path: str):
    for name in path.split(" > "):
        data = _find_entry(data, name.strip())
        if data is None:
            return None
    return data


def test_every_number_of_a_numbers_block_is_in_the_file_it_cites():
    blocks = 0
    for page in PAGES:
        for path, row_keys, body in NUMBERS_BLOCK.findall(page.read_text()):
            blocks += 1
            where = page.relative_to(ROOT)
            source = ROOT / path
            assert source.is_file(), f"{where} cites {path}, which does not exist"
            data = json.loads(source.read_text())
            values = Values(data)
            lines = [line.strip() for line in body.strip().splitlines()]
            rows = _table_rows(lines)
            keys = [key.strip() for key in row_keys.split(";")] if row_keys else [None] * len(rows)
            assert len(keys) == len(rows), f"{where}: {len(keys)} row keys for {len(rows)} rows of {path}"
            for cells, key in zip(rows, keys, strict=True):
                scope = values
                if key is not None:
                    entry = _entry_at(data, key)
                    assert entry is not None, f"{where}: {path} has no {key!r}"
                    scope = Values(entry)
                missing = _missing(" | ".join(cells), scope)
                assert not missing, f"{where}: {missing} of row {cells[0]!r} not in {path} ({key or 'anywhere'})"
            for line in lines:
                if not line.startswith("|"):
                    missing = _missing(_prose(line), values, definitional=True)
                    assert not missing, f"{where}: {missing} of {line!r} not in {path}"
    assert blocks >= 5


def test_the_number_check_catches_a_changed_number():
    values = Values({"improvement_at_200": 0.040329, "ms": {"baseline": 1.505}, "fit_seconds": 45.4,
                     "apgd_eot_100": {"accuracy": 0.45}})
    assert not _missing("+4.0% [0.8 min] 1.5 0.04 45 100 45.0", values)
    assert _missing("+4.1%", values) == ["+4.1"] and _missing("-4.0%", values) == ["-4.0"]
    assert _missing("step-20 x86_64 3D 2,560,000", values) == ["20", "2,560,000"]


# -------------------------------------------------------------------------------------- length and links

def test_the_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the rest belongs in docs/"


def test_every_relative_link_points_to_a_file():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
