"""Pose (paper §4.2): recover body pose by inverting a VPoser-style VAE prior trained on real motion capture.

Data and skeleton come from the installed ``pybullet==3.2.7`` wheel; F is the VAE decoder, observed
through pose parameters, 3D joints (forward kinematics) or 2D keypoints (pinhole camera).
"""

from landform.tasks import Task, register
from landform.tasks.pose.report import demo
from landform.tasks.pose.train import TRAINERS
from landform.tasks.pose.user import compare_inputs, invert_inputs

__all__ = ["TRAINERS", "compare_inputs", "demo", "invert_inputs"]

register(Task("pose", "pose from 3D joints or 2D keypoints through a VAE prior (§4.2)", demo=demo,
              invert_inputs=invert_inputs, compare_inputs=compare_inputs, trainers=TRAINERS, options=("steps",)))
