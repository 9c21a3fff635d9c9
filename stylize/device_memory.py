"""Which device a diffusion task will run on, and what memory that device has for it.

The memory estimate of a diffusion stylisation task (``render_farm.task_memory``) depends on the
device: the CPU runs float32 and holds everything in the machine's memory; CUDA runs fp16 (see
:func:`stylize.diffusion_stylizer.choose_device_and_dtype`) and holds the networks on the GPU.

- :func:`likely_device_kind` answers without importing torch (the job's driver): "cuda" where an
  NVIDIA GPU is visible to this machine, else "cpu". It may say "cuda" where torch is a CPU build;
  the task then checks again with the device it really gets.
- :func:`task_device_memory` imports torch (the stylize task loads it anyway) and returns the
  device kind, the bytes an element of its dtype takes, and on CUDA the GPU's free memory plus
  what this process already holds there (a warm pipeline).
"""

from __future__ import annotations

import os
from pathlib import Path


def likely_device_kind() -> str:
    """"cuda" when this machine shows an NVIDIA GPU (and CUDA_VISIBLE_DEVICES does not hide it), else "cpu"."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "cpu"
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        if gpus.is_dir() and any(gpus.iterdir()):
            return "cuda"
    except OSError:
        pass
    return "cuda" if Path("/dev/nvidia0").exists() else "cpu"


def task_device_memory(device=None, dtype=None) -> tuple[str, int, int | None, int]:
    """``(kind, itemsize, free, held)`` for the device a :class:`DiffusionStylizer` built with
    ``device`` and ``dtype`` runs on: on CUDA ``free`` is the GPU's free memory and ``held`` what
    this process has reserved there; on the CPU ``free`` is None (the machine's, measured by the
    caller) and ``held`` 0."""
    from stylize.diffusion_stylizer import choose_device_and_dtype

    device, dtype = choose_device_and_dtype(device, dtype)
    itemsize = int(dtype.itemsize)
    if device.type != "cuda":
        return device.type, itemsize, None, 0
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    return "cuda", itemsize, int(free), int(torch.cuda.memory_reserved(device))
