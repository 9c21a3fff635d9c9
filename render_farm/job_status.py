"""``greybox status`` and ``greybox inspect``: read a job's folder, never write it.

Status replays ``run_log.jsonl`` over ``.greybox/graph.json``: each task is ``done``, ``running``
(its job is alive), ``interrupted`` (its job died or was stopped with it in flight), ``failed``
(with the reason), ``blocked`` (depends on a failed task), or ``pending``.
"""

from __future__ import annotations

import json
from pathlib import Path

from greybox.errors import InputError
from render_farm.job_lock import lock_is_held

STATES = ("done", "running", "interrupted", "retrying", "failed", "blocked", "pending")


def job_status(job_dir: str | Path) -> dict:
    """The state of every task of the job in ``job_dir`` as plain data."""
    job_dir = Path(job_dir)
    graph_path = job_dir / ".greybox" / "graph.json"
    if not graph_path.is_file():
        raise InputError(f"{job_dir}: no greybox job here (.greybox/graph.json missing); give the --out folder of a job")
    tasks = {t["id"]: {**t, "state": "pending", "attempts": 0} for t in json.loads(graph_path.read_text())["tasks"]}
    holder = lock_is_held(job_dir)
    runs = 0
    log_path = job_dir / "run_log.jsonl"
    if log_path.is_file():
        with open(log_path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if event.get("event") == "run_start":
                    runs += 1
                    for t in tasks.values():
                        if t["state"] in ("running", "retrying"):
                            t["state"] = "interrupted"
                        if t["state"] in ("failed", "blocked"):
                            t["state"] = "pending"
                    continue
                if event.get("event") != "task" or event.get("id") not in tasks:
                    continue
                t = tasks[event["id"]]
                state = event.get("state")
                if state == "running":
                    t["attempts"] = event.get("attempt", t["attempts"] + 1)
                    t.pop("reason", None)
                if state == "retry":
                    state = "retrying"
                t["state"] = state
                for key in ("reason", "kind", "worker", "seconds", "cached"):
                    if key in event:
                        t[key] = event[key]
    if holder is None:
        for t in tasks.values():
            if t["state"] in ("running", "retrying"):
                t["state"] = "interrupted"
    counts = {s: 0 for s in STATES}
    for t in tasks.values():
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    return {"job_dir": str(job_dir), "alive": holder is not None, "holder": holder, "runs": runs,
            "counts": counts, "tasks": list(tasks.values())}


def format_status(status: dict, limit: int = 30) -> str:
    """Readable status: a summary line, then the tasks that are not done (failed with reasons)."""
    c = status["counts"]
    who = f"running (pid {status['holder'].get('pid')} on {status['holder'].get('host')})" if status["alive"] else "not running"
    lines = [f"job {status['job_dir']}: {who}; {len(status['tasks'])} tasks: "
             + ", ".join(f"{n} {s}" for s, n in c.items() if n)]
    by_kind: dict[str, list[int]] = {}
    for t in status["tasks"]:
        entry = by_kind.setdefault(t["kind"], [0, 0])
        entry[1] += 1
        if t["state"] == "done":
            entry[0] += 1
    lines.append("  by stage: " + ", ".join(f"{k} {d}/{n} done" for k, (d, n) in by_kind.items()))
    for state in ("failed", "running", "retrying", "interrupted", "blocked", "pending"):
        items = [t for t in status["tasks"] if t["state"] == state]
        for t in items[:limit]:
            reason = f": {t['reason']}" if t.get("reason") and state in ("failed", "retrying", "blocked") else ""
            attempts = f" (attempt {t['attempts']})" if t.get("attempts") else ""
            lines.append(f"  {state:<11} {t['id']}{attempts}{reason}")
        if len(items) > limit:
            lines.append(f"  {state:<11} ... and {len(items) - limit} more")
    return "\n".join(lines)


def read_shot_records(job_dir: str | Path) -> dict[str, dict]:
    """shot name -> {"layout": the scene layout (``scene/layout.json``) or None, "manifest": or None}
    for ``greybox inspect``: a shot shows its layout as soon as its scene stage ran, its manifest
    once it finished. Raises InputError when no shot has either."""
    from scenes.scene_layout import read_layout

    job_dir = Path(job_dir)
    if not job_dir.is_dir():
        raise InputError(f"{job_dir}: no such folder; give the --out folder of a job")
    from render_farm.job_request import read_job_record

    out = {}
    record = read_job_record(job_dir)  # checked: its folders are names inside job_dir
    shots = [(s.get("name", ""), s["folder"]) for s in record["shots"]] if record is not None else [("", "")]
    for name, folder in shots:
        view = job_dir / folder if folder else job_dir
        path = view / "manifest.json"
        manifest = None
        if path.is_file():
            try:
                manifest = json.loads(path.read_text())
                if not isinstance(manifest, dict) or not isinstance(manifest.get("template"), dict):
                    raise ValueError("not a greybox manifest")
            except (OSError, ValueError, RecursionError) as err:
                raise InputError(f"{path}: cannot read the manifest ({str(err)[:200]})") from None
        layout = read_layout(view)
        if manifest is None and layout is None:
            continue
        label = (manifest or {}).get("shot") or name or (layout or {}).get("scene", {}).get("name") or folder
        out[label] = {"layout": layout, "manifest": manifest}
    if not out:
        raise InputError(f"{job_dir}: no scene/layout.json and no manifest.json (the job has not run its scene stage); "
                         f"`greybox status {job_dir}` shows where it is")
    return out


def format_manifest(manifest: dict, max_frames: int = 50) -> str:
    """The manifest, readably: template, seeds, versions, models, EXR channels, files per frame."""
    t = manifest["template"]
    lines = [
        f"shot {manifest.get('shot')}  (manifest schema {manifest.get('schema_version')}, greybox {manifest.get('greybox_version')})",
        f"  template: {t['resolved'].get('name')} from {t['source']}  hash {t['hash'][:16]}",
    ]
    if manifest.get("overrides"):
        lines.append("  overrides: " + " ".join(manifest["overrides"]))
    r = t["resolved"]["render"]
    lines.append(f"  render: {r['resolution'][0]}x{r['resolution'][1]} frames {r['frame_start']}-{r['frame_end']} at {r['fps']} fps")
    seeds = manifest.get("seeds", {})
    seed_line = f"  seeds: scene {seeds.get('scene')}"
    if "style" in seeds:
        seed_line += f", style {seeds['style']} ({seeds.get('seed_mode')}), {len(seeds.get('frames', {}))} per-frame noise seeds"
    lines.append(seed_line)
    lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items()))
    if manifest.get("stylizer"):
        lines.append(f"  stylizer: {manifest['stylizer']}")
    consistency = manifest.get("consistency")
    if consistency:
        keyframes = consistency.get("keyframes") or []
        lines.append(
            f"  consistency: {consistency['mode']}, {consistency['denoising_steps']} denoising steps "
            f"({consistency['denoising_steps_per_frame']:.2f} a frame), {len(consistency.get('generated_frames', []))} frames generated"
            + (f", keyframes {', '.join(map(str, keyframes))}" if keyframes else "")
        )
    warp = (consistency or {}).get("warp_error") or {}
    if "short_mae" in warp or "long_mae" in warp:
        lines.append("  E_warp (exact flow, mean abs. RGB 0..1): " + ", ".join(
            f"{label} {warp[key]:.4f}" for key, label in (("short_mae", "short range"), ("long_mae", "long range")) if key in warp))
    look = manifest.get("look")
    if look:
        source = look.get("from") or {}
        origin = f"from look {source['id']}" + (f" ({source.get('kind')}" + (f" {source['shot']}" if source.get("shot") else "")
                                                 + (f" {source['path']}" if source.get("path") else "") + ")") if source else "new"
        lines.append(f"  look: {look['id']}  ({origin})")
        atlases = look.get("atlases", {})
        seen = sum(a.get("seen", 0) for a in atlases.values())
        total = sum(a.get("texels", 0) for a in atlases.values())
        lines.append(f"    {len(atlases)} atlases, {seen} of {total} texels seen, {look.get('never_seen_texels', 0)} never seen "
                     "(filled: push-pull from the seen ones; flat class colour where an object was never seen)")
        for name, a in atlases.items():
            size = "x".join(str(v) for v in a.get("size", []))
            extra = f", brand {a['brand']}" if a.get("brand") else ""
            extra += f", {a['inherited']} from the source look" if a.get("inherited") else ""
            lines.append(f"    {name:<24} {size:>9}  seen {a.get('seen', 0)}/{a.get('texels', 0)}{extra}  atlas {str(a.get('key'))[:16]}")
    for brand in manifest.get("brand_colors") or []:
        if brand.get("pixels"):
            ratio = brand.get("l_std_ratio")
            lines.append(f"  brand colour {brand['color']} on {brand['target']}: mean CIEDE2000 {brand['delta_e_mean']:.3f} "
                         f"(worst frame {brand['delta_e_worst_frame_mean']:.3f}), L* std {brand['l_std']:.2f}"
                         + (f" ({ratio:.2f} of before the correction)" if ratio is not None else "")
                         + f", {brand['pixels']} pixels in {brand['frames']} frames")
    models = manifest.get("models")
    if models:
        base = models["base"]
        lines.append(f"  model: {base['id']} ({base.get('revision') or base.get('source')})")
        for c in models.get("controlnets", []):
            lines.append(f"  controlnet {c['pass']}: {c['id']} scale {c['scale']} window {c['start']}-{c['end']} ({c.get('revision') or c.get('source')})")
    lines.append("  EXR channels (passes/NNNN.exr): " + ", ".join(manifest["passes"]["exr_channels"]))
    lines.append("  control images: " + ", ".join(manifest["passes"]["control"]))
    for rel, digest in manifest.get("files", {}).items():
        lines.append(f"  {rel}  sha256 {digest[:16]}")
    frames = manifest.get("frames", {})
    lines.append(f"  frames: {len(frames)}")
    for name, files in list(frames.items())[:max_frames]:
        lines.append(f"    {name}: " + ", ".join(f"{rel} {digest[:12]}" for rel, digest in files.items()))
    if len(frames) > max_frames:
        lines.append(f"    ... and {len(frames) - max_frames} more (--json prints all)")
    return "\n".join(lines)
