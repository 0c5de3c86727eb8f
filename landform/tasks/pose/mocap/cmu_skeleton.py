"""The CMU 31-bone skeleton (ASF/AMC files and dm_control's CMU humanoid share its bone names) mapped onto
the DeepMimic humanoid.

Its root frame has x to the subject's left, y up and z forward; at rest it stands in a T-pose. Each
DeepMimic segment follows one CMU body's rotation and points along one CMU bone (see
``retarget.segment_orientations``): the DeepMimic chest, one rigid piece from its chest joint (about the
CMU thorax) to its neck, follows the thorax and points from the lower back's joint to the lower neck's,
so that lumbar bending moves the neck and shoulders as it does in the source.
"""

from __future__ import annotations

from landform.tasks.pose.mocap.retarget import SegmentSource, basis

# CMU root axes (x left, y up, z forward) -> DeepMimic axes (x forward, y up, z right).
TO_DEEPMIMIC = basis([[0, 0, 1], [0, 1, 0], [-1, 0, 0]])


def _side(prefix: str, side: str) -> dict[str, SegmentSource]:
    return {f"{side}_shoulder": SegmentSource(f"{prefix}humerus", f"{prefix}humerus", f"{prefix}radius"),
            f"{side}_elbow": SegmentSource(f"{prefix}radius", f"{prefix}radius", f"{prefix}wrist"),
            f"{side}_hip": SegmentSource(f"{prefix}femur", f"{prefix}femur", f"{prefix}tibia"),
            f"{side}_knee": SegmentSource(f"{prefix}tibia", f"{prefix}tibia", f"{prefix}foot"),
            f"{side}_ankle": SegmentSource(f"{prefix}foot", f"{prefix}foot", f"{prefix}toes", align=False)}


SEGMENTS = {"chest": SegmentSource("thorax", "lowerback", "lowerneck"),
            "neck": SegmentSource("head", "lowerneck", "head"),
            **_side("r", "right"), **_side("l", "left")}
# The CMU joints each DeepMimic bone is compared with (retargeting error as an angle between bones).
BONES = {name: (spec.start, spec.end) for name, spec in SEGMENTS.items() if spec.align}
