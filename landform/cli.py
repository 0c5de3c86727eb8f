"""The landform command: fit | invert | compare | demo | reproduce | zoo.

A user's model plugs in as ``--problem package.module:factory`` (a function returning a
``landform.Problem``); a task (the paper's applications, the synthetic problem, or any ``landform.tasks.Task``
registered in-process or named ``package.module:attribute``) plugs in as ``--task NAME``, through the
registry of ``landform.tasks`` alone: nothing here names a task.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from landform import guard, tasks
from landform.errors import LandformError
from landform.modes import DEFAULT_MODE, MODES

# torch and numpy are imported inside the functions, so that the command starts (and a Ctrl-C during its
# start-up stops it) without a traceback; see landform.guard.
if TYPE_CHECKING:
    import torch

DEFAULT_PROBLEM = "landform.synthetic:synthetic_problem"
# invert and compare on a --problem: the defaults of the options whose argparse default is None (so that
# an option given with --task can be told from one left out, and refused if the task does not use it).
PROBLEM_DEFAULTS = {"problem": DEFAULT_PROBLEM, "count": 256, "steps": 200, "optimizer": "adam", "lr": 0.1,
                    "init": "zeros"}
NEVER_WITH_TASK = ("problem", "autocast")  # a task brings its own forward model


class _TaskNames(list):
    """argparse choices: the registry's task names (listed in --help), and any ``package.module:attribute``."""

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and (list.__contains__(self, value) or tasks.is_spec(value))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _task_options(args: argparse.Namespace, task: tasks.Task) -> dict:
    """The options given with ``--task`` that the task uses, as keywords; any other one is refused."""
    accepted = task.accepts(args.command)
    given = [name for name in (*NEVER_WITH_TASK, *tasks.TASK_OPTIONS) if getattr(args, name, None) is not None]
    refused = [name for name in given if name in NEVER_WITH_TASK or name not in accepted]
    if refused:
        uses = ", ".join(_flag(name) for name in tasks.TASK_OPTIONS if name in accepted) or "none of them"
        raise LandformError(f"--task {task.name} does not use {', '.join(map(_flag, refused))} "
                            f"(of {args.command}'s options it uses: {uses})")
    return {name: getattr(args, name) for name in given}


PAPER_ONLY = {"method": "buffer", "init": "zeros", "buffer_rounds": 1, "batch_size": 256, "weight_decay": 0.1,
              "additive": False}  # fit options of --recipe paper alone, with their defaults
FAST_TIME = "8m"


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m`` or ``1.5h``; a one-line error for anything else."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and seconds != float("inf")):
        raise LandformError(f"--time must be a positive duration such as 90s, 10m or 1h, got {text!r}")
    return seconds


def _prepare_fit(args: argparse.Namespace) -> None:
    """Fill in the defaults of ``fit`` for its recipe, and refuse the options the recipe does not use."""
    if args.recipe == "fast":
        given = [name for name, default in PAPER_ONLY.items() if getattr(args, name) != default]
        if given:
            raise LandformError(f"{', '.join(map(_flag, given))} apply to --recipe paper (the fast recipe runs "
                                "Algorithm 1 with its replay buffer, anchored at the learned start)")
        if args.start_steps is not None and args.start_steps < 1:
            raise LandformError(f"--start-steps must be >= 1, got {args.start_steps}")
        args.rounds = 300 if args.rounds is None else args.rounds
        args.seconds = float("inf") if args.time == "off" else parse_duration(args.time or FAST_TIME)
    else:
        if args.start_steps is not None:
            raise LandformError("--start-steps applies to --recipe fast (the paper's recipe learns no start)")
        args.rounds = 60 if args.rounds is None else args.rounds
        args.hidden = 1024 if args.hidden is None else args.hidden
        args.seconds = parse_duration(args.time) if args.time and args.time != "off" else None


