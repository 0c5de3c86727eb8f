"""Every reproduction of the paper suite runs on tiny settings and writes its report (keys, not numbers)."""

import json
from pathlib import Path

import pytest
import torch

from landform import LandformError
from landform.cli import main
from landform.paper import REPRODUCTIONS, reproduce

NAMES = ("table2", "table3", "table4", "table5", "table6", "fig3", "fig8", "scaling")


def _table2(summary: dict, folder: Path) -> None:
    assert set(summary["images"]) == {"buffer", "online", "random", "baseline", "paper_budget"}
    assert set(summary["synthetic"]["buffer"]) == {"20", "200"}
    assert set(summary["images"]["online"]["ood"]["200"]) == {"mean", "std", "values"}
    assert set(summary["images"]["paper_budget"]["ood"]) == {"20", "200"}


def _table6(summary: dict, folder: Path) -> None:
    assert len(summary["results"]["ood"]["improvement"]["values"]) == len(summary["seeds"])
    assert set(summary["results"]) == {"in_distribution", "ood"}


def _spectrum(summary: dict, folder: Path) -> None:
    assert len(summary["spectrum"]["rows"]) == 5


def _fig3(summary: dict, folder: Path) -> None:
    assert (folder / "fig3.png").stat().st_size > 10_000
    assert {"baseline", "encoder_init", "landscape", "landscape_pure"} <= set(summary["blocks"]["ood"])


def _table3(summary: dict, folder: Path) -> None:
    assert set(summary["results"]) == {"16", "64"}


def _fig8(summary: dict, folder: Path) -> None:
    assert (folder / "fig8.png").stat().st_size > 10_000


def _scaling(summary: dict, folder: Path) -> None:
    assert summary["points"][0]["trajectory_steps"] == 0 and (folder / "scaling.png").exists()


CHECKS = {"table2": _table2, "table3": _table3, "table4": _spectrum, "table5": _spectrum, "table6": _table6,
          "fig3": _fig3, "fig8": _fig8, "scaling": _scaling}


@pytest.mark.parametrize("name", NAMES)
def test_each_reproduction_runs_quick_and_writes_its_report(name, tmp_path, monkeypatch):
    """One test per reproduction (so that the suite's two workers share them): it runs on tiny settings and
    writes its report; keys, not numbers."""
    from landform.paper import tables
    from landform.paper.registry import ReproductionScale

    monkeypatch.setenv("LANDFORM_RUNS", str(tmp_path / "runs"))
    fitted, fit_theta = [], tables.fit_image_theta

    def spy(models, observations, scale, run_name, **options):
        fitted.append((run_name, options.get("method", "buffer")))
        return fit_theta(models, observations, scale, run_name, **options)

    monkeypatch.setattr(tables, "fit_image_theta", spy)
    summary = reproduce(name, out_root=tmp_path, quick=True, progress=False)[name]
    # the fits experiments/paper_table_fits.py runs ahead are the ones the tables resume (random Θ fits nothing)
    planned = {run_name for run_name, _, _ in tables.planned_fits(ReproductionScale(quick=True))}
    assert {run_name for run_name, method in fitted if method != "random"} <= planned
    assert bool(fitted) == (name in ("table2", "table3", "table6"))
    folder = tmp_path / name
    written = json.loads((folder / "summary.json").read_text())
    assert written["command"] == f"landform reproduce {name}" and written["quick"] is True
    assert written["seconds"] > 0 and written["threads"] == torch.get_num_threads()
    assert f"landform reproduce {name}" in (folder / "summary.md").read_text()
    assert summary["title"] in (folder / "summary.md").read_text()
    if name in ("table2", "table4", "table5", "fig3"):  # the pure Θ they ran, and its fitting budget
        assert {"name", "source", "rounds", "trajectory_steps"} <= set(summary["theta"])
    CHECKS[name](summary, folder)


def test_all_runs_every_registered_reproduction(tmp_path, monkeypatch):
    """``reproduce("all")`` runs each registered reproduction into its own folder, each marked quick and timed
    (the reproductions here record their calls; the real ones are tested one by one above)."""
    from landform.paper import figures, tables  # noqa: F401  (they register themselves)
    from landform.paper.registry import report_files
    from landform.report import write_json, write_text

    assert set(NAMES) == set(REPRODUCTIONS)
    calls = []

    def fake(name):
        def run(scale, out):
            calls.append((name, scale.quick))
            summary = {"title": name}
            write_json(out / "summary.json", summary)
            write_text(out / "summary.md", f"# {name}\n")
            for figure in report_files(name)[2:]:  # every file its report is committed with
                write_text(out / figure, "a figure")
            return summary
        return run

    monkeypatch.setattr("landform.paper.REPRODUCTIONS", {name: fake(name) for name in NAMES})
    summaries = reproduce("all", out_root=tmp_path, quick=True, progress=False)
    assert calls == [(name, True) for name in NAMES] and list(summaries) == list(NAMES)
    for name in NAMES:
        written = json.loads((tmp_path / name / "summary.json").read_text())
        assert written["quick"] is True and written["seconds"] >= 0 and written["title"] == name


