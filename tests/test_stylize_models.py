"""Model resolution: local folders, the hub cache offline, safetensors only, --controlnet overrides.

Resolution reads configs and hashes files but loads no weights, so these folders hold small
placeholder files; loading real (tiny) weights is tested in test_stylize_diffusion.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from greybox.errors import EXIT_WEIGHTS_UNAVAILABLE, InputError, WeightsUnavailableError
from scenes.template_schema import StyleSpec
from stylize.model_resolution import resolve_models

REVISION = "0123456789abcdef0123456789abcdef01234567"


def write_pipeline(folder: Path, class_name="StableDiffusionPipeline", weights="diffusion_pytorch_model.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": class_name, "_diffusers_version": "0.42.1", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"],
             "safety_checker": [None, None]}
    (folder / "model_index.json").write_text(json.dumps(index))
    for component in ("unet", "vae", "text_encoder"):
        (folder / component).mkdir(exist_ok=True)
        (folder / component / "config.json").write_text("{}")
        name = weights if component != "text_encoder" else weights.replace("diffusion_pytorch_model", "model")
        (folder / component / name).write_bytes(f"{component} weights".encode())
    (folder / "tokenizer").mkdir(exist_ok=True)
    (folder / "tokenizer" / "vocab.json").write_text("{}")
    return folder


def write_controlnet(folder: Path, class_name="ControlNetModel", weights="diffusion_pytorch_model.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": class_name}))
    (folder / weights).write_bytes(b"controlnet weights " + folder.name.encode())
    return folder


def style(**fields) -> StyleSpec:
    return StyleSpec.model_validate({"stylizer": "diffusion", **fields})


@pytest.fixture
def offline(monkeypatch, tmp_path):
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def fill_cache(cache: Path, repo_id: str, writer) -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    return writer(repo / "snapshots" / REVISION)


def test_local_folder_wins_over_a_hub_id_of_the_same_spelling(tmp_path, monkeypatch, offline):
    monkeypatch.chdir(tmp_path)
    write_pipeline(tmp_path / "studio" / "sd15")  # relative path "studio/sd15" is also a valid hub id
    fill_cache(offline, "studio/sd15", lambda p: write_pipeline(p, "StableDiffusionXLPipeline"))
    write_controlnet(tmp_path / "cn_depth")
    resolved = resolve_models(style(model="studio/sd15", controlnets=[{"pass": "depth", "model": "cn_depth"}]))
    assert resolved.base.source == "local_folder"
    assert resolved.base.local_path == (tmp_path / "studio" / "sd15").resolve()
    assert resolved.family == "sd15"
    expected = hashlib.sha256(b"unet weights").hexdigest()
    assert resolved.base.file_sha256["unet/diffusion_pytorch_model.safetensors"] == expected
    assert resolved.base.revision is None
    manifest = resolved.manifest()
    assert manifest["base"]["id"] == "studio/sd15" and manifest["controlnets"][0]["pass"] == "depth"
    json.dumps(manifest)  # JSON-ready


def test_hub_id_from_the_offline_cache_records_the_revision(offline):
    fill_cache(offline, "studio/sdxl-base", lambda p: write_pipeline(p, "StableDiffusionXLPipeline"))
    fill_cache(offline, "studio/union", lambda p: write_controlnet(p, "ControlNetUnionModel"))
    resolved = resolve_models(style(
        model="studio/sdxl-base",
        controlnets=[{"pass": "depth", "model": "studio/union"}, {"pass": "normal", "model": "studio/union"}],
    ))
    assert resolved.base.source == "hub_cache" and resolved.base.revision == REVISION
    assert resolved.family == "sdxl" and resolved.union and resolved.union_control_modes == [1, 4]
    assert resolved.warnings == ()  # same window for both passes
    assert resolved.manifest()["controlnets"][0]["revision"] == REVISION


def test_missing_model_offline_is_exit_3_with_the_ways_out(offline, tmp_path):
    write_controlnet(tmp_path / "cn")
    with pytest.raises(WeightsUnavailableError) as caught:
        resolve_models(style(model="nobody/no-such-model", controlnets=[{"pass": "depth", "model": str(tmp_path / "cn")}]))
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_WEIGHTS_UNAVAILABLE
    for needle in ("nobody/no-such-model", "HF_HUB_OFFLINE", "--model DIR", "huggingface-cli download nobody/no-such-model", "--stylizer npr"):
        assert needle in message, needle
    write_pipeline(tmp_path / "sd")
    with pytest.raises(WeightsUnavailableError, match=r"(?s)pass seg.*'nobody/seg-net'.*--controlnet seg=DIR"):
        resolve_models(style(model=str(tmp_path / "sd"), controlnets=[{"pass": "seg", "model": "nobody/seg-net"}]))
    with pytest.raises(WeightsUnavailableError, match="no folder ./missing/folder exists"):
        resolve_models(style(model="./missing/folder", controlnets=[{"pass": "seg", "model": "nobody/seg-net"}]))


def test_pickled_weights_are_refused(tmp_path, offline):
    write_pipeline(tmp_path / "sd")
    write_controlnet(tmp_path / "cn_bin", weights="diffusion_pytorch_model.bin")
    with pytest.raises(WeightsUnavailableError, match=r"no \.safetensors weights \(found only diffusion_pytorch_model\.bin\)"):
        resolve_models(style(model=str(tmp_path / "sd"), controlnets=[{"pass": "depth", "model": str(tmp_path / "cn_bin")}]))
    write_pipeline(tmp_path / "sd_bin", weights="diffusion_pytorch_model.bin")
    write_controlnet(tmp_path / "cn")
    with pytest.raises(WeightsUnavailableError, match=r"unet has no \.safetensors"):
        resolve_models(style(model=str(tmp_path / "sd_bin"), controlnets=[{"pass": "depth", "model": str(tmp_path / "cn")}]))


def test_controlnet_overrides_replace_the_list_keeping_template_settings(tmp_path, offline):
    write_pipeline(tmp_path / "sd")
    for name in ("depth_a", "seg_a", "normal_a", "depth_b", "lines_b"):
        write_controlnet(tmp_path / name)
    template_style = style(
        model="studio/not-used-when-overridden",
        controlnets=[
            {"pass": "depth", "model": str(tmp_path / "depth_a"), "scale": 0.8, "start": 0.1, "end": 0.7},
            {"pass": "seg", "model": str(tmp_path / "seg_a"), "scale": 0.4},
            {"pass": "normal", "model": str(tmp_path / "normal_a")},
        ],
    )
    resolved = resolve_models(
        template_style,
        model_override=str(tmp_path / "sd"),
        controlnet_overrides={"lines": str(tmp_path / "lines_b"), "depth": str(tmp_path / "depth_b")},
    )
    assert [(c.pass_name, c.model.local_path.name, c.scale, c.start, c.end) for c in resolved.controlnets] == [
        ("lines", "lines_b", 1.0, 0.0, 1.0),
        ("depth", "depth_b", 0.8, 0.1, 0.7),
    ]
    assert resolved.base.model_id == str(tmp_path / "sd")
    with pytest.raises(InputError, match="unknown pass 'colour'"):
        resolve_models(template_style, model_override=str(tmp_path / "sd"), controlnet_overrides={"colour": str(tmp_path / "depth_b")})
    with pytest.raises(InputError, match="style.controlnets is empty"):
        resolve_models(style(model=str(tmp_path / "sd")))


def test_union_windows_are_merged_with_a_warning_and_combinations_checked(tmp_path, offline):
    write_pipeline(tmp_path / "sdxl", "StableDiffusionXLPipeline")
    write_pipeline(tmp_path / "sd")
    write_controlnet(tmp_path / "union", "ControlNetUnionModel")
    write_controlnet(tmp_path / "plain")
    union = str(tmp_path / "union")
    resolved = resolve_models(style(model=str(tmp_path / "sdxl"), controlnets=[
        {"pass": "seg", "model": union, "start": 0.2, "end": 0.6},
        {"pass": "lines", "model": union, "start": 0.0, "end": 0.5},
    ]))
    assert resolved.union_window == (0.0, 0.6) and resolved.union_control_modes == [5, 3]
    assert "widest, 0..0.6" in resolved.warnings[0]
    assert resolved.manifest()["union_window"] == [0.0, 0.6]
    with pytest.raises(InputError, match="needs an SDXL base model"):
        resolve_models(style(model=str(tmp_path / "sd"), controlnets=[{"pass": "seg", "model": union}]))
    with pytest.raises(InputError, match="same union model for each pass"):
        resolve_models(style(model=str(tmp_path / "sdxl"), controlnets=[
            {"pass": "seg", "model": union}, {"pass": "depth", "model": str(tmp_path / "plain")}]))
    write_controlnet(tmp_path / "not_a_controlnet", "UNet2DConditionModel")
    with pytest.raises(InputError, match="not a ControlNetModel"):
        resolve_models(style(model=str(tmp_path / "sd"), controlnets=[{"pass": "depth", "model": str(tmp_path / "not_a_controlnet")}]))
