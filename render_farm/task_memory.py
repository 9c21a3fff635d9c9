"""Each task's peak memory, estimated from the resolution and the passes asked for, and the check
that refuses a task its machine cannot hold, before it renders, saying what would fit.

The estimates are linear in the pixel count, calibrated with ``benchmarks/task_memory.py`` (peak
resident memory plus Blender's scratch EXR in /dev/shm, one frame of the bundled living room, 2
Cycles threads, on the project's 2-core CPU machine):

- passes: ``0.75 GB + 181 bytes a pixel``. Measured 1.51 GB at 2048^2, 3.79 GB at 4096^2,
  7.59 GB at 6144^2 (each within 0.1% of the estimate); 12.4 GB was reported at 8192^2 (the
  estimate says 12.9). Below 2048^2 the estimate is high by up to 0.25 GB (0.74 GB measured at
  1024^2). The peak comes while Cycles' buffers, Blender's render result and our read of its EXR
  are all held; the control images are made afterwards and do not raise it (2048^2: the same peak
  with one control image or four), nor does a scene of a few thousand triangles.
- The passes figure was calibrated with ``passes/NNNN.exr`` holding the 13 pass channels
  (``passes.exr_channels`` depth, normal, flow, instance, class, uv). Our EXR writer holds its
  file and its channel planes at once, after Blender's buffers are gone, so a layout that holds
  more adds what its writer holds beyond that one (``passes.pass_exr.writer_bytes_per_pixel``: the
  default, with the float ids and Cryptomatte, 64 bytes a pixel; 1.68 GB measured at 2048^2,
  estimated 1.78 GB). Fewer groups never lower the estimate: Cycles' peak comes first.
- NPR stylisation of a frame: ``0.1 GB + 215 bytes a pixel`` (0.30 GB at 1024^2, 0.97 GB at 2048^2).
- Diffusion stylisation depends on the model and the device (and is bounded by the model's
  resolution): not estimated here; the cameras and assembly tasks hold a frame or two (not checked).

The budget is ``--max-memory`` when given, otherwise what the task's own machine has free
(available memory, or what its cgroup allows, whichever is less) plus what the worker process
already holds. A task over budget raises :class:`MemoryLimitError` (exit 2, not retried).
"""

from __future__ import annotations

import math
import os
import re
import socket

from greybox.errors import InputError

PASSES_BASE_BYTES = 750_000_000
PASSES_BYTES_PER_PIXEL = 181
CALIBRATED_EXR_GROUPS = ("depth", "normal", "flow", "instance", "class", "uv")  # the layout the 181 B were measured with
NPR_BASE_BYTES = 100_000_000
NPR_BYTES_PER_PIXEL = 215

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*(?:([kmgt])(i?)b?|b?)\s*$", re.I)


class MemoryLimitError(InputError):
    """A task would need more memory than its machine has free (or than --max-memory allows)."""


def parse_size(text: str) -> int:
    """``"8G"``, ``"8GB"`` (10^9), ``"8GiB"`` (2^30), ``"500M"``, ``"12e9"`` -> bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise InputError(f"--max-memory {text!r}: expected a size such as 8G, 8GiB, 500M or 12e9 (bytes)")
    number, unit, binary = match.groups()
    power = "kmgt".index(unit.lower()) + 1 if unit else 0
    value = float(number) * ((1024 if binary else 1000) ** power)
    if not (math.isfinite(value) and value >= 1):
        raise InputError(f"--max-memory {text!r}: must be at least one byte")
    return int(value)


def format_size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _exr_writer_extra(exr_channels) -> int:
    """Bytes a pixel the EXR writer holds for ``exr_channels`` beyond the calibrated layout (never negative)."""
    if exr_channels is None:
        return 0
    from passes.pass_exr import writer_bytes_per_pixel

    return max(0, writer_bytes_per_pixel(tuple(exr_channels)) - writer_bytes_per_pixel(CALIBRATED_EXR_GROUPS))


def estimate_peak_bytes(kind: str, width: int, height: int, *, controls=(), stylizer: str | None = None,
                        exr_channels=None) -> int | None:
    """Estimated peak memory of one task of ``kind`` ("passes" or "stylize") at ``width`` x
    ``height``; None when there is no estimate (diffusion, cameras, assembly). ``exr_channels``: the
    template's ``passes.exr_channels`` (None: the calibrated layout, the 13 pass channels)."""
    pixels = int(width) * int(height)
    if kind == "passes":
        return PASSES_BASE_BYTES + (PASSES_BYTES_PER_PIXEL + _exr_writer_extra(exr_channels)) * pixels
    if kind == "stylize" and stylizer == "npr":
        return NPR_BASE_BYTES + NPR_BYTES_PER_PIXEL * pixels
    return None


