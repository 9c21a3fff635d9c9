"""Region prompts and reference images on tiny random-weight models loaded through the real paths.

The proof is taken on the conditioning the UNet receives: a spy around every cross-attention
processor of the UNet and the ControlNets records each call's inputs and output; the test then runs
diffusers' own processor (``AttnProcessor2_0``, or the IP-Adapter's ``IPAdapterAttnProcessor2_0``)
on each prompt's tokens alone and solves, per token, for the weights that blend those outputs into
the one the UNet got (least squares). Those recovered weights must be the mask rule's, computed
here by walking the passes' pixels one by one (tests/test_style_regions.brute_force_weights).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from greybox.errors import InputError, WeightsUnavailableError  # noqa: E402
from passes.render_chunk import write_frame_outputs  # noqa: E402
from passes.scene_stage import write_scene_data  # noqa: E402
from scenes.style_regions import resolve_targets, scene_objects  # noqa: E402
from scenes.template_schema import Template  # noqa: E402
from stylize.region_masks import FrameDirection, attention_grids, frame_direction  # noqa: E402
from stylize.stylize_stage import stylize_frames  # noqa: E402
from tests.test_consistency_scenes import orbit_scene, scene_passes  # noqa: E402
from tests.test_style_regions import brute_force_weights  # noqa: E402

SIZE, FRAMES = 64, 3
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_ip_adapter, save_tiny_sd15

    root = tmp_path_factory.mktemp("models")
    base = save_tiny_sd15(root / "sd15")
    return {"sd15": base, "cn": save_tiny_controlnet(root / "cn", base), "ip": save_tiny_ip_adapter(root / "ip", base)}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A job folder as the scene and passes stages write it: two boxes on a floor, an orbiting camera."""
    from PIL import Image

    job_dir = tmp_path_factory.mktemp("job")
    scene = orbit_scene(n_frames=FRAMES, size=SIZE, degrees_per_frame=1.5)
    for p in scene_passes(scene):
        write_frame_outputs(job_dir, scene, p, template({"stylizer": "npr"}), None)
    write_scene_data(scene, job_dir)
    rng = np.random.default_rng(7)
    files = []
    for name in ("mood.png", "fabric.png"):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(job_dir / name)
        files.append({"path": str(job_dir / name), "sha256": hashlib.sha256((job_dir / name).read_bytes()).hexdigest()})
    return job_dir, scene, files


def template(style: dict) -> Template:
    return Template.model_validate({
        "schema_version": 1, "name": "boxes", "seed": 3,
        "camera": {"path": {"kind": "static", "position": [4.0, 0.0, 2.0], "look_at": [0.0, 0.0, 0.4]}},
        "render": {"resolution": [SIZE, SIZE], "frame_start": 1, "frame_end": FRAMES},
        "passes": {"control": ["depth", "seg"], "depth_normalization": "frame"},
        "style": style,
    })


def diffusion_style(models, **extra) -> dict:
    style = {"stylizer": "diffusion", "prompt": "a room", "negative_prompt": "blurry", "model": str(models["sd15"]),
             "controlnets": [{"pass": "depth", "model": str(models["cn"]), "scale": 0.8}], "num_inference_steps": 2,
             "guidance_scale": 3.0, "ip_adapter": {"model": str(models["ip"])}}
    style.update(extra)
    return style


REGIONS = [{"objects": ["box_a"], "prompt": "green velvet", "negative_prompt": "plastic"},
           {"classes": ["chair"], "prompt": "brass"}]


def stylizer_for(tpl: Template):
    from stylize.diffusion_stylizer import DiffusionStylizer
    from stylize.model_resolution import resolve_models

    return DiffusionStylizer(resolve_models(tpl.style), tpl.style, threads=1)


# --------------------------------------------------------------------------------------------
# The spy and the recovery of each prompt's weight
# --------------------------------------------------------------------------------------------


class Spy:
    """Around one cross-attention processor: records every call (inputs, output, the frame in hand)."""

    def __init__(self, name, inner, calls, frame):
        self.name, self.inner, self.calls, self.frame = name, inner, calls, frame

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, scale=1.0,
                 ip_adapter_masks=None):
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, scale=scale,
                         ip_adapter_masks=ip_adapter_masks)
        self.calls.append({"layer": self.name, "attn": attn, "hidden": hidden_states.detach().clone(),
                           "context": encoder_hidden_states, "masks": ip_adapter_masks, "out": out.detach().clone(),
                           "inner": self.inner, "frame": self.frame[0]})
        return out


