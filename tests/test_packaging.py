"""The package installs into a researcher's own environment: pyproject.toml asks for torch as a range (never an
exact pin, which would replace the user's torch), while the exact versions that ``make demo`` and ``make test``
install live in constraints.txt, which the Makefile passes to every ``pip install``. LICENSE is the MIT text
that pyproject declares, and CITATION.cff names this version of the software and the paper it implements.

Each check is a function of the files' text, run on the repository's files and, so that it is seen to be able
to fail, on a broken copy of them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # the dev extra installs tomli on Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = "constraints.txt"
PAPER = ROOT.parent / "shared" / "paper" / "landscape-learning.md"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    """A requirement's project name, normalized (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"not a requirement: {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _specifier(requirement: str) -> str:
    """The version specifier of a requirement: what follows the name and extras, before any marker."""
    rest = requirement.split(";", 1)[0]
    rest = re.sub(r"^\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?", "", rest)
    return rest.strip().strip("()").replace(" ", "")


def _version(text: str) -> tuple[int, ...]:
    """A release number as a tuple of ints ("2.13.0+cpu" -> (2, 13, 0))."""
    return tuple(int(part) for part in re.match(r"\d+(\.\d+)*", text).group(0).split("."))


def _pins(text: str) -> dict[str, str]:
    """A constraints file's exact pins, name -> version; every line that is not blank or a comment is one."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([0-9][A-Za-z0-9.+!-]*)", line)
        assert match, f"{CONSTRAINTS}: not an exact pin: {line!r}"
        pins[_name(match.group(1))] = match.group(2)
    return pins


def torch_requirement_problems(pyproject: dict, torch_pin: str) -> list[str]:
    """What is wrong with the core dependency on torch: it must be one range, with a lower bound, no exact
    pin, and admit the version that constraints.txt installs."""
    torch = [r for r in pyproject["project"]["dependencies"] if _name(r) == "torch"]
    if len(torch) != 1:
        return [f"the core dependencies name torch {len(torch)} times: {torch}"]
    spec = _specifier(torch[0])
    problems = []
    if "==" in spec or "~=" in spec:
        problems.append(f"torch is pinned ({torch[0]!r}): pip install would replace a user's torch")
    lower = re.search(r">=\s*([0-9][0-9.]*)", spec)
    if not lower:
        problems.append(f"torch has no lower bound ({torch[0]!r})")
    elif _version(lower.group(1)) > _version(torch_pin):
        problems.append(f"torch {torch_pin} of {CONSTRAINTS} is below the range {spec}")
    upper = re.search(r"<\s*([0-9][0-9.]*)", spec)
    if upper and _version(upper.group(1)) <= _version(torch_pin):
        problems.append(f"torch {torch_pin} of {CONSTRAINTS} is above the range {spec}")
    return problems


def makefile_problems(makefile: str) -> list[str]:
    """What is wrong with the Makefile's installs: every ``pip install`` (but pip's own upgrade) passes the
    constraints file with -c, none skips dependencies, and a change to the file reinstalls."""
    variables = dict(re.findall(r"^([A-Z_]+)\s*:?=\s*(\S+)\s*$", makefile, flags=re.M))
    installs = [line.strip() for line in makefile.splitlines() if re.search(r"\bpip install\b", line)]
    problems = []
    if not installs:
        problems.append("the Makefile runs no pip install")
    for line in installs:
        if re.search(r"--upgrade pip\s*$", line):
            continue
        files = [variables.get(m.group(1), "") if m.group(1) else m.group(2)
                 for m in re.finditer(r"(?:-c|--constraint)[ =](?:\$\((\w+)\)|(\S+))", line)]
        if CONSTRAINTS not in files:
            problems.append(f"does not pass {CONSTRAINTS}: {line}")
        if "--no-deps" in line:
            problems.append(f"skips dependencies: {line}")
    rule = re.search(r"^\$\(BIN\)/landform:(.*)$", makefile, flags=re.M)
    words = rule.group(1).split() if rule else []
    prerequisites = [variables.get(w[2:-1], w) if w.startswith("$(") else w for w in words]
    if CONSTRAINTS not in prerequisites:
        problems.append(f"the venv rule does not depend on {CONSTRAINTS}: a change to it would not reinstall")
    return problems


def cff_fields(text: str) -> dict[str, object]:
    """A CITATION.cff's top-level keys: a scalar's value (quotes taken off), or a block's indented lines.

    Enough YAML for this file's shape (``key: value`` and blocks indented under ``key:``), without a YAML
    library; a line it cannot read fails."""
    fields: dict[str, object] = {}
    key = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert "\t" not in line, f"CITATION.cff:{number}: a tab (YAML indents with spaces)"
        if line.startswith((" ", "-")):
            assert key is not None and isinstance(fields[key], list), f"CITATION.cff:{number}: indented, under no key"
            fields[key].append(line)
            continue
        match = re.fullmatch(r"([A-Za-z][A-Za-z0-9-]*):(?:\s+(.*))?", line.rstrip())
        assert match, f"CITATION.cff:{number}: not `key: value`: {line!r}"
        key, value = match.group(1), match.group(2)
        assert key not in fields, f"CITATION.cff:{number}: {key} twice"
        fields[key] = [] if value is None else value.strip().strip("\"'")
    return fields


def _block_fields(lines: list[str]) -> dict[str, str]:
    """The scalar keys directly inside a block (its least-indented ``key: value`` lines)."""
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    pattern = re.compile(" {" + str(indent) + r"}([A-Za-z][A-Za-z0-9-]*):\s*(.*)")
    pairs = (pattern.fullmatch(line.rstrip()) for line in lines)
    return {m.group(1): m.group(2).strip("\"'") for m in pairs if m}


# The repository's files.


def test_torch_is_a_range_and_the_constraints_pin_2_13_0():
    pins = _pins((ROOT / CONSTRAINTS).read_text())
    assert pins.get("torch") == "2.13.0", f"{CONSTRAINTS} must pin torch==2.13.0"
    assert pins.get("torchvision") == "0.28.0", "torchvision 0.28.0 is the release built for torch 2.13.0"
    assert torch_requirement_problems(_pyproject(), pins["torch"]) == []


def test_no_core_dependency_is_pinned_exactly():
    pinned = [r for r in _pyproject()["project"]["dependencies"] if "==" in _specifier(r)]
    assert pinned == [], f"exact pins belong in {CONSTRAINTS}, not in the package's requirements: {pinned}"


def test_python_versions_and_classifiers():
    project = _pyproject()["project"]
    assert project["requires-python"].replace(" ", "") == ">=3.10,<3.14"
    versions = {c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    assert versions == {"3.10", "3.11", "3.12", "3.13"}


def test_extras():
    extras = _pyproject()["project"]["optional-dependencies"]
    assert "torchattacks==3.5.1" in extras["tasks"]
    assert extras["deepinv"] == ["deepinv==0.5.0"]
    assert {_name(r) for r in extras["dev"]} >= {"pytest", "pytest-xdist", "ruff"}


def test_extras_exact_pins_agree_with_the_constraints():
    pins = _pins((ROOT / CONSTRAINTS).read_text())
    for extra, requirements in _pyproject()["project"]["optional-dependencies"].items():
        for requirement in requirements:
            spec = _specifier(requirement)
            if spec.startswith("==") and _name(requirement) in pins:
                assert spec[2:] == pins[_name(requirement)], f"[{extra}] {requirement} against {CONSTRAINTS}"


def test_the_makefile_installs_through_the_constraints():
    assert makefile_problems((ROOT / "Makefile").read_text()) == []


def test_license_is_mit():
    assert _pyproject()["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.splitlines()[0] == "MIT License"
    assert "Copyright (c) 2026 the landform authors" in text
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_citation_cff():
    project = _pyproject()["project"]
    fields = cff_fields((ROOT / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors", "version", "preferred-citation"):
        assert key in fields, f"CITATION.cff has no {key}"
    assert fields["cff-version"] == "1.2.0"
    assert fields["title"] == project["name"]
    assert fields["version"] == project["version"], "CITATION.cff's version is not pyproject's"
    assert fields["license"] == project["license"]
    assert any(re.match(r"\s*- (name|family-names):", line) for line in fields["authors"])
    paper = _block_fields(fields["preferred-citation"])
    assert {"type", "title", "authors"} <= set(paper), f"preferred-citation lacks type, title or authors: {paper}"


def test_citation_names_the_paper_as_its_text_does():
    if not PAPER.exists():
        pytest.skip(f"no {PAPER}")
    head = [line.strip() for line in PAPER.read_text().splitlines()[:10] if line.strip()]
    paper = cff_fields((ROOT / "CITATION.cff").read_text())["preferred-citation"]
    assert _block_fields(paper)["title"] == head[0]
    assert any(head[1] in line for line in paper), f"preferred-citation's authors are not {head[1]!r}"


# The same checks on broken copies: each of them fails where it should.


def test_the_checks_catch_a_pinned_torch():
    pyproject = _pyproject()
    pyproject["project"]["dependencies"] = ["torch==2.13.0", "numpy>=1.24"]
    assert any("pinned" in p for p in torch_requirement_problems(pyproject, "2.13.0"))
    pyproject["project"]["dependencies"] = ["torch"]
    assert any("lower bound" in p for p in torch_requirement_problems(pyproject, "2.13.0"))
    pyproject["project"]["dependencies"] = ["torch>=2.14,<3"]
    assert any("below the range" in p for p in torch_requirement_problems(pyproject, "2.13.0"))
    pyproject["project"]["dependencies"] = ["torch>=2.2,<2.13"]
    assert any("above the range" in p for p in torch_requirement_problems(pyproject, "2.13.0"))


def test_the_checks_catch_a_makefile_without_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    unconstrained = re.sub(r"(?:-c|--constraint)[ =]\S+ ?", "", makefile)
    assert any("does not pass" in p for p in makefile_problems(unconstrained))
    no_deps = makefile + "\n\t$(BIN)/pip install -q -c constraints.txt --no-deps torchattacks==3.5.1\n"
    assert any("skips dependencies" in p for p in makefile_problems(no_deps))
    assert any("does not depend" in p for p in makefile_problems(makefile.replace(" $(CONSTRAINTS) |", " |")))
    with pytest.raises(AssertionError, match="not an exact pin"):
        _pins("torch>=2.13\n")


def test_the_checks_catch_a_broken_citation():
    text = (ROOT / "CITATION.cff").read_text()
    with pytest.raises(AssertionError, match="not `key: value`"):
        cff_fields(text + "version 0.2.0\n")
    with pytest.raises(AssertionError, match="twice"):
        cff_fields(text + "version: 0.2.0\n")
    with pytest.raises(AssertionError, match="tab"):
        cff_fields(text + "identifiers:\n\t- x\n")
    bumped = re.sub(r"^version: .*$", "version: 9.9.9", text, flags=re.M)
    assert cff_fields(bumped)["version"] == "9.9.9" != _pyproject()["project"]["version"]
