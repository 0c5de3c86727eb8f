"""Shared fixtures: the built-in synthetic problem and a Θ fitted on it once per session."""

from __future__ import annotations

import os

import pytest
import torch

from landform import Mapping, fit
from landform.synthetic import synthetic_problem

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one torch thread each (torch's default, one per core, would
    # put four busy threads on two cores), and the same for the programs the tests start.
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def problem():
    return synthetic_problem()


@pytest.fixture(scope="session")
def phase_retrieval():
    """(forward, loss) of |Ax|², A 24 x 8: x = 0 is a critical point for every observation (zero gradient)."""
    a = torch.randn(24, 8, generator=torch.Generator().manual_seed(0))

    def forward(x):
        return (x @ a.T) ** 2

    def loss(y_hat, y):
        return (y_hat - y).pow(2).mean(dim=1)
    return forward, loss


@pytest.fixture(scope="session")
def test_observations(problem):
    return problem.test_observations(64, torch.Generator().manual_seed(11))


@pytest.fixture(scope="session")
def fitted(problem):
    """Θ fitted with Algorithm 1 for a few seconds on the synthetic problem."""
    torch.manual_seed(0)
    mapping = Mapping(16, (16,), hidden=128)
    fit(mapping, problem.forward, problem.loss, problem.train_observations, rounds=30, trajectories=128,
        steps=20, lr=1e-3, batch_size=128, seed=0, progress=False)
    return mapping


# The longest tests (README commands and other end-to-end runs, 6-18 s each on 2 idle cores), run first.
# Under `pytest -n 2` the wall time is about half the tests' total only when neither worker is left running one
# long test alone at the end; started first, they run beside the short ones. Ordered in pairs: with the
# scheduling below the first two go to one worker, the next two to the other (the two torchrun tests, each
# with two worker processes of its own, one after the other on the same worker). Names no longer collected are
# ignored (a renamed test only runs in its usual place).
SLOW_FIRST = (
    "tests/test_distributed.py::test_the_default_recipe_on_two_processes_survives_a_killed_rank_resumes_and_refuses_"
    "one_process",
    "tests/test_docs.py::test_every_command_shown_runs[README.md]",
    "tests/test_recipe_faults.py::test_random_kills_of_the_default_fit_resume_to_the_uninterrupted_artifact",
    "tests/test_distributed.py::test_the_readme_torchrun_command_then_compare_and_quality_against_one_process",
    "tests/test_distributed.py::test_two_processes_end_identical_rank0_alone_writes_and_a_killed_run_resumes_exactly",
    "tests/test_cli.py::test_a_user_problem_factory_plugs_in",
    "tests/tasks/images/test_task.py::test_demo_writes_the_report_with_the_issue_keys",
    "tests/test_cli.py::test_the_readme_image_commands_run_as_written[compare]",
    "tests/test_recipe.py::test_the_readme_landscape_snippet_runs",
    "tests/test_faults.py::test_a_real_signal_during_a_checkpoint_write_then_resume_equals_the_uninterrupted_run"
    "[2-ckpt-000003.tmp/mapping.json-130]",
    "tests/test_cli.py::test_the_readme_python_snippet_runs_and_the_landscape_is_faster",
)  # none of them takes a module-scoped fixture: moved, they would set it up twice


def pytest_configure(config):
    """pytest-xdist's `load` scheduling hands each worker about a quarter of its share of the tests at once,
    in collection order, so the slow tests above would all queue on one worker; one test at a time (two
    queued per worker) lets the other worker take the next one as soon as it is free. An explicit
    --maxschedchunk is kept."""
    if getattr(config.option, "maxschedchunk", 0) is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items):
    rank = {nodeid: index for index, nodeid in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))  # stable: everything else keeps its order