def spy_on(model, calls, frame) -> None:
    model.set_attn_processor({name: Spy(name, p, calls, frame) if name.endswith("attn2.processor") else p
                              for name, p in model.attn_processors.items()})


def recovered_weights(call, segments, with_images: bool):
    """(batch, prompts, tokens) weights that blend diffusers' per-prompt outputs into the recorded one,
    and the largest residual of that fit. Prompts whose tokens are identical in a batch element (a
    region without a negative prompt of its own takes the global one: its unconditional half is the
    global prompt's) cannot be told apart there: their weights are fitted together and reported on
    the first of them (the others 0), as :func:`grouped` does to the expectation."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    context = call["context"]
    text, image_tokens = context if isinstance(context, tuple) else (context, None)
    with torch.inference_mode():
        outputs = []
        for segment in torch.split(text, segments, dim=1):
            if with_images:
                adapter = call["inner"].image  # the IPAdapterAttnProcessor2_0 load_ip_adapter made
                outputs.append(adapter(call["attn"], call["hidden"], (segment, image_tokens), None, None,
                                       ip_adapter_masks=call["masks"]))
            else:
                outputs.append(AttnProcessor2_0()(call["attn"], call["hidden"], segment))
    basis = torch.stack(outputs, dim=-1).double()  # (batch, tokens, channels, prompts)
    target = call["out"].double()[..., None]
    weights = torch.zeros(basis.shape[0], len(segments), basis.shape[1], dtype=torch.float64)
    residual = 0.0
    for b, groups in enumerate(segment_groups(text, segments)):
        firsts = [g[0] for g in groups]
        solution = torch.linalg.lstsq(basis[b][..., firsts], target[b]).solution[..., 0]  # (tokens, groups)
        residual = max(residual, (basis[b][..., firsts] @ solution[..., None] - target[b]).abs().max().item())
        weights[b, firsts] = solution.T
    return weights, residual


def segment_groups(text, segments) -> list[list[list[int]]]:
    """Per batch element, the prompts grouped by identical tokens."""
    parts = torch.split(text, segments, dim=1)
    out = []
    for b in range(text.shape[0]):
        groups: list[list[int]] = []
        for i, part in enumerate(parts):
            for g in groups:
                if torch.equal(parts[g[0]][b], part[b]):
                    g.append(i)
                    break
            else:
                groups.append([i])
        out.append(groups)
    return out


def grouped(expected: np.ndarray, call, segments) -> np.ndarray:
    """The expectation (prompts, tokens) per batch element, identical prompts summed onto the first."""
    context = call["context"]
    text = context[0] if isinstance(context, tuple) else context
    out = []
    for groups in segment_groups(text, segments):
        e = np.zeros_like(expected)
        for g in groups:
            e[g[0]] = expected[g].sum(axis=0)
        out.append(e)
    return np.stack(out)


def oracle(owner: np.ndarray, prompts: int) -> dict[int, np.ndarray]:
    return {rows * cols: brute_force_weights(owner, prompts, cell) for rows, cols, cell in attention_grids(*owner.shape)}


def owner_from_passes(passes, layout, regions) -> np.ndarray:
    """Each pixel's prompt, straight from the instance pass and the layout's names and classes (last region wins)."""
    from scenes.semantic_palette import resolve_class

    by_name = {o["name"]: o["instance_id"] for o in layout["objects"]}
    owner = np.zeros(passes.instance_id.shape, np.int64)
    shown = []
    for k, region in enumerate(regions):
        ids = [by_name[n] for n in region.get("objects", [])]
        classes = [resolve_class(c).class_id for c in region.get("classes", [])]
        mask = np.isin(passes.instance_id, ids) | np.isin(passes.class_id, classes)
        owner[mask] = k + 1
        shown.append(mask.any())
    # the prompts the frame shows, renumbered in order (what the UNet is given)
    present = [k + 1 for k in range(len(regions)) if (owner == k + 1).any()]
    remap = np.zeros(len(regions) + 1, np.int64)
    remap[present] = np.arange(1, len(present) + 1)
    return remap[owner]


# --------------------------------------------------------------------------------------------
# The conditioning the UNet receives
# --------------------------------------------------------------------------------------------


def test_every_level_of_a_four_level_unet_gets_the_mask_rule_at_512():
    """A 32x32-pixel object at 512x512: its prompt at full weight on the 64x64 level's cells inside
    it, never outside the cells it reaches, at every level down to 8x8, read back from the UNet."""
    from diffusers import UNet2DConditionModel

    from stylize.directed_attention import DirectionState, install_directed_attention
    from stylize.region_masks import attention_weights

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=1, cross_attention_dim=16, attention_head_dim=4,
        norm_num_groups=8, block_out_channels=(8, 8, 16, 16),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    ).eval()
    owner = np.zeros((512, 512), np.int16)
    owner[200:232, 296:328] = 1
    state = DirectionState()
    install_directed_attention(unet, state)
    calls, frame = [], [0]
    spy_on(unet, calls, frame)
    state.set_regions([5, 7], [attention_weights(owner, 2)])
    context = torch.randn(2, 12, 16)
    with torch.inference_mode():
        unet(torch.randn(2, 4, 64, 64), 10, encoder_hidden_states=context)
    expected = oracle(owner, 2)
    levels = set()
    for call in calls:
        weights, residual = recovered_weights(call, [5, 7], with_images=False)
        tokens = weights.shape[-1]
        levels.add(tokens)
        assert residual < 1e-4, call["layer"]
        assert np.allclose(weights.numpy(), expected[tokens][None], atol=1e-4), call["layer"]
    assert levels == {4096, 1024, 256, 64}  # 64x64, 32x32, 16x16 and the 8x8 mid block
    full = oracle(owner, 2)[4096][1]
    assert (full == 1.0).sum() == 16 and oracle(owner, 2)[64][1].max() <= 0.25


@pytest.mark.parametrize("mode", ["per_frame", "flow_warp", "keyframes"])
def test_each_region_conditions_only_its_pixels_in_every_mode(models, job, mode, monkeypatch):
    """Recorded at the UNet's and the ControlNet's cross-attention: every call's weights are the
    mask rule's for the frame in hand (the masked loop included), with a whole-frame reference
    image applied at the same time (the IP-Adapter's processors compose with the regions')."""
    import stylize.masked_denoising as masked_denoising
    from scenes.scene_layout import read_layout

    job_dir, scene, files = job
    tpl = template(diffusion_style(models, regions=REGIONS, consistency=mode, reference_images=[{"image": "mood.png", "scale": 0.7}]))
    stylizer = stylizer_for(tpl)
    calls, frame = [], [None]
    spy_on(stylizer.pipeline.unet, calls, frame)
    spy_on(stylizer.pipeline.controlnet, calls, frame)
    original_loop = masked_denoising.masked_denoise

    def loop(pipe, **kwargs):  # which frame the masked loop is on
        frame[0] = kwargs["frame"]
        return original_loop(pipe, **kwargs)

    monkeypatch.setattr(masked_denoising, "masked_denoise", loop)
    original_call = type(stylizer.pipeline).__call__
    seen_pipeline = []

    def pipeline_call(self, *args, **kwargs):
        frame[0] = ("pipeline", len(seen_pipeline))
        seen_pipeline.append(kwargs.get("prompt_embeds") is not None)
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(type(stylizer.pipeline), "__call__", pipeline_call)
    frames = list(range(1, FRAMES + 1))
    result = stylize_frames(tpl, frames, job_dir, job_dir / f"out_{mode}", stylizer_instance=stylizer,
                            reference_files=files[:1])
    assert result.directed and all(d["regions"] == [0, 1] and d["reference_images"] == [0] for d in result.directed.values())

    from passes.pass_exr import read_passes_exr

    layout = read_layout(job_dir)
    owners = {f: owner_from_passes(read_passes_exr(job_dir / f"passes/{f:04d}.exr"), layout, REGIONS) for f in frames}
    assert all(set(np.unique(o)) == {0, 1, 2} for o in owners.values())
    unet_layers = set(stylizer.pipeline.unet.attn_processors)
    checked = {"unet": 0, "controlnet": 0}
    for call in calls:
        f = call["frame"]
        f = frames[f[1]] if isinstance(f, tuple) else f  # per_frame: one pipeline call per frame, in order
        in_unet = call["layer"] in unet_layers and isinstance(call["context"], tuple)
        weights, residual = recovered_weights(call, [77, 77, 77], with_images=in_unet)
        assert residual < 1e-3, call["layer"]
        expected = grouped(oracle(owners[f], 3)[weights.shape[-1]], call, [77, 77, 77])
        assert np.allclose(weights.numpy(), expected, atol=1e-3), (mode, f, call["layer"])
        checked["unet" if in_unet else "controlnet"] += 1
    assert checked["unet"] > 0 and checked["controlnet"] > 0
    if mode == "per_frame":
        assert seen_pipeline == [True] * FRAMES


def test_frames_batched_into_one_call_each_get_their_own_weights(models, job):
    """A batched call (CUDA batches frames; forced here on the CPU) directs every frame with the
    batch's regions, each frame weighted by its own masks (a frame without a region: the global
    prompt at weight 1 everywhere)."""
    job_dir, _, _ = job
    tpl = template(diffusion_style(models, regions=REGIONS, batch_size=2))
    stylizer = stylizer_for(tpl)
    stylizer.batch_invariant = False
    calls, frame = [], [None]
    spy_on(stylizer.pipeline.unet, calls, frame)
    a = np.zeros((SIZE, SIZE), np.int16)
    a[8:30, 16:60] = 1
    a[40:, :20] = 2
    b = np.zeros((SIZE, SIZE), np.int16)
    b[20:50, 20:50] = 1  # frame 2 shows only the second region: its own number 1 is the batch's 2
    directions = [FrameDirection(1, (0, 1), a), FrameDirection(2, (1,), b)]
    controls = [{"depth": np.full((SIZE, SIZE, 3), v, np.uint8)} for v in (90, 160)]
    stylizer.stylize([1, 2], controls, seeds=[1, 2], directions=directions)
    assert calls and all(c["hidden"].shape[0] == 4 for c in calls)  # two frames, two CFG halves
    per_frame = [oracle(a, 3), oracle(np.where(b == 1, 2, 0).astype(np.int16), 3)]
    for call in calls:
        weights, residual = recovered_weights(call, [77, 77, 77], with_images=False)
        expected = np.stack([per_frame[i % 2][weights.shape[-1]] for i in range(4)])
        for i in range(4):
            assert residual < 1e-3 and np.allclose(weights[i].numpy(), grouped(expected[i], call, [77, 77, 77])[i], atol=1e-3)


def test_sdxl_pipelines_take_the_regions_too(tmp_path):
    """per_frame on an SDXL base (no attention at the latent grid itself, only from its first
    halving on; pooled embeddings the global prompt's): the weights at the UNet are the mask rule's."""
    from scenes.template_schema import StyleSpec
    from stylize.diffusion_stylizer import DiffusionStylizer
    from stylize.model_resolution import resolve_models
    from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_sdxl

    base = save_tiny_sdxl(tmp_path / "sdxl")
    style = StyleSpec.model_validate({
        "stylizer": "diffusion", "prompt": "a room", "model": str(base), "num_inference_steps": 2, "guidance_scale": 3.0,
        "controlnets": [{"pass": "depth", "model": str(save_tiny_controlnet(tmp_path / "cn", base))}],
        "regions": [{"objects": ["x"], "prompt": "green velvet"}]})
    stylizer = DiffusionStylizer(resolve_models(style), style, threads=1)
    calls, frame = [], [1]
    spy_on(stylizer.pipeline.unet, calls, frame)
    owner = np.zeros((SIZE, SIZE), np.int16)
    owner[10:41, 20:50] = 1
    stylizer.stylize([1], [{"depth": np.full((SIZE, SIZE, 3), 100, np.uint8)}], seeds=[3],
                     directions=[FrameDirection(1, (0,), owner)])
    expected = oracle(owner, 2)
    assert {c["hidden"].shape[1] for c in calls} == {16}  # 64 px: latent 8x8; SDXL attends from the first halving on
    for call in calls:
        weights, residual = recovered_weights(call, [77, 77], with_images=False)
        assert residual < 1e-3 and np.allclose(weights.numpy(), grouped(expected[weights.shape[-1]], call, [77, 77]), atol=1e-3)


def test_the_image_term_is_there_and_regions_do_not_duplicate_it(models, job):
    """With a reference image, each cross-attention output is the region blend plus the adapter's
    term once: fitting text-only outputs leaves a residual, fitting the adapter's outputs does not."""
    job_dir, _, files = job
    tpl = template(diffusion_style(models, regions=REGIONS[:1], reference_images=[{"image": "mood.png"}]))
    stylizer = stylizer_for(tpl)
    calls, frame = [], [1]
    spy_on(stylizer.pipeline.unet, calls, frame)
    stylize_frames(tpl, [1], job_dir, job_dir / "out_image_term", stylizer_instance=stylizer, reference_files=files[:1])
    assert calls
    for call in calls:
        _, with_images = recovered_weights(call, [77, 77], with_images=True)
        _, without = recovered_weights(call, [77, 77], with_images=False)
        assert with_images < 1e-3 and without > 100 * with_images, call["layer"]


# --------------------------------------------------------------------------------------------
# Reference images: the traps
# --------------------------------------------------------------------------------------------


def test_the_adapter_loads_through_load_ip_adapter_and_sdpa_afterwards_would_drop_it(models):
    from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0

    from stylize.diffusion_stylizer import _use_sdpa
    from stylize.directed_attention import check_image_processors

    tpl = template(diffusion_style(models, reference_images=[{"image": "mood.png"}]))
    stylizer = stylizer_for(tpl)
    unet = stylizer.pipeline.unet
    assert unet.config.encoder_hid_dim_type == "ip_image_proj"
    kinds = {name: type(getattr(p, "image", p)).__name__ for name, p in unet.attn_processors.items()}
    assert all(v == "IPAdapterAttnProcessor2_0" for k, v in kinds.items() if k.endswith("attn2.processor"))
    assert type(stylizer.pipeline.feature_extractor).__name__.startswith("CLIPImageProcessor")
    check_image_processors(unet)
    _use_sdpa(stylizer.pipeline)  # what the stylizer does before loading, done after: the adapter is gone
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
    assert not any(isinstance(p, IPAdapterAttnProcessor2_0) for p in unet.attn_processors.values())
    with pytest.raises(RuntimeError, match="processors are gone"):
        check_image_processors(unet)


def test_the_masked_loop_passes_the_image_embeddings(models, job):
    """A UNet with an IP-Adapter needs added_cond_kwargs={"image_embeds": ...}: without it the masked
    loop raises diffusers' TypeError; with the director's arguments it runs and the image counts."""
    from stylize.masked_denoising import ControlSpec, masked_denoise

    job_dir, _, files = job
    tpl = template(diffusion_style(models, reference_images=[{"image": "mood.png"}]))
    stylizer = stylizer_for(tpl)
    stylize_frames(tpl, [1], job_dir, job_dir / "out_loop", stylizer_instance=stylizer, reference_files=files[:1])
    pipe, director = stylizer.pipeline, stylizer.director
    control = ControlSpec(pipe.controlnet, np.full((SIZE, SIZE, 3), 128, np.uint8))
    embeddings, _ = director.prompt_embeddings([])
    args = dict(frame=1, controls=[control], height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=3.0, seed=4,
                prompt_embeds=embeddings["prompt_embeds"], negative_prompt_embeds=embeddings["negative_prompt_embeds"])
    with pytest.raises(TypeError):
        masked_denoise(pipe, **args)
    on = FrameDirection(frame=1, references=(0,))
    off = FrameDirection(frame=1)
    outputs = []
    for direction in (on, off):
        with director.directing([direction], SIZE, SIZE, loop=True) as extra:
            outputs.append(masked_denoise(pipe, **args, **{k: v for k, v in extra.items() if "prompt" not in k}))
    assert not np.array_equal(outputs[0], outputs[1])


def test_a_masked_reference_image_changes_only_its_objects_pixels(models, job):
    """In a frame that shows the objects: every pixel outside their mask is bit for bit the frame
    without the image, some inside differ. The adapter's own mask would not do it: the same image
    through ip_adapter_masks in one pass moves pixels outside the mask too. A frame that does not
    show the objects is byte-identical to a render by a stylizer with no adapter at all."""
    from stylize.control_inputs import load_control_images

    job_dir, _, files = job
    tpl = template(diffusion_style(models, reference_images=[{"image": "fabric.png", "objects": ["box_b"], "scale": 1.5}]))
    stylizer = stylizer_for(tpl)
    from PIL import Image

    from passes.pass_exr import read_passes_exr
    from scenes.scene_layout import read_layout

    stylizer.set_reference_images([np.asarray(Image.open(files[1]["path"]).convert("RGB"))], [files[1]["sha256"]])

    passes = read_passes_exr(job_dir / "passes/0001.exr")
    regions, references = resolve_targets(tpl.style, scene_objects(read_layout(job_dir)))
    shown = frame_direction(1, passes.instance_id, passes.class_id, regions, references)
    mask = shown.masked[0][1]
    assert 0 < mask.mean() < 0.5
    controls = [load_control_images(job_dir, 1, ["depth"], expected_size=(SIZE, SIZE))]
    with_image = stylizer.stylize([1], controls, seeds=[11], directions=[shown])[0]
    without = stylizer.stylize([1], controls, seeds=[11], directions=[FrameDirection(frame=1)])[0]
    assert np.array_equal(with_image[~mask], without[~mask])
    assert not np.array_equal(with_image[mask], without[mask])

    # the trap: the adapter's mask alone (one pass, no composite) moves pixels outside it
    def one_pass(direction, masked):
        with stylizer.director.directing([direction], SIZE, SIZE, masked=masked) as extra:
            image = stylizer.pipeline(
                prompt="a room", negative_prompt="blurry", image=stylizer._control_tensor([controls[0]["depth"]]),
                num_inference_steps=2, guidance_scale=3.0, controlnet_conditioning_scale=0.8, height=SIZE, width=SIZE,
                generator=torch.Generator().manual_seed(11), output_type="np", **extra).images[0]
        return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)

    masked_only, none = one_pass(shown, True), one_pass(FrameDirection(frame=1), False)
    assert np.array_equal(none, without)  # the same call as the stylizer's
    assert not np.array_equal(masked_only[~mask], none[~mask])

    # a frame without the objects: what a stylizer without any adapter renders, byte for byte
    plain = stylizer_for(template(diffusion_style(models)))
    hidden = FrameDirection(frame=1)
    assert np.array_equal(stylizer.stylize([1], controls, seeds=[11], directions=[hidden])[0],
                          plain.stylize([1], controls, seeds=[11])[0])


