"""ComfyUI's API-format rules as /work/shared/reference/COMFYUI.md states them (v0.3.64, Comfy-Org/ComfyUI
a125cd84), written out here independently of greybox's writer, and a checker that applies them the way
ComfyUI's POST /prompt validation does (and a little stricter: no dead nodes, no dropped inputs).

Input specs: a link type name ("MODEL", "CLIP", ...) for inputs fed by another node's output; for
literals ("INT", lo, hi), ("FLOAT", lo, hi), ("STRING",), ("COMBO", choices), or ("FILE", folder)
for the combos that list files (checkpoints, controlnet, input images).
"""

from __future__ import annotations

SAMPLER_NAMES = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)
SCHEDULER_NAMES = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                   "linear_quadratic", "kl_optimal")

NODES: dict[str, dict] = {
    "CheckpointLoaderSimple": {"inputs": {"ckpt_name": ("FILE", "checkpoints")}, "outputs": ("MODEL", "CLIP", "VAE")},
    "CLIPTextEncode": {"inputs": {"text": ("STRING",), "clip": "CLIP"}, "outputs": ("CONDITIONING",)},
    "EmptyLatentImage": {"inputs": {"width": ("INT", 16, 16384, 8), "height": ("INT", 16, 16384, 8),
                                    "batch_size": ("INT", 1, 4096)}, "outputs": ("LATENT",)},
    "KSampler": {"inputs": {"model": "MODEL", "seed": ("INT", 0, 2**64 - 1), "steps": ("INT", 1, 10000),
                            "cfg": ("FLOAT", 0.0, 100.0), "sampler_name": ("COMBO", SAMPLER_NAMES),
                            "scheduler": ("COMBO", SCHEDULER_NAMES), "positive": "CONDITIONING",
                            "negative": "CONDITIONING", "latent_image": "LATENT", "denoise": ("FLOAT", 0.0, 1.0)},
                 "outputs": ("LATENT",)},
    "VAEDecode": {"inputs": {"samples": "LATENT", "vae": "VAE"}, "outputs": ("IMAGE",)},
    "VAEEncode": {"inputs": {"pixels": "IMAGE", "vae": "VAE"}, "outputs": ("LATENT",)},
    "SaveImage": {"inputs": {"images": "IMAGE", "filename_prefix": ("STRING",)}, "outputs": (), "output_node": True},
    "LoadImage": {"inputs": {"image": ("FILE", "input")}, "outputs": ("IMAGE", "MASK")},
    "LoadImageMask": {"inputs": {"image": ("FILE", "input"), "channel": ("COMBO", ("alpha", "red", "green", "blue"))},
                      "outputs": ("MASK",)},
    "ControlNetLoader": {"inputs": {"control_net_name": ("FILE", "controlnet")}, "outputs": ("CONTROL_NET",)},
    "ControlNetApplyAdvanced": {"inputs": {"positive": "CONDITIONING", "negative": "CONDITIONING",
                                           "control_net": "CONTROL_NET", "image": "IMAGE",
                                           "strength": ("FLOAT", 0.0, 10.0), "start_percent": ("FLOAT", 0.0, 1.0),
                                           "end_percent": ("FLOAT", 0.0, 1.0)},
                                "optional": {"vae": "VAE"}, "outputs": ("CONDITIONING", "CONDITIONING")},
    "ConditioningSetMask": {"inputs": {"conditioning": "CONDITIONING", "mask": "MASK", "strength": ("FLOAT", 0.0, 10.0),
                                       "set_cond_area": ("COMBO", ("default", "mask bounds"))},
                            "outputs": ("CONDITIONING",)},
    "ConditioningCombine": {"inputs": {"conditioning_1": "CONDITIONING", "conditioning_2": "CONDITIONING"},
                            "outputs": ("CONDITIONING",)},
}


def is_link(value) -> bool:
    return isinstance(value, list)


