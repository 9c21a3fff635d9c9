"""E_warp with exact flow on synthetic sequences whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from passes.frame_passes import FramePasses
from stylize.flow_warp import warp_backward, warp_validity
from stylize.warp_error import warp_error
from tests.test_consistency_scenes import orbit_scene, scene_passes

H, W, SHIFT, TEX_W = 24, 32, 2, 64


def sliding_passes(n: int, occluder: str | None = None) -> list[FramePasses]:
    """A textured plane (instance 1) seen by a camera panning SHIFT px per frame: frame t's pixel
    (row, col) shows texture column col + SHIFT * t, so ``flow_backward`` is (+SHIFT, 0) exactly.
    ``occluder``: a screen-fixed rectangle (columns 10..15) in front of the plane, either another
    instance ("instance") or the same instance with a different UV ("fold")."""
    out = []
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    for t in range(1, n + 1):
        u = (cols + SHIFT * t + 0.5) / TEX_W
        v = (rows + 0.5) / H
        inst = np.ones((H, W), np.uint32)
        uv = np.stack([u, v, np.ones_like(u)], axis=-1).astype(np.float32)
        flow_b = np.zeros((H, W, 2), np.float32)
        flow_b[..., 0] = SHIFT
        if occluder:
            box = (cols >= 10) & (cols < 16)
            flow_b[box] = 0.0
            if occluder == "instance":
                inst[box] = 2
                uv[box, 0] = (cols[box] - 10 + 0.5) / 8
            else:  # same instance, a different part of the UV map
                uv[box, 0] = 0.9 + (cols[box] - 10 + 0.5) / 100
        out.append(FramePasses(frame=t, depth=np.ones((H, W), np.float32), normal=np.zeros((H, W, 3), np.float32),
                               flow_forward=-flow_b, flow_backward=flow_b, instance_id=inst,
                               class_id=inst.copy(), uv=uv))
    return out


def texture_frames(passes: list[FramePasses], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(H, TEX_W, 3), dtype=np.uint8)
    occluder_colour = np.array([255, 0, 255], np.uint8)
    frames = []
    for p in passes:
        col = np.floor(p.uv[..., 0] * TEX_W).astype(int)
        img = texture[np.arange(H)[:, None], np.clip(col, 0, TEX_W - 1)]
        plane = (p.instance_id == 1) & (p.uv[..., 0] < 0.9)
        img[~plane] = occluder_colour
        frames.append(img)
    return frames


def test_texture_moved_by_known_flow_scores_zero():
    passes = sliding_passes(5)
    report = warp_error(texture_frames(passes), passes)
    assert report.short_mae == 0.0 and report.short_mse == 0.0
    assert report.long_mae == 0.0 and report.long_mse == 0.0
    # everything but the strip entering on the right is compared
    assert report.short_valid_fraction == pytest.approx([(W - SHIFT) / W] * 4)
    # long range: frame t overlaps frame 1 in W - SHIFT * (t - 1) columns
    assert report.long_valid_fraction == pytest.approx([(W - SHIFT * k) / W for k in range(1, 5)])


def test_independent_uniform_noise_scores_one_third():
    passes = sliding_passes(6)
    rng = np.random.default_rng(1)
    frames = [rng.random((H, W, 3)) for _ in passes]
    report = warp_error(frames, passes)
    assert report.short_mae == pytest.approx(1 / 3, abs=0.02)
    assert report.short_mse == pytest.approx(1 / 6, abs=0.015)
    assert report.long_mae == pytest.approx(1 / 3, abs=0.02)
    # uint8 noise reads the same way
    frames8 = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in passes]
    assert warp_error(frames8, passes).short_mae == pytest.approx(1 / 3, abs=0.02)


@pytest.mark.parametrize("occluder", ["instance", "fold"])
def test_occluded_and_disoccluded_pixels_are_excluded(occluder):
    passes = sliding_passes(4, occluder=occluder)
    frames = texture_frames(passes)
    # the plane pixels just right of the occluder came from behind it: their source is occluder
    valid = warp_validity(passes[0], passes[1])
    # inside the occluder (flow 0) every pixel's source is the occluder itself, the same surface: valid
    assert valid[:, 10:16].all()
    revealed = np.zeros((H, W), bool)
    revealed[:, 8:10] = True  # plane pixels whose source (col + 2) lies under the occluder in t-1
    entering = np.zeros((H, W), bool)
    entering[:, W - SHIFT :] = True
    expected = ~(revealed | entering)
    assert np.array_equal(valid, expected)
    # with them excluded the error is exactly 0 (the occluder's colour differs from the plane's)
    report = warp_error(frames, passes)
    assert report.short_mae == 0.0 and report.long_mae == 0.0
    # and a naive warp would have counted them
    naive = np.abs(warp_backward(frames[0], passes[1].flow_backward) - frames[1]).mean()
    assert naive > 0.01


def test_world_fixed_texture_on_a_3d_orbit_scores_near_zero_and_noise_does_not():
    scene = orbit_scene(n_frames=5, size=48)
    passes = scene_passes(scene)

    def paint(p):  # a smooth texture fixed on the surfaces (a function of instance and UV)
        u, v = p.uv[..., 0], p.uv[..., 1]
        img = np.stack([0.5 + 0.4 * np.sin(9 * u + p.instance_id), 0.5 + 0.4 * np.cos(7 * v),
                        0.2 + 0.1 * p.instance_id], axis=-1)
        return np.where(p.foreground[..., None], img, 0.9)

    report = warp_error([paint(p) for p in passes], passes)
    assert min(report.short_valid_fraction) > 0.4 and min(report.long_valid_fraction) > 0.3
    assert report.short_mae < 0.01 and report.long_mae < 0.02
    rng = np.random.default_rng(2)
    noisy = warp_error([rng.random((48, 48, 3)) for _ in passes], passes)
    assert noisy.short_mae > 0.2 and noisy.long_mae > 0.25


def test_inputs_are_checked():
    passes = sliding_passes(2)
    with pytest.raises(ValueError, match="at least two"):
        warp_error(texture_frames(passes)[:1], passes[:1])
    with pytest.raises(ValueError, match="one FramePasses per frame"):
        warp_error(texture_frames(passes), passes[:1])
