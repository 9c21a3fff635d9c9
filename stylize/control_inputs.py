"""Read a frame's control images from ``JOB/control/<kind>/NNNN.png`` for the diffusion stylizer.

Control images reach the pipeline at exactly the output height and width: diffusers resizes a
control image of another size with Lanczos, which invents colours in a segmentation map. So a
control image of the wrong size is an error here, never silently resized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from greybox.errors import InputError
from greybox.frame_files import control_png_path
from scenes.template_schema import CONTROL_PASSES


def control_image_path(job_dir: Path, kind: str, frame: int) -> Path:
    """``job_dir/control/<kind>/NNNN.png``."""
    return Path(job_dir) / control_png_path(kind, frame)


def load_control_image(path: Path) -> np.ndarray:
    """An 8-bit RGB control image as uint8 (H, W, 3); greyscale is copied into three channels."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("RGB", "L", "RGBA", "I;16", "P"):
            raise InputError(f"control image {path} has mode {image.mode}; write 8-bit RGB or greyscale PNGs")
        if image.mode == "I;16":
            raise InputError(f"control image {path} is 16-bit; control images are 8-bit")
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(array)


def load_control_images(
    job_dir: Path, frame: int, kinds, *, expected_size: tuple[int, int] | None = None
) -> dict[str, np.ndarray]:
    """``{kind: uint8 (H, W, 3)}`` for ``frame`` from ``job_dir/control/<kind>/NNNN.png``.

    ``expected_size`` is the output ``(width, height)``; every image must have exactly that size
    (without it, all images must share one size). Raises ``InputError`` for a missing file or a
    size mismatch, naming the file, its size and the fix.
    """
    # 1. Check inputs.
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in CONTROL_PASSES]
    if unknown:
        raise InputError(f"unknown control kind(s) {', '.join(map(repr, unknown))}; use {', '.join(CONTROL_PASSES)}")
    # 2. Read every image.
    images = {}
    for kind in kinds:
        path = control_image_path(job_dir, kind, frame)
        if not path.is_file():
            raise InputError(
                f"control image {path} is missing: the {kind} ControlNet needs it; render the passes first "
                f"(greybox passes) with '{kind}' in passes.control"
            )
        images[kind] = load_control_image(path)
    # 3. Check sizes: the pipeline must never resample them.
    if images:
        if expected_size is None:
            first = next(iter(images.values()))
            expected_size = (first.shape[1], first.shape[0])
        check_control_sizes(images, expected_size, frame=frame, job_dir=job_dir)
    return images


def check_control_sizes(images: dict[str, np.ndarray], size: tuple[int, int], *, frame: int | None = None, job_dir: Path | None = None) -> None:
    """Raise ``InputError`` unless every control image is exactly ``size`` = (width, height)."""
    width, height = size
    for kind, image in images.items():
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"control image {kind!r} must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        if image.shape[:2] != (height, width):
            where = f" {control_image_path(job_dir, kind, frame)}" if job_dir is not None and frame is not None else ""
            raise InputError(
                f"control image {kind!r}{where} is {image.shape[1]}x{image.shape[0]} but the output is {width}x{height}; "
                "control images must be exactly the output size (diffusers would resample them with Lanczos, "
                "inventing segmentation colours): re-render the passes at render.resolution"
            )
