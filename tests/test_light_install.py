"""The plain install (``pip install greybox``, no extras) renders passes and runs the NPR stylizer.

A farm node that only renders needs neither torch, diffusers and transformers (``greybox[diffusion]``)
nor ray (``greybox[ray]``). tests/support/light_install_check.py runs the CLI in a subprocess whose
processes cannot import those libraries: blocked where they are installed (the default suite), absent
in an environment installed without the extras, where this file runs as it is. It needs bpy, numpy,
OpenEXR, Pillow, pydantic, rich, imageio-ffmpeg and pytest, nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.tiny_templates import two_boxes_template

ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = two_boxes_template(name="light")


def test_passes_and_npr_render_without_torch_diffusers_or_ray(tmp_path):
    template = tmp_path / "light.toml"
    template.write_text(TEMPLATE)
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "support" / "light_install_check.py"), str(template), str(work)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["importable"] == [] and report["loaded"] == []  # torch & co. are not there for this run

    # the passes stage and the NPR stylizer ran, on the farm's local workers
    assert report["npr"]["status"] == 0, report["npr"]["stderr"]
    out = work / "npr"
    assert sorted(p.name for p in (out / "passes").glob("*.exr")) == ["0001.exr", "0002.exr"]
    assert sorted(p.name for p in (out / "frames").glob("*.png")) == ["0001.png", "0002.png"]
    assert (out / "control" / "depth" / "0002.png").is_file() and (out / "video.mp4").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stylizer"] == "npr" and not manifest["versions"].get("torch")

    # what needs an extra says which, with exit 2, no traceback and nothing written
    for name, extra in (("diffusion", "greybox[diffusion]"), ("ray", "greybox[ray]")):
        run = report[name]
        assert run["status"] == 2 and extra in run["stderr"] and "Traceback" not in run["stderr"], run
        assert not (work / name).exists()