def prepare(args: argparse.Namespace) -> None:
    """Before the checks of ``landform.guard`` (and before torch): refuse the options a ``--task`` does not
    use, fill in the defaults of the others, and refuse options that do nothing where they are given."""
    if args.command == "fit":
        _prepare_fit(args)
    if args.command in ("invert", "compare"):
        if args.task is not None:
            _task_options(args, tasks.get(args.task))
            return
        if args.inputs:
            raise LandformError(f"input files ({args.inputs[0]}, ...) are for a task: add --task NAME, or give "
                                "observations with --observations FILE")
        for name, value in PROBLEM_DEFAULTS.items():
            if hasattr(args, name):
                setattr(args, f"{name}_given", getattr(args, name) is not None)
                if getattr(args, name) is None:
                    setattr(args, name, value)
        args.mode_given = args.mode is not None
    elif args.command == "zoo" and args.action != "train":
        for name in ("runs_dir", "install", "restart"):
            if getattr(args, name):
                raise LandformError(f"{_flag(name)} applies to `landform zoo train NAME` only")


def _load_tensor(path: str, what: str = "observations") -> torch.Tensor:
    """Observations or a mask from ``.npy`` or ``.safetensors`` (its only tensor, or the one named y)."""
    return guard.load_tensor(path, what)


def _observations(args: argparse.Namespace, problem, split: str) -> torch.Tensor:
    import torch

    if getattr(args, "observations", None):
        return guard.check_observations(_load_tensor(args.observations), f"observations in {args.observations}")
    sampler = problem.test_observations if split == "test" else problem.train_observations
    return guard.check_observations(sampler(args.count, torch.Generator().manual_seed(args.seed)),
                                    f"the {split} observations drawn from {args.problem}")


def cmd_fit(args: argparse.Namespace) -> None:
    from landform.io import folder_lock

    # One writer per folder: a second fit into --out is refused, naming the pid of the first, before it reads
    # (or refuses) the checkpoint the first one is writing.
    with folder_lock(guard.prepare_out(args.out)):
        _fit(args)


def _fit(args: argparse.Namespace) -> None:
    import math
    import time

    from landform import Mapping, accel, fit
    from landform.io import Checkpoint

    out = guard.prepare_fit_out(args.out, args.resume)
    # Under torchrun each process computes on its own GPU (cuda:LOCAL_RANK), F and autocast included.
    device = args.device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    problem = guard.load_problem(args.problem, device, args.autocast)
    x_dim = math.prod(problem.x_shape)
    accel.pin_seeds(args.seed, device)
    if args.recipe == "fast":
        from landform.recipe import learn

        # Under torchrun, learn joins the process group (and leaves it when done): every stage runs on every
        # rank, rank 0 alone writes and prints.
        landscape = learn(problem, out, seconds=args.seconds, rounds=args.rounds, hidden=args.hidden,
                          z_dim=args.z_dim, trajectories=args.trajectories, steps=args.steps, lr=args.lr,
                          lr_z=args.lr_z, resume=args.resume, seed=args.seed, device=device, progress=True,
                          start_steps=20000 if args.start_steps is None else args.start_steps)
        if int(os.environ.get("RANK", "0")) == 0:
            world = landscape.record["world_size"]
            processes = f" on {world} processes" if world > 1 else ""
            print(f"wrote {out / 'landscape.safetensors'} ({landscape.record['seconds']:.0f} s{processes}); "
                  f"use --mapping {out}")
        return
    deadline = None if args.seconds is None else time.perf_counter() + args.seconds
    mapping = Mapping(args.z_dim or x_dim, problem.x_shape, hidden=args.hidden, additive=args.additive)
    # Under torchrun, fit joins the process group (and leaves it when done): every rank fits, rank 0 alone
    # writes and prints.
    result = fit(mapping, problem.forward, problem.loss, problem.train_observations, rounds=args.rounds,
                 trajectories=args.trajectories, steps=args.steps, lr_z=args.lr_z, lr=args.lr,
                 weight_decay=args.weight_decay, batch_size=args.batch_size, method=args.method,
                 buffer_rounds=args.buffer_rounds, init=args.init, base=problem.base, x_shape=problem.x_shape,
                 checkpoint_dir=out, resume=args.resume, seed=args.seed, device=device, progress=True,
                 should_stop=None if deadline is None else lambda _: time.perf_counter() > deadline)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    last = result.history[-1] if result.history else None
    detail = f"; last round: loss {last.loss_first:.4g} -> {last.loss_last:.4g} in {args.steps} steps" \
        if last else ""
    folder = Checkpoint(out).current()
    print(f"wrote {folder / 'mapping.safetensors'} ({len(result.history)} rounds{detail}); use --mapping {out}")


