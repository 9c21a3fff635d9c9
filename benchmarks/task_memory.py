"""Peak memory of a passes task and of an NPR stylisation task per resolution, beside the estimate
``render_farm.task_memory`` refuses tasks with (the calibration of its coefficients).

Each measurement runs in its own process (so its peak is that resolution's): build the bundled
living room at WxW, render one frame of passes with 2 Cycles threads through ``render_pass_frames``
(Blender's render, our read of its EXR, conversion, our EXR and the four control images), sampling
the resident memory plus Blender's scratch EXR in /dev/shm every 10 ms; then, in a fresh process,
stylise that frame with the NPR stylizer and sample the same way.

    .venv/bin/python benchmarks/task_memory.py [--resolutions 512,1024,2048] [--skip-npr]
    .venv/bin/python benchmarks/task_memory.py --diffusion sd15,sdxl [--diffusion-resolutions 256,512,640]

The diffusion measurement (``measure_diffusion``) builds the full-size SD1.5 UNet + ControlNet
(or SDXL's, depth-reduced) with random weights on the CPU and takes one guided step and the VAE's
decode and encode, each phase's rise in resident memory; a 512^2 run holds about 6 GB and takes
two to five minutes on the shared 2-core machine (run one at a time).

4096^2 takes about 4 GB and a minute, 6144^2 about 8 GB and four minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


class PeakSampler:
    """Highest (resident memory + this process's scratch files in /dev/shm) seen, every 10 ms."""

    def __init__(self):
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        prefix = f"greybox-passes-{os.getpid()}-"
        while not self._stop.is_set():
            try:
                shm = sum(e.stat().st_size for e in os.scandir("/dev/shm") if e.name.startswith(prefix)) if os.path.isdir("/dev/shm") else 0
                self.peak = max(self.peak, self._process.memory_info().rss + shm)
            except OSError:
                pass
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _template(width: int):
    from scenes.template_loading import load_template

    extra = json.loads(os.environ.get("GREYBOX_BENCH_SET", "[]"))  # --set, passed on to the child processes
    return load_template("living_room", [f"render.resolution=[{width}, {width}]", "style.stylizer='npr'", *extra]).template


def measure_passes(width: int, view: str) -> dict:
    from passes.render_chunk import render_pass_frames
    from passes.scene_stage import build_shot_scene, write_camera_records, write_scene_data

    template = _template(width)
    scene = build_shot_scene(template)
    write_scene_data(scene, view)  # what the scene stage leaves in the view (the NPR run reads it)
    write_camera_records(scene, [1], view)
    with PeakSampler() as sampler:
        started = time.perf_counter()
        render_pass_frames(template, scene, [1], view, threads=2)
        seconds = time.perf_counter() - started
    return {"peak": sampler.peak, "seconds": seconds}


def measure_npr(width: int, view: str) -> dict:
    from stylize.stylize_stage import stylize_frames

    template = _template(width)
    with tempfile.TemporaryDirectory() as out, PeakSampler() as sampler:
        started = time.perf_counter()
        stylize_frames(template, [1], view, out, stylizer="npr", threads=2)
        seconds = time.perf_counter() - started
    return {"peak": sampler.peak, "seconds": seconds}


# stabilityai/sd-vae-ft-mse and SD1.5's / SDXL's vae/config.json: the same AutoencoderKL architecture.
SD_VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
                     block_out_channels=(128, 256, 512, 512), sample_size=512,
                     down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _max_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _phase_peak(run) -> tuple[int, int, float]:
    """(resident memory before, peak during, seconds) of ``run()``: the sampler's peak, or the
    process's lifetime maximum when this phase raised it (a peak between two samples)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # what earlier phases freed goes back first
    except OSError:
        pass
    before, max_before = _rss(), _max_rss()
    with PeakSampler() as sampler:
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
    peak = max(sampler.peak, _max_rss() if _max_rss() > max_before else 0)
    return before, peak, seconds


def _sdxl_reduced_configs():
    """SDXL's UNet and union ControlNet with one transformer layer per block instead of (1, 2, 10):
    every level, width and attention shape as published, ~40% of the weights. Inference keeps no
    activations across the stacked layers of a block, so a step's activation peak is the full
    model's (the weights are counted from the published configs' parameter counts instead)."""
    from tests.support.random_weight_models import SDXL_CONTROLNET_UNION_CONFIG, SDXL_UNET_CONFIG

    return ({**SDXL_UNET_CONFIG, "transformer_layers_per_block": (1, 1, 1)},
            {**SDXL_CONTROLNET_UNION_CONFIG, "transformer_layers_per_block": (1, 1, 1)})


def measure_diffusion(family: str, width: int) -> dict:
    """One guided step (the ControlNet, then the UNet with its residuals, on the CFG pair) of the
    full-size SD1.5 UNet + one ControlNet (``sd15``) or SDXL's UNet + the union ControlNet fed two
    control images (``sdxl``, depth-reduced: see above), random weights, CPU float32, SDPA attention,
    2 threads; then the full-size VAE's decode and encode of one frame (what the pipeline does after
    the loop and, for img2img, before it)."""
    import importlib.util

    import torch
    from diffusers import AutoencoderKL, ControlNetUnionModel, UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    from tests.support.random_weight_models import build_full_size_sd15_unet_and_controlnets

    spec = importlib.util.spec_from_file_location("stylize_benchmark", REPO_ROOT / "benchmarks" / "stylize.py")
    steps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(steps)
    torch.set_num_threads(2)
    base = _rss()  # python, torch and diffusers imported: the runtime's own share
    device, dtype = torch.device("cpu"), torch.float32
    if family == "sd15":
        unet, controlnets = build_full_size_sd15_unet_and_controlnets(1, dtype=dtype, device=device)
        nets = [unet, *controlnets]
        step = steps.sd15_step(unet, controlnets, 1, width, device, dtype)
    else:
        unet_config, union_config = _sdxl_reduced_configs()
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**unet_config).eval()
        torch.manual_seed(20)
        controlnet = ControlNetUnionModel(**union_config).eval()
        nets = [unet, controlnet]
        step = steps.sdxl_step(unet, controlnet, 1, width, device, dtype, modes=(1, 5))
    for net in nets:
        net.set_attn_processor(AttnProcessor2_0())
    weights = sum(t.numel() * t.element_size() for net in nets for t in net.state_dict().values())
    with torch.inference_mode():
        before, peak, seconds = _phase_peak(step)
    del step, nets, unet
    torch.manual_seed(1)
    vae = AutoencoderKL(**SD_VAE_CONFIG).eval()
    vae.set_attn_processor(AttnProcessor2_0())
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, width // 8, width // 8, generator=generator)
    image = torch.rand(1, 3, width, width, generator=generator) * 2 - 1
    with torch.inference_mode():
        decode_before, decode_peak, decode_seconds = _phase_peak(lambda: vae.decode(latents, return_dict=False))
        encode_before, encode_peak, _ = _phase_peak(lambda: vae.encode(image).latent_dist.mode())
    return {"family": family, "width": width, "base": base, "weights": weights, "step_before": before, "step_peak": peak,
            "seconds": seconds, "step_activation": peak - before, "decode_activation": decode_peak - decode_before,
            "encode_activation": encode_peak - encode_before, "decode_seconds": decode_seconds}


def _child(kind: str, width: int, view: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(width), view], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def diffusion_table(families: list[str], widths: list[int]) -> None:
    """One fresh process per (family, resolution), one at a time: each phase's activation measured
    beside ``render_farm.task_memory``'s estimate, and the step's whole peak (the runtime, the
    step's networks' weights and its activation) beside the estimate of it."""
    from render_farm.task_memory import DIFFUSION_RUNTIME_BYTES, diffusion_activation_bytes

    print("| family | resolution | phase | measured | estimate | estimate / measured | s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for family in families:
        for width in widths:
            r = _child(f"diffusion-{family}", width, "-")
            print("<!-- " + json.dumps(r) + " -->", flush=True)
            rows = [(phase, r[f"{phase}_activation"], diffusion_activation_bytes(family, width, width, phase=phase))
                    for phase in ("step", "decode", "encode")]
            step_estimate = DIFFUSION_RUNTIME_BYTES + r["weights"] + rows[0][2]
            rows.append(("step's peak (runtime + weights + step)", r["step_peak"], step_estimate))
            # The task: the step's resident memory (runtime + weights) plus its highest phase.
            highest = max(r[f"{phase}_activation"] for phase in ("step", "decode", "encode"))
            rows.append(("task (runtime + weights + highest phase)", r["step_before"] + highest,
                         DIFFUSION_RUNTIME_BYTES + r["weights"] + diffusion_activation_bytes(family, width, width, encodes=True)))
            for phase, measured, estimate in rows:
                seconds = {"step": r["seconds"], "decode": r["decode_seconds"]}.get(phase)
                print(f"| {family} | {width}^2 | {phase} | {measured / 1e9:.3f} GB | {estimate / 1e9:.3f} GB | "
                      f"{estimate / measured:.2f} | {'' if seconds is None else f'{seconds:.1f}'} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="512,1024,2048")
    parser.add_argument("--skip-npr", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="template override, e.g. passes.exr_channels=[\"normal\",\"class\",\"instance\"]")
    parser.add_argument("--diffusion", default=None, metavar="FAMILIES",
                        help="measure diffusion stylisation instead (sd15, sdxl or sd15,sdxl): one step and the VAE")
    parser.add_argument("--diffusion-resolutions", default="256,512,640")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "WIDTH", "VIEW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, width, view = args.child
        if kind.startswith("diffusion-"):
            print(json.dumps(measure_diffusion(kind.split("-", 1)[1], int(width))))
        else:
            print(json.dumps((measure_passes if kind == "passes" else measure_npr)(int(width), view)))
        return
    if args.diffusion:
        diffusion_table(args.diffusion.split(","), [int(w) for w in args.diffusion_resolutions.split(",")])
        return

    os.environ["GREYBOX_BENCH_SET"] = json.dumps(args.set)
    from render_farm.task_memory import estimate_peak_bytes

    print("| task | resolution | measured peak | estimate | estimate / measured | s/frame |")
    print("| --- | --- | --- | --- | --- | --- |")
    for width in (int(w) for w in args.resolutions.split(",")):
        with tempfile.TemporaryDirectory() as view:
            rows = [("passes", _child("passes", width, view))]
            if not args.skip_npr:
                rows.append(("stylize (npr)", _child("npr", width, view)))
        for kind, result in rows:
            estimate = estimate_peak_bytes("passes" if kind == "passes" else "stylize", width, width, stylizer="npr",
                                           exr_channels=_template(8).passes.exr_channels)
            print(f"| {kind} | {width}^2 | {result['peak'] / 1e9:.2f} GB | {estimate / 1e9:.2f} GB | "
                  f"{estimate / result['peak']:.2f} | {result['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
