"""The smallest template that exercises every stage: a floor plane and one box, an orbiting camera.

Tests and benchmarks that need "some job" write :func:`two_boxes_template` to a file instead of
spelling their own copy; the parameters are the things they vary (size, length, style).
"""

from __future__ import annotations


def two_boxes_template(*, name: str = "tiny", seed: int = 3, resolution: int = 64, frame_end: int = 4,
                       description: str = "two boxes on a floor", extra: str = "") -> str:
    """The template's TOML text: frames 1..``frame_end`` at ``resolution``², ``extra`` appended
    (for example a ``[style]`` table)."""
    text = f"""\
schema_version = 1
name = "{name}"
description = "{description}"
seed = {seed}

[generator]
kind = "none"

[[objects]]
name = "floor"
primitive = "plane"
position = [0.0, 0.0, 0.0]
size = [6.0, 6.0]
class = "floor"

[[objects]]
name = "box1"
primitive = "box"
position = [0.0, 0.0, 0.5]
size = [1.0, 1.0, 1.0]
class = "table"

[camera.path]
kind = "orbit"
center = [0.0, 0.0, 0.5]
radius = 4.0
height = 2.0
start_angle = 0.0
end_angle = 40.0

[render]
resolution = [{resolution}, {resolution}]
frame_start = 1
frame_end = {frame_end}
fps = 12
"""
    return text + (("\n" + extra) if extra else "")


#: The default: 64², four frames (the CLI tests' job).
TINY = two_boxes_template()
