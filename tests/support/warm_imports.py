"""The heavy imports of a diffusion stylize task, made once in a ``multiprocessing`` forkserver (tests only).

``tests/test_render_end_to_end.py`` runs its jobs on local workers forked from a server that
preloaded this module, so each job's fresh worker starts with torch, diffusers and transformers
imported instead of paying that (about 10 s here) again. Nothing runs: importing allocates no
thread pool, so forking afterwards is safe.
"""

import diffusers  # noqa: F401
import torch  # noqa: F401
import transformers  # noqa: F401
from diffusers import ControlNetModel, StableDiffusionControlNetPipeline  # noqa: F401
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401

import render_farm.stage_tasks  # noqa: F401
import render_farm.task_worker  # noqa: F401
import stylize.diffusion_stylizer  # noqa: F401
