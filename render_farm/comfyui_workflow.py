"""``DIR/comfyui/workflow_api.json``: the shot's diffusion set-up as a ComfyUI graph in API format.

An artist carries a greybox shot on in ComfyUI (v0.3.64, the release ``COMFYUI.md`` describes) from
its first frame: ``File -> Open`` the file, or ``POST /prompt {"prompt": <file>}``. The graph,
with core nodes only:

- ``CheckpointLoaderSimple`` (the base model as one checkpoint file) -> MODEL, CLIP, VAE;
- ``CLIPTextEncode`` for the prompt and the negative prompt; region prompts (``style.regions``)
  as ``CLIPTextEncode`` -> ``ConditioningSetMask`` (mask from ``LoadImageMask``) ->
  ``ConditioningCombine`` with the prompt, ComfyUI's core regional conditioning. The masks are
  greybox's own (:func:`region_prompts`): each region's pixels as its passes give them (the last
  region naming a pixel owns it), and the global prompt masked to the pixels no region owns, so
  each prompt conditions the pixels it conditions in greybox (ComfyUI blends masked conditioning
  at the latent resolution, not per attention level). A region's own negative prompt is masked the
  same way on the negative side. Reference images (IP-Adapter) have no core node: the README says
  so and names the custom nodes;
- per ControlNet: ``ControlNetLoader`` (one per model file), ``LoadImage`` of the frame's control
  image, ``ControlNetApplyAdvanced`` with the template's scale and start/end window, chained so
  each pass conditions the next;
- ``EmptyLatentImage`` at ``render.resolution``, ``KSampler`` with the template's steps, guidance
  and the frame's noise seed and the sampler and scheduler nearest to the diffusers scheduler
  (:func:`comfy_sampler`), ``VAEDecode`` and ``SaveImage``.

Loaders name files, as ComfyUI looks them up (relative to ``models/checkpoints``,
``models/controlnet`` and ``input/``), never hub ids; ``README.txt`` beside the workflow says which
model goes where. Noise is drawn differently in ComfyUI, so the pixels will not match greybox's;
the geometry (the same control images) does. Everything here is plain data: no torch, no
ComfyUI; the files are deterministic (no timestamps, no local paths in the workflow).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from greybox.confined_files import write_bytes
from greybox.frame_files import control_png_path, frame_name, pass_exr_path

COMFYUI_RELEASE = "ComfyUI v0.3.64 (Comfy-Org/ComfyUI a125cd84)"
FOLDER = "comfyui"
WORKFLOW_FILE = "workflow_api.json"
README_FILE = "README.txt"
INPUT_SUBFOLDER = "greybox"  # LoadImage names are relative to ComfyUI's input/: input/greybox/<shot>/control/...

# diffusers scheduler class -> (ComfyUI sampler_name, scheduler). Approximate: ComfyUI spaces the
# steps by its scheduler, diffusers by ``timestep_spacing``; ComfyUI's ddim is Euler underneath;
# PNDM has no ComfyUI sampler, ipndm (improved pseudo-numerical) is the nearest.
SCHEDULER_MAP: dict[str, tuple[str, str]] = {
    "UniPCMultistepScheduler": ("uni_pc_bh2", "normal"),
    "DPMSolverMultistepScheduler": ("dpmpp_2m", "normal"),
    "DDIMScheduler": ("ddim", "ddim_uniform"),
    "EulerDiscreteScheduler": ("euler", "normal"),
    "EulerAncestralDiscreteScheduler": ("euler_ancestral", "normal"),
    "PNDMScheduler": ("ipndm", "normal"),
    "LMSDiscreteScheduler": ("lms", "normal"),
    "DDPMScheduler": ("ddpm", "normal"),
}
# diffusers schedulers that honour ``use_karras_sigmas`` (ComfyUI's "karras" scheduler then).
KARRAS_CAPABLE = ("DPMSolverMultistepScheduler", "EulerDiscreteScheduler", "LMSDiscreteScheduler", "UniPCMultistepScheduler")

# Single-file checkpoints published beside well-known diffusers pipelines (same repository).
KNOWN_CHECKPOINT_FILES = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "v1-5-pruned-emaonly.safetensors",
    "runwayml/stable-diffusion-v1-5": "v1-5-pruned-emaonly.safetensors",
    "stabilityai/stable-diffusion-xl-base-1.0": "sd_xl_base_1.0.safetensors",
}


MASKS_FOLDER = "masks"  # comfyui/masks/<region_NN | rest | negative_rest>/NNNN.png, white = where it applies


@dataclass(frozen=True)
class RegionPrompt:
    """A prompt that applies inside a mask: ``mask_image`` relative to ComfyUI's ``input/``, read
    from ``channel`` (white = the region), conditioning at ``strength``; ``negative_prompt`` (when
    not empty) replaces the negative prompt inside the mask. Filled from the style's region prompts
    (:func:`region_prompts`)."""

    prompt: str
    mask_image: str
    channel: str = "red"
    strength: float = 1.0
    negative_prompt: str = ""


@dataclass(frozen=True)
class RegionMasks:
    """The regions of a workflow and the masks of what they leave to the global prompts: ``rest``
    (no region's pixels: the global prompt) and ``negative_rest`` (the pixels whose region has no
    negative prompt of its own: the global negative prompt), relative to ComfyUI's ``input/``."""

    regions: tuple[RegionPrompt, ...] = ()
    rest: str | None = None
    negative_rest: str | None = None


