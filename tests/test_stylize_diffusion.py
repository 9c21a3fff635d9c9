"""The diffusion stylizer on tiny random-weight models saved to disk and loaded back through from_pretrained."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from greybox.errors import InputError
from scenes.template_schema import StyleSpec, Template

pytest.importorskip("diffusers")

PASSES = ("depth", "normal", "seg")
SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny SD1.5 + three ControlNets, tiny SDXL + a union ControlNet, built once, saved as hub folders."""
    from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_controlnet_union, save_tiny_sd15, save_tiny_sdxl

    root = tmp_path_factory.mktemp("tiny_models")
    sd15 = save_tiny_sd15(root / "sd15")
    controlnets = {p: save_tiny_controlnet(root / f"controlnet_{p}", sd15, seed=10 + i) for i, p in enumerate(PASSES)}
    sdxl = save_tiny_sdxl(root / "sdxl")
    union = save_tiny_controlnet_union(root / "controlnet_union")
    return {"root": root, "sd15": sd15, "controlnets": controlnets, "sdxl": sdxl, "union": union}


@pytest.fixture(scope="module", autouse=True)
def restore_torch_threads():
    """These tests run torch on one thread (fast on a shared CPU); give other modules theirs back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def style_for(tiny, passes=("depth",), **extra) -> StyleSpec:
    fields = dict(
        stylizer="diffusion",
        prompt="a cosy living room",
        negative_prompt="blurry",
        model=str(tiny["sd15"]),
        controlnets=[
            {"pass": p, "model": str(tiny["controlnets"][p]), "scale": 0.5 + 0.25 * i, "start": 0.0, "end": 1.0}
            for i, p in enumerate(passes)
        ],
        num_inference_steps=2,
        guidance_scale=5.0,
    )
    fields.update(extra)
    return StyleSpec.model_validate(fields)


def controls_for(frames, passes=PASSES, size=SIZE):
    out = []
    for f in frames:
        rng = np.random.default_rng(f)
        images = {p: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for p in passes}
        if "seg" in images:
            images["seg"] = seg_image(size, f)
        out.append(images)
    return out


def seg_image(size, shift=0):
    """Flat fills in exact ADE20K colours (wall, floor, sofa), hard edges."""
    seg = np.empty((size, size, 3), dtype=np.uint8)
    seg[:] = (120, 120, 120)
    seg[size // 2 + shift % 8 :] = (80, 50, 50)
    seg[size // 4 : size // 2, size // 4 : size // 2] = (11, 102, 255)
    return seg


def make_stylizer(tiny, passes=("depth",), **extra):
    from stylize.diffusion_stylizer import DiffusionStylizer
    from stylize.model_resolution import resolve_models

    style = style_for(tiny, passes, **extra)
    return DiffusionStylizer(resolve_models(style), style, threads=1)


def test_tiny_model_folders_have_the_hub_layout_and_are_reproducible(tiny, tmp_path):
    from tests.support.random_weight_models import save_tiny_controlnet

    sd15 = tiny["sd15"]
    index = json.loads((sd15 / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for component in ("unet", "vae", "text_encoder"):
        assert list((sd15 / component).glob("*.safetensors")), component
        assert not list((sd15 / component).glob("*.bin")), component
    assert {p.name for p in (sd15 / "tokenizer").iterdir()} >= {"vocab.json", "merges.txt", "tokenizer_config.json"}
    again = save_tiny_controlnet(tmp_path / "again", sd15, seed=10)
    digest = lambda p: hashlib.sha256((p / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()  # noqa: E731
    assert digest(again) == digest(tiny["controlnets"]["depth"])


def test_one_controlnet_shape_dtype_and_seed_determinism(tiny):
    stylizer = make_stylizer(tiny, ("depth",))
    assert type(stylizer.pipeline).__name__ == "StableDiffusionControlNetPipeline"
    assert type(stylizer.pipeline.scheduler).__name__ == "UniPCMultistepScheduler"
    for name in ("unet", "controlnet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert getattr(stylizer.pipeline, name) is not None
    controls = controls_for([1], ("depth",))
    first = stylizer.stylize([1], controls, seeds=[123])
    again = stylizer.stylize([1], controls, seeds=[123])
    other_seed = stylizer.stylize([1], controls, seeds=[124])
    other_control = stylizer.stylize([1], [{"depth": 255 - controls[0]["depth"]}], seeds=[123])
    assert first[0].shape == (SIZE, SIZE, 3) and first[0].dtype == np.uint8
    assert np.array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other_seed[0])
    assert not np.array_equal(first[0], other_control[0]), "the ControlNet must influence the output"


def test_three_controlnets_batching_does_not_change_frames(tiny):
    frames = [1, 2, 3]
    controls = controls_for(frames)
    seeds = [11, 12, 13]
    single = make_stylizer(tiny, PASSES, batch_size=1, scheduler="DDIMScheduler")
    assert type(single.pipeline.controlnet).__name__ == "MultiControlNetModel"
    assert type(single.pipeline.scheduler).__name__ == "DDIMScheduler"
    one_by_one = single.stylize(frames, controls, seeds=seeds)
    paired = make_stylizer(tiny, PASSES, batch_size=2, scheduler="DDIMScheduler").stylize(frames, controls, seeds=seeds)
    alone = single.stylize([3], controls[2:], seeds=seeds[2:])
    for a, b in zip(one_by_one, paired):
        assert np.array_equal(a, b)
    assert np.array_equal(one_by_one[2], alone[0])
    assert not np.array_equal(one_by_one[0], one_by_one[1])


def test_control_images_reach_the_controlnets_unresized_with_their_scales(tiny):
    stylizer = make_stylizer(tiny, PASSES)
    seen = {}
    nets = stylizer.pipeline.controlnet.nets
    for name, net in zip(PASSES, nets):
        original = net.forward

        def spy(*args, _name=name, _original=original, **kwargs):
            seen.setdefault(_name, []).append((kwargs["controlnet_cond"].detach().clone(), kwargs["conditioning_scale"]))
            return _original(*args, **kwargs)

        net.forward = spy
    controls = controls_for([5])
    stylizer.stylize([5], controls, seeds=[0])
    for i, name in enumerate(PASSES):
        cond, scale = seen[name][0]
        assert tuple(cond.shape) == (2, 3, SIZE, SIZE)  # the guided pair, at the output size
        handed = np.round(cond[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        assert np.array_equal(handed, controls[0][name])
        assert scale == pytest.approx(0.5 + 0.25 * i)
    seg_colours = {tuple(c) for c in np.round(seen["seg"][0][0][0].permute(1, 2, 0).numpy() * 255).reshape(-1, 3).astype(int)}
    assert seg_colours == {(120, 120, 120), (80, 50, 50), (11, 102, 255)}


def test_wrong_size_control_image_is_refused(tiny):
    stylizer = make_stylizer(tiny, ("depth", "seg"))
    controls = controls_for([1], ("depth", "seg"))
    controls[0]["seg"] = seg_image(48)
    with pytest.raises(InputError, match=r"'seg'.*48x48.*64x64"):
        stylizer.stylize([1], controls, seeds=[0])
    with pytest.raises(InputError, match="no control image for pass"):
        stylizer.stylize([1], [{"depth": controls[0]["depth"]}], seeds=[0])


def test_img2img_from_an_init_image(tiny):
    stylizer = make_stylizer(tiny, ("depth",), strength=0.6)
    controls = controls_for([1, 2], ("depth",))
    dark = np.full((SIZE, SIZE, 3), 30, dtype=np.uint8)
    bright = np.full((SIZE, SIZE, 3), 230, dtype=np.uint8)
    bright[: SIZE // 2] = 10
    encoded = []
    vae = stylizer.pipeline.vae
    original = vae.encode

    def spy(x, *args, **kwargs):
        encoded.append(x.detach().clone())
        return original(x, *args, **kwargs)

    vae.encode = spy
    a = stylizer.stylize([1, 2], controls, init_images=[dark, dark], seeds=[7, 8])
    b = stylizer.stylize([1, 2], controls, init_images=[dark, dark], seeds=[7, 8])
    c = stylizer.stylize([1, 2], controls, init_images=[bright, bright], seeds=[7, 8])
    text2img = stylizer.stylize([1, 2], controls, seeds=[7, 8])
    assert type(stylizer.img2img_pipeline).__name__ == "StableDiffusionControlNetImg2ImgPipeline"
    assert stylizer.img2img_pipeline.unet is stylizer.pipeline.unet
    assert a[0].shape == (SIZE, SIZE, 3) and a[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], text2img[0])
    # The init image reaches the VAE unresized, mapped to [-1, 1].
    handed = encoded[-1][0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(handed, bright / 255.0 * 2 - 1, atol=1e-6)


def test_sdxl_union_with_control_modes(tiny):
    from stylize.diffusion_stylizer import DiffusionStylizer
    from stylize.model_resolution import resolve_models

    style = StyleSpec.model_validate(dict(
        stylizer="diffusion",
        model=str(tiny["sdxl"]),
        controlnets=[
            {"pass": "depth", "model": str(tiny["union"]), "scale": 1.0, "start": 0.0, "end": 0.5},
            {"pass": "seg", "model": str(tiny["union"]), "scale": 0.5, "start": 0.2, "end": 0.9},
        ],
        num_inference_steps=2,
        prompt="a room",
    ))
    resolved = resolve_models(style)
    assert resolved.family == "sdxl" and resolved.union
    assert resolved.union_control_modes == [1, 5]
    assert resolved.union_window == (0.0, 0.9)
    assert resolved.warnings and "one guidance window" in resolved.warnings[0]
    stylizer = DiffusionStylizer(resolved, style, threads=1)
    assert type(stylizer.pipeline).__name__ == "StableDiffusionXLControlNetUnionPipeline"
    seen = []
    original = stylizer.pipeline.controlnet.forward

    def spy(*args, **kwargs):
        seen.append(list(kwargs["control_type_idx"]))
        return original(*args, **kwargs)

    stylizer.pipeline.controlnet.forward = spy
    controls = controls_for([1], ("depth", "seg"))
    out = stylizer.stylize([1], controls, seeds=[3])
    again = stylizer.stylize([1], controls, seeds=[3])
    assert out[0].shape == (SIZE, SIZE, 3) and out[0].dtype == np.uint8
    assert np.array_equal(out[0], again[0])
    assert seen and seen[0] == [1, 5]


# ------------------------------------------------------------------------------------------
# The stage, end to end from a job folder
# ------------------------------------------------------------------------------------------


def write_job(job_dir: Path, frames, passes=PASSES, size=SIZE):
    from greybox.atomic_files import write_json_atomic, write_png_atomic
    from passes.pass_exr import write_passes_exr
    from test_stylize_npr import cube_corner_passes

    cameras = {}
    for f, controls in zip(frames, controls_for(frames, passes, size)):
        for p, image in controls.items():
            write_png_atomic(job_dir / "control" / p / f"{f:04d}.png", image)
        lines = np.zeros((size, size, 3), dtype=np.uint8)
        lines[:, size // 2] = 255
        write_png_atomic(job_dir / "control" / "lines" / f"{f:04d}.png", lines)
        write_passes_exr(job_dir / "passes" / f"{f:04d}.exr", cube_corner_passes(f, size))
        cameras[str(f)] = {"blender_matrix_world": np.eye(4).tolist()}
    write_json_atomic(job_dir / "cameras.json", cameras)


def job_template(tiny, **style_extra) -> Template:
    style = style_for(tiny, ("depth", "seg"), **style_extra).model_dump(by_alias=True)
    return Template.model_validate({
        "schema_version": 1,
        "name": "stylize_test",
        "seed": 5,
        "camera": {"path": {"kind": "static", "position": [0, -3, 1], "look_at": [0, 0, 1]}},
        "render": {"resolution": [SIZE, SIZE], "frame_start": 1, "frame_end": 4},
        "style": style,
    })


def test_stylize_frames_diffusion_is_byte_identical_and_split_invariant(tiny, tmp_path):
    from greybox.atomic_files import sha256_file
    from stylize.diffusion_stylizer import DiffusionStylizer
    from stylize.model_resolution import resolve_models
    from stylize.stylize_stage import stylize_frames

    job = tmp_path / "job"
    write_job(job, [1, 2, 3, 4])
    template = job_template(tiny, batch_size=2)
    resolved = resolve_models(template.style)
    instance = DiffusionStylizer(resolved, template.style, threads=1)
    full = stylize_frames(template, [1, 2, 3, 4], job, tmp_path / "a", stylizer_instance=instance).frame_hashes
    assert sorted(full) == [1, 2, 3, 4]
    for f, digest in full.items():
        assert sha256_file(tmp_path / "a" / "frames" / f"{f:04d}.png") == digest
    split = {}
    for part in ([3], [1, 2], [4]):
        split.update(stylize_frames(template, part, job, tmp_path / "b", stylizer_instance=instance).frame_hashes)
    assert split == full
    assert len(set(full.values())) == 4


def test_stylize_frames_npr_draft_init_image_and_input_checks(tiny, tmp_path):
    from stylize.stylize_stage import stylize_frames

    job = tmp_path / "job"
    write_job(job, [1, 2])
    template = job_template(tiny, init_image="npr_draft", strength=0.5)
    drafted = stylize_frames(template, [1, 2], job, tmp_path / "out", threads=1).frame_hashes
    plain = stylize_frames(job_template(tiny), [1, 2], job, tmp_path / "plain", threads=1).frame_hashes
    assert drafted.keys() == {1, 2} and drafted != plain
    with pytest.raises(InputError, match="outside the template's range"):
        stylize_frames(template, [9], job, tmp_path / "out")
    with pytest.raises(InputError, match=r"control[/\\]depth[/\\]0003.png"):
        stylize_frames(job_template(tiny, batch_size=1), [3], job, tmp_path / "out")
    # the template's consistency mode is the stage's: a sequence mode needs consecutive frames
    with pytest.raises(InputError, match="'flow_warp' needs consecutive frames"):
        stylize_frames(job_template(tiny, consistency="flow_warp"), [1, 2, 4], job, tmp_path / "out")
    assert not (tmp_path / "out" / "frames" / "0004.png").exists()
