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
- Diffusion stylisation: ``runtime + weights + max(step, VAE decode[, VAE encode]) + frame buffers``.
  The weights are counted from the resolved model folders' safetensors headers (never loaded):
  every tensor of the networks the pipeline loads (UNet, each distinct ControlNet, VAE, text
  encoder(s), an ``image_encoder`` the folder ships; no IP-Adapter is loaded by greybox), floating
  ones at the run's dtype: float32 on the CPU, fp16 on CUDA (``stylize.diffusion_stylizer``), an
  SDXL VAE with ``force_upcast`` in float32. The runtime (python, torch, diffusers) is 0.38 GB on
  the CPU; on CUDA the check is against the GPU's free memory, with 0.6 GB assumed for the CUDA context.
  The activations, each ``bytes + bytes a latent pixel`` (latent = output / 8 a side), for one
  frame, float32, SDPA attention (``AttnProcessor2_0``, the stylizer's), calibrated with
  ``benchmarks/task_memory.py --diffusion sd15,sdxl`` on this CPU machine (2 threads, shared, 23 GB;
  resident-memory rise of one guided step of ControlNet + UNet on the CFG pair, and of the full-size
  VAE's decode and encode of one frame, each in a fresh process, random weights):

  | phase | bytes + per latent pixel | measured (calibration) | check at a third size: measured, estimate/measured |
  | --- | --- | --- | --- |
  | SD1.5 step, UNet + 1 ControlNet | 170 MB + 94.4 kB | 0.267 GB at 256^2, 0.557 GB at 512^2 | 384^2: 0.347 GB, 1.12; 640^2: 0.829 GB, 0.93 |
  | SDXL step, UNet + union ControlNet (2 images) | 111 MB + 73.2 kB | 0.411 GB at 512^2, 0.786 GB at 768^2 | 640^2: 0.563 GB, 1.03 |
  | VAE decode (SD1.5 and SDXL: one architecture) | 183 MB + 228.2 kB | 0.417 GB at 256^2, 1.118 GB at 512^2 | 384^2: 0.773 GB, 0.92; 640^2: 1.593 GB, 1.03 (SDXL run 1.643, 1.00); 768^2: 2.314 GB, 0.99 |
  | VAE encode (img2img, sequence modes) | 17 MB + 160 kB | 0.181 GB at 256^2, 0.672 GB at 512^2 | 384^2: 0.378 GB, 1.02; 640^2: 1.049 GB, 0.99; 768^2: 1.511 GB, 0.99 |

  The decode sets the peak (at 512^2 twice the step): the whole SD1.5 task at 640^2, measured as
  the step's resident memory (runtime + UNet and ControlNet weights, 5.28 GB) plus the highest
  phase, is 6.88 GB, estimated 6.91 (+0.4%); at 384^2 6.05 GB, estimated 5.97 (-1.3%). The SDXL
  step was measured with one transformer layer per block instead of (1, 2, 10) (the full fp32
  model does not fit this machine beside its other users): inference keeps nothing across the stacked layers of a block, so the peak is the same.
  Scaling: CUDA's fp16 halves the activations (not measured: no GPU here) and runs a batch of
  frames at once (the CPU runs them one by one); a model of other widths scales with the width of
  its first level (``block_out_channels[0]``: 320 for the UNets, 128 for the VAE). Analytic, from the
  UNet's config: each further ControlNet adds its residuals (1,640 elements a latent pixel for
  SD1.5, CFG pair, run dtype); anchor attention records every self-attention input for every step
  (2,820 elements a latent pixel a step for SD1.5); frame buffers: each control image (uint8 and
  float32) and the output of each frame loaded, 215 bytes a pixel for an NPR draft, and a sequence
  mode's 13 pass planes and output of every frame it runs (55 bytes a pixel a frame). Not measured:
  the transient of loading the weights from disk, and anything on a GPU.
- Assembly (video and contact sheet): a bound, not calibrated: 0.15 GB plus the contact sheet's
  cells held at full size (up to 12 frames, each with its control images) and the encoder's frame,
  3 bytes a pixel each; ffmpeg runs in its own process. Checked by the driver (the task has no
  template to check against).
- The scene and cameras task is not estimated: it holds no image, and its size follows the
  template's objects and frames (both bounded at validation), not the resolution.

The budget is ``--max-memory`` when given, otherwise what the task's own machine has free
(available memory, or what its cgroup allows, whichever is less) plus what the worker process
already holds. A task over budget raises :class:`MemoryLimitError` (exit 2, not retried).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from greybox.errors import InputError

PASSES_BASE_BYTES = 750_000_000
PASSES_BYTES_PER_PIXEL = 181
CALIBRATED_EXR_GROUPS = ("depth", "normal", "flow", "instance", "class", "uv")  # the layout the 181 B were measured with
NPR_BASE_BYTES = 100_000_000
NPR_BYTES_PER_PIXEL = 215

# Diffusion stylisation (see the module docstring; benchmarks/task_memory.py --diffusion sd15,sdxl).
DIFFUSION_RUNTIME_BYTES = 380_000_000  # python, torch and diffusers imported (measured 0.38 GB)
CUDA_CONTEXT_BYTES = 600_000_000  # the CUDA context and kernels a first GPU step loads (not measured here: no GPU)
# (bytes, bytes per latent pixel) of one frame (latent pixels: output pixels / 64), CPU float32, SDPA
# attention, at the published widths: one guided step (ControlNet + UNet on the CFG pair), the
# VAE's decode and its encode (the calibration: the module docstring).
DIFFUSION_STEP_ACTIVATION = {"sd15": (170_000_000, 94_400), "sdxl": (111_000_000, 73_200)}
VAE_DECODE_ACTIVATION = (183_000_000, 228_200)
VAE_ENCODE_ACTIVATION = (17_000_000, 160_000)
CALIBRATED_UNET_WIDTH = 320  # block_out_channels[0] of SD1.5's and SDXL's UNets
CALIBRATED_VAE_WIDTH = 128  # block_out_channels[0] of their VAE
# What a frame in flight holds besides the networks: per control image uint8 + float32, the output float32 + uint8.
FRAME_BYTES_PER_PIXEL_PER_CONTROL = 3 + 12
FRAME_BYTES_PER_PIXEL = 12 + 3
SEQUENCE_PASS_BYTES_PER_PIXEL = 13 * 4  # a sequence mode holds every frame's 13 pass planes (float32/uint32)
# The assembly task: the contact sheet holds its cells (CONTACT_SHEET_MAX_ROWS frames x the frame and
# its control images) at full size, uint8 RGB; the video encoder one frame more.
ASSEMBLY_BASE_BYTES = 150_000_000
ASSEMBLY_MAX_ROWS = 12

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


# --------------------------------------------------------------------------------------------
# Diffusion: the models' weights from their safetensors headers, the activations calibrated
# --------------------------------------------------------------------------------------------

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}  # cast to the run's dtype when loaded
_NOT_LOADED = ("tokenizer", "tokenizer_2", "scheduler", "feature_extractor", "safety_checker")
_WEIGHT_FILE_STEMS = ("diffusion_pytorch_model", "model")  # diffusers' and transformers' names
_MAX_HEADER_BYTES = 100_000_000


