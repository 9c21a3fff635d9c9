"""The per-frame files of a job folder and their names.

A frame's files are named ``NNNN``: the frame number zero-padded to at least four digits
(7 -> ``0007``, 12345 -> ``12345``). Relative to a job (or shot) folder, as POSIX paths:

- ``passes/NNNN.exr``: the frame's metric passes (:mod:`passes.pass_exr`);
- ``control/<kind>/NNNN.png``: its control images, one folder per kind (``scenes.template_schema.CONTROL_PASSES``);
- ``frames/NNNN.png``: the stylised frame.
"""

from __future__ import annotations


def frame_name(frame: int) -> str:
    """The frame number zero-padded to at least four digits: 7 -> '0007', 12345 -> '12345'."""
    return f"{int(frame):04d}"


def pass_exr_path(frame: int) -> str:
    """``passes/NNNN.exr``."""
    return f"passes/{frame_name(frame)}.exr"


def control_png_path(kind: str, frame: int) -> str:
    """``control/<kind>/NNNN.png``."""
    return f"control/{kind}/{frame_name(frame)}.png"


def frame_png_path(frame: int) -> str:
    """``frames/NNNN.png``."""
    return f"frames/{frame_name(frame)}.png"
