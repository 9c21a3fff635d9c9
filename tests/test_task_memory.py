"""Each task estimates its peak memory and is refused before it renders when its machine (or
--max-memory) cannot hold it, saying what would fit."""

from __future__ import annotations

import json

import pytest

from greybox.errors import InputError
from render_farm import task_memory
from render_farm.cli import main
from render_farm.task_memory import MemoryLimitError, check_task_memory, estimate_peak_bytes, parse_size
from tests.support.tiny_templates import TINY


def test_the_estimate_is_linear_in_pixels_as_calibrated():
    # The calibration (benchmarks/task_memory.py): 1.51 GB at 2048^2, 3.79 GB at 4096^2, 7.59 GB at 6144^2.
    for side, measured in ((2048, 1.513e9), (4096, 3.790e9), (6144, 7.586e9)):
        assert abs(estimate_peak_bytes("passes", side, side) - measured) / measured < 0.02
    assert estimate_peak_bytes("passes", 8192, 8192) >= 12.4e9  # reported at 8192^2: never under
    assert estimate_peak_bytes("stylize", 512, 512, stylizer="diffusion") is None


@pytest.mark.parametrize("text, value", [("8G", 8e9), ("8GB", 8e9), ("8GiB", 8 * 2**30), ("500m", 5e8), ("12e9", 12e9), ("4096", 4096)])
def test_sizes(text, value):
    assert parse_size(text) == int(value)


@pytest.mark.parametrize("text", ["", "8X", "-1G", "G", "nan"])
def test_bad_sizes(text):
    with pytest.raises(InputError, match="--max-memory"):
        parse_size(text)


# A template's default passes/NNNN.exr (every group: the float ids and Cryptomatte too) adds 64 B a
# pixel to the calibrated 181 (what the EXR writer holds beyond the 13 pass channels).
DEFAULT_LAYOUT_BYTES_PER_PIXEL = 181 + 64


def _assert_largest_fit(message: str, budget: float, per_pixel: int = 181) -> None:
    """Independently: 0.75 GB + ``per_pixel`` B a pixel within the budget, 2:1, multiples of 8, the largest such."""
    fit = message.split("render.resolution = [")[1].split("]")[0]
    w, h = (int(v) for v in fit.split(", "))
    assert w % 8 == 0 and h % 8 == 0 and abs(w / h - 2) < 0.02
    assert 750e6 + per_pixel * w * h <= budget < 750e6 + per_pixel * (w + 16) * (h + 8)


def test_refusal_says_what_fits():
    with pytest.raises(MemoryLimitError) as info:
        check_task_memory("passes", 8192, 4096, max_memory=4_000_000_000)
    message = str(info.value)
    assert "8192x4096" in message and "--max-memory allows 4.0 GB" in message
    _assert_largest_fit(message, 4e9)
    with pytest.raises(MemoryLimitError, match="not even the smallest"):
        check_task_memory("passes", 512, 512, max_memory=100_000_000)
    assert check_task_memory("passes", 512, 512, free=1_000_000_000) == estimate_peak_bytes("passes", 512, 512)
    with pytest.raises(MemoryLimitError, match="this machine .* has 2.0 GB free"):
        check_task_memory("passes", 4096, 4096, free=1_500_000_000, held=500_000_000)


def test_max_memory_refuses_before_anything_is_written(tmp_path, capsys):
    template = tmp_path / "tiny.toml"
    template.write_text(TINY)
    out, store = tmp_path / "out", tmp_path / "store"
    args = ["render", str(template), "--out", str(out), "--store", str(store), "--set", "render.resolution=[8192, 8192]"]
    assert main([*args, "--max-memory", "4G"]) == 2
    err = capsys.readouterr().err
    assert "need about 17.2 GB" in err and "render.resolution = [" in err and "Traceback" not in err  # 0.75 GB + 245 B/px
    assert not out.exists() and not store.exists()
    assert main([*args, "--max-memory", "lots"]) == 2
    assert not out.exists()