# --------------------------------------------------------------------------------------------
# Weights that cannot be had, and what the user sees
# --------------------------------------------------------------------------------------------


def test_missing_adapter_weights_exit_3_before_anything_renders(models, tmp_path, capsys):
    import shutil

    from render_farm.cli import main
    from scenes.template_schema import StyleSpec
    from stylize.model_resolution import resolve_models

    def style(**ip):
        return StyleSpec.model_validate(diffusion_style(models, reference_images=[{"image": "a.png"}],
                                                        ip_adapter={"model": str(models["ip"]), **ip}))

    assert resolve_models(style()).ip_adapter.weight_path.is_file()
    cases = {"model": (str(tmp_path / "nowhere"), "not a hub id"), "weight_name": ("ip-adapter-plus_sd15.safetensors", "has no models/ip-adapter-plus_sd15.safetensors")}
    for key, (value, fragment) in cases.items():
        with pytest.raises(WeightsUnavailableError) as info:
            resolve_models(style(**{key: value}))
        text = str(info.value)
        assert fragment in text and "Ways out" in text and "hf download" in text and "style.reference_images=[]" in text
    bin_only = tmp_path / "ip_bin"
    shutil.copytree(models["ip"], bin_only)
    (bin_only / "models/image_encoder/model.safetensors").rename(bin_only / "models/image_encoder/pytorch_model.bin")
    with pytest.raises(WeightsUnavailableError, match="only pytorch_model.bin"):
        resolve_models(style(model=str(bin_only)))
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE=1"):
        resolve_models(style(model="nobody/no-such-adapter"))

    # through the command line: exit 3, nothing written
    from tests.test_style_regions import write_shot

    path = write_shot(tmp_path / "t")
    out, store = tmp_path / "out", tmp_path / "store"
    code = main(["render", str(path), "--out", str(out), "--store", str(store), "--model", str(models["sd15"]),
                 "--controlnet", f"depth={models['cn']}", "--set", f'style.ip_adapter.model="{tmp_path / "nowhere"}"'])
    err = capsys.readouterr().err
    assert code == 3 and "IP-Adapter (style.ip_adapter)" in err and "Ways out" in err
    assert not out.exists() and not store.exists()


