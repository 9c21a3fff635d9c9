"""Frame seeds, control images read from a job folder, and the optional reference-photo annotators."""

from __future__ import annotations

import numpy as np
import pytest

from greybox.atomic_files import write_png_atomic
from greybox.errors import InputError
from stylize.control_inputs import load_control_images
from stylize.frame_seeds import frame_seed, frame_seeds


def test_frame_seeds_are_deterministic_per_frame_or_fixed():
    per_frame = [frame_seed(7, f, "per_frame") for f in range(1, 50)]
    assert per_frame == [frame_seed(7, f, "per_frame") for f in range(1, 50)]
    assert len(set(per_frame)) == len(per_frame)
    assert all(0 <= s < 2**63 for s in per_frame)
    assert frame_seed(0, 3, "per_frame") != frame_seed(1, 3, "per_frame")  # seed 0 is a seed
    assert [frame_seed(42, f, "fixed") for f in (1, 2, 99)] == [42, 42, 42]
    assert frame_seeds(7, [3, 1], "per_frame") == {3: frame_seed(7, 3, "per_frame"), 1: frame_seed(7, 1, "per_frame")}
    with pytest.raises(ValueError, match="seed_mode"):
        frame_seed(1, 1, "random")
    with pytest.raises(ValueError, match="non-negative"):
        frame_seed(-1, 1, "fixed")


def test_control_images_are_read_at_the_output_size(tmp_path):
    seg = np.zeros((16, 24, 3), np.uint8)
    seg[:, :12] = (120, 120, 120)
    seg[:, 12:] = (80, 50, 50)
    depth = np.linspace(0, 255, 16 * 24).astype(np.uint8).reshape(16, 24)
    write_png_atomic(tmp_path / "control" / "seg" / "0007.png", seg)
    write_png_atomic(tmp_path / "control" / "depth" / "0007.png", depth)  # greyscale -> three channels
    write_png_atomic(tmp_path / "control" / "seg" / "12345.png", seg)
    images = load_control_images(tmp_path, 7, ["seg", "depth"], expected_size=(24, 16))
    assert np.array_equal(images["seg"], seg)
    assert images["depth"].shape == (16, 24, 3) and np.array_equal(images["depth"][..., 1], depth)
    assert np.array_equal(load_control_images(tmp_path, 12345, ["seg"])["seg"], seg)  # >= 4 digits
    with pytest.raises(InputError, match=r"(?s)'seg'.*24x16 but the output is 32x16.*exactly the output size"):
        load_control_images(tmp_path, 7, ["seg"], expected_size=(32, 16))
    with pytest.raises(InputError, match=r"control[/\\]normal[/\\]0007.png is missing"):
        load_control_images(tmp_path, 7, ["normal"], expected_size=(24, 16))
    with pytest.raises(InputError, match="unknown control kind"):
        load_control_images(tmp_path, 7, ["colour"])


def test_reference_annotators_need_controlnet_aux():
    from stylize import reference_annotators

    try:
        reference_annotators.require_controlnet_aux()
    except reference_annotators.AnnotatorsUnavailableError as error:
        assert isinstance(error, ImportError)
        assert "greybox[annotators]" in str(error) and "GPU" in str(error)
        pytest.skip(f"controlnet-aux is unusable here, as expected on a CPU machine: {error}")
    photo = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    try:
        images = reference_annotators.estimate_control_images(photo, ["depth", "lines"], width=64, height=48)
    except OSError as error:  # annotator weights are downloaded from the hub
        pytest.skip(f"annotator weights unavailable offline: {error}")
    assert {k: v.shape for k, v in images.items()} == {"depth": (48, 64, 3), "lines": (48, 64, 3)}
    with pytest.raises(InputError, match="cannot estimate seg"):
        reference_annotators.estimate_control_images(photo, ["seg"], width=64, height=48)
