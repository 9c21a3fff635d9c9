"""stylize_frames in the sequence modes, end to end on a synthetic job folder: NPR (no weights) and tiny random-weight diffusion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from greybox.errors import InputError
from passes.render_chunk import write_frame_outputs
from scenes.scene_data import SCENE_NPZ
from scenes.template_schema import Template
from stylize.stylize_stage import stylize_frames
from tests.test_consistency_scenes import orbit_scene, scene_passes

SIZE, FRAMES = 32, 6


def make_template(style: dict | None = None) -> Template:
    return Template.model_validate({
        "schema_version": 1, "name": "boxes", "seed": 3,
        "camera": {"path": {"kind": "static", "position": [4.0, 0.0, 2.0], "look_at": [0.0, 0.0, 0.4]}},
        "render": {"resolution": [SIZE, SIZE], "frame_start": 1, "frame_end": FRAMES},
        "passes": {"control": ["depth", "seg"], "depth_normalization": "frame"},
        "style": style or {"stylizer": "npr"},
    })


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A job folder as the scene and passes stages write it (EXRs, control PNGs, cameras.json, scene/scene.npz)."""
    job_dir = tmp_path_factory.mktemp("job")
    scene = orbit_scene(n_frames=FRAMES, size=SIZE, degrees_per_frame=1.5)
    template = make_template()
    for p in scene_passes(scene):
        write_frame_outputs(job_dir, scene, p, template, None)
    cameras = {"frames": {str(f): {"blender_matrix_world": scene.camera.camera_to_world_blender(f).tolist()}
                          for f in range(1, FRAMES + 1)}}
    (job_dir / "cameras.json").write_text(json.dumps(cameras))
    scene.save_npz(job_dir / SCENE_NPZ)
    return job_dir, scene


@pytest.mark.parametrize("mode", ["per_frame", "flow_warp", "keyframes"])
def test_npr_runs_every_mode_with_near_zero_warp_error_and_no_denoising(job, tmp_path, mode):
    job_dir, _ = job
    result = stylize_frames(make_template(), list(range(1, FRAMES + 1)), job_dir, tmp_path, mode=mode,
                              measure_warp_error=True)
    assert sorted(result.frame_hashes) == list(range(1, FRAMES + 1))
    assert all((tmp_path / "frames" / f"{f:04d}.png").is_file() for f in result.frame_hashes)
    assert result.denoising_steps == 0
    assert result.warp_error.short_mae < 0.03 and result.warp_error.long_mae < 0.05
    if mode == "keyframes":
        assert result.keyframes[0] == 1 and len(result.generated_frames) < FRAMES


def test_requests_are_checked(job, tmp_path):
    job_dir, _ = job
    with pytest.raises(InputError, match="consecutive"):
        stylize_frames(make_template(), [1, 3], job_dir, tmp_path, mode="flow_warp")
    with pytest.raises(InputError, match="not one of"):
        stylize_frames(make_template(), [1, 2], job_dir, tmp_path, mode="optical_flow")
    with pytest.raises(InputError, match="outside"):
        stylize_frames(make_template(), [1, FRAMES + 1], job_dir, tmp_path, mode="keyframes")
    with pytest.raises(InputError, match="does not exist"):
        stylize_frames(make_template(), [1, 2], tmp_path / "nowhere", tmp_path, mode="keyframes")


@pytest.mark.parametrize("mode", ["flow_warp", "keyframes"])
def test_sequence_modes_read_the_recorded_scene_and_never_build_one(job, tmp_path, mode):
    """Without scene/scene.npz the modes stop with a clear error (the template would build a scene,
    but the generative stage never rebuilds it)."""
    job_dir, _ = job
    bare = tmp_path / "job"
    for path in job_dir.rglob("*"):
        if path.is_file() and not path.relative_to(job_dir).as_posix().startswith("scene/"):
            (bare / path.relative_to(job_dir)).parent.mkdir(parents=True, exist_ok=True)
            (bare / path.relative_to(job_dir)).symlink_to(path)
    with pytest.raises(InputError, match="scene/scene.npz is missing"):
        stylize_frames(make_template(), [1, 2], bare, tmp_path / "out", mode=mode)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("diffusers")
    from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_sd15

    root = tmp_path_factory.mktemp("tiny")
    base = save_tiny_sd15(root / "sd15")
    return base, {p: save_tiny_controlnet(root / f"cn_{p}", base, seed=10 + i) for i, p in enumerate(("depth", "seg"))}


