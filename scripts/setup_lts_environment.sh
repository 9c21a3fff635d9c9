#!/usr/bin/env bash
# A second virtual environment with an LTS Blender wheel (default bpy 4.2.23) and greybox's base
# dependencies only: no torch, diffusers, transformers or ray. `.ci/run` runs the Blender-side tests
# in it (passes, import, scene artifact) and the tests that prove a farm node which only renders
# passes (and the NPR stylizer) needs no torch. Installs from nothing.
#
#   BPY_VERSION=4.5.15 VENV=.venv-bpy45 bash scripts/setup_lts_environment.sh
#
# The system libraries bpy loads are those scripts/setup_environment.sh installs (run it first).
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv-bpy42}
BPY_VERSION=${BPY_VERSION:-4.2.23}
cd "$(dirname "$0")/.."

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "greybox needs Python 3.11 (every bpy wheel from 4.2 to 5.0 is built for it); installing it with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv python3.11-dev
fi

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# The project's base dependencies and its test extra, read from pyproject.toml, with bpy pinned to
# the LTS release and the generative and farm libraries left out (they are the diffusion and ray
# stages; a passes node does not need them).
mapfile -t REQUIREMENTS < <("$VENV/bin/python" - "$BPY_VERSION" <<'EOF'
import re
import sys
import tomllib

LEFT_OUT = {"torch", "diffusers", "transformers", "safetensors", "accelerate", "huggingface-hub", "ray"}
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
    name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
    if name == "bpy":
        print(f"bpy=={sys.argv[1]}")
    elif name not in LEFT_OUT:
        print(requirement)
EOF
)
"$VENV/bin/python" -m pip install -q "${REQUIREMENTS[@]}"
"$VENV/bin/python" -m pip install -q --no-deps -e .

"$VENV/bin/python" - "$BPY_VERSION" <<'EOF'
import importlib.util
import sys

import bpy

if importlib.util.find_spec("torch") is not None:
    sys.exit("torch is installed in the LTS environment; it must not be")
version = ".".join(map(str, bpy.app.version))
if version != sys.argv[1]:
    sys.exit(f"bpy {version} imported, {sys.argv[1]} asked for")
print(f"greybox LTS environment ready: bpy {bpy.app.version_string}, no torch")
EOF
