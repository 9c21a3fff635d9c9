#!/usr/bin/env bash
# Create the virtual environment and install greybox with everything its tests need, from nothing.
# System libraries the bpy wheel loads are installed with apt-get when missing.
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "greybox needs Python 3.11 (the bpy 5.0.1 wheel is built for it); installing it with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv python3.11-dev
fi

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and pinned: on a CPU machine this takes the CPU build.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
# greybox accepts bpy 4.2.x, 4.5.x and 5.0.x; the default environment is 5.0.1 (BPY_VERSION to change it).
# Everything: the passes stage and NPR (the plain install), the diffusion stylizer and Ray farms (extras), the tests.
"$VENV/bin/python" -m pip install -q -e ".[diffusion,ray,test]" "bpy==${BPY_VERSION:-5.0.1}"

# bpy dlopens X11/GL libraries even headless; install them where missing.
if ! "$VENV/bin/python" -c "import bpy" >/dev/null 2>&1; then
  echo "installing the system libraries bpy needs (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libx11-6 libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libice6 libgl1 libegl1 libgomp1 libxext6 libxinerama1 libxcursor1 libxrandr2 libwayland-client0
  "$VENV/bin/python" -c "import bpy" || { echo "bpy still fails to import; see the error above" >&2; exit 1; }
fi
# The output tests read files as other tools do: OpenImageIO's oiiotool (EXR ids, Cryptomatte) and
# ffprobe (video codecs and colour tags). imageio-ffmpeg ships an ffmpeg but no ffprobe. The review
# page's tests load a page in Debian's headless Chromium (driven by playwright, which never downloads
# a browser of its own).
missing_tools=()
command -v oiiotool >/dev/null 2>&1 || missing_tools+=(openimageio-tools)
command -v ffprobe >/dev/null 2>&1 || missing_tools+=(ffmpeg)
command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1 || missing_tools+=(chromium-headless-shell)
if [ ${#missing_tools[@]} -gt 0 ]; then
  echo "installing ${missing_tools[*]} (apt-get) for the output and review page tests" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_tools[@]}"
fi
"$VENV/bin/python" -c "import bpy, torch, diffusers, OpenEXR, ray; print('greybox environment ready: bpy', bpy.app.version_string, '| torch', torch.__version__, '| diffusers', diffusers.__version__)"