def diffusion_template(tiny_models, **consistency):
    base, nets = tiny_models
    return make_template({
        "stylizer": "diffusion", "prompt": "a room", "model": str(base), "num_inference_steps": 2,
        "guidance_scale": 3.0, "strength": 0.5, "scheduler": "DDIMScheduler",
        "controlnets": [{"pass": "depth", "model": str(nets["depth"])},
                        {"pass": "seg", "model": str(nets["seg"]), "scale": 0.5, "end": 0.5}],
        "consistency": {"mode": "per_frame", **consistency},
    })


def test_diffusion_modes_count_steps_and_reuse_content(job, tmp_path, tiny_models):
    from stylize.diffusion_stylizer import DiffusionStylizer
    from stylize.model_resolution import resolve_models

    job_dir, _ = job
    template = diffusion_template(tiny_models, keyframe_coverage_threshold=0.3, max_keyframes=2)
    resolved = resolve_models(template.style)
    stylizer = DiffusionStylizer(resolved, template.style, threads=2)
    frames = list(range(1, FRAMES + 1))
    # the batch size of every UNet call, seen at the UNet itself (independent of the code's own counting)
    calls: list[int] = []
    hook = stylizer.pipeline.unet.register_forward_pre_hook(lambda module, args: calls.append(int(args[0].shape[0])))
    runs, unet_calls = {}, {}
    try:
        for mode in ("per_frame", "flow_warp", "keyframes"):
            calls.clear()
            runs[mode] = stylize_frames(template, frames, job_dir, tmp_path / mode, mode=mode, stylizer_instance=stylizer,
                                        measure_warp_error=True)
            unet_calls[mode] = list(calls)
    finally:
        hook.remove()
    per_call = 2 * 2  # DDIM: 2 steps, CFG pair
    assert runs["per_frame"].denoising_steps == FRAMES * per_call == sum(unet_calls["per_frame"])
    for mode in ("flow_warp", "keyframes"):
        r = runs[mode]
        # every UNet call is one CFG pair; the reported steps are the evaluations the UNet saw
        assert set(unet_calls[mode]) == {2} and r.denoising_steps == sum(unet_calls[mode])
        # the first frame from noise (2 calls); every later generation keeps content, from strength 0.5 (1 call)
        assert len(unet_calls[mode]) == 2 + (len(r.generated_frames) - 1)
        assert r.denoising_steps < runs["per_frame"].denoising_steps
        # reused content: less flicker than independent random-weight frames
        assert r.warp_error.short_mae < 0.5 * runs["per_frame"].warp_error.short_mae
    # deterministic: the same request gives the same bytes
    again = stylize_frames(template, frames, job_dir, tmp_path / "again", mode="keyframes", stylizer_instance=stylizer)
    assert again.frame_hashes == runs["keyframes"].frame_hashes


def test_flow_warp_with_anchor_attention_attends_to_the_first_frame_and_restores_the_unet(job, tmp_path, tiny_models):
    from stylize.diffusion_stylizer import DiffusionStylizer
    from stylize.model_resolution import resolve_models

    job_dir, _ = job
    plain_template = diffusion_template(tiny_models)
    template = diffusion_template(tiny_models, anchor_attention=True)
    stylizer = DiffusionStylizer(resolve_models(template.style), template.style, threads=2)
    before = {k: type(v).__name__ for k, v in stylizer.pipeline.unet.attn_processors.items()}
    plain = stylize_frames(plain_template, [1, 2, 3], job_dir, tmp_path / "plain", mode="flow_warp", stylizer_instance=stylizer)
    result = stylize_frames(template, [1, 2, 3], job_dir, tmp_path / "anchored", mode="flow_warp", stylizer_instance=stylizer)
    assert sorted(result.frame_hashes) == [1, 2, 3]
    assert {k: type(v).__name__ for k, v in stylizer.pipeline.unet.attn_processors.items()} == before
    # the first frame only records the anchor (attending to itself changes nothing) ...
    assert result.frame_hashes[1] == plain.frame_hashes[1]
    # ... and every later generated frame also attends to it, which changes the pixels it generates
    later = [f for f in result.generated_frames if f != 1]
    assert later and later == [f for f in plain.generated_frames if f != 1]
    assert all(result.frame_hashes[f] != plain.frame_hashes[f] for f in later)
    # the UNet is plain again: the same request without anchor attention gives the plain bytes
    again = stylize_frames(plain_template, [1, 2, 3], job_dir, tmp_path / "again", mode="flow_warp", stylizer_instance=stylizer)
    assert again.frame_hashes == plain.frame_hashes
