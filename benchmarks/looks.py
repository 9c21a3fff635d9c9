"""Benchmark: looks across shots and brand colours (issue 15), through the job runner as `greybox render` runs it.

Two shots of the bundled living room: A, its orbit, and B, a dolly through the room. Per stylizer
(``npr``; ``diffusion``: tiny random-weight SD1.5 + ControlNets from tests/support/random_weight_models.py,
CPU), in one run and one store:

1. A in consistency mode ``keyframes`` with two brand colours (the sofa #1F4E79, the rug #C8102E);
2. B alone (a new look), and B with ``style.look.from`` = A's folder;
3. A again with only the rug's brand colour changed: which units rerun.

Columns: the cross-shot figure (over pixels of B that show a surface point A shows: same instance id,
UV within half a texel; mean absolute RGB difference 0..1, ``stylize.warp_error.cross_shot_difference``)
beside A's long-range E_warp (the issue's bound), for B from A and for B alone; B's denoising steps
from A's look relative to B alone; each target's brand figures in A and B (mean CIEDE2000 to the
brand colour re-lit to each pixel's L*, the worst frame's mean, L* std over the same render's without
the brand colour); the units the brand change reran.

    python benchmarks/looks.py                            # 12 frames, 96x96, npr and diffusion
    python benchmarks/looks.py --frames 24 --resolution 128 --stylizers diffusion
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BRANDS = {"sofa": "#1F4E79", "rug": "#C8102E"}
CHANGED = {"sofa": "#1F4E79", "rug": "#2E8B57"}
DOLLY = """[camera.path]
kind = "dolly"
start = [4.7, 3.6, 1.5]
end = [3.9, 1.6, 1.3]
look_at = [2.2, 2.5, 0.7]
easing = "ease_in_out"
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=12, help="frames per shot (default 12)")
    parser.add_argument("--resolution", type=int, default=96, help="square side, multiple of 8 (default 96)")
    parser.add_argument("--stylizers", nargs="+", default=["npr", "diffusion"], choices=["npr", "diffusion"])
    parser.add_argument("--steps", type=int, default=4, help="num_inference_steps of the diffusion shots (default 4)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the jobs and the store (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    return parser.parse_args(argv)


def template_text(args, path: str, brands: dict[str, str]) -> str:
    text = (Path(__file__).resolve().parents[1] / "scenes" / "bundled" / "living_room.toml").read_text()
    text = re.sub(r"resolution = \[\d+, \d+\]", f"resolution = [{args.resolution}, {args.resolution}]", text)
    text = re.sub(r"frame_end = \d+", f"frame_end = {args.frames}", text)
    if path == "dolly":
        text = re.sub(r"\[camera\.path\]\n(?:[^\[\n][^\n]*\n)+", DOLLY, text)
    text = re.sub(r"num_inference_steps = \d+", f"num_inference_steps = {args.steps}", text)
    text = text.replace('consistency = { mode = "per_frame" }', 'consistency = { mode = "keyframes" }')
    return text + "".join(f'\n[[style.brand_colors]]\ntarget = "{t}"\ncolor = "{c}"\n' for t, c in brands.items())


def shot_frames(folder: Path):
    import numpy as np
    from PIL import Image

    from passes.pass_exr import read_passes_exr

    files = sorted((folder / "frames").glob("*.png"))
    return ([np.asarray(Image.open(f).convert("RGB")) for f in files],
            [read_passes_exr(folder / "passes" / f"{f.stem}.exr") for f in files])


def main(argv=None) -> int:
    args = parse_args(argv)
    from render_farm.job_execution import run_job
    from render_farm.job_request import JobRequest
    from render_farm.local_executor import LocalExecutor
    from stylize.look_atlases import read_look
    from stylize.warp_error import cross_shot_difference

    work = args.work or Path(tempfile.mkdtemp(prefix="greybox-looks-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    for name, path, brands in (("a", "orbit", BRANDS), ("b", "dolly", {}), ("a_changed", "orbit", CHANGED)):
        (work / f"{name}.toml").write_text(template_text(args, path, brands))
    request: dict = {}
    rows = []
    executor = LocalExecutor(1)
    try:
        for stylizer in args.stylizers:
            if stylizer == "diffusion":
                from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_sd15

                models = work / "models"
                base = models / "sd15"
                if not (base / "model_index.json").is_file():
                    save_tiny_sd15(base)
                nets = {}
                for i, p in enumerate(("depth", "seg")):
                    nets[p] = models / f"cn_{p}"
                    if not (nets[p] / "config.json").is_file():
                        save_tiny_controlnet(nets[p], base, seed=10 + i)
                request = {"model": str(base), "controlnets": {p: str(d) for p, d in nets.items()}}
            else:
                request = {}

            def run(template: str, out: str, *overrides: str) -> tuple[dict, float]:
                job = JobRequest(command="render", templates=[str(work / template)], stylizer=stylizer,
                                 overrides=list(overrides), **request)
                started = time.perf_counter()
                summary = run_job(job, work / stylizer / out, store=store, executor=executor, progress=False).to_json()
                return summary, time.perf_counter() - started

            print(f"[{stylizer}] shot A (orbit) ...", flush=True)
            _, seconds_a = run("a.toml", "a")
            print(f"[{stylizer}] shot B alone, and B from A's look ...", flush=True)
            _, seconds_alone = run("b.toml", "b_alone")
            _, seconds_from = run("b.toml", "b_from_a", f"style.look.from={work / stylizer / 'a'}")
            print(f"[{stylizer}] shot A with the rug's brand colour changed ...", flush=True)
            changed, seconds_changed = run("a_changed.toml", "a_changed")

            manifests = {n: json.loads((work / stylizer / n / "manifest.json").read_text())
                         for n in ("a", "b_alone", "b_from_a", "a_changed")}
            frames_a, passes_a = shot_frames(work / stylizer / "a")
            look_a = read_look(work / stylizer / "a")
            sizes = {a.instance_id: int(a.colour.shape[0]) for a in look_a.atlases.values() if a.instance_id > 0}
            cross = {}
            for n in ("b_from_a", "b_alone"):
                frames_b, passes_b = shot_frames(work / stylizer / n)
                cross[n] = cross_shot_difference(frames_a, passes_a, frames_b, passes_b, sizes)
            steps = {n: manifests[n]["consistency"]["denoising_steps"] for n in manifests}
            row = {
                "stylizer": stylizer,
                "e_warp_long_a": manifests["a"]["consistency"]["warp_error"]["long_mae"],
                "cross_shot_from_a": cross["b_from_a"], "cross_shot_alone": cross["b_alone"],
                "steps_b_from_a": steps["b_from_a"], "steps_b_alone": steps["b_alone"],
                "brands_a": manifests["a"].get("brand_colors", []), "brands_b_from_a": manifests["b_from_a"].get("brand_colors", []),
                "brand_change_units": changed["units"],
                "seconds": {"a": seconds_a, "b_alone": seconds_alone, "b_from_a": seconds_from, "a_changed": seconds_changed},
                "look_a": manifests["a"]["look"]["id"], "look_b_from_a": manifests["b_from_a"]["look"]["id"],
            }
            rows.append(row)
    finally:
        executor.shutdown()

    print(f"\nliving room, {args.frames} frames a shot at {args.resolution}^2 (A: orbit, B: dolly), work folder {work}")
    print(f"{'stylizer':<10} {'E_warp long A':>13} {'cross B<-A':>10} {'matched':>8} {'cross B alone':>13} "
          f"{'steps B<-A':>10} {'steps B alone':>13} {'ratio':>6}")
    for r in rows:
        ratio = r["steps_b_from_a"] / r["steps_b_alone"] if r["steps_b_alone"] else float("nan")
        print(f"{r['stylizer']:<10} {r['e_warp_long_a']:>13.4f} {r['cross_shot_from_a']['mae']:>10.4f} "
              f"{r['cross_shot_from_a']['matched_fraction']:>8.2f} {r['cross_shot_alone']['mae']:>13.4f} "
              f"{r['steps_b_from_a']:>10} {r['steps_b_alone']:>13} {ratio:>6.2f}")
    print(f"\n{'stylizer':<10} {'shot':<9} {'target':<6} {'colour':<8} {'mean dE00':>9} {'worst frame':>11} {'L* std ratio':>12} {'pixels':>7}")
    for r in rows:
        for shot, entries in (("A", r["brands_a"]), ("B<-A", r["brands_b_from_a"])):
            for b in entries:
                ratio = b.get("l_std_ratio")
                print(f"{r['stylizer']:<10} {shot:<9} {b['target']:<6} {b['color']:<8} {b.get('delta_e_mean', float('nan')):>9.3f} "
                      f"{b.get('delta_e_worst_frame_mean', float('nan')):>11.3f} "
                      f"{(f'{ratio:.3f}' if ratio is not None else '-'):>12} {b.get('pixels', 0):>7}")
    print("\nunits when only the rug's brand colour changed (A again):")
    for r in rows:
        print(f"  {r['stylizer']:<10} " + ", ".join(f"{k} {v['ran']} ran / {v['reused']} reused" for k, v in r["brand_change_units"].items()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