def fitting_resolution(kind: str, width: int, height: int, budget: float, **kwargs) -> tuple[int, int] | None:
    """The largest resolution of the same aspect ratio (multiples of 8) whose estimate fits ``budget``."""
    full = estimate_peak_bytes(kind, width, height, **kwargs)
    base = estimate_peak_bytes(kind, 0, 0, **kwargs)
    if full is None or base is None or budget <= base:
        return None
    scale = math.sqrt((budget - base) / (full - base))
    w, h = (max(8, int(side * scale) // 8 * 8) for side in (width, height))
    while (w > 8 or h > 8) and estimate_peak_bytes(kind, w, h, **kwargs) > budget:
        w, h = max(8, w - 8), max(8, h - 8)
    return (w, h) if estimate_peak_bytes(kind, w, h, **kwargs) <= budget else None


def machine_free_bytes() -> int:
    """Memory this machine can still give: available memory, or the cgroup's remaining allowance."""
    import psutil

    free = int(psutil.virtual_memory().available)
    for limit_path, usage_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_path) as handle:
                limit = handle.read().strip()
            with open(usage_path) as handle:
                usage = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < (1 << 60):
            free = min(free, max(0, int(limit) - usage))
        break
    return free


def check_task_memory(kind: str, width: int, height: int, *, controls=(), stylizer: str | None = None,
                      max_memory: int | None = None, free: int | None = None, held: int = 0, where: str = "",
                      exr_channels=None) -> int | None:
    """Raise :class:`MemoryLimitError` when a task's estimate exceeds ``max_memory`` or what its
    machine has free (``free``, measured when None, plus ``held``: what the process already has);
    return the estimate (None: not estimated, not checked)."""
    kwargs = {"controls": controls, "stylizer": stylizer, "exr_channels": exr_channels}
    need = estimate_peak_bytes(kind, width, height, **kwargs)
    if need is None:
        return None
    if max_memory is not None:  # the user's budget replaces the machine's free memory
        budget, what = max_memory, f"--max-memory allows {format_size(max_memory)}"
    else:
        budget = (machine_free_bytes() if free is None else free) + held
        what = f"this machine ({socket.gethostname()}) has {format_size(budget)} free for it"
    if need <= budget:
        return need
    fits = fitting_resolution(kind, width, height, budget, **kwargs)
    advice = (f"render.resolution = [{fits[0]}, {fits[1]}] fits (the same aspect ratio)" if fits
              else "not even the smallest resolution fits")
    what_task = {"passes": "the passes", "stylize": "NPR stylisation"}[kind]
    raise MemoryLimitError(
        f"{where}{what_task} at {width}x{height} need about {format_size(need)} at their peak; {what}: {advice}; "
        "lower render.resolution, free memory, or run on a machine with more (--max-memory sets the budget)"
    )


def process_resident_bytes() -> int:
    """What this process holds now (a warm worker reuses it)."""
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except Exception:  # noqa: BLE001 - an estimate input, never a reason to fail
        return 0