def test_local_jobs_are_checked_against_this_machine(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(task_memory, "machine_free_bytes", lambda: 1_000_000_000)
    template = tmp_path / "tiny.toml"
    template.write_text(TINY)
    out = tmp_path / "out"
    assert main(["passes", str(template), "--out", str(out), "--store", str(tmp_path / "s"), "--set", "render.resolution=[4096, 2048]"]) == 2
    err = capsys.readouterr().err
    assert "this machine" in err and "1.0 GB free" in err
    _assert_largest_fit(err, 1e9, DEFAULT_LAYOUT_BYTES_PER_PIXEL)
    assert not out.exists()


def test_a_task_checks_its_own_machine_before_rendering(tmp_path, monkeypatch):
    """On a farm the driver cannot see the node: the worker refuses (an input error: not retried)."""
    from render_farm.task_worker import THREAD_ENV_VARS, execute_task
    from scenes.template_loading import load_template

    for name in THREAD_ENV_VARS:  # execute_task fixes them for the task: restore them afterwards
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(task_memory, "machine_free_bytes", lambda: 500_000_000)
    template = tmp_path / "tiny.toml"
    template.write_text(TINY)
    resolved = load_template(str(template), ["render.resolution=[4096, 4096]"]).resolved
    spec = {"task_id": "passes/0001-0001", "fn": "render_farm.stage_tasks:passes_chunk",
            "params": {"template": resolved, "scene_key": "k", "max_memory": None},
            "units": [("1", "0" * 64)], "store": str(tmp_path / "store"), "threads": 1}
    outcome = execute_task(spec)
    assert not outcome["ok"] and outcome["error_kind"] == "input"
    assert "passes/0001-0001: the passes at 4096x4096 need about 4.9 GB" in outcome["message"]  # 0.75 GB + 245 B/px
    assert not (tmp_path / "store").exists()


# --------------------------------------------------------------------------------------------
# Diffusion stylisation: the models' weights from their safetensors headers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_diffusion_models(tmp_path_factory):
    from tests.support.random_weight_models import save_tiny_controlnet, save_tiny_sd15

    root = tmp_path_factory.mktemp("memory_models")
    base = save_tiny_sd15(root / "sd15")
    return base, {p: save_tiny_controlnet(root / f"cn_{p}", base, seed=10 + i) for i, p in enumerate(("depth", "seg"))}


def _tiny_style(models, **fields):
    from scenes.template_schema import StyleSpec

    base, nets = models
    return StyleSpec.model_validate({"stylizer": "diffusion", "model": str(base),
                                     "controlnets": [{"pass": p, "model": str(d)} for p, d in nets.items()], **fields})


def _loaded_bytes(models, dtype) -> dict[str, int]:
    """Independently: load every network the pipeline loads and count its state dict's bytes."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    base, nets = models
    loaded = {"unet": UNet2DConditionModel.from_pretrained(base, subfolder="unet", dtype=dtype),
              "vae": AutoencoderKL.from_pretrained(base, subfolder="vae", dtype=dtype),
              "text_encoder": CLIPTextModel.from_pretrained(base, subfolder="text_encoder", dtype=dtype)}
    loaded.update({f"controlnet:{p}": ControlNetModel.from_pretrained(d, dtype=dtype) for p, d in nets.items()})
    return {name: sum(t.numel() * t.element_size() for t in net.state_dict().values()) for name, net in loaded.items()}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_weights_from_headers_equal_the_loaded_state_dicts(tiny_diffusion_models, device):
    import torch

    from render_farm.task_memory import diffusion_run
    from stylize.model_resolution import resolve_models

    style = _tiny_style(tiny_diffusion_models)
    run = diffusion_run(resolve_models(style), style, device=device)  # headers only: no weights are read
    dtype = torch.float32 if device == "cpu" else torch.float16
    assert dict(run.weights) == _loaded_bytes(tiny_diffusion_models, dtype)
    assert run.itemsize == (4 if device == "cpu" else 2) and run.extra_controlnets == 1


def test_headers_are_read_not_the_weights(tmp_path):
    from render_farm.task_memory import safetensors_header, safetensors_weight_bytes

    header = {"a": {"dtype": "F16", "shape": [3, 5], "data_offsets": [0, 30]},
              "ids": {"dtype": "I64", "shape": [7], "data_offsets": [30, 86]}, "__metadata__": {"format": "pt"}}
    raw = json.dumps(header).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)  # no tensor data at all: only the header is read
    assert set(safetensors_header(path)) == {"a", "ids"}
    assert safetensors_weight_bytes(path) == 15 * 2 + 7 * 8
    assert safetensors_weight_bytes(path, 4) == 15 * 4 + 7 * 8  # floats at the run's dtype, ids as stored
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"unet weights")
    assert safetensors_weight_bytes(junk, 4) == len(b"unet weights")  # not a safetensors file: its size


def test_the_activations_scale_with_resolution_dtype_and_batch():
    from render_farm.task_memory import diffusion_activation_bytes

    # Calibrated (benchmarks/task_memory.py --diffusion sd15, CPU float32): the VAE decode dominates.
    small, large = (diffusion_activation_bytes("sd15", s, s) for s in (256, 512))
    assert abs(small - 0.417e9) / 0.417e9 < 0.03 and abs(large - 1.118e9) / 1.118e9 < 0.03
    assert diffusion_activation_bytes("sd15", 512, 512, itemsize=2) == pytest.approx(large / 2, rel=1e-6)
    # CUDA runs a batch at once: four frames' per-pixel share, the fixed share once, half precision.
    assert diffusion_activation_bytes("sd15", 512, 512, batch=4, itemsize=2) == pytest.approx(
        (0.183e9 + 4 * (1.118e9 - 0.183e9)) / 2, rel=0.03)


def test_a_diffusion_job_over_max_memory_is_refused_before_anything_is_written(tiny_diffusion_models, tmp_path, capsys,
                                                                               monkeypatch):
    from render_farm.task_memory import diffusion_run
    from stylize.model_resolution import resolve_models

    monkeypatch.setattr(task_memory, "PASSES_BASE_BYTES", 0)  # the passes fit any budget: the diffusion check decides
    monkeypatch.setattr(task_memory, "PASSES_BYTES_PER_PIXEL", 0)
    monkeypatch.setattr(task_memory, "_exr_writer_extra", lambda channels: 0)
    monkeypatch.setattr(task_memory, "assembly_peak_bytes", lambda *args, **kwargs: 0)
    base, nets = tiny_diffusion_models
    style = _tiny_style(tiny_diffusion_models)
    need = estimate_peak_bytes("stylize", 512, 256, stylizer="diffusion", diffusion=diffusion_run(resolve_models(style), style))
    weights = sum(_loaded_bytes(tiny_diffusion_models, __import__("torch").float32).values())
    assert need > task_memory.DIFFUSION_RUNTIME_BYTES + weights  # the weights and the activations
    template = tmp_path / "tiny.toml"
    template.write_text(TINY)
    out, store = tmp_path / "out", tmp_path / "store"
    args = ["render", str(template), "--out", str(out), "--store", str(store), "--stylizer", "diffusion", "--model", str(base),
            *[a for p, d in nets.items() for a in ("--controlnet", f"{p}={d}")], "--set", "render.resolution=[512, 256]"]
    assert main([*args, "--max-memory", str(need - 1)]) == 2
    err = capsys.readouterr().err
    assert "diffusion stylisation (sd15 with 2 ControlNets" in err and "at 512x256 needs about" in err, err
    assert "--max-memory allows" in err and "Traceback" not in err
    fit = [int(v) for v in err.split("render.resolution = [")[1].split("]")[0].split(", ")]
    assert fit[0] < 512 and abs(fit[0] / fit[1] - 2) < 0.05 and fit[0] % 8 == 0 and fit[1] % 8 == 0
    assert not out.exists() and not store.exists()
    # The models alone over the budget: no resolution helps.
    assert main([*args, "--max-memory", str(weights)]) == 2
    assert "the models alone take" in capsys.readouterr().err
    assert not out.exists() and not store.exists()


def test_a_diffusion_task_checks_its_own_machine_before_loading_the_models(tiny_diffusion_models, tmp_path, monkeypatch):
    """On a farm the driver does not know the node's device: the stylize task refuses (an input error)."""
    from render_farm.task_worker import THREAD_ENV_VARS, execute_task
    from scenes.template_loading import load_template

    for name in THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(task_memory, "machine_free_bytes", lambda: 200_000_000)
    monkeypatch.setattr(task_memory, "process_resident_bytes", lambda: 0)  # this test process holds torch already
    base, nets = tiny_diffusion_models
    style = f'\n[style]\nstylizer = "diffusion"\nmodel = "{base}"\n' + "".join(
        f'[[style.controlnets]]\npass = "{p}"\nmodel = "{d}"\n' for p, d in nets.items())
    template = tmp_path / "tiny.toml"
    template.write_text(TINY + style)
    resolved = load_template(str(template), []).resolved
    spec = {"task_id": "stylize/0001", "fn": "render_farm.stage_tasks:stylize_batch",
            "params": {"template": resolved, "stylizer": "diffusion", "max_memory": None, "sequence": [1]},
            "units": [("1", "0" * 64)], "store": str(tmp_path / "store"), "threads": 1}
    outcome = execute_task(spec)
    assert not outcome["ok"] and outcome["error_kind"] == "input", outcome.get("traceback")
    assert "stylize/0001: diffusion stylisation (sd15 with 2 ControlNets" in outcome["message"]
    assert "on the CPU" in outcome["message"] and "has 200 MB free" in outcome["message"]
    assert not (tmp_path / "store").exists()