def problems(workflow: dict, files: dict[str, set[str]] | None = None) -> list[str]:
    """Everything ComfyUI (v0.3.64) would refuse in ``workflow``, plus dead nodes and dropped inputs.

    ``files`` optionally maps a FILE folder ("checkpoints", "controlnet", "input") to the names that
    exist there; a file combo value must then be one of them (ComfyUI: value_not_in_list)."""
    out: list[str] = []
    if not isinstance(workflow, dict) or not workflow:
        return ["the workflow must be a non-empty object keyed by node id"]
    for node_id, node in workflow.items():
        where = f"node {node_id}"
        if not isinstance(node_id, str) or not isinstance(node, dict):
            out.append(f"{where}: ids are strings and nodes objects")
            continue
        if set(node) - {"class_type", "inputs", "_meta"}:
            out.append(f"{where}: unexpected keys {sorted(set(node) - {'class_type', 'inputs', '_meta'})}")
        cls = node.get("class_type")
        spec = NODES.get(cls)
        if spec is None:
            out.append(f"{where}: class_type {cls!r} is not a node the reference lists")
            continue
        where = f"node {node_id} ({cls})"
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            out.append(f"{where}: inputs must be an object")
            continue
        declared = {**spec["inputs"], **spec.get("optional", {})}
        for name in spec["inputs"]:
            if name not in inputs:
                out.append(f"{where}: required input {name!r} missing")
        for name, value in inputs.items():
            if name not in declared:
                out.append(f"{where}: input {name!r} is not declared (ComfyUI drops it)")
                continue
            kind = declared[name]
            if isinstance(kind, str):  # a link of this type
                if not is_link(value) or len(value) != 2 or not isinstance(value[0], str) or type(value[1]) is not int:
                    out.append(f"{where}: input {name!r} must be a link [\"id\", output] of type {kind}, got {value!r}")
                    continue
                source = workflow.get(value[0])
                if not isinstance(source, dict) or source.get("class_type") not in NODES:
                    out.append(f"{where}: input {name!r} links to unknown node {value[0]!r}")
                    continue
                outputs = NODES[source["class_type"]]["outputs"]
                if not 0 <= value[1] < len(outputs):
                    out.append(f"{where}: input {name!r} links to output {value[1]} of {source['class_type']}, which has {len(outputs)}")
                elif outputs[value[1]] != kind:
                    out.append(f"{where}: input {name!r} wants {kind}, output {value[1]} of {source['class_type']} is {outputs[value[1]]}")
                continue
            if is_link(value):
                out.append(f"{where}: literal input {name!r} is a list, which ComfyUI reads as a link")
                continue
            tag = kind[0]
            if tag == "INT":
                if type(value) is not int:
                    out.append(f"{where}: {name!r} must be an INT, got {value!r}")
                elif not kind[1] <= value <= kind[2]:
                    out.append(f"{where}: {name!r} = {value} outside {kind[1]}..{kind[2]}")
                elif len(kind) > 3 and value % kind[3]:
                    out.append(f"{where}: {name!r} = {value} is not a multiple of {kind[3]}")
            elif tag == "FLOAT":
                if type(value) not in (int, float):
                    out.append(f"{where}: {name!r} must be a FLOAT, got {value!r}")
                elif not kind[1] <= value <= kind[2]:
                    out.append(f"{where}: {name!r} = {value} outside {kind[1]}..{kind[2]}")
            elif tag == "STRING":
                if not isinstance(value, str):
                    out.append(f"{where}: {name!r} must be a STRING, got {value!r}")
            elif tag == "COMBO":
                if value not in kind[1]:
                    out.append(f"{where}: {name!r} = {value!r} is not in the release's list")
            elif tag == "FILE":
                if not isinstance(value, str) or not value or value.startswith(("/", "\\")) or ".." in value.split("/"):
                    out.append(f"{where}: {name!r} = {value!r} must be a file name relative to ComfyUI's {kind[1]} folder")
                elif kind[1] != "input" and ("/" in value or "\\" in value):
                    out.append(f"{where}: {name!r} = {value!r}: model subfolders use the OS separator; name the file alone")
                elif kind[1] != "input" and not value.endswith((".safetensors", ".ckpt", ".pt", ".pth", ".bin")):
                    out.append(f"{where}: {name!r} = {value!r} is not a model file name (a hub id?)")
                elif files is not None and value not in files.get(kind[1], set()):
                    out.append(f"{where}: {name!r} = {value!r} is not in {kind[1]}/ (value_not_in_list)")
    if out:
        return out
    # Output nodes, and every node upstream of one (ComfyUI runs only those).
    outputs = [i for i, n in workflow.items() if NODES[n["class_type"]].get("output_node")]
    if not outputs:
        return ["no output node (SaveImage): ComfyUI refuses the prompt"]
    reached, stack = set(), list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in reached:
            continue
        reached.add(node_id)
        stack.extend(v[0] for v in workflow[node_id]["inputs"].values() if is_link(v))
    dead = sorted(set(workflow) - reached)
    if dead:
        out.append(f"nodes {dead} feed no output node (ComfyUI would ignore them)")
    # No cycles.
    state: dict[str, int] = {}

    def visit(node_id: str) -> bool:
        if state.get(node_id) == 1:
            return False
        if state.get(node_id) == 2:
            return True
        state[node_id] = 1
        ok = all(visit(v[0]) for v in workflow[node_id]["inputs"].values() if is_link(v))
        state[node_id] = 2
        return ok

    if not all(visit(i) for i in workflow):
        out.append("the graph has a cycle")
    return out


def upstream(workflow: dict, node_id: str) -> set[str]:
    """Every node ``node_id`` depends on, itself included."""
    seen, stack = set(), [node_id]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(v[0] for v in workflow[n]["inputs"].values() if is_link(v))
    return seen