@dataclass(frozen=True)
class ControlNetInput:
    """One ControlNet of the shot: its pass, the file ComfyUI loads, and the template's scale and window."""

    pass_name: str
    file_name: str
    scale: float
    start: float
    end: float


@dataclass(frozen=True)
class SamplerChoice:
    sampler_name: str
    scheduler: str
    reason: str


def comfy_sampler(scheduler_class: str, scheduler_config: dict | None = None) -> SamplerChoice:
    """The ComfyUI sampler and scheduler nearest to diffusers' ``scheduler_class``, as configured
    from the base model's ``scheduler_config.json`` (karras sigmas, SDE and Heun variants, bh1)."""
    if scheduler_class not in SCHEDULER_MAP:
        raise ValueError(f"no ComfyUI sampler is mapped for diffusers scheduler {scheduler_class!r}; "
                         f"known: {', '.join(SCHEDULER_MAP)}")
    config = scheduler_config or {}
    sampler, scheduler = SCHEDULER_MAP[scheduler_class]
    reasons = [f"{scheduler_class} -> {sampler} / {scheduler}"]
    if scheduler_class == "DPMSolverMultistepScheduler" and config.get("algorithm_type") == "sde-dpmsolver++":
        sampler = "dpmpp_2m_sde_heun" if config.get("solver_type") == "heun" else "dpmpp_2m_sde"
        reasons.append(f"algorithm_type sde-dpmsolver++ -> {sampler}")
    if scheduler_class == "UniPCMultistepScheduler" and config.get("solver_type") == "bh1":
        sampler = "uni_pc"
        reasons.append("solver_type bh1 -> uni_pc")
    if scheduler_class in KARRAS_CAPABLE and config.get("use_karras_sigmas"):
        scheduler = "karras"
        reasons.append("use_karras_sigmas -> karras")
    return SamplerChoice(sampler, scheduler, "; ".join(reasons) + " (approximate: step spacing differs)")


