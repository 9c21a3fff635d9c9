"""A finished job as users meet it: `greybox render ... --json` run as a program (tiny random-weight
diffusion models, flow_warp), its stderr, its stdout, its review page in a real headless Chromium
from Debian's packages, and its ComfyUI workflow against the reference.

Chromium runs with --no-sandbox (root), no background networking, no component updates, no first
run, a fresh profile; playwright drives it through ``executable_path`` and never downloads a
browser. scripts/setup_environment.sh installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.comfyui_reference import problems
from tests.support.tiny_templates import TINY

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-gpu"]


def chromium_executable() -> str:
    for name in ("chromium-headless-shell", "chromium"):
        path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
        if path:
            return path
    pytest.fail("no Chromium from Debian's packages: apt-get install chromium-headless-shell (scripts/setup_environment.sh does)")


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_sd15

    root = tmp_path_factory.mktemp("review")
    base = save_tiny_sd15(root / "models" / "sd15")
    nets = {p: save_tiny_controlnet(root / "models" / f"cn_{p}", base, seed=10 + i) for i, p in enumerate(("depth", "seg"))}
    template = root / "tiny.toml"
    template.write_text(TINY.replace("frame_end = 4", "frame_end = 3") + '\n[style]\nprompt = "a red room"\nnum_inference_steps = 2\n')
    out = root / "out"
    args = [sys.executable, "-m", "render_farm.cli", "render", str(template), "--out", str(out), "--store", str(root / "store"),
            "--stylizer", "diffusion", "--consistency", "flow_warp", "--model", str(base),
            *[a for p, d in nets.items() for a in ("--controlnet", f"{p}={d}")], "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONWARNINGS", None)
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return {"out": out, "run": run, "root": root, "args": args, "env": env}


def test_json_on_stdout_and_only_greyboxs_own_lines_on_stderr(finished_job):
    run = finished_job["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)  # the whole of stdout is one JSON document
    out = finished_job["out"]
    assert summary["review"] == [str(out / "review.html")] and summary["comfyui"] == {"tiny": str(out / "comfyui" / "workflow_api.json")}
    lines = [line for line in run.stderr.replace("\r", "\n").splitlines() if line.strip()]
    foreign = [line for line in lines if not line.startswith(("progress: ", "greybox: "))]
    assert foreign == [], "third-party output on stderr:\n" + "\n".join(foreign[:20])
    assert any("stylize 3/3 frames" in line for line in lines), lines  # greybox's own progress, per stage, in frames
    for marker in ("torchvision", "it/s", "Loading", "Warning", "warn("):
        assert marker not in run.stderr, marker


def test_the_filters_are_targeted_not_a_blanket_silence():
    import logging
    import warnings

    from stylize.quiet_libraries import DropMatchingMessages, install_log_filters, quiet_libraries

    before = list(warnings.filters)
    quiet_libraries()
    assert warnings.filters == before  # no warnings filter added, let alone a blanket one
    install_log_filters()
    logger = logging.getLogger("transformers.utils.import_utils")
    assert sum(isinstance(f, DropMatchingMessages) for f in logger.filters) == 1

    def passes(message: str) -> bool:
        record = logging.LogRecord(logger.name, logging.WARNING, __file__, 1, message, None, None)
        return all(f.filter(record) for f in logger.filters)

    assert not passes("`CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil` ...")
    assert passes("Some weights of the model checkpoint were not used")  # other advice from the same logger still shows
    assert logging.getLogger("transformers").filters == [] or all(
        not isinstance(f, DropMatchingMessages) for f in logging.getLogger("transformers").filters)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def open_page(browser, path: Path):
    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    page.wait_for_function("() => { const v = document.querySelector('video'); return !v || v.readyState >= 1 || v.error }",
                           timeout=20000)
    return page, requests, errors


def broken_images(page) -> list[str]:
    return page.evaluate("""() => Array.from(document.images)
        .filter(i => getComputedStyle(i).display !== 'none' && !(i.complete && i.naturalWidth > 0))
        .map(i => i.getAttribute('src') || i.id)""")


def test_review_page_in_chromium(finished_job, browser):
    out = finished_job["out"]
    manifest = json.loads((out / "manifest.json").read_text())
    page, requests, errors = open_page(browser, out / "review.html")
    try:
        # self-contained: everything it loads is a file of the job folder
        assert requests and all(u.startswith(out.as_uri() + "/") for u in requests), requests
        assert errors == []
        # no broken image, the video plays as H.264, the page fits a 1280-pixel window
        assert broken_images(page) == []
        video = page.evaluate("() => { const v = document.querySelector('video'); return [v.getAttribute('src'), v.videoWidth, v.error && v.error.code] }")
        assert video == ["video.mp4", 64, None]
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        # the manifest summary and the figures
        text = page.inner_text("body")
        for expected in ("tiny", "flow_warp", "UniPCMultistepScheduler", manifest["models"]["controlnets"][0]["file_sha256"]["diffusion_pytorch_model.safetensors"][:16],
                         "E_warp", "seconds per frame", "denoising steps per frame", manifest["versions"]["diffusers"]):
            assert expected in text, expected
        assert page.locator("svg.plot").count() == 3
        assert str(manifest["seeds"]["frames"]["0001"]) in page.inner_text("#frame-notes")  # exact, beyond 2^53
        # the scrubber changes the frame shown (and its control images), and the plots' cursor
        first = page.evaluate("[document.getElementById('img-frame').src, document.getElementById('img-seg').src]")
        cursor = page.get_attribute("svg.plot .cursor", "x1")
        page.locator("#scrub").focus()
        page.keyboard.press("End")
        page.wait_for_function("() => document.getElementById('img-frame').complete")
        last = page.evaluate("[document.getElementById('img-frame').src, document.getElementById('img-seg').src]")
        assert first[0].endswith("/frames/0001.png") and last[0].endswith("/frames/0003.png")
        assert first[1].endswith("/control/seg/0001.png") and last[1].endswith("/control/seg/0003.png")
        assert "0003 (3/3)" in page.inner_text("#frame-label") and page.get_attribute("svg.plot .cursor", "x1") != cursor
        assert broken_images(page) == []
        page.click("#prev")
        assert page.evaluate("document.getElementById('img-frame').src").endswith("/frames/0002.png")
        # a screenshot that shows something
        shot = finished_job["root"] / "review_screenshot.png"
        page.screenshot(path=str(shot), full_page=True)
        from PIL import Image

        pixels = np.asarray(Image.open(shot).convert("RGB"))
        assert pixels.shape[1] == 1280 and pixels.std() > 20
        if os.environ.get("GREYBOX_REVIEW_SCREENSHOT"):  # keep it to look at
            shutil.copyfile(shot, os.environ["GREYBOX_REVIEW_SCREENSHOT"])
    finally:
        page.close()


def test_a_video_in_another_codec_gets_an_h264_proxy(finished_job, browser):
    """render.video_codec = "prores" writes video.mov, which browsers do not play: the page makes its
    own H.264 proxy from the frames (the same job again, only the assembly reruns)."""
    import imageio_ffmpeg

    from render_farm.review_page import PROXY

    out = finished_job["root"] / "prores"
    args = [a if a != str(finished_job["out"]) else str(out) for a in finished_job["args"]]
    run = subprocess.run([*args, "--set", 'render.video_codec="prores"'], cwd=ROOT, env=finished_job["env"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "video.mov").is_file() and not (out / "video.mp4").exists()
    reader = imageio_ffmpeg.read_frames(str(out / PROXY))
    meta = next(reader)
    assert meta["codec"] == "h264" and tuple(meta["size"]) == (64, 64)
    assert sum(1 for _ in reader) == 3
    page, requests, errors = open_page(browser, out / "review.html")
    try:
        video = page.evaluate("() => { const v = document.querySelector('video'); return [v.getAttribute('src'), v.videoWidth, v.error && v.error.code] }")
        assert video == [PROXY, 64, None] and errors == [] and broken_images(page) == []
        assert "H.264 proxy" in page.inner_text("body") and page.locator('a[href="video.mov"]').count() == 1
    finally:
        page.close()


def test_the_jobs_comfyui_workflow_names_the_jobs_files(finished_job):
    out = finished_job["out"]
    workflow = json.loads((out / "comfyui" / "workflow_api.json").read_text())
    readme = (out / "comfyui" / "README.txt").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    models = {folder: {line.split(f"models/{folder}/", 1)[1].split()[0] for line in readme.splitlines() if f"models/{folder}/" in line}
              for folder in ("checkpoints", "controlnet")}
    images = {f"greybox/tiny/{p.relative_to(out).as_posix()}" for p in (out / "control").rglob("*.png")}
    assert problems(workflow, files={**models, "input": images}) == []
    sampler = next(n for n in workflow.values() if n["class_type"] == "KSampler")["inputs"]
    assert sampler["seed"] == manifest["seeds"]["frames"]["0001"] and sampler["steps"] == 2
    for model in (manifest["models"]["base"], *manifest["models"]["controlnets"]):
        assert model["path"] in readme  # where each file comes from
    assert str(out) not in json.dumps(workflow)  # file names, never this machine's paths


def test_the_page_is_no_output_a_rerun_reuses_everything_and_rewrites_it(finished_job):
    out, root = finished_job["out"], finished_job["root"]
    assert "review.html" not in json.dumps(json.loads((out / "manifest.json").read_text())["files"])
    assert not any(p.name in ("review.html", "review_proxy.mp4") for p in (root / "store").rglob("*"))
    manifest, page = (out / "manifest.json").read_bytes(), (out / "review.html").read_text()
    run = subprocess.run(finished_job["args"], cwd=ROOT, env=finished_job["env"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["tasks"]["ran"] == 0
    assert (out / "manifest.json").read_bytes() == manifest
    again = (out / "review.html").read_text()
    assert again != page and "3 of 3 frame(s) reused from the store" in again
