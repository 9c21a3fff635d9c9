"""``DIR/review.html``: one self-contained page to look at a finished job.

Written by the driver when a job ends (``passes`` or ``render``, finished or failed), from what the
job folder holds: ``manifest.json``, ``job.json``, ``.greybox/graph.json``, ``run_log.jsonl`` and
the frames, control images and video. It holds this run's timings, so it is no part of the store
and of no byte-identity check; it is rewritten at every job end. No network: styles, script and
plots (inline SVG) are in the page, images and video are relative links into the folder.

What it shows, per shot:

- the video, always as H.264 (which every browser plays): ``video.mp4`` when the shot's video is
  H.264, else ``review_proxy.mp4``, written beside the page from the frames by
  :func:`write_review_proxy` (libx264 through imageio-ffmpeg, longest side at most 640 pixels);
- a frame scrubber (slider, buttons, arrow keys, or a click on a plot): each stylised frame beside
  its control images, with the frame's noise seed and whether it is a keyframe or was generated;
- the manifest summary: template, seeds, models with hashes or revisions, consistency mode and
  keyframes, versions, and looks when the manifest has them;
- per-frame figures as small plots: E_warp short and long range (where computed, see
  :mod:`render_farm.frame_figures`), seconds per frame per stage from this run's log (frames reused
  from the store took no time and are left out), and denoising steps;
- warnings: the models' notes, retried, failed and recomputed tasks of this run.

A job of several shots gets one page per shot folder and ``DIR/review.html`` linking them.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from greybox import __version__ as GREYBOX_VERSION
from greybox.confined_files import link_or_copy, write_bytes
from greybox.frame_files import frame_name, frame_png_path
from scenes.template_schema import CONTROL_PASSES

PAGE = "review.html"
PROXY = "review_proxy.mp4"
PROXY_MAX_SIDE = 640


# --------------------------------------------------------------------------------------------
# Reading the job folder
# --------------------------------------------------------------------------------------------


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def latest_run(job_dir: Path) -> list[dict]:
    """The events of the last run in ``run_log.jsonl`` (from its last ``run_start``)."""
    events: list[dict] = []
    try:
        with open(Path(job_dir) / "run_log.jsonl", encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "run_start":
                    events = []
                events.append(event)
    except OSError:
        return []
    return events


def frame_seconds(events: list[dict], tasks: list[dict], shot: str) -> dict[str, dict[int, float]]:
    """stage -> frame -> seconds this run spent on it (tasks that ran, not reused ones).

    A task that reported per-frame times (passes chunks, stylize tasks) gives them; otherwise its
    time is spread evenly over its frames."""
    by_id = {t["id"]: t for t in tasks if t.get("shot") == shot}
    out: dict[str, dict[int, float]] = {}
    for event in events:
        if event.get("event") != "task" or event.get("state") != "done" or event.get("cached"):
            continue
        task = by_id.get(event.get("id"))
        if task is None or not task.get("frames"):
            continue
        stage = out.setdefault(task["kind"], {})
        reported = event.get("frame_seconds") or {}
        if reported:
            for unit, seconds in reported.items():
                stage[int(unit)] = float(seconds)
        elif event.get("seconds") is not None:
            for f in task["frames"]:
                stage[int(f)] = float(event["seconds"]) / len(task["frames"])
    return out


def reused_frames(events: list[dict], tasks: list[dict], shot: str) -> dict[str, set[int]]:
    """stage -> the frames this run took from the store (tasks done without running)."""
    by_id = {t["id"]: t for t in tasks if t.get("shot") == shot}
    out: dict[str, set[int]] = {}
    for event in events:
        task = by_id.get(event.get("id"))
        if task is not None and event.get("state") == "done" and event.get("cached"):
            out.setdefault(task["kind"], set()).update(int(f) for f in task.get("frames") or [])
    return out


def outside_frames(events: list[dict], tasks: list[dict], shot: str) -> dict[str, float]:
    """stage -> this run's task seconds not in any frame's reported time (loading models, warm-up)."""
    by_id = {t["id"]: t for t in tasks if t.get("shot") == shot}
    out: dict[str, float] = {}
    for event in events:
        task = by_id.get(event.get("id"))
        if (task is None or event.get("state") != "done" or event.get("cached") or not event.get("frame_seconds")
                or event.get("seconds") is None):
            continue
        extra = float(event["seconds"]) - sum(float(v) for v in event["frame_seconds"].values())
        out[task["kind"]] = out.get(task["kind"], 0.0) + max(extra, 0.0)
    return out


def run_warnings(events: list[dict], tasks: list[dict], shot: str, several: bool) -> list[str]:
    """Retries, failures, blocked tasks and recomputed units of this run, for ``shot``."""
    ids = {t["id"] for t in tasks if t.get("shot") == shot}
    out = []
    for event in events:
        tid = event.get("id")
        if tid not in ids:
            continue
        name = tid.split("/", 1)[1] if several and tid and "/" in tid else tid
        if event.get("event") == "recompute":
            out.append(f"{name} {event.get('unit')}: {event.get('reason')}; recomputed")
        elif event.get("state") == "retry":
            out.append(f"{name}: attempt {event.get('attempt')} failed ({event.get('kind')}): {event.get('reason')}; retried")
        elif event.get("state") == "failed":
            out.append(f"{name}: FAILED ({event.get('kind')}) after {event.get('attempts')} attempt(s): {event.get('reason')}")
        elif event.get("state") == "blocked":
            out.append(f"{name}: not run ({event.get('reason')})")
        elif event.get("state") == "interrupted":
            out.append(f"{name}: interrupted")
    return out


def browser_video(view: Path, resolved: dict, frames: list[int], scratch: Path | None) -> str | None:
    """The page's video, relative to ``view``: ``video.mp4`` when the shot's video is H.264 (the
    template's ``render.video_codec``, h264 when it has none), else a proxy written now."""
    codec = (resolved.get("render") or {}).get("video_codec", "h264")
    if codec == "h264" and (Path(view) / "video.mp4").is_file():
        return "video.mp4"
    if frames and all((Path(view) / frame_png_path(f)).is_file() for f in frames):
        fps = int((resolved.get("render") or {}).get("fps", 24))
        write_review_proxy(view, frames, fps, scratch=scratch)
        return PROXY
    return None


def write_review_proxy(view: Path, frames: list[int], fps: int, *, scratch: Path | None = None,
                       max_side: int = PROXY_MAX_SIDE) -> Path:
    """``view/review_proxy.mp4``: the frames as H.264 (yuv420p, which browsers play), longest side
    at most ``max_side`` pixels (even sides), encoded with libx264 through imageio-ffmpeg in
    ``scratch`` (the store's staging; a temporary folder when None), then linked or copied into the
    view without following a link there."""
    import tempfile

    import imageio_ffmpeg
    import numpy as np
    from PIL import Image

    paths = [Path(view) / frame_png_path(f) for f in frames]
    with Image.open(paths[0]) as first:
        width, height = first.size
    scale = min(1.0, max_side / max(width, height))
    size = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
    with tempfile.TemporaryDirectory(dir=scratch) as work:
        encoded = Path(work) / PROXY
        writer = imageio_ffmpeg.write_frames(
            str(encoded), size, fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=None, macro_block_size=2,
            ffmpeg_log_level="error", output_params=["-preset", "veryfast", "-crf", "23", "-movflags", "+faststart"],
        )
        writer.send(None)
        try:
            for path in paths:
                with Image.open(path) as image:
                    rgb = image.convert("RGB")
                    if rgb.size != size:
                        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
                    writer.send(np.ascontiguousarray(np.asarray(rgb)))
        finally:
            writer.close()
        link_or_copy(encoded, view, PROXY)
    return Path(view) / PROXY


# --------------------------------------------------------------------------------------------
# Plots (inline SVG)
# --------------------------------------------------------------------------------------------

PLOT_W, PLOT_H = 384, 160
PAD_L, PAD_R, PAD_T, PAD_B = 46, 10, 34, 26
COLOURS = ("#2f6fdf", "#d9534f", "#3a9d5d", "#a05fc8")


def _nice_max(value: float) -> float:
    if not value > 0 or not math.isfinite(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = step * 10 ** exponent
        if top >= value * 1.0001:
            return top
    return 10 ** (exponent + 1)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


def plot_svg(title: str, frames: list[int], series: list[tuple[str, dict[int, float]]], *, bars: bool = False,
             unit: str = "") -> str:
    """A small plot of per-frame values: one line (or bars) per series, a legend, hover titles,
    a frame cursor the scrubber moves; a click picks the frame."""
    first, last = frames[0], frames[-1]
    span = max(last - first, 1)
    inner_w, inner_h = PLOT_W - PAD_L - PAD_R, PLOT_H - PAD_T - PAD_B
    values = [v for _, s in series for v in s.values() if v is not None and math.isfinite(v)]
    top = _nice_max(max(values) if values else 1.0)

    inset = 8.0  # keeps the first and last points (and bars) inside the axes

    def x(f: int) -> float:
        return PAD_L + inset + ((inner_w - 2 * inset) * (f - first) / span if last > first else (inner_w - 2 * inset) / 2)

    def y(v: float) -> float:
        return PAD_T + inner_h * (1 - v / top)

    parts = [f'<svg class="plot" viewBox="0 0 {PLOT_W} {PLOT_H}" width="{PLOT_W}" height="{PLOT_H}" '
             f'data-first="{first}" data-last="{last}" data-left="{PAD_L + 8}" data-width="{inner_w - 16}" role="img" '
             f'aria-label="{html.escape(title)}">',
             f'<text x="{PAD_L}" y="14" class="ptitle">{html.escape(title)}</text>']
    for k in range(3):  # y grid and labels at 0, top/2, top
        v = top * k / 2
        parts.append(f'<line x1="{PAD_L}" x2="{PLOT_W - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>')
        parts.append(f'<text x="{PAD_L - 4}" y="{y(v) + 3:.1f}" class="tick" text-anchor="end">{_fmt(v)}</text>')
    parts.append(f'<text x="{PAD_L}" y="{PLOT_H - 8}" class="tick">{frame_name(first)}</text>')
    parts.append(f'<text x="{PLOT_W - PAD_R}" y="{PLOT_H - 8}" class="tick" text-anchor="end">{frame_name(last)}</text>')
    if unit:
        parts.append(f'<text x="{(PAD_L + PLOT_W - PAD_R) / 2:.0f}" y="{PLOT_H - 8}" class="tick" text-anchor="middle">frame · {html.escape(unit)}</text>')
    bar_w = max(1.0, min(12.0, inner_w / (span + 1) * 0.8 / max(len(series), 1)))
    for i, (label, data) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        points = [(f, data[f]) for f in frames if data.get(f) is not None and math.isfinite(data[f])]
        if bars:
            for f, v in points:
                bx = x(f) - bar_w * len(series) / 2 + i * bar_w
                parts.append(f'<rect x="{bx:.1f}" y="{y(v):.1f}" width="{bar_w:.1f}" height="{max(y(0) - y(v), 0):.1f}" '
                             f'fill="{colour}" data-frame="{f}"><title>{html.escape(label)} {frame_name(f)}: {_fmt(v)}</title></rect>')
        else:
            if len(points) > 1:
                coords = " ".join(f"{x(f):.1f},{y(v):.1f}" for f, v in points)
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            radius = 2.5 if len(points) <= 120 else 1.2
            for f, v in points:
                parts.append(f'<circle cx="{x(f):.1f}" cy="{y(v):.1f}" r="{radius}" fill="{colour}" data-frame="{f}">'
                             f'<title>{html.escape(label)} {frame_name(f)}: {_fmt(v)}</title></circle>')
        lx = PAD_L + i * 110
        parts.append(f'<rect x="{lx}" y="19" width="10" height="8" fill="{colour}"/>'
                     f'<text x="{lx + 14}" y="27" class="tick">{html.escape(label)}</text>')
    parts.append(f'<line class="cursor" x1="{x(first):.1f}" x2="{x(first):.1f}" y1="{PAD_T}" y2="{PAD_T + inner_h}"/>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

STYLE = """
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,sans-serif;color:#1d232b;background:#f4f5f7}
main{max-width:1240px;margin:0 auto;padding:16px 20px 40px}h1{font-size:20px;margin:0 0 2px}h2{font-size:15px;margin:22px 0 8px}
.sub{color:#5b6573;margin:0 0 14px}.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px;min-width:0}
.top{display:grid;grid-template-columns:minmax(0,5fr) minmax(0,7fr);gap:14px}video{width:100%;max-height:440px;background:#000;border-radius:4px}
table{border-collapse:collapse;width:100%;table-layout:fixed}td,th{text-align:left;vertical-align:top;padding:3px 6px;border-bottom:1px solid #eef0f2;overflow-wrap:anywhere}
th{width:128px;color:#5b6573;font-weight:600}code{font:12px ui-monospace,monospace}
.bar{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin-bottom:10px}.bar input[type=range]{flex:1;min-width:200px}
button{font:inherit;padding:2px 10px}#frame-label{font-weight:600;min-width:90px}#frame-notes{color:#5b6573}
.strip{display:grid;gap:8px}.strip figure{margin:0;min-width:0}.strip img{display:block;width:100%;height:auto;background:#222;border-radius:3px}
.strip img.small{image-rendering:pixelated}.strip figcaption{font-size:12px;color:#5b6573;text-align:center}
.missing{display:flex;align-items:center;justify-content:center;aspect-ratio:1;background:#eee;color:#888;border-radius:3px}
.plots{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:10px}.plot{width:100%;height:auto;cursor:pointer}
.plot .grid{stroke:#e3e6ea}.plot .tick{font-size:10px;fill:#5b6573}.plot .ptitle{font-size:11px;font-weight:600;fill:#1d232b}
.plot .cursor{stroke:#f0a020;stroke-width:1.5}.note{color:#5b6573;font-size:12px;margin:6px 0 0}
ul.warn{margin:0;padding-left:18px}ul.warn li{margin:2px 0}.ok{color:#3a7d44}.bad{color:#b02a2a}
.shots{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}.shots img{width:100%;border-radius:3px}
"""

SCRIPT = """
(function(){
var data=JSON.parse(document.getElementById('review-data').textContent);
var slider=document.getElementById('scrub');if(!slider)return;
var label=document.getElementById('frame-label'),notes=document.getElementById('frame-notes');
function pad(f){var s=String(f);while(s.length<4)s='0'+s;return s}
function show(i){i=Math.max(0,Math.min(data.frames.length-1,i));slider.value=i;var f=data.frames[i],n=pad(f);
 label.textContent='frame '+n+' ('+(i+1)+'/'+data.frames.length+')';
 var bits=[];if(data.seeds[n]!==undefined)bits.push('seed '+data.seeds[n]);var w=data.warp[n]||{};
 if(w.short_mae!==undefined)bits.push('E_warp short '+w.short_mae.toFixed(4));if(w.long_mae!==undefined)bits.push('long '+w.long_mae.toFixed(4));
 if(data.keyframes.indexOf(f)>=0)bits.push('keyframe');if(data.generated.indexOf(f)>=0)bits.push('generated');
 notes.textContent=bits.join(' \u00b7 ');
 data.columns.forEach(function(c){var img=document.getElementById('img-'+c.id),miss=document.getElementById('miss-'+c.id);
  var ok=c.have.indexOf(f)>=0;img.style.display=ok?'':'none';miss.style.display=ok?'none':'';if(ok)img.src=c.dir+n+'.png';});
 document.querySelectorAll('svg.plot').forEach(function(s){var a=+s.dataset.first,b=+s.dataset.last,l=+s.dataset.left,w=+s.dataset.width;
  var x=b>a?l+w*(f-a)/(b-a):l+w/2;var c=s.querySelector('.cursor');c.setAttribute('x1',x);c.setAttribute('x2',x);});}
slider.addEventListener('input',function(){show(+slider.value)});
document.getElementById('prev').addEventListener('click',function(){show(+slider.value-1)});
document.getElementById('next').addEventListener('click',function(){show(+slider.value+1)});
document.addEventListener('keydown',function(e){if(e.target.tagName==='INPUT'&&e.target!==slider)return;
 if(e.key==='ArrowLeft'){show(+slider.value-1);e.preventDefault()}if(e.key==='ArrowRight'){show(+slider.value+1);e.preventDefault()}});
document.querySelectorAll('svg.plot').forEach(function(s){s.addEventListener('click',function(e){
 var r=s.getBoundingClientRect(),vx=(e.clientX-r.left)*384/r.width,a=+s.dataset.first,b=+s.dataset.last,l=+s.dataset.left,w=+s.dataset.width;
 var f=Math.round(a+(b-a)*(vx-l)/w),best=0;data.frames.forEach(function(g,i){if(Math.abs(g-f)<Math.abs(data.frames[best]-f))best=i});show(best);});});
window.greyboxShowFrame=show;show(0);
})();
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _short(digest: str | None, n: int = 12) -> str:
    return digest[:n] if digest else ""


def _row(name: str, value_html: str) -> str:
    return f"<tr><th>{_e(name)}</th><td>{value_html}</td></tr>"


def _model_html(entry: dict) -> str:
    text = f"<code>{_e(entry.get('id'))}</code>"
    if entry.get("class_name"):
        text += f" {_e(entry['class_name'])}"
    if entry.get("revision"):
        text += f"<br>revision <code>{_e(entry['revision'])}</code>"
    for rel, digest in sorted((entry.get("file_sha256") or {}).items()):
        text += f"<br><code>{_e(rel)}</code> sha256 <code title=\"{_e(digest)}\">{_e(_short(digest, 16))}</code>"
    return text


def _summary_rows(manifest: dict | None, shot: dict) -> list[str]:
    resolved = (manifest or {}).get("template", {}).get("resolved") or shot.get("resolved") or {}
    render = resolved.get("render", {})
    style = resolved.get("style", {})
    rows = []
    template = (manifest or {}).get("template", {})
    rows.append(_row("template", f"<b>{_e(resolved.get('name'))}</b> from <code>{_e(template.get('source') or shot.get('source'))}</code>"
                     + (f"<br>hash <code>{_e(_short(template.get('hash'), 16))}</code>" if template.get("hash") else "")
                     + (f"<br>{_e(resolved.get('description'))}" if resolved.get("description") else "")))
    overrides = (manifest or {}).get("overrides") or shot.get("overrides") or []
    if overrides:
        rows.append(_row("overrides", "<br>".join(f"<code>{_e(o)}</code>" for o in overrides)))
    if render:
        frames = shot.get("frames") or []
        span = f"{frames[0]}-{frames[-1]}" if frames else f"{render.get('frame_start')}-{render.get('frame_end')}"
        rows.append(_row("render", f"{_e(render['resolution'][0])}x{_e(render['resolution'][1])}, frames {_e(span)} "
                         f"({len(frames)}) at {_e(render.get('fps'))} fps" + (f", video {_e(render['video_codec'])}" if render.get("video_codec") else "")))
    seeds = (manifest or {}).get("seeds") or {"scene": resolved.get("seed")}
    seed_text = f"scene {_e(seeds.get('scene'))}"
    if "style" in seeds:
        seed_text += f", style {_e(seeds['style'])} ({_e(seeds.get('seed_mode'))}); per-frame noise seeds in the scrubber"
    rows.append(_row("seeds", seed_text))
    if manifest and manifest.get("stylizer"):
        text = _e(manifest["stylizer"])
        if manifest["stylizer"] == "diffusion" and style:
            text += (f": {_e(style.get('scheduler'))}, {_e(style.get('num_inference_steps'))} steps, guidance "
                     f"{_e(style.get('guidance_scale'))}<br>prompt <q>{_e(style.get('prompt'))}</q>"
                     + (f"<br>negative <q>{_e(style.get('negative_prompt'))}</q>" if style.get("negative_prompt") else ""))
        rows.append(_row("stylizer", text))
    models = (manifest or {}).get("models")
    if models:
        rows.append(_row(f"base model ({models.get('family')})", _model_html(models["base"])))
        for c in models.get("controlnets", []):
            rows.append(_row(f"ControlNet {c['pass']}", f"scale {_e(c['scale'])}, window {_e(c['start'])}-{_e(c['end'])}<br>"
                             + _model_html(c)))
    consistency = (manifest or {}).get("consistency")
    if consistency:
        keyframes = consistency.get("keyframes") or []
        text = (f"<b>{_e(consistency.get('mode'))}</b>; {_e(consistency.get('denoising_steps'))} denoising steps "
                f"({float(consistency.get('denoising_steps_per_frame', 0)):.2f} a frame); "
                f"{len(consistency.get('generated_frames') or [])} frame(s) generated")
        text += f"<br>keyframes {_e(', '.join(frame_name(k) for k in keyframes))}" if keyframes else ""
        we = consistency.get("warp_error") or {}
        if "short_mae" in we or "long_mae" in we:
            text += "<br>E_warp (exact flow, mean abs. RGB 0..1): " + ", ".join(
                f"{label} {we[key]:.4f}" for key, label in (("short_mae", "short range"), ("long_mae", "long range")) if key in we)
        rows.append(_row("consistency", text))
    versions = (manifest or {}).get("versions")
    if versions:
        rows.append(_row("versions", ", ".join(f"{_e(k)} <code>{_e(v)}</code>" for k, v in versions.items() if v)))
    looks = (manifest or {}).get("looks")
    if looks:
        if isinstance(looks, dict):
            items = "<br>".join(f"<b>{_e(k)}</b> <code>{_e(json.dumps(v, sort_keys=True))}</code>" for k, v in looks.items())
        else:
            items = "<br>".join(f"<code>{_e(json.dumps(v, sort_keys=True))}</code>" for v in looks)
        rows.append(_row("looks", items))
    return rows


def _json_for_script(payload) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def build_shot_page(view: Path, *, job_dir: Path, shot: dict, tasks: list[dict], events: list[dict], several: bool,
                    command: str, extra_warnings: list[str] | tuple = (), scratch: Path | None = None) -> str:
    """The HTML of one shot's page (see the module docstring)."""
    # 1. Gather what the folder holds
    view = Path(view)
    manifest = _read_json(view / "manifest.json")
    resolved = (manifest or {}).get("template", {}).get("resolved") or shot.get("resolved") or {}
    frames = [int(f) for f in shot.get("frames") or []]
    controls = [c for c in CONTROL_PASSES if c in (resolved.get("passes", {}).get("control") or [])]
    stylized = command == "render"
    columns = ([("frame", "stylised frame", "frames/")] if stylized else []) + [(c, c, f"control/{c}/") for c in controls]
    have = {cid: [f for f in frames if (view / d / f"{frame_name(f)}.png").is_file()] for cid, _, d in columns}
    width, height = (resolved.get("render", {}).get("resolution") or [512, 512])[:2]
    consistency = (manifest or {}).get("consistency") or {}
    seeds = ((manifest or {}).get("seeds") or {}).get("frames") or {}
    video = browser_video(view, resolved, frames, scratch) if stylized else None
    run_end = next((e for e in reversed(events) if e.get("event") == "run_end"), None)
    status = (run_end or {}).get("status", "running")

    # 2. Figures per frame
    plots = []
    we = (consistency.get("warp_error") or {}).get("by_frame") or {}
    if we:
        series = [(label, {int(k): v.get(key) for k, v in we.items()}) for key, label in (("short_mae", "short range"), ("long_mae", "long range"))
                  if any(v.get(key) is not None for v in we.values())]
        plots.append(plot_svg("E_warp (mean abs. RGB difference, 0..1)", frames, series, unit="exact flow"))
    seconds = frame_seconds(events, tasks, shot["name"])
    series = [(stage, seconds[stage]) for stage in ("passes", "stylize") if seconds.get(stage)]
    if series and frames:
        plots.append(plot_svg("seconds per frame (this run)", frames, series, unit="s"))
    steps = consistency.get("denoising_steps_by_frame") or {}
    if steps and frames:
        plots.append(plot_svg("denoising steps per frame", frames, [("UNet evaluations", {int(k): float(v) for k, v in steps.items()})], bars=True))
    reused = reused_frames(events, tasks, shot["name"])
    notes = [f"{stage}: {len(reused[stage])} of {len(frames)} frame(s) reused from the store (no time this run)"
             for stage in ("passes", "stylize") if reused.get(stage)]
    for stage, extra in outside_frames(events, tasks, shot["name"]).items():
        if extra >= 0.5:
            notes.append(f"{stage}: {extra:.1f} s of this run's task time is outside the frames (starting workers, loading models)")
    if stylized and consistency.get("mode") in ("flow_warp", "keyframes") and not we:
        from render_farm.frame_figures import warp_error_ranges

        if not warp_error_ranges(width, height)[0]:
            notes.append(f"E_warp not computed: {width}x{height} is above the size where it is cheap (render_farm/frame_figures.py)")
        elif len(frames) > 1:
            notes.append("E_warp not recorded: these frames were stylised by a greybox that did not record it")
    elif stylized and we and not any(v.get("long_mae") is not None or "long_mae" in v for v in we.values()):
        notes.append(f"E_warp long range not computed: {width}x{height} is above the size where it is cheap (render_farm/frame_figures.py)")
    elif stylized and consistency.get("mode") == "per_frame":
        notes.append("E_warp is computed for the sequence modes (flow_warp, keyframes)")

    # 3. Warnings
    warnings = list(extra_warnings)
    warnings += [f"models: {w}" for w in ((manifest or {}).get("models") or {}).get("warnings", [])]
    warnings += run_warnings(events, tasks, shot["name"], several)
    if manifest is None:
        warnings.append("no manifest.json: the job did not finish")
    for cid, label, _ in columns:
        if frames and len(have[cid]) < len(frames):
            warnings.append(f"{label}: {len(frames) - len(have[cid])} of {len(frames)} image(s) missing")

    # 4. The page
    small = max(width, height) < 256
    title = f"{shot['name']} - greybox review"
    head = [f"<h1>{_e(shot['name'])}</h1>",
            f"<p class=\"sub\">greybox {_e(command)} · <span class=\"{'ok' if status == 'ok' else 'bad'}\">{_e(status)}</span>"
            + (f" · {run_end.get('seconds')} s" if run_end and run_end.get("seconds") is not None else "")
            + (f" · ended {_e(run_end.get('time'))}" if run_end else "")
            + (' · <a href="../review.html">all shots</a>' if several else "") + "</p>"]
    links = []
    if video == PROXY:
        original = next((name for name in ("video.mov", "video.mp4") if (view / name).is_file()), None)
        codec = _e(resolved.get("render", {}).get("video_codec"))
        links.append(f'H.264 proxy of the frames; the video: <a href="{original}">{original}</a> ({codec})'
                     if original else f"H.264 proxy of the frames (the video is {codec})")
    elif video:
        links.append('<a href="video.mp4">video.mp4</a>')
    links += ['<a href="contact_sheet.png">contact sheet</a>', '<a href="manifest.json">manifest.json</a>']
    if (view / "comfyui" / "workflow_api.json").is_file():
        links.append('<a href="comfyui/workflow_api.json">ComfyUI workflow</a> (<a href="comfyui/README.txt">README</a>)')
    video_html = (f'<video id="video" controls loop muted preload="metadata" src="{_e(video)}"></video>'
                  f'<p class="note">{" · ".join(links)}</p>') if video else '<p class="note">no video (passes job, or frames missing)</p>'
    body = [f'<div class="top"><div class="card">{video_html}</div>',
            f'<div class="card"><table>{"".join(_summary_rows(manifest, shot))}</table></div></div>']
    if frames and columns:
        cells = []
        for cid, label, d in columns:
            cls = ' class="small"' if small else ""
            cells.append(f'<figure><img id="img-{_e(cid)}" alt="{_e(label)}"{cls} width="{_e(width)}" height="{_e(height)}">'
                         f'<div class="missing" id="miss-{_e(cid)}" style="display:none">not rendered</div>'
                         f"<figcaption>{_e(label)}</figcaption></figure>")
        body.append(
            '<h2>Frames</h2><div class="card"><div class="bar"><button id="prev" type="button">&larr;</button>'
            f'<input id="scrub" type="range" min="0" max="{len(frames) - 1}" value="0" step="1" aria-label="frame">'
            '<button id="next" type="button">&rarr;</button><span id="frame-label"></span><span id="frame-notes"></span></div>'
            f'<div class="strip" style="grid-template-columns:repeat({len(columns)},minmax(0,1fr))">{"".join(cells)}</div></div>')
    if plots or notes:
        body.append('<h2>Per frame</h2><div class="card">' + (f'<div class="plots">{"".join(plots)}</div>' if plots else "")
                    + "".join(f'<p class="note">{_e(n)}</p>' for n in notes) + "</div>")
    body.append("<h2>Warnings</h2><div class=\"card\">" + (
        "<ul class=\"warn\">" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>" if warnings else "<p class=\"note\">none</p>") + "</div>")
    body.append(f'<p class="note">Written by greybox {_e(GREYBOX_VERSION)} when the job ended; it holds this run\'s timings and is kept '
                "out of the store and the manifest. Data: manifest.json, run_log.jsonl, .greybox/graph.json.</p>")
    data = {"frames": frames, "seeds": {k: str(v) for k, v in seeds.items()},  # strings: seeds exceed 2^53
            "warp": {k: {m: v.get(m) for m in ("short_mae", "long_mae") if v.get(m) is not None} for k, v in we.items()},
            "keyframes": consistency.get("keyframes") or [],
            "generated": consistency.get("generated_frames") or [],
            "columns": [{"id": cid, "dir": d, "have": have[cid]} for cid, _, d in columns]}
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'; img-src 'self'; media-src 'self'; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'none'\">"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body><main>"
            + "".join(head) + "".join(body)
            + f'</main><script type="application/json" id="review-data">{_json_for_script(data)}</script>'
            + f"<script>{SCRIPT}</script></body></html>\n")


def build_index_page(job_dir: Path, shots: list[dict], command: str, status: str) -> str:
    """``DIR/review.html`` of a job of several shots: a card per shot, linking its page."""
    cards = []
    for shot in shots:
        frames = shot.get("frames") or []
        thumb = ""
        if frames:
            first = f"{shot['folder']}/{'frames' if command == 'render' else 'control/depth'}/{frame_name(frames[0])}.png"
            if (Path(job_dir) / first).is_file():
                thumb = f'<img src="{_e(first)}" alt="{_e(shot["name"])} first frame">'
        cards.append(f'<div class="card"><a href="{_e(shot["folder"])}/{PAGE}">{thumb}<b>{_e(shot["name"])}</b></a>'
                     f'<p class="note">{len(frames)} frame(s) · {" ".join(_e(o) for o in shot.get("overrides") or [])}</p></div>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>greybox review</title>"
            f"<style>{STYLE}</style></head><body><main><h1>greybox {_e(command)}: {len(shots)} shots</h1>"
            f'<p class="sub">{_e(status)}</p><div class="shots">{"".join(cards)}</div></main></body></html>\n')


def write_review_pages(job_dir: Path, *, extra_warnings: dict[str, list[str]] | None = None,
                       scratch: Path | None = None) -> list[Path]:
    """Write each shot's ``review.html`` (and ``DIR/review.html`` for several shots); return the paths.
    ``scratch``: where a video proxy is encoded (the store's staging), else a temporary folder."""
    job_dir = Path(job_dir)
    record = _read_json(job_dir / "job.json") or {}
    shots = record.get("shots") or []
    command = (record.get("request") or {}).get("command", "render")
    tasks = (_read_json(job_dir / ".greybox" / "graph.json") or {}).get("tasks") or []
    events = latest_run(job_dir)
    several = len(shots) > 1
    written = []
    for shot in shots:
        view = job_dir / shot["folder"] if shot.get("folder") else job_dir
        page = build_shot_page(view, job_dir=job_dir, shot=shot, tasks=tasks, events=events, several=several,
                               command=command, extra_warnings=(extra_warnings or {}).get(shot["name"], []), scratch=scratch)
        write_bytes(view, PAGE, page.encode("utf-8"))
        written.append(view / PAGE)
    if several:
        run_end = next((e for e in reversed(events) if e.get("event") == "run_end"), {})
        write_bytes(job_dir, PAGE, build_index_page(job_dir, shots, command, run_end.get("status", "running")).encode("utf-8"))
        written.insert(0, job_dir / PAGE)
    return written