def test_loading_an_adapter_tells_the_user_nothing_that_does_not_apply(models, tmp_path):
    """In a fresh process (transformers says its advice once): no torchvision advice, no float32
    cast warning, no loading bars on stderr."""
    code = f"""
import numpy as np, torch
from scenes.template_schema import StyleSpec
from stylize.diffusion_stylizer import DiffusionStylizer
from stylize.model_resolution import resolve_models
style = StyleSpec.model_validate({json.dumps(diffusion_style(models, reference_images=[{"image": "a.png"}]))})
s = DiffusionStylizer(resolve_models(style), style, threads=1)
s.set_reference_images([np.zeros((40, 40, 3), np.uint8)], ["0"])
print("LOADED", type(s.pipeline.unet.encoder_hid_proj).__name__)
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert "LOADED MultiIPAdapterImageProjection" in run.stdout, run.stdout + run.stderr
    for word in ("torchvision", "float32", "Loading", "it/s", "%|"):
        assert word not in run.stderr, run.stderr


def test_a_masked_reference_image_reaches_each_level_by_the_mask_rule(models, job):
    """The adapter's term is gated, at each cross-attention layer, by the share of the cell's pixels
    inside the objects (the walk of tests/test_style_regions.brute_force_weights), after diffusers'
    own resampling of what it is given; diffusers' bicubic downsampling of the full-resolution mask
    would not give that (it loses small objects)."""
    from diffusers.image_processor import IPAdapterMaskProcessor

    from passes.pass_exr import read_passes_exr
    from scenes.scene_layout import read_layout
    from stylize.control_inputs import load_control_images

    job_dir, _, files = job
    tpl = template(diffusion_style(models, reference_images=[{"image": "fabric.png", "objects": ["box_b"]}]))
    stylizer = stylizer_for(tpl)
    stylizer.set_reference_images([np.zeros((40, 40, 3), np.uint8)], [files[1]["sha256"]])
    passes = read_passes_exr(job_dir / "passes/0001.exr")
    regions, references = resolve_targets(tpl.style, scene_objects(read_layout(job_dir)))
    shown = frame_direction(1, passes.instance_id, passes.class_id, regions, references)
    mask = shown.masked[0][1]

    class InnerSpy(torch.nn.Module):
        def __init__(self, inner, seen):
            super().__init__()
            self.inner, self.seen = inner, seen

        def __call__(self, attn, hidden_states, context, attention_mask=None, temb=None, scale=1.0, ip_adapter_masks=None):
            self.seen.append((hidden_states.shape, ip_adapter_masks))
            return self.inner(attn, hidden_states, context, attention_mask, temb, scale=scale, ip_adapter_masks=ip_adapter_masks)

    seen = []
    for processor in stylizer.pipeline.unet.attn_processors.values():
        if getattr(processor, "image", None) is not None:
            processor.image = InnerSpy(processor.image, seen)
    controls = [load_control_images(job_dir, 1, ["depth"], expected_size=(SIZE, SIZE))]
    stylizer.stylize([1], controls, seeds=[11], directions=[shown])
    gated = [(shape, masks) for shape, masks in seen if masks is not None]
    assert gated
    cells = {rows * cols: cell for rows, cols, cell in attention_grids(SIZE, SIZE)}
    full = torch.from_numpy(mask.astype(np.float32))[None]
    for shape, masks in gated:
        tokens = shape[1]
        used = IPAdapterMaskProcessor.downsample(masks[0][:, 0], shape[0], tokens, 1)[0, :, 0].double().numpy()
        expected = brute_force_weights(mask.astype(np.int64), 2, cells[tokens])[1]
        assert np.allclose(used, expected, atol=1e-6), tokens
        bicubic = IPAdapterMaskProcessor.downsample(full, shape[0], tokens, 1)[0, :, 0].double().numpy()
        assert not np.allclose(bicubic, expected, atol=1e-3)
