"""Every reproduction of the paper suite runs on tiny settings and writes its report (keys, not numbers)."""

import json
from pathlib import Path

import pytest

from landform import LandformError
from landform.cli import main
from landform.paper import REPRODUCTIONS, reproduce


def test_every_reproduction_runs_quick_and_writes_its_report(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDFORM_RUNS", str(tmp_path / "runs"))
    summaries = reproduce("all", out_root=tmp_path, quick=True, progress=False)
    assert set(summaries) == {"table2", "table3", "table4", "table5", "table6", "fig3", "fig8", "scaling"} \
        == set(REPRODUCTIONS)
    for name, summary in summaries.items():
        folder = tmp_path / name
        written = json.loads((folder / "summary.json").read_text())
        assert written["command"] == f"landform reproduce {name}" and written["quick"] is True
        assert f"landform reproduce {name}" in (folder / "summary.md").read_text()
        assert summary["title"] in (folder / "summary.md").read_text()
    assert set(summaries["table2"]["images"]) == {"buffer", "online", "random", "baseline", "paper_budget"}
    assert set(summaries["table2"]["synthetic"]["buffer"]) == {"20", "200"}
    assert set(summaries["table2"]["images"]["online"]["ood"]["200"]) == {"mean", "std", "values"}
    assert len(summaries["table6"]["results"]["ood"]["improvement"]["values"]) == len(summaries["table6"]["seeds"])
    assert len(summaries["table4"]["spectrum"]["rows"]) == 5 and len(summaries["table5"]["spectrum"]["rows"]) == 5
    assert set(summaries["table6"]["results"]) == {"in_distribution", "ood"}
    assert set(summaries["table3"]["results"]) == {"16", "64"}
    for figure in ("fig3/fig3.png", "fig8/fig8.png"):
        assert (tmp_path / figure).stat().st_size > 10_000
    assert {"baseline", "encoder_init", "landscape", "landscape_pure"} <= set(summaries["fig3"]["blocks"]["ood"])
    for name in ("table2", "table4", "table5", "fig3"):  # the pure Θ they ran, and its fitting budget
        assert {"name", "source", "rounds", "trajectory_steps"} <= set(summaries[name]["theta"])
    assert set(summaries["table2"]["images"]["paper_budget"]["ood"]) == {"20", "200"}
    assert summaries["scaling"]["points"][0]["trajectory_steps"] == 0 and (tmp_path / "scaling/scaling.png").exists()


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
