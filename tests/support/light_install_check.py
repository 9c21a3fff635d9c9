"""A render as a node with the plain install has it (``pip install greybox``: no extras).

    python tests/support/light_install_check.py TEMPLATE WORK_DIR

The libraries of the ``diffusion`` and ``ray`` extras are made unimportable at the top of this file
(``sys.modules[name] = None``, which is what an absent module looks like to ``import`` and to
``importlib.util.find_spec``), and multiprocessing's spawned workers re-run this file's top level
as ``__mp_main__``, so the farm's worker processes cannot import them either. In an environment
installed without them, nothing needs blocking and the run is the real thing.

Then, through the CLI: ``greybox render TEMPLATE --stylizer npr`` (the passes stage in Blender and
the NPR stylizer, on local workers), ``--stylizer diffusion`` and ``--farm ray`` (each must stop
with exit 2 and name its extra, writing nothing). Prints one JSON line with what happened.
"""

import importlib.util
import sys

EXTRA_LIBRARIES = ("torch", "diffusers", "transformers", "safetensors", "accelerate", "huggingface_hub", "ray")
for _name in EXTRA_LIBRARIES:
    sys.modules.setdefault(_name, None)


def main(argv: list[str]) -> int:
    import contextlib
    import io
    import json
    from pathlib import Path

    from render_farm.cli import main as greybox

    template, work = argv[0], Path(argv[1])
    report = {"importable": [name for name in EXTRA_LIBRARIES if importlib.util.find_spec(name) is not None]}
    common = ["--store", str(work / "store"), "--frames", "1-2", "--workers", "1"]
    runs = {
        "npr": ["render", template, "--out", str(work / "npr"), "--stylizer", "npr", *common],
        "diffusion": ["render", template, "--out", str(work / "diffusion"), "--stylizer", "diffusion", *common],
        "ray": ["render", template, "--out", str(work / "ray"), "--stylizer", "npr", "--farm", "ray", *common],
    }
    for name, args in runs.items():
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = greybox(args)
        report[name] = {"status": status, "stderr": stderr.getvalue()[-2000:]}
    report["loaded"] = sorted(name for name in EXTRA_LIBRARIES if sys.modules.get(name) is not None)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
