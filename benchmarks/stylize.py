"""Benchmark: one guided denoising step of SD1.5 + 1 or 3 ControlNets, and of SDXL + the union ControlNet.

Full-size architectures (the published configs, written out in tests/support/random_weight_models.py)
with random weights: nothing is downloaded, and the timing does not depend on the weights.

One step = every ControlNet and then the UNet (with the ControlNet residuals) on the guided pair,
i.e. a batch of 2 x B latents (unconditional + conditional), exactly what the pipelines run per
denoising step. frames/s = B / (ms per step x steps per frame), counting the denoising loop only
(the VAE decode and the text encoder run once per frame and are left out).

    python benchmarks/stylize.py                       # CUDA fp16: 512^2 batch 1 and 8, SDXL at 1024^2
    python benchmarks/stylize.py --compile             # also torch.compile'd
    python benchmarks/stylize.py --device cpu --resolution 256 --batch 1 --no-sdxl --steps 2

Prints a table (and --json FILE writes the rows).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"], help="default: float16 on CUDA, float32 on CPU")
    parser.add_argument("--resolution", type=int, default=512, help="SD1.5 output side in pixels (default 512)")
    parser.add_argument("--sdxl-resolution", type=int, default=1024, help="SDXL output side (default 1024)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="frames per batch (default: 1 8)")
    parser.add_argument("--controlnets", type=int, nargs="+", default=[1, 3], help="SD1.5 ControlNet counts (default: 1 3)")
    parser.add_argument("--sdxl", dest="sdxl", action="store_true", default=None, help="include SDXL + union (default on CUDA)")
    parser.add_argument("--no-sdxl", dest="sdxl", action="store_false")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd networks")
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs", help="torch.compile mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--steps-per-frame", type=int, default=20, help="denoising steps per frame for frames/s (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    return parser.parse_args(argv)


def synchronize(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device, warmup: int, steps: int) -> float:
    """Milliseconds per call of ``step`` (mean over ``steps`` after ``warmup`` calls)."""
    import torch

    with torch.inference_mode():
        for _ in range(warmup):
            step()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
    return (time.perf_counter() - start) * 1000.0 / steps


def sd15_step(unet, controlnets, batch: int, side: int, device, dtype):
    """A closure running one guided SD1.5 step with ``controlnets`` (all ControlNets, then the UNet)."""
    import torch

    g = torch.Generator().manual_seed(0)
    pair = 2 * batch
    latents = torch.randn(pair, 4, side // 8, side // 8, generator=g).to(device, dtype)
    text = torch.randn(pair, 77, unet.config.cross_attention_dim, generator=g).to(device, dtype)
    controls = [torch.rand(pair, 3, side, side, generator=g).to(device, dtype) for _ in controlnets]
    timestep = torch.tensor(500, device=device)

    def step():
        down, mid = None, None
        for net, image in zip(controlnets, controls):
            d, m = net(latents, timestep, encoder_hidden_states=text, controlnet_cond=image, conditioning_scale=1.0, return_dict=False)
            down = d if down is None else [a + b for a, b in zip(down, d)]
            mid = m if mid is None else mid + m
        return unet(latents, timestep, encoder_hidden_states=text, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid, return_dict=False)[0]

    return step


def sdxl_step(unet, controlnet, batch: int, side: int, device, dtype, modes=(1, 5)):
    """One guided SDXL step with the union ControlNet fed one control image per mode (depth, seg)."""
    import torch

    g = torch.Generator().manual_seed(0)
    pair = 2 * batch
    latents = torch.randn(pair, 4, side // 8, side // 8, generator=g).to(device, dtype)
    config = unet.config
    pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim  # 1280 for SDXL
    text = torch.randn(pair, 77, config.cross_attention_dim, generator=g).to(device, dtype)
    added = {"text_embeds": torch.randn(pair, pooled, generator=g).to(device, dtype),
             "time_ids": torch.tensor([[side, side, 0, 0, side, side]] * pair, dtype=dtype, device=device)}
    controls = [torch.rand(pair, 3, side, side, generator=g).to(device, dtype) for _ in modes]
    control_type = torch.zeros(controlnet.config.num_control_type).scatter_(0, torch.tensor(list(modes)), 1)
    control_type = control_type.reshape(1, -1).to(device, dtype).repeat(pair, 1)
    timestep = torch.tensor(500, device=device)

    def step():
        down, mid = controlnet(latents, timestep, encoder_hidden_states=text, controlnet_cond=controls, control_type=control_type,
                               control_type_idx=list(modes), conditioning_scale=[1.0] * len(modes), added_cond_kwargs=added,
                               return_dict=False)
        return unet(latents, timestep, encoder_hidden_states=text, added_cond_kwargs=added,
                    down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False)[0]

    return step


def measure(label, make_step, nets, args, device, dtype, batch, side, n_controlnets, compiled_variants):
    import torch

    rows = []
    for compiled in compiled_variants:
        if compiled:
            nets_run = [torch.compile(n, mode=args.compile_mode, fullgraph=False) for n in nets]
        else:
            nets_run = nets
        step = make_step(nets_run)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            warmup = args.warmup + (2 if compiled else 0)
            ms = time_steps(step, device, warmup, args.steps)
        except torch.OutOfMemoryError:
            rows.append(dict(model=label, controlnets=n_controlnets, resolution=side, batch=batch, compiled=compiled, error="out of memory"))
            continue
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        rows.append(dict(
            model=label, controlnets=n_controlnets, resolution=side, batch=batch, compiled=compiled,
            ms_per_step=round(ms, 2), frames_per_s=round(batch * 1000.0 / (ms * args.steps_per_frame), 3),
            peak_gpu_gib=None if peak is None else round(peak, 2), dtype=str(dtype).replace("torch.", ""), device=device.type,
        ))
        print_row(rows[-1])
        del step
        gc.collect()
    return rows


HEADER = f"{'model':<8} {'CNs':>3} {'res':>5} {'batch':>5} {'compiled':>8} {'ms/step':>9} {'frames/s':>9} {'peak GiB':>8}"


def print_row(row):
    if "error" in row:
        print(f"{row['model']:<8} {row['controlnets']:>3} {row['resolution']:>5} {row['batch']:>5} {str(row['compiled']):>8} {row['error']}")
        return
    peak = "-" if row["peak_gpu_gib"] is None else f"{row['peak_gpu_gib']:.2f}"
    print(f"{row['model']:<8} {row['controlnets']:>3} {row['resolution']:>5} {row['batch']:>5} {str(row['compiled']):>8} "
          f"{row['ms_per_step']:>9.1f} {row['frames_per_s']:>9.3f} {peak:>8}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from stylize.diffusion_stylizer import choose_device_and_dtype
    from tests.support.random_weight_models import build_full_size_sd15_unet_and_controlnets, build_full_size_sdxl_unet_and_controlnet_union

    device, dtype = choose_device_and_dtype(args.device, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    sdxl = device.type == "cuda" if args.sdxl is None else args.sdxl
    compiled_variants = [False, True] if args.compile else [False]
    print(f"# torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
          + f", {str(dtype).replace('torch.', '')}, SDPA attention, random weights; "
          f"one step = ControlNet(s) + UNet on the guided pair (2 x batch); frames/s at {args.steps_per_frame} steps/frame; "
          f"{args.warmup} warm-up + {args.steps} timed steps")
    print(HEADER)
    rows = []

    # 1. SD1.5 UNet + ControlNets, built once with the largest count.
    start = time.perf_counter()
    unet, controlnets = build_full_size_sd15_unet_and_controlnets(max(args.controlnets), dtype=dtype, device=device)
    if device.type == "cuda":
        unet.to(memory_format=torch.channels_last)
        for net in controlnets:
            net.to(memory_format=torch.channels_last)
    print(f"# built SD1.5 UNet + {len(controlnets)} ControlNets in {time.perf_counter() - start:.1f} s", flush=True)
    for n in sorted(args.controlnets):
        for batch in args.batch:
            def make(nets, _n=n, _batch=batch):
                return sd15_step(nets[0], nets[1 : 1 + _n], _batch, args.resolution, device, dtype)

            rows += measure("sd15", make, [unet, *controlnets[:n]], args, device, dtype, batch, args.resolution, n, compiled_variants)
    del unet, controlnets
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 2. SDXL UNet + the union ControlNet (two control images: depth and seg).
    if sdxl:
        unet, union = build_full_size_sdxl_unet_and_controlnet_union(dtype=dtype, device=device)
        for batch in args.batch:
            def make(nets, _batch=batch):
                return sdxl_step(nets[0], nets[1], _batch, args.sdxl_resolution, device, dtype)

            rows += measure("sdxl", make, [unet, union], args, device, dtype, batch, args.sdxl_resolution, 1, compiled_variants)
        del unet, union
        gc.collect()

    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