def cmd_invert(args: argparse.Namespace) -> None:
    guard.prepare_out(args.out)
    if args.task:
        task = tasks.get(args.task)
        task.function("invert")(args.inputs, Path(args.out), device=args.device, seed=args.seed, progress=True,
                                **_task_options(args, task))
        return
    from landform import Mapping, invert
    from landform.results import write_inversion

    problem = guard.load_problem(args.problem, args.device, args.autocast)
    landscape = _landscape(args)
    if landscape is not None:
        invert_landscape(args, problem, landscape)
        return
    mapping = Mapping.load(args.mapping) if args.mapping else None
    y = _observations(args, problem, "test")
    mask = guard.check_mask(_load_tensor(args.mask, "mask"), y) if args.mask else None
    mode = (args.mode or DEFAULT_MODE) if mapping is not None else "pure"
    if mapping is None and args.mode not in (None, "pure"):
        raise LandformError(f"--mode {args.mode} needs --mapping (without Θ, invert is plain descent on x)")
    result = invert(problem.forward, problem.loss, y, mapping=mapping, mode=mode, steps=args.steps,
                    optimizer=args.optimizer, lr=args.lr, init=args.init, x_shape=problem.x_shape,
                    base=problem.base, mask=mask, seed=args.seed, device=args.device, progress=True)
    write_inversion(Path(args.out), result, {"steps": args.steps, "lr": args.lr, "optimizer": args.optimizer,
                                             "mode": mode, "mapping": args.mapping})


def _landscape(args: argparse.Namespace):
    """The Landscape (the fast recipe's artifact) that ``--mapping`` names, or None for a plain Θ; the options
    its tuned settings replace are refused."""
    from landform.landscape import Landscape, artifact_path

    if not args.mapping or artifact_path(args.mapping) is None:
        return None
    given = [name for name in ("mode", "lr", "init") if getattr(args, f"{name}_given", False)]
    if given:
        raise LandformError(f"{', '.join(map(_flag, given))}: {args.mapping} is a landscape fitted with its own "
                            "start and tuned step sizes, which it uses (compare reports Eq. 3 beside it)")
    landscape = Landscape.load(args.mapping)
    print(f"using {args.mapping}: {landscape.describe()}", file=sys.stderr)
    return landscape


def invert_landscape(args: argparse.Namespace, problem, landscape) -> None:
    """``invert`` with a Landscape: its start, its anchored Θ and its tuned settings."""
    from landform.results import write_inversion

    landscape.check_problem(problem, allow_other_model=args.allow_other_model)
    y = _observations(args, problem, "test")
    mask = guard.check_mask(_load_tensor(args.mask, "mask"), y) if args.mask else None
    steps = args.steps if getattr(args, "steps_given", False) else landscape.settings.steps
    result = landscape.invert(y, problem, steps=steps, optimizer=args.optimizer, mask=mask, seed=args.seed,
                              device=args.device, progress=True, allow_other_model=True)
    write_inversion(Path(args.out), result, {"steps": steps, "optimizer": args.optimizer,
                                             "landscape": landscape.describe(), "mapping": args.mapping})


