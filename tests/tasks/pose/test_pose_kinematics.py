"""Forward kinematics against pybullet's own, Gram-Schmidt, and the camera."""

from __future__ import annotations

import pybullet
import pytest
import torch

from landform.tasks.pose import data
from landform.tasks.pose.kinematics import KEYPOINTS, Kinematics, PinholeCamera
from landform.tasks.pose.model import gram_schmidt, matrix_to_six


@pytest.fixture(scope="module")
def bullet():
    client = pybullet.connect(pybullet.DIRECT)
    body = pybullet.loadURDF(str(data.urdf_path()), [0, 0, 0], globalScaling=0.25, useFixedBase=True,
                             flags=pybullet.URDF_MAINTAIN_LINK_ORDER, physicsClientId=client)
    index = {pybullet.getJointInfo(body, i, physicsClientId=client)[1].decode(): i
             for i in range(pybullet.getNumJoints(body, physicsClientId=client))}
    yield client, body, index
    pybullet.disconnect(client)


@pytest.mark.parametrize("clip", ["cartwheel", "kick", "crawl"])
def test_kinematics_matches_pybullet(bullet, clip):
    client, body, index = bullet
    frames = data.read_frames(clip)[::15]
    quats, hinges = data.frames_to_quaternions(frames)
    ours = Kinematics().double()(data.frames_to_pose(frames).double())
    sites = {"head": "neck", "right_foot": "right_ankle", "left_foot": "left_ankle"}
    worst = 0.0
    for n in range(frames.shape[0]):
        for k, joint in enumerate(data.SPHERICAL):
            w, x, y, z = quats[n, k].tolist()
            pybullet.resetJointStateMultiDof(body, index[joint], [x, y, z, w], physicsClientId=client)
        for k, joint in enumerate(data.HINGES):
            pybullet.resetJointStateMultiDof(body, index[joint], [float(hinges[n, k])], physicsClientId=client)
        for i, name in enumerate(KEYPOINTS):
            if name in sites:  # a link's center of mass
                ref = pybullet.getLinkState(body, index[sites[name]], computeForwardKinematics=True,
                                            physicsClientId=client)[0]
            else:  # the link (= joint) frame
                ref = pybullet.getLinkState(body, index[name], computeForwardKinematics=True,
                                            physicsClientId=client)[4]
            worst = max(worst, float((torch.tensor(ref, dtype=torch.float64) - ours[n, i]).abs().max()))
    assert worst < 1e-5


def test_kinematics_is_differentiable_and_rest_pose_is_upright():
    pose = data.frames_to_pose(data.read_frames("walk")[:4]).requires_grad_(True)
    points = Kinematics()(pose)
    points.sum().backward()
    assert pose.grad is not None and torch.isfinite(pose.grad).all()
    rest = torch.cat([torch.eye(3).flatten().repeat(8), torch.zeros(4)])[None]
    rest_points = Kinematics()(rest)[0]
    head, foot = rest_points[KEYPOINTS.index("head")], rest_points[KEYPOINTS.index("left_foot")]
    assert 1.4 < float(head[1] - foot[1]) < 2.0  # a human-sized body in meters, y up


def test_gram_schmidt_gives_rotations_and_inverts_six_d():
    six = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    rotations = gram_schmidt(six)
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), torch.eye(3).expand(64, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(64), atol=1e-5)
    assert torch.allclose(gram_schmidt(matrix_to_six(rotations)), rotations, atol=1e-5)


def test_camera_projects_points_in_front_into_the_image():
    camera = PinholeCamera()
    points = Kinematics()(data.frames_to_pose(data.read_frames("walk")[:3]))
    image = camera(points)
    assert image.shape == (3, len(KEYPOINTS), 2)
    assert image.abs().max() < 1.0
    head, foot = KEYPOINTS.index("head"), KEYPOINTS.index("left_foot")
    assert (image[:, head, 1] > image[:, foot, 1]).all()  # image y points up
