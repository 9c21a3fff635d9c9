"""Control images estimated from a user's reference photo, with controlnet-aux (optional).

When a shot should follow a photo rather than a procedural scene, the annotators the ControlNets
were trained with estimate the control images: depth with MiDaS, normals with NormalBae, lines
with MLSD (straight lines, for architecture) or lineart. Segmentation is not estimated (greybox's
exact segmentation comes from the scene).

controlnet-aux is the optional extra ``greybox[annotators]``. It pulls torchvision, whose PyPI
build is CUDA-only and breaks diffusers and transformers on a CPU machine, so install it on GPU
machines only: ``pip install 'greybox[annotators]'`` (with the torchvision matching the
installed torch). Everything here imports it lazily; without it, ``AnnotatorsUnavailableError``
(an ``ImportError``) says so.
"""

from __future__ import annotations

import numpy as np

from greybox.errors import InputError

ANNOTATOR_REPO = "lllyasviel/Annotators"
ESTIMATED_KINDS = ("depth", "normal", "lines")
LINE_DETECTORS = ("mlsd", "lineart")

INSTALL_HINT = (
    "controlnet-aux is an optional extra for GPU machines: pip install 'greybox[annotators]' there "
    "(it needs a torchvision matching the installed torch; on a CPU machine its torchvision breaks diffusers). "
    "Without it, use control images rendered from a template (greybox passes)."
)


class AnnotatorsUnavailableError(ImportError):
    """controlnet-aux (or the torchvision it needs) cannot be imported."""


def require_controlnet_aux():
    """Import and return the ``controlnet_aux`` module, or raise ``AnnotatorsUnavailableError`` saying why and how to install it."""
    try:
        import torchvision  # noqa: F401  - controlnet-aux needs it; a broken build fails here first
        import controlnet_aux
    except Exception as error:  # ImportError, or a torchvision whose C extension does not load
        raise AnnotatorsUnavailableError(f"reference-photo annotators are unavailable ({type(error).__name__}: {error}). {INSTALL_HINT}") from error
    return controlnet_aux


def estimate_control_images(
    photo: np.ndarray,
    kinds,
    *,
    width: int,
    height: int,
    line_detector: str = "mlsd",
    annotator_repo: str = ANNOTATOR_REPO,
) -> dict[str, np.ndarray]:
    """``{kind: uint8 (height, width, 3)}`` estimated from ``photo`` (uint8 (H, W, 3)) for kinds in
    depth, normal, lines. The photo is resized to the output size first (Lanczos: it is a photo,
    not a label map), and each annotator's output is brought back to exactly that size."""
    # 1. Check inputs.
    kinds = list(kinds)
    bad = [k for k in kinds if k not in ESTIMATED_KINDS]
    if bad:
        raise InputError(f"cannot estimate {', '.join(bad)} from a photo; estimable kinds: {', '.join(ESTIMATED_KINDS)}")
    if line_detector not in LINE_DETECTORS:
        raise InputError(f"line_detector {line_detector!r} is not one of {', '.join(LINE_DETECTORS)}")
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise InputError(f"the reference photo must be uint8 (H, W, 3), got {photo.dtype} {photo.shape}")
    aux = require_controlnet_aux()
    from PIL import Image

    # 2. Run the annotators the ControlNets were trained with.
    source = Image.fromarray(photo).resize((width, height), Image.LANCZOS)
    detectors = {
        "depth": lambda: aux.MidasDetector.from_pretrained(annotator_repo),
        "normal": lambda: aux.NormalBaeDetector.from_pretrained(annotator_repo),
        "lines": lambda: (aux.MLSDdetector if line_detector == "mlsd" else aux.LineartDetector).from_pretrained(annotator_repo),
    }
    results = {}
    for kind in kinds:
        estimated = detectors[kind]()(source, detect_resolution=min(width, height), image_resolution=min(width, height))
        if not isinstance(estimated, Image.Image):
            estimated = Image.fromarray(np.asarray(estimated))
        # 3. Exactly the output size (bilinear: these are continuous maps, never segmentation).
        results[kind] = np.asarray(estimated.convert("RGB").resize((width, height), Image.BILINEAR), dtype=np.uint8)
    return results