def cmd_compare(args: argparse.Namespace) -> None:
    guard.prepare_out(args.out)
    if args.task:
        task = tasks.get(args.task)
        task.function("compare")(args.inputs, Path(args.out), device=args.device, seed=args.seed, progress=True,
                                 **_task_options(args, task))
        return
    if not args.mapping:
        raise LandformError("compare needs --mapping (a directory or .safetensors written by `landform fit`)")
    from landform.results import compare_problem

    observations = _observations(args, None, "test") if args.observations else None
    landscape = _landscape(args)
    problem = guard.load_problem(args.problem, args.device)  # as fit and invert load it: one line if it fails
    compare_problem(problem, args.mapping, Path(args.out), count=args.count, steps=args.steps, seed=args.seed,
                    device=args.device, optimizer=args.optimizer, mode=args.mode, lr=args.lr,
                    observations=observations, landscape=landscape, allow_other_model=args.allow_other_model,
                    spec=args.problem)


def cmd_demo(args: argparse.Namespace) -> None:
    from landform.results import print_table

    task = tasks.get(args.task)
    out = guard.prepare_out(args.out) / task.name
    summary = task.function("demo")(out, device=args.device, seed=args.seed, progress=True)
    for split, block in (summary or {}).items():
        if isinstance(block, Mapping) and "speedup_at_20" in block:  # a dict, or compare's summary as it is
            print_table(f"{task.name} / {split}", block)
    print(f"wrote {out}")


