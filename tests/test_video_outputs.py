"""The shot's video as an editor and ffprobe see it: H.264 in video.mp4, ProRes 422 HQ and PNG in
video.mov, BT.709 tags that match what the encoder really wrote (matrix and range checked on the
decoded samples), CRF, byte-identical reruns per codec, and a codec change that reruns only the
assembly."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from render_farm.cli import main
from tests.support.tiny_templates import TINY

# Flat colour bars: each bar is wide enough (and 8-aligned) that chroma subsampling and the codecs
# leave its centre exact to a code value or two.
BARS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255), "black": (0, 0, 0),
        "grey": (128, 128, 128)}
BAR_W, H = 32, 48
BT709 = (0.2126, 0.7152, 0.0722)


def _ffprobe() -> str:
    path = shutil.which("ffprobe")
    assert path, "ffprobe is missing: scripts/setup_environment.sh installs it (apt-get install ffmpeg)"
    return path


def probe(path: Path) -> dict:
    out = subprocess.run([_ffprobe(), "-v", "error", "-show_streams", "-show_format", "-count_frames", "-of", "json",
                          str(path)], check=True, capture_output=True, text=True, timeout=60).stdout
    data = json.loads(out)
    return {"format": data["format"]["format_name"], **data["streams"][0]}


def decode(path: Path, pix_fmt: str, dtype) -> np.ndarray:
    """The first frame's samples in ``pix_fmt`` as the bundled ffmpeg decodes them (no conversion when it is the stream's)."""
    import imageio_ffmpeg

    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"], check=True, capture_output=True, timeout=60).stdout
    return np.frombuffer(raw, dtype=dtype)


@pytest.fixture(scope="module")
def view(tmp_path_factory) -> Path:
    from PIL import Image

    view = tmp_path_factory.mktemp("view")
    (view / "frames").mkdir()
    rng = np.random.default_rng(5)
    for frame in range(1, 7):
        image = np.zeros((H, BAR_W * (len(BARS) + 1), 3), np.uint8)
        for i, rgb in enumerate(BARS.values()):
            image[:, i * BAR_W : (i + 1) * BAR_W] = rgb
        image[:, len(BARS) * BAR_W :] = rng.integers(0, 256, (H, BAR_W, 3))  # texture that moves: real motion to code
        Image.fromarray(image).save(view / "frames" / f"{frame:04d}.png")
    return view


def encode(view: Path, name: str, codec: str, quality=None) -> tuple[Path, str]:
    from render_farm.job_outputs import write_video

    out = view / name
    write_video(view, list(range(1, 7)), 12, out, codec, quality)
    return out, hashlib.sha256(out.read_bytes()).hexdigest()


def bar_centres(plane: np.ndarray, width: int) -> dict[str, int]:
    """The sample at the centre of each colour bar of a (H, width) plane."""
    rows = plane.reshape(-1, width)
    scale = width // (BAR_W * (len(BARS) + 1))
    return {name: int(rows[rows.shape[0] // 2, (i * BAR_W + BAR_W // 2) * scale]) for i, name in enumerate(BARS)}


def expected_luma(rgb, black: int, span: int) -> float:
    return black + span * sum(k * c / 255.0 for k, c in zip(BT709, rgb))


@pytest.mark.parametrize("codec, file_name, stream", [
    ("h264", "video.mp4", {"codec_name": "h264", "profile": "High", "pix_fmt": "yuv420p", "color_range": "tv",
                           "color_space": "bt709", "color_transfer": "bt709", "color_primaries": "bt709"}),
    ("prores", "video.mov", {"codec_name": "prores", "profile": "HQ", "pix_fmt": "yuv422p10le", "color_range": "tv",
                             "color_space": "bt709", "color_transfer": "bt709", "color_primaries": "bt709"}),
    ("png", "video.mov", {"codec_name": "png", "pix_fmt": "rgb24", "color_range": "pc", "color_space": "gbr",
                          "color_transfer": "iec61966-2-1", "color_primaries": "bt709"}),
])
def test_each_codec_is_tagged_as_written_and_reruns_byte_identical(view, codec, file_name, stream):
    from render_farm.job_outputs import VIDEO_FILES

    assert VIDEO_FILES[codec] == file_name
    path, digest = encode(view, f"{codec}_{file_name}", codec)
    assert encode(view, f"{codec}_again_{file_name}", codec)[1] == digest  # a rerun: the same bytes
    info = probe(path)
    assert {k: info.get(k) for k in stream} == stream
    assert (info["width"], info["height"], info["r_frame_rate"], info["nb_read_frames"]) == (224, 48, "12/1", "6")
    assert info["format"] == "mov,mp4,m4a,3gp,3g2,mj2"
    width = 224
    if codec == "h264":  # 8-bit limited range: black 16, white 235; the BT.709 matrix (BT.601 would put red at 82)
        luma = bar_centres(decode(path, "yuv420p", np.uint8)[: width * H], width)
        black, span = 16, 219
    elif codec == "prores":  # 10-bit limited range: black 64, white 940
        luma = bar_centres(decode(path, "yuv422p10le", np.uint16)[: width * H], width)
        black, span = 64, 876
    else:  # lossless RGB, full range
        rgb = decode(path, "rgb24", np.uint8).reshape(H, width, 3)
        from PIL import Image

        np.testing.assert_array_equal(rgb, np.asarray(Image.open(view / "frames" / "0001.png").convert("RGB")))
        return
    for name, rgb in BARS.items():
        assert abs(luma[name] - expected_luma(rgb, black, span)) <= 1.5 * span / 219, (name, luma[name])


def test_crf_is_the_h264_quality_and_other_codecs_take_none(view):
    from render_farm.job_outputs import video_encoding

    fine, _ = encode(view, "fine.mp4", "h264", 10)
    coarse, _ = encode(view, "coarse.mp4", "h264", 40)
    assert coarse.stat().st_size < fine.stat().st_size
    params = video_encoding("h264", 23)[2]
    assert params[params.index("-crf") + 1] == "23" and params.count("-x264-params") == 1
    assert "colorprim=bt709:transfer=bt709:colormatrix=bt709" in params[params.index("-x264-params") + 1]
    with pytest.raises(ValueError, match="CRF"):
        video_encoding("prores", 20)


def test_a_codec_change_reruns_only_the_assembly_from_reduced_exrs(tmp_path, capsys):
    """One NPR render with ProRes and an EXR holding only what NPR reads; the same job as H.264 into
    another folder then reuses every passes and stylize unit from the store."""
    import OpenEXR

    template = tmp_path / "tiny.toml"
    template.write_text(TINY.replace("frame_end = 4", "frame_end = 3"))
    store = str(tmp_path / "store")
    few = 'passes.exr_channels=["normal", "class", "instance", "cryptomatte"]'
    mov = tmp_path / "mov"
    assert main(["render", str(template), "--out", str(mov), "--store", store, "--stylizer", "npr", "--json",
                 "--set", few, "--set", 'render.video_codec="prores"']) == 0
    first = json.loads(capsys.readouterr().out)
    assert (mov / "video.mov").is_file() and not (mov / "video.mp4").exists()
    assert probe(mov / "video.mov")["codec_name"] == "prores"
    manifest = json.loads((mov / "manifest.json").read_text())
    assert set(manifest["files"]) == {"video.mov", "contact_sheet.png", "cameras.json", "scene/scene.npz",
                                      "scene/layout.json", "scene/scene.glb"}
    with OpenEXR.File(str(mov / "passes" / "0002.exr"), separate_channels=True) as exr:
        channels = sorted(exr.channels())
    assert channels == manifest["passes"]["exr_channels"]
    assert "depth.Z" not in channels and "CryptoObject00.R" in channels and "normal.X" in channels

    mp4 = tmp_path / "mp4"
    assert main(["render", str(template), "--out", str(mp4), "--store", store, "--stylizer", "npr", "--json",
                 "--set", few, "--set", "render.video_quality=28"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["tasks"]["ran"] == 1 and second["tasks"]["reused"] == first["tasks"]["done"] - 1  # the assembly only
    assert (mp4 / "video.mp4").is_file() and not (mp4 / "video.mov").exists()
    assert probe(mp4 / "video.mp4")["codec_name"] == "h264"
    for frame in ("0001", "0003"):
        assert (mp4 / "frames" / f"{frame}.png").read_bytes() == (mov / "frames" / f"{frame}.png").read_bytes()
