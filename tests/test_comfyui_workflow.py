"""``comfyui/workflow_api.json`` against ComfyUI's API-format reference (tests/comfyui_reference.py, from COMFYUI.md).

Every node, input name, type, range and link is checked by a checker written from the reference, not
from the writer; the expected values (the template's scales and windows, the frame's seed by the
documented sha256 formula, the sampler table) are spelled out here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re

import pytest

from render_farm.comfyui_workflow import (
    ControlNetInput, RegionPrompt, SamplerChoice, build_workflow, comfy_sampler, write_comfyui_workflow,
)
from scenes.template_loading import load_template
from scenes.template_schema import SCHEDULERS
from tests.comfyui_reference import NODES, SAMPLER_NAMES, SCHEDULER_NAMES, problems, upstream
from tests.support.tiny_templates import TINY

STYLE = """
[style]
stylizer = "diffusion"
prompt = "a sunlit loft, oak floor"
negative_prompt = "blurry"
model = "stable-diffusion-v1-5/stable-diffusion-v1-5"
scheduler = "DPMSolverMultistepScheduler"
num_inference_steps = 23
guidance_scale = 6.5
seed = 41
controlnets = [
  { pass = "depth", model = "lllyasviel/control_v11f1p_sd15_depth", scale = 0.8, start = 0.0, end = 0.9 },
  { pass = "seg", model = "lllyasviel/control_v11p_sd15_seg", scale = 0.45, start = 0.1, end = 0.6 },
]
"""


def expected_seed(style_seed: int, frame: int) -> int:
    """frame_seeds.py's documented formula, written out again."""
    return int.from_bytes(hashlib.sha256(f"greybox-frame-seed:{style_seed}:{frame}".encode()).digest()[:8], "big") >> 1


def by_class(workflow: dict, cls: str) -> dict[str, dict]:
    return {i: n for i, n in workflow.items() if n["class_type"] == cls}


def write(tmp_path, extra: str = "", frames=(2, 3, 4)):
    path = tmp_path / "shot.toml"
    path.write_text(TINY + STYLE + extra)
    template = load_template(str(path)).template
    folder = tmp_path / "view"
    folder.mkdir()
    written = write_comfyui_workflow(folder, shot="tiny", template=template, models=None, frames=list(frames))
    return template, json.loads(written.read_text()), (folder / "comfyui" / "README.txt").read_text()