def region_prompts(style, view: Path, frames: list[int], input_prefix: str) -> RegionMasks:
    """The style's region prompts as masked conditioning, with every mask written for each of
    ``frames`` under ``view/comfyui/masks/`` (``region_NN``, ``rest``, ``negative_rest``; white =
    where it applies) from the shot's layout and its instance and class passes, as greybox masks
    them (:func:`stylize.region_masks.owner_map`). The workflow reads the first frame's; its
    ``mask_image`` names are relative to ComfyUI's ``input/`` (``input_prefix`` = the shot's folder
    there). Empty when the style has no regions or the view has no passes to mask from."""
    import numpy as np

    from greybox.atomic_files import encode_png
    from passes.pass_exr import read_passes_exr
    from scenes.scene_layout import read_layout
    from scenes.style_regions import resolve_targets, scene_objects
    from stylize.region_masks import owner_map

    # 1. Check inputs: regions, the layout and the passes they are masked from
    if not style.regions or not frames:
        return RegionMasks()
    layout = read_layout(view)
    exr = [Path(view) / pass_exr_path(f) for f in frames]
    if layout is None or not all(p.is_file() for p in exr):
        return RegionMasks()
    targets, _ = resolve_targets(style, scene_objects(layout))
    own_negative = [bool(r.negative_prompt) for r in style.regions]
    names = [f"region_{i + 1:02d}" for i in range(len(style.regions))] + ["rest"] + (["negative_rest"] if any(own_negative) else [])

    # 2. The masks of every frame (the workflow loads the first frame's)
    for frame, path in zip(frames, exr):
        passes = read_passes_exr(path)
        owner = owner_map(passes.instance_id, passes.class_id, targets)
        masks = [owner == i + 1 for i in range(len(style.regions))] + [owner == 0]
        if any(own_negative):
            masks.append(~np.isin(owner, [i + 1 for i, own in enumerate(own_negative) if own]))
        for name, mask in zip(names, masks):
            image = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)
            write_bytes(view, f"{FOLDER}/{MASKS_FOLDER}/{name}/{frame_name(frame)}.png", encode_png(image))

    # 3. What the graph takes
    first = frame_name(sorted(frames)[0])

    def image(name: str) -> str:
        return f"{input_prefix}/{FOLDER}/{MASKS_FOLDER}/{name}/{first}.png"

    regions = tuple(RegionPrompt(r.prompt, image(names[i]), negative_prompt=r.negative_prompt)
                    for i, r in enumerate(style.regions))
    return RegionMasks(regions, image("rest"), image("negative_rest") if any(own_negative) else None)