@contextlib.contextmanager
def _environment(name: str, value: str):
    """``os.environ[name] = value`` for the duration of the block (then as it was)."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def cmd_reproduce(args: argparse.Namespace) -> None:
    from landform.paper import reproduce

    with _environment(tasks.RUNS_ENV, str(tasks.runs_dir(args.runs_dir))):  # where landform.paper resumes its fits
        reproduce(args.name, out_root=None if args.out is None else Path(args.out), quick=args.quick, seed=args.seed,
                  device=args.device)


def cmd_zoo(args: argparse.Namespace) -> None:
    from landform import zoo

    if args.action == "list":
        for name in zoo.names():
            size = zoo.path(name).stat().st_size / 2**20
            print(f"{name:40s} {size:6.2f} MB")
        return
    if not args.name:
        raise LandformError(f"`landform zoo {args.action}` needs a model name; see `landform zoo list`")
    if args.action == "show":
        print(zoo.card(args.name))
        return
    task, trainer = tasks.find_trainer(args.name)
    runs = tasks.runs_dir(args.runs_dir)
    kwargs = {"device": args.device, "seed": args.seed, "resume": not args.restart, "progress": True}
    if tasks.takes_keyword(trainer, "zoo_dir"):
        kwargs["zoo_dir"] = zoo.ZOO_DIR if args.install else guard.prepare_out(runs / "zoo")
    elif not args.install:
        raise LandformError(f"the trainer of {args.name} (task {task.name}) can only write into the package's zoo "
                            f"(it takes no zoo_dir yet); pass --install to let it")
    if tasks.takes_keyword(trainer, "run_dir"):
        kwargs["run_dir"] = runs / args.name
    else:
        print(f"landform: note: the trainer of {args.name} takes no run_dir; its checkpoints go where it chooses",
              file=sys.stderr)
    from landform.io import folder_lock

    with folder_lock(runs / args.name):  # one trainer per entry: a second `zoo train NAME` is refused
        trainer(**kwargs)
    where = kwargs.get("zoo_dir", zoo.ZOO_DIR)
    hint = "" if args.install else " (add --install to write it into the package's zoo)"
    print(f"trained {args.name}: wrote {Path(where) / args.name}.safetensors{hint}")


def build_parser() -> argparse.ArgumentParser:
    parser = guard.OneLineParser(prog="landform", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    task_names = _TaskNames(tasks.names())

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
        sub.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
        sub.add_argument("--threads", type=int, default=None,
                         help="CPU threads for torch (default: torch's; 1 is fastest on a busy machine)")

    def runs_dir(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--runs-dir", default=None,
                         help=f"where runs and checkpoints go (default: ${tasks.RUNS_ENV}, else "
                              "~/.cache/landform/runs)")

    fit_parser = commands.add_parser("fit", help="learn a landscape for a problem (learned start, learned steps, "
                                                 "anchored Θ, tuned inference); --recipe paper: the paper's plain Θ")
    fit_parser.add_argument("--problem", default=DEFAULT_PROBLEM,
                            help=f"package.module:factory -> Problem (default {DEFAULT_PROBLEM})")
    fit_parser.add_argument("--out", required=True, help="checkpoint directory (resumable)")
    fit_parser.add_argument("--resume", action="store_true", help="continue the fit in --out")
    fit_parser.add_argument("--recipe", default="fast", choices=("fast", "paper"),
                            help="fast (default): a learned start, learned update steps, an anchored Θ sized to F's "
                                 "cost and inference settings tuned for the answer, all in one artifact; paper: the "
                                 "paper's plain Θ (Algorithm 1, Eq. 3)")
    fit_parser.add_argument("--time", default=None,
                            help="the fit's time budget, e.g. 10m, 90s or 1h, or off (default 8m with --recipe fast, "
                                 "none with paper); the fast recipe also stops when validation stops improving. "
                                 "With off it stops on that alone and decides sizes and settings by counted work, "
                                 "not measured time: a seed reproduces the fit, and a killed fit resumes to it")
    fit_parser.add_argument("--rounds", type=int, default=None,
                            help="B, rounds of collect + train (default 60 with --recipe paper; with fast, at most "
                                 "300, fewer when validation stops improving)")
    fit_parser.add_argument("--start-steps", type=int, default=None,
                            help="with --recipe fast: at most this many training steps for the start and for the "
                                 "learned steps each (default 20000, fewer when validation stops improving)")
    fit_parser.add_argument("--trajectories", type=int, default=256, help="N, trajectories per round")
    fit_parser.add_argument("--steps", type=int, default=20, help="T, steps per trajectory")
    fit_parser.add_argument("--lr-z", type=float, default=0.1,
                            help="Adam step size on z along the collected trajectories (default 0.1)")
    fit_parser.add_argument("--lr", type=float, default=1e-3,
                            help="AdamW step size on Θ (default 1e-3, as `landform demo synthetic` fits, kept "
                                 "for compatibility; the library's fit() defaults to 1e-4)")
    fit_parser.add_argument("--weight-decay", type=float, default=0.1)
    fit_parser.add_argument("--batch-size", type=int, default=256)
    fit_parser.add_argument("--buffer-rounds", type=int, default=1, help="rounds of trajectories replayed")
    fit_parser.add_argument("--method", default="buffer", help="buffer (Algorithm 1) | online | random")
    fit_parser.add_argument("--init", default="zeros", help="z0: zeros (the paper's) or gaussian")
    fit_parser.add_argument("--hidden", type=int, default=None,
                            help="Θ's hidden width (default 1024 with --recipe paper; with fast, sized to F's cost)")
    fit_parser.add_argument("--z-dim", type=int, default=None, help="dimension of Z (default: that of X)")
    fit_parser.add_argument("--additive", action="store_true", help="x = base + Θ(z) (needs Problem.base)")
    fit_parser.add_argument("--autocast", default=None, choices=("bf16", "fp16"),
                            help="run F under torch.autocast at this precision (fp16: CUDA only)")
    common(fit_parser)

    # Defaults of None are filled in by prepare() (PROBLEM_DEFAULTS); with --task, an option the task does not
    # use is refused, and the ones it uses keep their meaning: --steps is always inversion steps.
    for name, helptext in (("invert", "invert observations, in X or in Z with a fitted Θ"),
                           ("compare", "baseline (X, swept lr) against the landscape (Z) on the same data")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("inputs", nargs="*", help="with --task: images, folders or files to use")
        sub.add_argument("--task", default=None, choices=task_names, metavar="TASK",
                         help=f"run a task on the inputs with its shipped models: {', '.join(task_names)}, or "
                              "package.module:attribute (a landform.tasks.Task); options it does not use are "
                              "refused")
        sub.add_argument("--problem", default=None,
                         help=f"package.module:factory -> Problem (default {DEFAULT_PROBLEM})")
        sub.add_argument("--mapping", default=None,
                         help="the folder `landform fit` wrote (a landscape or a plain Θ)"
                              + (" (omit for plain descent)" if name == "invert" else ""))
        sub.add_argument("--observations", default=None, help=".npy or .safetensors (default: test draws)")
        sub.add_argument("--count", type=int, default=None, help="test observations drawn if none given (default 256)")
        sub.add_argument("--steps", type=int, default=None,
                         help="inversion steps (default 200; with --task, the task's default)")
        sub.add_argument("--optimizer", default=None, help="adam (default), sgd, rmsprop, adamw, adagrad, lbfgs")
        sub.add_argument("--mode", default=None, choices=tuple(MODES),
                         help=f"inference with Θ (default {DEFAULT_MODE}): "
                              + ", ".join(f"{name} ({mode.help})" for name, mode in MODES.items()))
        sub.add_argument("--out", required=True, help="output directory")
        sub.add_argument("--allow-other-model", action="store_true",
                         help="use a landscape although the problem's forward model differs from the one it was "
                              "fitted for (a one-line warning instead of an error)")
        common(sub)
        if name == "invert":
            sub.add_argument("--autocast", default=None, choices=("bf16", "fp16"),
                             help="run F under torch.autocast at this precision (fp16: CUDA only)")
            sub.add_argument("--lr", type=float, default=None,
                             help="step size on the optimized variable: z with --mapping, else x (default 0.1)")
            sub.add_argument("--init", default=None,
                             help="start: zeros (default), origin (zeros, nudged off a point where the gradient "
                                  "is exactly 0: what compare's baseline uses) or gaussian")
            sub.add_argument("--mask", default=None, help="observed entries (.npy/.safetensors, broadcast to y)")
        else:
            sub.add_argument("--lr", type=float, default=None,
                             help="step size on z of the landscape methods (default 0.1); the baseline's step "
                                  "size on x is swept on separate observations")

    demo = commands.add_parser("demo", help="the main job: a full report on the embedded defaults")
    demo.add_argument("task", nargs="?", default=tasks.DEFAULT_DEMO, choices=task_names, metavar="TASK",
                      help=f"{', '.join(task_names)} (default {tasks.DEFAULT_DEMO}), or package.module:attribute")
    demo.add_argument("--out", default="report", help="report root (default: report/); the task writes OUT/TASK")
    common(demo)

    paper = commands.add_parser("reproduce", help="regenerate one of the paper's tables or figures (or all)")
    paper.add_argument("name", choices=("table2", "table3", "table4", "table5", "table6", "fig3", "fig8", "scaling",
                                        "all"))
    paper.add_argument("--quick", action="store_true", help="tiny settings (seconds): checks that it runs")
    paper.add_argument("--out", help="report root (default: report/paper/; with --quick RUNS/paper-quick/)")
    runs_dir(paper)
    common(paper)

    zoo_parser = commands.add_parser("zoo", help="the shipped models: list, show NAME, train NAME")
    zoo_parser.add_argument("action", choices=("list", "show", "train"))
    zoo_parser.add_argument("name", nargs="?", default=None)
    zoo_parser.add_argument("--restart", action="store_true", help="train from scratch, ignoring checkpoints")
    zoo_parser.add_argument("--install", action="store_true",
                            help="write the trained weights into the package's zoo (default: RUNS_DIR/zoo)")
    runs_dir(zoo_parser)
    common(zoo_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input, failures and signals end it with one line (see ``landform.guard``)."""
    handlers = {"fit": cmd_fit, "invert": cmd_invert, "compare": cmd_compare, "demo": cmd_demo, "zoo": cmd_zoo,
                "reproduce": cmd_reproduce}
    return guard.run(build_parser, handlers, argv, prepare=prepare)


if __name__ == "__main__":
    sys.exit(main())