def test_a_two_controlnet_shot_is_a_valid_graph_with_the_templates_settings(tmp_path):
    template, workflow, readme = write(tmp_path)
    assert problems(workflow) == []
    # one advanced apply node per pass, with the template's scale and window, fed that pass's control image
    applied = by_class(workflow, "ControlNetApplyAdvanced")
    assert len(applied) == 2
    found = {}
    for node in applied.values():
        image = workflow[node["inputs"]["image"][0]]
        assert image["class_type"] == "LoadImage"
        name = image["inputs"]["image"]
        pass_name = re.fullmatch(r"greybox/tiny/control/(\w+)/0002\.png", name).group(1)
        found[pass_name] = (node["inputs"]["strength"], node["inputs"]["start_percent"], node["inputs"]["end_percent"])
        loader = workflow[node["inputs"]["control_net"][0]]
        assert loader["inputs"]["control_net_name"] == {"depth": "control_v11f1p_sd15_depth.safetensors",
                                                        "seg": "control_v11p_sd15_seg.safetensors"}[pass_name]
    assert found == {"depth": (0.8, 0.0, 0.9), "seg": (0.45, 0.1, 0.6)}
    # the passes are chained: the sampler's conditioning goes through both, and both through the prompts
    (sampler_id, sampler), = by_class(workflow, "KSampler").items()
    assert set(applied) <= upstream(workflow, sampler["inputs"]["positive"][0])
    assert set(applied) <= upstream(workflow, sampler["inputs"]["negative"][0])
    texts = {n["inputs"]["text"] for n in by_class(workflow, "CLIPTextEncode").values()}
    assert texts == {"a sunlit loft, oak floor", "blurry"}
    # steps, guidance, the first frame's seed, the mapped sampler; full denoise from an empty latent
    inputs = sampler["inputs"]
    assert (inputs["steps"], inputs["cfg"], inputs["seed"]) == (23, 6.5, expected_seed(41, 2))
    assert (inputs["sampler_name"], inputs["scheduler"], inputs["denoise"]) == ("dpmpp_2m", "normal", 1.0)
    (latent,) = by_class(workflow, "EmptyLatentImage").values()
    assert (latent["inputs"]["width"], latent["inputs"]["height"], latent["inputs"]["batch_size"]) == (64, 64, 1)
    # loaders name files (not hub ids) and the README says where each goes
    (checkpoint,) = by_class(workflow, "CheckpointLoaderSimple").values()
    assert checkpoint["inputs"]["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    assert "models/checkpoints/v1-5-pruned-emaonly.safetensors" in readme
    for name in ("control_v11f1p_sd15_depth.safetensors", "control_v11p_sd15_seg.safetensors"):
        assert f"models/controlnet/{name}" in readme
    assert "input/greybox/tiny/control/" in readme and "lllyasviel/control_v11f1p_sd15_depth" in readme
    assert f"node {sampler_id} (KSampler)" in readme
    # deterministic: written again, the same bytes
    again = tmp_path / "again"
    again.mkdir()
    write_comfyui_workflow(again, shot="tiny", template=template, models=None, frames=[2, 3, 4])
    assert (again / "comfyui" / "workflow_api.json").read_bytes() == (tmp_path / "view" / "comfyui" / "workflow_api.json").read_bytes()


def test_one_controlnet_file_for_several_passes_is_loaded_once(tmp_path):
    extra_template = STYLE.replace("lllyasviel/control_v11p_sd15_seg", "lllyasviel/control_v11f1p_sd15_depth")
    path = tmp_path / "shot.toml"
    path.write_text(TINY + extra_template)
    template = load_template(str(path)).template
    written = write_comfyui_workflow(tmp_path, shot="tiny", template=template, models=None, frames=[1])
    workflow = json.loads(written.read_text())
    assert problems(workflow) == []
    assert len(by_class(workflow, "ControlNetLoader")) == 1 and len(by_class(workflow, "ControlNetApplyAdvanced")) == 2


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_template_scheduler_maps_into_the_releases_lists(scheduler):
    choice = comfy_sampler(scheduler, {})
    assert choice.sampler_name in SAMPLER_NAMES and choice.scheduler in SCHEDULER_NAMES
    assert scheduler in choice.reason


def test_the_sampler_mapping_follows_the_reference_and_the_model_config():
    table = {  # COMFYUI.md section 3, diffusers -> (sampler_name, scheduler)
        "UniPCMultistepScheduler": ("uni_pc_bh2", "normal"), "DPMSolverMultistepScheduler": ("dpmpp_2m", "normal"),
        "DDIMScheduler": ("ddim", "ddim_uniform"), "EulerDiscreteScheduler": ("euler", "normal"),
        "EulerAncestralDiscreteScheduler": ("euler_ancestral", "normal"), "PNDMScheduler": ("ipndm", "normal"),
        "LMSDiscreteScheduler": ("lms", "normal"), "DDPMScheduler": ("ddpm", "normal"),
    }
    for name, pair in table.items():
        choice = comfy_sampler(name, {})
        assert (choice.sampler_name, choice.scheduler) == pair, name
    assert comfy_sampler("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}).sampler_name == "dpmpp_2m_sde"
    assert comfy_sampler("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}).scheduler == "karras"
    assert comfy_sampler("EulerDiscreteScheduler", {"use_karras_sigmas": True}).scheduler == "karras"
    assert comfy_sampler("DDIMScheduler", {"use_karras_sigmas": True}).scheduler == "ddim_uniform"  # DDIM ignores it
    assert comfy_sampler("UniPCMultistepScheduler", {"solver_type": "bh1"}).sampler_name == "uni_pc"


def test_region_prompts_become_masked_conditioning_combined_with_the_prompt():
    nets = [ControlNetInput("depth", "depth.safetensors", 1.0, 0.0, 1.0)]
    regions = [RegionPrompt("a green velvet sofa", "greybox/tiny/regions/sofa/0001.png"),
               RegionPrompt("a brass lamp", "greybox/tiny/regions/lamp/0001.png", channel="alpha", strength=0.7)]
    workflow = build_workflow(
        prompt="a room", negative_prompt="", checkpoint_name="base.safetensors", controlnets=nets,
        control_images={"depth": "greybox/tiny/control/depth/0001.png"}, width=512, height=512, seed=0, steps=20,
        cfg=7.5, sampler=SamplerChoice("euler", "normal", "test"), save_prefix="greybox/tiny/0001", regions=regions,
    )
    assert problems(workflow) == []
    masks = by_class(workflow, "ConditioningSetMask")
    assert len(masks) == 2 and len(by_class(workflow, "ConditioningCombine")) == 2
    (apply_node,) = by_class(workflow, "ControlNetApplyAdvanced").values()
    feeding = upstream(workflow, apply_node["inputs"]["positive"][0])
    assert set(masks) <= feeding  # both regions reach the positive conditioning
    region_texts = {workflow[n["inputs"]["conditioning"][0]]["inputs"]["text"] for n in masks.values()}
    assert region_texts == {"a green velvet sofa", "a brass lamp"}
    strengths = sorted(n["inputs"]["strength"] for n in masks.values())
    assert strengths == [0.7, 1.0]
    assert {workflow[n["inputs"]["mask"][0]]["inputs"]["channel"] for n in masks.values()} == {"red", "alpha"}


def test_the_checker_catches_what_comfyui_refuses(tmp_path):
    """The reference checker must be able to fail: each mutation of a valid graph is reported."""
    _, workflow, _ = write(tmp_path)
    assert problems(workflow) == []
    sampler_id = next(iter(by_class(workflow, "KSampler")))
    apply_id = next(iter(by_class(workflow, "ControlNetApplyAdvanced")))
    checkpoint_id = next(iter(by_class(workflow, "CheckpointLoaderSimple")))
    mutations = {
        "output index": lambda w: w[sampler_id]["inputs"].__setitem__("model", [checkpoint_id, 3]),
        "link type": lambda w: w[sampler_id]["inputs"].__setitem__("model", [checkpoint_id, 1]),
        "range": lambda w: w[apply_id]["inputs"].__setitem__("strength", 11.0),
        "window": lambda w: w[apply_id]["inputs"].__setitem__("end_percent", 1.5),
        "combo": lambda w: w[sampler_id]["inputs"].__setitem__("scheduler", "linear"),
        "missing": lambda w: w[sampler_id]["inputs"].pop("latent_image"),
        "undeclared": lambda w: w[sampler_id]["inputs"].__setitem__("noise_seed", 3),
        "literal list": lambda w: w[sampler_id]["inputs"].__setitem__("cfg", [7.5]),
        "int type": lambda w: w[sampler_id]["inputs"].__setitem__("steps", 20.0),
        "hub id": lambda w: w[checkpoint_id]["inputs"].__setitem__("ckpt_name", "runwayml/stable-diffusion-v1-5"),
        "unknown class": lambda w: w[sampler_id].__setitem__("class_type", "KSamplerX"),
        "no output": lambda w: [w.pop(i) for i in list(by_class(w, "SaveImage"))],
    }
    for name, mutate in mutations.items():
        broken = copy.deepcopy(workflow)
        mutate(broken)
        assert problems(broken), name
    assert set(NODES) >= {n["class_type"] for n in workflow.values()}