def safetensors_header(path) -> dict:
    """A safetensors file's tensors, ``name -> {"dtype", "shape", "data_offsets"}``, read from its
    header (8 bytes little-endian length, then that much JSON) and never from its weights."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        size = os.fstat(handle.fileno()).st_size
        if len(head) != 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if not 2 <= length <= min(size - 8, _MAX_HEADER_BYTES):
            raise ValueError(f"{path}: not a safetensors file (header length {length}, file {size} bytes)")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors header")
    header.pop("__metadata__", None)
    return header


def safetensors_weight_bytes(path, itemsize: int | None = None) -> int:
    """Bytes the tensors of a safetensors file take once loaded: floating tensors at ``itemsize``
    bytes an element (the run's dtype; None: as stored), the others as stored. A file whose header
    cannot be read counts its size."""
    try:
        header = safetensors_header(path)
        total = 0
        for info in header.values():
            dtype = info["dtype"]
            per = itemsize if (itemsize and dtype in _FLOAT_DTYPES) else _DTYPE_BYTES.get(dtype, 8)
            total += math.prod(int(n) for n in info["shape"]) * per
        return total
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return os.path.getsize(path)
        except OSError:
            return 0


def component_weight_files(folder) -> list[Path]:
    """The safetensors files ``from_pretrained`` reads from a model folder (no variant): the shards
    of ``NAME.safetensors.index.json``, else ``NAME.safetensors``, else any ``*.safetensors`` there."""
    folder = Path(folder)
    for stem in _WEIGHT_FILE_STEMS:
        index = folder / f"{stem}.safetensors.index.json"
        if index.is_file():
            try:
                shards = json.loads(index.read_text()).get("weight_map", {}).values()
            except (OSError, ValueError, AttributeError):
                shards = ()
            return [folder / name for name in sorted(set(shards)) if isinstance(name, str) and "/" not in name and name != ".."]
        if (folder / f"{stem}.safetensors").is_file():
            return [folder / f"{stem}.safetensors"]
    return sorted(p for p in folder.glob("*.safetensors") if p.name.count(".") == 1)


def _config(folder: Path) -> dict:
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _width(config: dict, default: int) -> int:
    widths = config.get("block_out_channels") or [default]
    return int(widths[0]) if isinstance(widths, (list, tuple)) and widths else default


def _per_block(value, n: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value or 1)] * n


def unet_latent_elements(config: dict) -> tuple[int, int]:
    """Per latent pixel, elements of (the down residuals a ControlNet hands the UNet; the inputs of
    every self-attention layer, what anchor attention records per step), from the UNet's config."""
    widths = [int(w) for w in config.get("block_out_channels") or (320, 640, 1280, 1280)]
    n = len(widths)
    layers = _per_block(config.get("layers_per_block", 2), n)
    depth = _per_block(config.get("transformer_layers_per_block", 1), n)
    down = list(config.get("down_block_types") or ["CrossAttnDownBlock2D"] * n)
    up = list(config.get("up_block_types") or ["CrossAttnUpBlock2D"] * n)
    share = [1 / 4**i for i in range(n)]  # each level halves both sides
    residuals = widths[0] + sum(share[i] * widths[i] * layers[i] + (share[i + 1] * widths[i] if i + 1 < n else 0) for i in range(n))
    residuals += share[-1] * widths[-1]  # the mid block's
    attention = share[-1] * widths[-1] * depth[-1]  # the mid block
    for i in range(n):
        if "CrossAttn" in str(down[i]):
            attention += share[i] * widths[i] * layers[i] * depth[i]
        j = n - 1 - i  # up blocks run the levels in reverse, one layer more each
        if "CrossAttn" in str(up[i]):
            attention += share[j] * widths[j] * (layers[j] + 1) * depth[j]
    return math.ceil(residuals), math.ceil(attention)


@dataclass(frozen=True)
class DiffusionRun:
    """What a diffusion stylisation task's estimate needs, read from the resolved models' folders
    (configs and safetensors headers, never the weights) and the style: see :func:`diffusion_run`."""

    family: str
    device: str  # "cpu" or "cuda"
    itemsize: int  # bytes an element of the run's dtype (4 on the CPU, 2 for fp16/bf16 on CUDA)
    weights: tuple[tuple[str, int], ...]  # (component, bytes at the run's dtype)
    unet_width: int
    vae_width: int
    vae_itemsize: int  # an SDXL VAE with force_upcast decodes in float32 under fp16
    extra_controlnets: int  # networks beyond the first (the union model serves every pass as one)
    residual_elements: int  # per latent pixel, one ControlNet's residuals
    anchor_elements: int  # per latent pixel, the self-attention inputs anchor attention records per step
    controls: int  # control images a frame loads
    batch: int  # frames a step runs at once (the CPU runs them one by one)
    frames_loaded: int  # frames whose control images are held at once (a batch)
    steps: int
    cfg: int  # 2 under classifier-free guidance
    encodes: bool  # img2img (the NPR draft) or a sequence mode: the VAE encodes an image
    npr_draft: bool
    anchor: bool
    sequence_frames: int  # a sequence mode holds every frame's passes and output

    @property
    def weight_bytes(self) -> int:
        return sum(b for _, b in self.weights)

    def describe(self) -> str:
        nets = 1 + self.extra_controlnets
        dtype = {4: "float32", 2: "half precision"}.get(self.itemsize, f"{self.itemsize}-byte floats")
        return (f"diffusion stylisation ({self.family} with {nets} ControlNet{'s' if nets > 1 else ''}: "
                f"{format_size(self.weight_bytes)} of weights in {dtype} on the {self.device.upper() if self.device == 'cuda' else 'CPU'})")


def diffusion_run(resolved, style, *, device: str = "cpu", itemsize: int | None = None, sequence_frames: int = 0) -> DiffusionRun:
    """The estimate's inputs for ``resolved`` (``stylize.model_resolution.ResolvedModels``) and
    ``style`` on ``device`` ("cpu": float32; "cuda": fp16 unless ``itemsize`` says otherwise);
    ``sequence_frames``: the frames a sequence mode's task runs (per_frame: unused)."""
    itemsize = itemsize or (2 if device == "cuda" else 4)
    base = Path(resolved.base.local_path)
    try:
        index = json.loads((base / "model_index.json").read_text())
    except (OSError, ValueError):
        index = {}
    weights: list[tuple[str, int]] = []
    vae_config: dict = {}
    for name, value in sorted(index.items() if isinstance(index, dict) else []):
        if name.startswith("_") or name in _NOT_LOADED or not (isinstance(value, list) and value and value[0]):
            continue
        folder = base / name
        if not (folder / "config.json").is_file():
            continue
        config = _config(folder)
        size = itemsize
        if name == "vae":
            vae_config = config
            size = 4 if config.get("force_upcast") and itemsize < 4 else itemsize
        weights.append((name, sum(safetensors_weight_bytes(f, size) for f in component_weight_files(folder))))
    nets: dict[str, str] = {}
    for c in resolved.controlnets:
        nets.setdefault(str(c.model.local_path), c.pass_name)
    for path, pass_name in nets.items():
        weights.append((f"controlnet:{pass_name}", sum(safetensors_weight_bytes(f, itemsize) for f in component_weight_files(Path(path)))))
    unet_config = _config(base / "unet")
    residuals, attention = unet_latent_elements(unet_config)
    mode = style.consistency.mode
    sequence = mode != "per_frame"
    batch = 1 if device == "cpu" or sequence else int(style.batch_size)
    vae_itemsize = 4 if vae_config.get("force_upcast") and itemsize < 4 else itemsize
    return DiffusionRun(
        family=resolved.family, device=device, itemsize=itemsize, weights=tuple(weights),
        unet_width=_width(unet_config, CALIBRATED_UNET_WIDTH), vae_width=_width(vae_config, CALIBRATED_VAE_WIDTH),
        vae_itemsize=vae_itemsize, extra_controlnets=0 if resolved.union else max(0, len(nets) - 1),
        residual_elements=residuals, anchor_elements=attention, controls=len(resolved.controlnets), batch=batch,
        frames_loaded=1 if sequence else int(style.batch_size), steps=int(style.num_inference_steps),
        cfg=2 if style.guidance_scale > 1.0 else 1, encodes=sequence or style.init_image == "npr_draft",
        npr_draft=not sequence and style.init_image == "npr_draft",
        anchor=mode == "flow_warp" and bool(style.consistency.anchor_attention),
        sequence_frames=int(sequence_frames) if sequence else 0,
    )


def diffusion_activation_bytes(family: str, width: int, height: int, *, itemsize: int = 4, batch: int = 1,
                               unet_width: int = CALIBRATED_UNET_WIDTH, vae_width: int = CALIBRATED_VAE_WIDTH,
                               vae_itemsize: int | None = None, encodes: bool = False, extra_residual_bytes: int = 0,
                               phase: str | None = None) -> int:
    """The calibrated activation peak at ``width`` x ``height``: the larger of one guided step and
    the VAE's decode (and encode), each linear in the latent pixels, scaled by the dtype (fp16
    halves the float32 calibration), the frames run at once and the width of the networks' first
    level. ``phase`` ("step", "decode", "encode") gives that phase alone."""
    latent = (int(width) // 8) * (int(height) // 8)
    vae_itemsize = vae_itemsize or itemsize

    def linear(coefficients, scale, per_pixel_extra=0):
        base, per_pixel = coefficients
        return scale * (base + batch * latent * per_pixel) + batch * latent * per_pixel_extra

    phases = {
        "step": linear(DIFFUSION_STEP_ACTIVATION[family], unet_width / CALIBRATED_UNET_WIDTH * itemsize / 4, extra_residual_bytes),
        "decode": linear(VAE_DECODE_ACTIVATION, vae_width / CALIBRATED_VAE_WIDTH * vae_itemsize / 4),
        "encode": linear(VAE_ENCODE_ACTIVATION, vae_width / CALIBRATED_VAE_WIDTH * vae_itemsize / 4) if encodes or phase else 0,
    }
    return math.ceil(phases[phase] if phase else max(phases.values()))


def _diffusion_peak(run: DiffusionRun, width: int, height: int) -> int:
    pixels = int(width) * int(height)
    latent = (int(width) // 8) * (int(height) // 8)
    residual = run.extra_controlnets * run.residual_elements * run.cfg * run.itemsize  # bytes a latent pixel
    activation = diffusion_activation_bytes(run.family, width, height, itemsize=run.itemsize, batch=run.batch,
                                            unet_width=run.unet_width, vae_width=run.vae_width,
                                            vae_itemsize=run.vae_itemsize, encodes=run.encodes, extra_residual_bytes=residual)
    anchor = run.anchor_elements * run.cfg * run.itemsize * run.steps * latent if run.anchor else 0
    frames = run.frames_loaded * (run.controls * FRAME_BYTES_PER_PIXEL_PER_CONTROL + FRAME_BYTES_PER_PIXEL) * pixels
    frames += (NPR_BYTES_PER_PIXEL * pixels) if run.npr_draft else 0
    frames += run.sequence_frames * (SEQUENCE_PASS_BYTES_PER_PIXEL + 3) * pixels
    runtime = DIFFUSION_RUNTIME_BYTES if run.device == "cpu" else CUDA_CONTEXT_BYTES
    return runtime + run.weight_bytes + activation + anchor + frames


def assembly_peak_bytes(width: int, height: int, *, frames: int, controls: int) -> int:
    """The assembly task's bound: the contact sheet's cells at full size (at most 12 frames, each
    with its control images) plus the frame the video encoder is sent, uint8 RGB."""
    cells = min(max(int(frames), 1), ASSEMBLY_MAX_ROWS) * (1 + int(controls)) + 2
    return ASSEMBLY_BASE_BYTES + 3 * cells * int(width) * int(height)


def estimate_peak_bytes(kind: str, width: int, height: int, *, controls=(), stylizer: str | None = None,
                        exr_channels=None, diffusion: DiffusionRun | None = None, frames: int = 1) -> int | None:
    """Estimated peak memory of one task of ``kind`` ("passes", "stylize" or "assemble") at
    ``width`` x ``height``; None when there is no estimate (diffusion without ``diffusion``, the
    scene and cameras task). ``exr_channels``: the template's ``passes.exr_channels`` (None: the
    calibrated layout, the 13 pass channels). ``diffusion``: from :func:`diffusion_run`.
    ``frames``, ``controls``: the assembly's frames and control images."""
    pixels = int(width) * int(height)
    if kind == "passes":
        return PASSES_BASE_BYTES + (PASSES_BYTES_PER_PIXEL + _exr_writer_extra(exr_channels)) * pixels
    if kind == "stylize" and stylizer == "npr":
        return NPR_BASE_BYTES + NPR_BYTES_PER_PIXEL * pixels
    if kind == "stylize" and stylizer == "diffusion" and diffusion is not None:
        return _diffusion_peak(diffusion, width, height)
    if kind == "assemble":
        return assembly_peak_bytes(width, height, frames=frames, controls=len(controls))
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
                      exr_channels=None, diffusion: DiffusionRun | None = None, frames: int = 1) -> int | None:
    """Raise :class:`MemoryLimitError` when a task's estimate exceeds ``max_memory`` or what its
    machine has free (``free``, measured when None, plus ``held``: what the process already has);
    return the estimate (None: not estimated, not checked). A diffusion task on CUDA is checked
    against ``free``, the GPU's (render_farm cannot measure it: without ``free`` or ``max_memory``
    it is not checked)."""
    kwargs = {"controls": controls, "stylizer": stylizer, "exr_channels": exr_channels, "diffusion": diffusion,
              "frames": frames}
    need = estimate_peak_bytes(kind, width, height, **kwargs)
    if need is None:
        return None
    gpu = diffusion is not None and diffusion.device != "cpu"
    if max_memory is not None:  # the user's budget replaces the machine's free memory
        budget, what = max_memory, f"--max-memory allows {format_size(max_memory)}"
    elif gpu and free is None:
        return need
    else:
        budget = (machine_free_bytes() if free is None else free) + held
        machine = f"the GPU of this machine ({socket.gethostname()})" if gpu else f"this machine ({socket.gethostname()})"
        what = f"{machine} has {format_size(budget)} free for it"
    if need <= budget:
        return need
    fits = fitting_resolution(kind, width, height, budget, **kwargs)
    if fits:
        advice = f"render.resolution = [{fits[0]}, {fits[1]}] fits (the same aspect ratio)"
    elif diffusion is not None:
        advice = (f"not even the smallest resolution fits: the models alone take {format_size(diffusion.weight_bytes)}; "
                  "use a smaller model or fewer ControlNets, or a GPU")
    else:
        advice = "not even the smallest resolution fits"
    what_task = diffusion.describe() if diffusion is not None else {
        "passes": "the passes", "stylize": "NPR stylisation", "assemble": "the video and contact sheet"}[kind]
    plural = diffusion is None and kind != "assemble"  # "the passes need", "diffusion stylisation needs"
    peak = "need about {} at their peak" if plural else "needs about {} at its peak"
    raise MemoryLimitError(
        f"{where}{what_task} at {width}x{height} {peak.format(format_size(need))}; {what}: {advice}; "
        "lower render.resolution, free memory, or run on a machine with more (--max-memory sets the budget)"
    )


def process_resident_bytes() -> int:
    """What this process holds now (a warm worker reuses it)."""
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except Exception:  # noqa: BLE001 - an estimate input, never a reason to fail
        return 0