class ApiGraph:
    """Nodes keyed by id strings ("1", "2", ...) in the order added; a link is ``[id, output index]``."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, title: str, **inputs) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}
        return node_id

    @staticmethod
    def link(node_id: str, output: int = 0) -> list:
        return [node_id, output]


def build_workflow(
    *,
    prompt: str,
    negative_prompt: str,
    checkpoint_name: str,
    controlnets: list[ControlNetInput],
    control_images: dict[str, str],
    width: int,
    height: int,
    seed: int,
    steps: int,
    cfg: float,
    sampler: SamplerChoice,
    save_prefix: str,
    regions: list[RegionPrompt] | tuple = (),
    rest_mask: str | None = None,
    negative_rest_mask: str | None = None,
) -> dict:
    """The API-format graph (``{id: {"class_type", "inputs", "_meta"}}``) for one frame.

    ``control_images`` maps each pass to its LoadImage name (relative to ComfyUI's ``input/``).
    ``rest_mask``: where the prompt applies when there are regions (None: everywhere);
    ``negative_rest_mask``: where the negative prompt applies when regions bring their own.
    """
    # 1. Check inputs
    if not controlnets:
        raise ValueError("a ControlNet workflow needs at least one ControlNet")
    missing = [c.pass_name for c in controlnets if c.pass_name not in control_images]
    if missing:
        raise ValueError(f"no control image for pass(es) {', '.join(missing)}")
    g = ApiGraph()

    # 2. Model and prompts
    checkpoint = g.add("CheckpointLoaderSimple", "base model", ckpt_name=checkpoint_name)
    model, clip, vae = g.link(checkpoint, 0), g.link(checkpoint, 1), g.link(checkpoint, 2)
    positive = g.link(g.add("CLIPTextEncode", "prompt", text=prompt, clip=clip))
    negative = g.link(g.add("CLIPTextEncode", "negative prompt", text=negative_prompt, clip=clip))

    def masked(conditioning, image: str, title: str, channel: str = "red", strength: float = 1.0):
        mask = g.add("LoadImageMask", f"{title} mask", image=image, channel=channel)
        return g.link(g.add("ConditioningSetMask", title, conditioning=conditioning, mask=g.link(mask),
                            strength=float(strength), set_cond_area="default"))

    if regions and rest_mask:
        positive = masked(positive, rest_mask, "prompt outside the regions")
    if regions and negative_rest_mask:
        negative = masked(negative, negative_rest_mask, "negative prompt outside the regions' own")
    for i, region in enumerate(regions):
        text = g.link(g.add("CLIPTextEncode", f"region {i + 1} prompt", text=region.prompt, clip=clip))
        positive = g.link(g.add("ConditioningCombine", f"prompt + region {i + 1}", conditioning_1=positive,
                                conditioning_2=masked(text, region.mask_image, f"region {i + 1}", region.channel, region.strength)))
        if region.negative_prompt:
            own = g.link(g.add("CLIPTextEncode", f"region {i + 1} negative prompt", text=region.negative_prompt, clip=clip))
            negative = g.link(g.add("ConditioningCombine", f"negative prompt + region {i + 1}", conditioning_1=negative,
                                    conditioning_2=masked(own, region.mask_image, f"region {i + 1} negative", region.channel)))

    # 3. ControlNets: one loader per file, one advanced apply node per pass, chained
    loaders: dict[str, str] = {}
    for c in controlnets:
        if c.file_name not in loaders:
            loaders[c.file_name] = g.add("ControlNetLoader", f"ControlNet {c.file_name}", control_net_name=c.file_name)
        image = g.add("LoadImage", f"{c.pass_name} control image", image=control_images[c.pass_name])
        applied = g.add(
            "ControlNetApplyAdvanced", f"{c.pass_name} ControlNet", positive=positive, negative=negative,
            control_net=g.link(loaders[c.file_name]), image=g.link(image, 0), strength=float(c.scale),
            start_percent=float(c.start), end_percent=float(c.end),
        )
        positive, negative = g.link(applied, 0), g.link(applied, 1)

    # 4. Sample, decode, save
    latent = g.add("EmptyLatentImage", "latent", width=int(width), height=int(height), batch_size=1)
    sampled = g.add(
        "KSampler", f"sampler ({sampler.reason})", model=model, seed=int(seed), steps=int(steps), cfg=float(cfg),
        sampler_name=sampler.sampler_name, scheduler=sampler.scheduler, positive=positive, negative=negative,
        latent_image=g.link(latent), denoise=1.0,
    )
    decoded = g.add("VAEDecode", "decode", samples=g.link(sampled), vae=vae)
    g.add("SaveImage", "save", images=g.link(decoded), filename_prefix=save_prefix)
    return g.nodes


# --------------------------------------------------------------------------------------------
# A shot's files
# --------------------------------------------------------------------------------------------


def _file_stem(text: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._\-]+", "_", text).strip("._-")
    return stem or "model"


def _model_name(model_id: str) -> str:
    return Path(model_id.rstrip("/\\")).name or model_id


def _scheduler_config(models: dict | None) -> dict:
    path = (models or {}).get("base", {}).get("path")
    if not path:
        return {}
    try:
        return json.loads((Path(path) / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class ModelFile:
    """A model file ComfyUI loads: its folder under ``models/``, its name there, and where it comes from."""

    folder: str
    name: str
    entry: dict  # the model's manifest entry (id, path, source, revision or file hashes), or {"id": ...}
    kind: str  # "checkpoint" or "controlnet"


def model_files(style, models: dict | None) -> tuple[ModelFile, list[tuple[ModelFile, dict]]]:
    """The checkpoint and, per ControlNet, its file and its pass settings (``models``:
    ``ResolvedModels.manifest()``; None for a job that did not resolve them: the template's ids)."""
    if models:
        base_entry = models["base"]
        nets = [({k: c[k] for k in ("id", "path", "source", "revision", "file_sha256", "class_name") if k in c},
                 {"pass": c["pass"], "scale": c["scale"], "start": c["start"], "end": c["end"]}) for c in models["controlnets"]]
    else:
        base_entry = {"id": style.model}
        nets = [({"id": c.model}, {"pass": c.pass_name, "scale": c.scale, "start": c.start, "end": c.end}) for c in style.controlnets]
    base_name = KNOWN_CHECKPOINT_FILES.get(base_entry["id"], _file_stem(_model_name(base_entry["id"])) + ".safetensors")
    checkpoint = ModelFile("checkpoints", base_name, base_entry, "checkpoint")
    names: dict[str, str] = {}  # model id -> file name
    out = []
    for entry, settings in nets:
        key = entry.get("path") or entry["id"]
        if key not in names:
            name = _file_stem(_model_name(entry["id"])) + ".safetensors"
            n = 2
            while name in names.values():
                name = f"{_file_stem(_model_name(entry['id']))}-{n}.safetensors"
                n += 1
            names[key] = name
        out.append((ModelFile("controlnet", names[key], entry, "controlnet"), settings))
    return checkpoint, out


def write_comfyui_workflow(view: Path, *, shot: str, template, models: dict | None, frames: list[int]) -> Path:
    """Write ``view/comfyui/workflow_api.json`` and ``README.txt`` for the shot's first frame; return the workflow's path."""
    from stylize.frame_seeds import frame_seed

    # 1. Check inputs and gather the shot's settings
    style = template.style
    if not frames:
        raise ValueError("no frames: nothing to write a workflow for")
    frame = sorted(frames)[0]
    checkpoint, nets = model_files(style, models)
    if not nets:
        raise ValueError("the style names no ControlNet; a ControlNet workflow needs one")
    width, height = template.render.resolution
    scheduler_config = _scheduler_config(models)
    sampler = comfy_sampler(style.scheduler, scheduler_config)
    seed = frame_seed(template.style_seed, frame, style.seed_mode)
    prefix = f"{INPUT_SUBFOLDER}/{shot}"
    controlnets = [ControlNetInput(s["pass"], f.name, float(s["scale"]), float(s["start"]), float(s["end"])) for f, s in nets]
    images = {c.pass_name: f"{prefix}/{control_png_path(c.pass_name, frame)}" for c in controlnets}

    # 2. The graph (region masks written for every frame first)
    masks = region_prompts(style, Path(view), sorted(frames), prefix)
    workflow = build_workflow(
        prompt=style.prompt, negative_prompt=style.negative_prompt, checkpoint_name=checkpoint.name,
        controlnets=controlnets, control_images=images, width=width, height=height, seed=seed,
        steps=style.num_inference_steps, cfg=style.guidance_scale, sampler=sampler,
        save_prefix=f"{prefix}/{frame_name(frame)}", regions=masks.regions, rest_mask=masks.rest,
        negative_rest_mask=masks.negative_rest,
    )

    # 3. Write the workflow, then the README naming every file it needs
    # node order as built (ids "1".."N" in dependency order), not sorted: the file reads top to bottom;
    # written inside the view without following a link planted there
    write_bytes(view, f"{FOLDER}/{WORKFLOW_FILE}", (json.dumps(workflow, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    readme = _readme(shot=shot, frame=frame, frames=frames, checkpoint=checkpoint, nets=nets, models=models,
                     sampler=sampler, scheduler_class=style.scheduler, style=style, workflow=workflow, seed=seed,
                     masks=masks)
    write_bytes(view, f"{FOLDER}/{README_FILE}", readme.encode("utf-8"))
    return Path(view) / FOLDER / WORKFLOW_FILE


def _source_lines(f: ModelFile) -> list[str]:
    entry = f.entry
    model_id = entry["id"]
    lines = []
    where = entry.get("path")
    if entry.get("source") == "local_folder":
        origin = f"greybox loaded the local folder {where}"
    else:
        origin = f"greybox loaded {model_id}" + (f" from {where}" if where else "")
    if entry.get("revision"):
        origin += f" (hub revision {entry['revision']})"
    lines.append("      " + origin)
    if f.kind == "checkpoint":
        if model_id in KNOWN_CHECKPOINT_FILES:
            lines.append(f"      {model_id} publishes this single-file checkpoint beside its diffusers folders: "
                         f"`hf download {model_id} {KNOWN_CHECKPOINT_FILES[model_id]}`")
        else:
            lines.append("      ComfyUI's CheckpointLoaderSimple reads one checkpoint file, not a diffusers folder: use the")
            lines.append("      model's single-file release, or convert the folder with diffusers' script")
            lines.append(f"      scripts/convert_diffusers_to_original_stable_diffusion.py --model_path {where or model_id} \\")
            lines.append(f"        --checkpoint_path models/checkpoints/{f.name} --use_safetensors")
            lines.append("      (SDXL: scripts/convert_diffusers_to_original_sdxl.py, same options)")
        for rel, digest in sorted((entry.get("file_sha256") or {}).items()):
            lines.append(f"      greybox's {rel}: sha256 {digest}")
    else:
        weights = "diffusion_pytorch_model.safetensors"
        src = f"{where}/{weights}" if where else f"{model_id}'s {weights}"
        lines.append(f"      copy {src} to this name: ComfyUI's ControlNetLoader reads the diffusers layout")
        digest = (entry.get("file_sha256") or {}).get(weights)
        if digest:
            lines.append(f"      sha256 {digest}")
    if not where:
        lines.append("      (this job did not resolve its models: no revision or hash is recorded)")
    return lines


def _readme(*, shot, frame, frames, checkpoint, nets, models, sampler, scheduler_class, style, workflow, seed,
            masks: RegionMasks = RegionMasks()) -> str:
    sampler_id = next(i for i, n in workflow.items() if n["class_type"] == "KSampler")
    image_nodes = [(i, n["inputs"]["image"]) for i, n in workflow.items() if n["class_type"] == "LoadImage"]
    lines = [
        f"greybox shot {shot}: its diffusion set-up as a ComfyUI workflow (API format), frame {frame_name(frame)}",
        f"Written for {COMFYUI_RELEASE}; core nodes only.",
        "",
        "Open workflow_api.json in ComfyUI (File -> Open), or queue it: POST /prompt {\"prompt\": <workflow_api.json>}.",
        "",
        "Models (file names are relative to ComfyUI's model folders, as its loaders look them up):",
        f"  models/checkpoints/{checkpoint.name}",
        *_source_lines(checkpoint),
    ]
    seen = set()
    for f, settings in nets:
        if f.name in seen:
            continue
        seen.add(f.name)
        passes = ", ".join(s["pass"] for g, s in nets if g.name == f.name)
        lines += [f"  models/controlnet/{f.name}   (pass {passes})", *_source_lines(f)]
    if models and models.get("union"):
        lines.append("  The SDXL union ControlNet: ComfyUI picks its control type itself; to fix it per pass, insert")
        lines.append("  SetUnionControlNetType between the loader and each ControlNetApplyAdvanced node.")
    lines += [
        "",
        "Control images (LoadImage reads them relative to ComfyUI's input/ folder):",
        f"  copy this shot's control/ folder to ComfyUI/input/{INPUT_SUBFOLDER}/{shot}/control/",
        *(f"  node {i}: {name}" for i, name in image_nodes),
        "",
        "Sampler:",
        f"  sampler_name {sampler.sampler_name}, scheduler {sampler.scheduler}: {sampler.reason}",
        f"  steps {style.num_inference_steps}, cfg {style.guidance_scale}, seed {seed} (frame {frame_name(frame)}'s noise seed)",
        "  ComfyUI draws its noise differently: the pixels will not match greybox's frames; the geometry will.",
        "",
        "Other frames: change the image of each LoadImage node to that frame's NNNN.png and the seed of",
        f"node {sampler_id} (KSampler) to the frame's seed in manifest.json (seeds.frames); this shot has "
        f"{len(frames)} frame(s).",
    ]
    if style.consistency.mode != "per_frame":
        lines += ["", f"Consistency: greybox ran mode {style.consistency.mode!r} (each frame built from the ones before);",
                  "core ComfyUI nodes generate each frame alone, as mode per_frame."]
    if masks.regions:
        lines += ["", f"Region prompts: {len(masks.regions)} region(s) as masked conditioning; copy this shot's comfyui/masks/ "
                  f"folder to ComfyUI/input/{INPUT_SUBFOLDER}/{shot}/comfyui/masks/ (one folder per mask, one image per frame;",
                  "for another frame, change each LoadImageMask's image to that frame's NNNN.png as well)."]
    elif style.regions:
        lines += ["", "Region prompts: the shot's passes were not there to mask them from; the workflow has none."]
    if style.reference_images:
        lines += ["", f"Reference images: {len(style.reference_images)} (IP-Adapter {style.ip_adapter.model}); core ComfyUI has no",
                  "IP-Adapter node: add cubiq/ComfyUI_IPAdapter_plus (IPAdapterUnifiedLoader, IPAdapterAdvanced with attn_mask",
                  "for a masked image) between the checkpoint loader and the sampler; manifest.json lists the images and hashes."]
    if style.init_image != "none":
        lines += ["", f"greybox started each frame from its NPR draft (img2img, strength {style.strength}); the workflow",
                  "starts from an empty latent (text to image)."]
    return "\n".join(lines) + "\n"