def test_unknown_reproduction_is_one_line(capsys):
    with pytest.raises(LandformError, match="unknown reproduction"):
        reproduce("table9", quick=True)
    with pytest.raises(SystemExit):
        main(["reproduce", "table9"])
    assert "invalid choice" in capsys.readouterr().err


def test_a_quick_run_goes_to_the_runs_folder_and_never_replaces_a_full_report(tmp_path, monkeypatch, capsys):
    from landform.paper import default_root

    monkeypatch.setenv("LANDFORM_RUNS", str(tmp_path / "runs"))
    assert default_root(quick=True) == tmp_path / "runs" / "paper-quick"
    assert default_root(quick=False) == Path("report/paper")
    (tmp_path / "table3").mkdir()
    (tmp_path / "table3" / "summary.json").write_text(json.dumps({"title": "Table 3", "quick": False}))
    with pytest.raises(LandformError, match="holds a full report"):
        reproduce("table3", out_root=tmp_path, quick=True, progress=False)
    assert main(["reproduce", "table3", "--quick", "--out", str(tmp_path)]) == 2  # before computing anything
    assert "holds a full report" in capsys.readouterr().err
    assert json.loads((tmp_path / "table3" / "summary.json").read_text())["quick"] is False


def test_an_interrupted_reproduction_leaves_the_old_report_whole(tmp_path, monkeypatch):
    """A reproduction's report folder (summary.json, summary.md, its figures) is replaced as one unit; a fake
    reproduction stands in for the real ones, which run above."""
    from report_faults import check_report_writes, fake_figure

    from landform.paper import registry
    from landform.paper.tables import finish_table

    def fake(scale, out):
        fake_figure(out / "fake.png")
        return finish_table(out, "fake", {"title": "A fake table"}, "| a | b |")

    monkeypatch.setitem(registry.REPRODUCTIONS, "fake", fake)
    monkeypatch.setitem(registry.FIGURES, "fake", ("fake.png",))
    assert registry.report_files("fake") == ("summary.json", "summary.md", "fake.png")
    check_report_writes(tmp_path / "fake", registry.report_files("fake"),
                        lambda: reproduce("fake", out_root=tmp_path, quick=True, progress=False), monkeypatch)
    assert json.loads((tmp_path / "fake" / "summary.json").read_text())["quick"] is True


def test_every_reproduction_names_the_figures_it_writes():
    """The files a reproduction's report is committed with: its summaries and the figures it registered."""
    from landform.paper import figures, tables  # noqa: F401  (they register themselves)
    from landform.paper.registry import report_files

    assert {name: report_files(name)[2:] for name in NAMES} == {
        **{name: () for name in NAMES}, "fig3": ("fig3.png",), "fig8": ("fig8.png",), "scaling": ("scaling.png",)}


def test_a_full_report_whose_commit_was_cut_short_is_never_replaced_by_a_quick_run(tmp_path, monkeypatch):
    """A full report committed but not yet moved into place (the writer killed just after its commit) is seen as
    the full report it is, so a quick run still refuses to replace it."""
    import landform.io.fs as lfs
    from landform.io import atomic_outputs
    from landform.paper.registry import report_files

    real = lfs.change

    def killed_after_the_commit(op, *args):
        if op == "replace" and Path(args[0]).parent.name == ".landform-commit":
            raise KeyboardInterrupt
        return real(op, *args)

    monkeypatch.setattr(lfs, "change", killed_after_the_commit)
    with pytest.raises(KeyboardInterrupt), atomic_outputs(tmp_path / "table3", report_files("table3")) as stage:
        (stage / "summary.json").write_text(json.dumps({"title": "Table 3", "quick": False}))
        (stage / "summary.md").write_text("# Table 3\n")
    monkeypatch.setattr(lfs, "change", real)
    assert not (tmp_path / "table3" / "summary.json").exists()
    with pytest.raises(LandformError, match="holds a full report"):
        reproduce("table3", out_root=tmp_path, quick=True, progress=False)
    assert json.loads((tmp_path / "table3" / "summary.json").read_text())["quick"] is False


def test_a_full_scaling_run_without_the_fits_snapshots_refuses_in_one_line(tmp_path, monkeypatch):
    # Without them it would draw two points and replace the committed figure's curve with them.
    monkeypatch.setenv("LANDFORM_RUNS", str(tmp_path / "runs"))
    with pytest.raises(LandformError, match=r"snapshots are not in .*zoo train images-landscape"):
        reproduce("scaling", out_root=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "scaling" / "summary.json").exists()
