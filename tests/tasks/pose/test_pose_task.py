"""The pose task end to end on the shipped weights: invert/compare on files, bad files, a short comparison."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from landform.errors import LandformError
from landform.start import RefinedStart
from landform.tasks.pose import TRAINERS, compare_inputs, invert_inputs
from landform.tasks.pose.evaluate import check_targets, evaluate_split, methods
from landform.tasks.pose.kinematics import KEYPOINTS, Kinematics, PinholeCamera
from landform.tasks.pose.load import PoseModels, load_landscape, load_theta
from landform.tasks.pose.losses import observation
from landform.tasks.pose.model import load_vae
from landform.tasks.pose.problem import observe, pose_problem, split_poses
from landform.tasks.pose.train import train_landscape
from landform.tasks.pose.user import read_observation


@pytest.fixture(scope="module")
def joints():
    return Kinematics()(split_poses("in_distribution")[:2])


def test_trainers_cover_the_zoo_entries():
    kinds = ("pose_params", "joints_3d", "keypoints_2d")
    assert set(TRAINERS) == {"pose-vae", *(f"pose-{entry}-{kind}" for kind in kinds
                                           for entry in ("theta", "landscape"))}
    names = list(TRAINERS)  # dependency order: the landscape's evaluation needs Eq. 3's Θ, both the VAE
    assert names[0] == "pose-vae" and all(names.index(f"pose-theta-{k}") < names.index(f"pose-landscape-{k}")
                                          for k in kinds)


def test_invert_3d_joints_from_json_with_mask(tmp_path, joints):
    mask = [name.startswith(("left", "chest")) for name in KEYPOINTS]
    values = joints[0].tolist()
    values[KEYPOINTS.index("right_knee")] = [float("nan")] * 3  # allowed: the joint is hidden
    path = tmp_path / "frame.json"
    path.write_text(json.dumps({"joints_3d": values, "mask": mask}))  # NaN is valid for Python json
    invert_inputs([str(path)], tmp_path / "out", steps=30, progress=False)
    record = json.loads((tmp_path / "out" / "frame.json").read_text())
    pose = record["poses"][0]
    assert record["learned_start"] is False  # the learned start only saw whole bodies: hidden joints skip it
    assert len(pose["pose_parameters"]) == 76 and set(pose["joint_positions"]) == set(KEYPOINTS)
    fitted = torch.tensor([pose["joint_positions"][k] for k in KEYPOINTS])
    observed = torch.tensor(mask)
    assert (fitted - joints[0])[observed].norm(dim=-1).mean() < 0.1  # within 10 cm on observed joints


def test_compare_2d_keypoints_from_npy(tmp_path, joints):
    path = tmp_path / "kp.npy"
    np.save(path, PinholeCamera()(joints).numpy())
    summary = compare_inputs([str(path)], tmp_path / "cmp", steps=20, progress=False)
    assert summary["kp"]["loss"] == "keypoints_2d" and summary["kp"]["count"] == 2
    assert (tmp_path / "cmp" / "summary.json").exists()


@pytest.mark.parametrize("content, message", [
    ({"joints_3d": [[0.0, 0.0, 0.0]] * 5}, "expected 17 joints"),
    ({"joints_3d": [[float("nan"), 0.0, 0.0]] + [[0.0, 0.0, 0.0]] * 16}, "NaN"),
    ({"keypoints_2d": [[0.0, 0.0]] * 17, "mask": [False] * 17}, "hides every joint"),
    ({"pose": 1}, "exactly one of"),
])
def test_bad_files_fail_with_one_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(LandformError, match=message) as error:
        read_observation(path)
    assert "\n" not in str(error.value)


def test_bad_suffix_and_missing_file(tmp_path):
    (tmp_path / "a.txt").write_text("1")
    with pytest.raises(LandformError, match=r"\.json or \.npy"):
        read_observation(tmp_path / "a.txt")
    with pytest.raises(LandformError, match="not found"):
        read_observation(tmp_path / "missing.npy")


@pytest.fixture(scope="module")
def short_block():
    return evaluate_split("pose_params", PoseModels.load("pose_params"), "in_distribution", count=32, lr=0.5,
                          steps=20, bootstrap=100, timing_repeats=1)


def test_short_comparison_reports_both_modes_with_intervals(short_block):
    block = short_block
    assert block["count"] == 32 and block["steps"][-1] == 20 and block["baseline_lr"] == 0.5
    for key in ("baseline", "landscape", "landscape_pure", "steps_to_baseline_200", "seconds_to_baseline_200",
                "speedup_at_20_ci95", "improvement_at_200_ci95", "steps_to_baseline_200_ci95",
                "wallclock_speedup_at_20", "worst_ratio_from_5", "time_per_step_ms", "seconds_to_baseline_200_ci95"):
        assert key in block, key
    pure = block["methods"]["landscape_pure"]
    assert {"speedup_at_20", "steps_to_baseline_200", "wallclock_speedup_at_20_ci95"} <= set(pure)
    assert block["landscape"][-1] < block["baseline"][-1]
    assert block["speedup_at_20"] > 1.0
    assert block["evaluations"]["landscape"] == block["evaluations"]["baseline"]  # same number of F evaluations
    # The learned start: the practitioners' pipeline is reported beside ours, and its pass is timed.
    assert "encoder_init" in block["methods"] and block["encoder_init"][0] < block["baseline"][0]
    assert block["landscape"][-1] <= block["encoder_init"][-1]
    assert block["worst_ratio_to_encoder_init_from_1"] > 0
    assert 1 <= block["worst_step_to_encoder_init_from_1"] <= 20
    assert block["start_ms"]["landscape"] > 0 and block["start_ms"]["landscape_pure"] == 0


def test_targets_are_checked_per_loss_and_split(short_block):
    summary = {key: short_block for key in ("in_distribution", "ood")}
    summary.update({f"{kind}/{split}": short_block for kind in ("joints_3d", "keypoints_2d")
                    for split in ("in_distribution", "ood")})
    checks = check_targets(summary)
    assert len(checks) == 3 * 5
    assert all({"target", "measured", "ci95", "met"} <= set(c) for c in checks.values())


def test_pose_problem_draws_seeded_observations():
    problem = pose_problem("joints_3d", load_vae())
    first = problem.train_observations(6, torch.Generator().manual_seed(3))
    again = problem.train_observations(6, torch.Generator().manual_seed(3))
    assert first.shape == (6, len(KEYPOINTS), 3) and torch.isfinite(first).all() and torch.equal(first, again)
    assert problem.test_observations(4, torch.Generator().manual_seed(0)).shape == (4, len(KEYPOINTS), 3)
    assert problem.x_shape == (load_vae().latent_dim,)


def test_theta_fitted_on_another_vae_is_refused(tmp_path):
    from landform import zoo

    for suffix in (".safetensors", ".json", ".md"):
        shutil.copy(zoo.ZOO_DIR / f"pose-theta-pose_params{suffix}", tmp_path)
    (tmp_path / "pose-vae.safetensors").write_bytes(b"another vae")
    with pytest.raises(LandformError, match="another pose-vae"):
        load_theta("pose_params", directory=tmp_path)


def test_cli_invert_task_pose_writes_pose_and_joints(tmp_path, joints, capsys):
    from landform.cli import main

    path = tmp_path / "joints.npy"
    np.save(path, joints.numpy())
    assert main(["invert", "--task", "pose", str(path), "--out", str(tmp_path / "o"), "--steps", "10"]) == 0
    record = json.loads((tmp_path / "o" / "joints.json").read_text())
    assert record["observation"] == "joints_3d" and len(record["poses"]) == 2 and record["learned_start"]


def test_cli_prints_one_line_for_a_bad_file(tmp_path, capsys):
    from landform.cli import main

    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((12, 3)))
    assert main(["invert", "--task", "pose", str(path), "--out", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err.strip()
    assert "expected 17 joints" in err and len(err.splitlines()) == 1


def test_shipped_models_run_the_default_mode_from_the_learned_start():
    models = PoseModels.load("keypoints_2d")
    assert models.landscape is not None and models.landscape.refiner is not None  # the task keeps the step
    encoder = models.encoder  # E(y), then its error-feedback step through this loss's F
    assert isinstance(encoder, RefinedStart) and encoder.start is models.landscape.start
    y = observe("keypoints_2d", models.vae, split_poses("validation", count=8))
    with torch.no_grad():
        x0 = models.landscape.start(y)
        assert not torch.allclose(encoder(y), x0)
        forward = models.landscape.start_for(lambda x: torch.zeros_like(y))  # R sees F through the given forward
        assert not torch.allclose(forward(y), encoder(y))
    assert models.landscape.mapping.additive
    chosen = {m.name: m for m in methods(models)}
    assert list(chosen) == ["baseline", "encoder_init", "landscape", "landscape_pure"]
    assert chosen["landscape"].use_base and chosen["landscape"] == models.landscape.method("landscape")
    assert not chosen["landscape_pure"].use_base and chosen["landscape_pure"].mapping is models.theta


@pytest.mark.parametrize("kind", ["joints_3d", "keypoints_2d"])
def test_shipped_landscape_loads_through_the_one_loader_as_it_loaded_before(kind):
    """``zoo.load_landscape`` gives the landscape the entry held (as ``Landscape.from_state`` on its float32
    weights did before), with the VAE it was fitted on in ``requires``; its methods invert bit for bit alike."""
    from landform import zoo
    from landform.landscape import Landscape

    models = PoseModels.load(kind)
    name = f"pose-landscape-{kind}"
    state, config = zoo.load(name)
    old = Landscape.from_state({k: v.float() for k, v in state.items()}, config, zoo.path(name))
    assert models.landscape.requires["zoo"] == {"pose-vae": zoo.fingerprint("pose-vae")}
    assert models.landscape.settings == old.settings
    y = observe(kind, models.vae, split_poses("validation", count=4))
    forward, runs = observation(kind, models.vae.decoder).forward, []
    for landscape in (models.landscape, old):
        problem = pose_problem(kind, models.vae, base=landscape.start_for(forward))
        method = landscape.method("landscape")
        runs.append(method.run(problem, y, method.lr, steps=5, seed=0))
    assert torch.equal(runs[0].x, runs[1].x) and torch.equal(runs[0].losses, runs[1].losses)


def test_landscape_is_learned_by_the_core_recipe_resumes_and_refuses_another_vae(tmp_path):
    from landform import recipe, tuning, zoo
    from landform.landscape import Landscape

    run, directory = tmp_path / "run", tmp_path / "zoo"
    directory.mkdir()
    for name in ("pose-vae", "pose-theta-joints_3d"):  # the landscape is evaluated beside Eq. 3's Θ
        for suffix in (".safetensors", ".json", ".md"):
            shutil.copy(zoo.path(name).with_suffix(suffix), directory / f"{name}{suffix}")
    settings = {"rounds": 2, "trajectories": 8, "start_steps": 20, "pool_size": 64, "start_hidden": 32,
                "hidden": 32, "z_dim": 16}
    tiny = {"settings": settings, "run": run, "directory": directory, "progress": False,
            "evaluation": {"count": 4, "lr": 0.1, "steps": 20, "timing_repeats": 1, "bootstrap": 0}}
    with pytest.MonkeyPatch.context() as patch:  # tuning and evaluation on 4 frames over 20 steps
        patch.setattr(recipe, "TUNE_COUNT", 4)
        patch.setattr(tuning, "REPORT_HORIZON", 20)
        first = train_landscape("joints_3d", **tiny)
        assert isinstance(first, Landscape) and first.start is not None and first.start.layers == 3
        loaded = load_landscape("joints_3d", directory=directory)
        assert loaded.settings == first.settings and loaded.record["recipe"] == "fast"
        # A rerun resumes: the saved start is reused (the same weights), Θ's fit continues from its checkpoint.
        again = train_landscape("joints_3d", **tiny)
    assert all(torch.equal(a, b) for a, b in zip(first.start.state_dict().values(),
                                                   again.start.state_dict().values(), strict=True))
    card = (directory / "pose-landscape-joints_3d.md").read_text()
    assert "landform zoo train pose-landscape-joints_3d" in card and "landform.recipe.learn" in card
    (directory / "pose-vae.safetensors").write_bytes(b"another vae")
    with pytest.raises(LandformError, match="another pose-vae"):
        load_landscape("joints_3d", directory=directory)
