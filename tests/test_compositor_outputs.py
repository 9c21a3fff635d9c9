"""passes/NNNN.exr as compositors read it: Cryptomatte layers (checked against the specification's
own test vectors and reference conversion, and through Blender's compositor Cryptomatte node), float
copies of the ids through OpenImageIO's oiiotool, and the ``passes.exr_channels`` /
``passes.exr_compression`` options with their validation."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from test_passes_analytic import cube_scene
from test_passes_outputs import passes_template, random_passes

REPO_ROOT = Path(__file__).resolve().parents[1]


def spec_float_id(name: str) -> float:
    """The specification's reference ``mm3hash_float`` (Cryptomatte 1.1.0, "Example code"), with its
    hash taken from the ``mmh3`` package as the spec's ``pymmh3`` is."""
    import mmh3

    hash_32 = mmh3.hash(name)  # signed, as the spec's example expects
    if hash_32 < 0:
        hash_32 = (-hash_32 - 1) ^ 0xFFFFFFFF
    mantissa = hash_32 & ((1 << 23) - 1)
    exp = min(max((hash_32 >> 23) & ((1 << 8) - 1), 1), 254) << 23
    value = struct.unpack("<f", struct.pack("<I", exp | mantissa))[0]
    return -value if hash_32 >> 31 else value


def hex_to_float(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


def labelled_scene():
    """Three named objects (two share a class) and a label image with background."""
    objects = [
        SimpleNamespace(name="sofa", instance_id=1, semantic_class_id=24),
        SimpleNamespace(name="room.floor", instance_id=2, semantic_class_id=4),
        SimpleNamespace(name="objects.crate", instance_id=3, semantic_class_id=24),
    ]
    inst = np.zeros((40, 64), np.uint32)
    inst[5:20, 5:30] = 1
    inst[22:38, 10:60] = 2
    inst[8:30, 40:50] = 3
    cls = np.array([0, 24, 4, 24], np.uint32)[inst]
    passes = random_passes(frame=3, h=40, w=64)
    passes.instance_id, passes.class_id = inst, cls
    return SimpleNamespace(objects=objects), passes


def read_exr(path):
    import OpenEXR

    with OpenEXR.File(str(path), separate_channels=True) as exr:
        header = dict(exr.header())
        channels = {name: c.pixels.copy() for name, c in exr.channels().items()}
    return header, channels


# --------------------------------------------------------------------------------------------
# Cryptomatte
# --------------------------------------------------------------------------------------------


def test_ids_and_keys_follow_the_specification():
    from passes.cryptomatte import hash_to_float_bits, layer_key, name_hash, name_id

    # The specification's manifest examples (name -> hex of the float id's bits).
    for name, hexed in (("bunny", "13851a76"), ("default", "42c9679f"), ("bunny_porcelain_mat", "b24b26d4")):
        assert f"{hash_to_float_bits(name_hash(name)):08x}" == hexed
        assert name_id(name) == np.float32(hex_to_float(hexed)) == np.float32(spec_float_id(name))
    for name in ("sofa", "room.wall_north", "objects.box1", "wall", "painting", "ünïcode"):
        assert name_id(name) == np.float32(spec_float_id(name))
    # The exponent is clamped to [1, 254]: no denormal, infinity or NaN ever becomes an id.
    assert hash_to_float_bits(0x00000001) == 0x00800001
    assert hash_to_float_bits(0x7F812345) == 0x7F012345
    assert hash_to_float_bits(0xFF800000) == 0xFF000000
    assert layer_key("bunny") == "13851a7"  # the spec's suggested key: the first 7 hex digits of the name's hash


def test_cryptomatte_layers_are_built_once_per_scene_object():
    import dataclasses

    from passes.cryptomatte import scene_layers

    scene = cube_scene(width=16, height=16)
    layers = scene_layers(scene)
    assert scene_layers(scene) is layers  # a warm worker's later frames reuse them
    header = layers[0].header()
    header.clear()  # a caller's copy: the cached header is untouched
    manifest = next(v for k, v in layers[0].header().items() if k.endswith("/manifest"))
    assert set(json.loads(manifest)) == {o.name for o in scene.objects}
    renamed = (dataclasses.replace(scene.objects[0], name="renamed"), *scene.objects[1:])
    other = dataclasses.replace(scene, objects=renamed)  # another scene object: its own layers, from its names
    manifest = next(v for k, v in scene_layers(other)[0].header().items() if k.endswith("/manifest"))
    assert set(json.loads(manifest)) == {"renamed"} | {o.name for o in scene.objects[1:]}


def test_exr_holds_both_cryptomatte_layers_with_their_manifests(tmp_path):
    from passes.pass_exr import write_passes_exr

    scene, passes = labelled_scene()
    write_passes_exr(tmp_path / "0003.exr", passes, scene)
    header, channels = read_exr(tmp_path / "0003.exr")
    names = {1: "sofa", 2: "room.floor", 3: "objects.crate"}
    classes = {1: "sofa", 2: "floor", 3: "sofa"}  # ADE20K ids 24 and 4 by the palette's first names
    layers = {}
    for key, value in header.items():
        if key.startswith("cryptomatte/") and key.endswith("/name"):
            layers[value] = key[: -len("name")]
    assert set(layers) == {"CryptoObject", "CryptoMaterial"}
    for layer, per_instance in (("CryptoObject", names), ("CryptoMaterial", classes)):
        prefix = layers[layer]
        assert header[prefix + "hash"] == "MurmurHash3_32" and header[prefix + "conversion"] == "uint32_to_float32"
        manifest = json.loads(header[prefix + "manifest"])
        assert set(manifest) == set(per_instance.values())
        rank0, cov0 = channels[f"{layer}00.R"], channels[f"{layer}00.G"]
        assert all(channels[f"{layer}00.{c}"].dtype == np.float32 for c in "RGBA")
        expected = np.zeros(passes.instance_id.shape, np.float32)
        for instance, name in per_instance.items():
            expected[passes.instance_id == instance] = spec_float_id(name)
            assert hex_to_float(manifest[name]) == np.float32(spec_float_id(name))
        np.testing.assert_array_equal(rank0, expected)
        # One exact sample per pixel: rank 0 covers the whole pixel, rank 1 is empty; background is id 0, coverage 0.
        np.testing.assert_array_equal(cov0, (passes.instance_id > 0).astype(np.float32))
        assert not channels[f"{layer}00.B"].any() and not channels[f"{layer}00.A"].any()
    # A label without a name is an error, not a silent zero.
    passes.instance_id[0, 0] = 9
    with pytest.raises(ValueError, match="no name"):
        write_passes_exr(tmp_path / "bad.exr", passes, scene)
    with pytest.raises(ValueError, match="needs the scene"):
        write_passes_exr(tmp_path / "bad.exr", passes, groups=["depth", "cryptomatte"])
    passes.instance_id[0, 0] = 1
    write_passes_exr(tmp_path / "nameless.exr", passes)  # no scene, no groups: everything but Cryptomatte
    assert not any(name.startswith("Crypto") for name in read_exr(tmp_path / "nameless.exr")[1])


_BLENDER_MATTE = textwrap.dedent("""
    import json, sys
    import bpy
    exr, width, height, out_dir, queries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    settings = scene.render.image_settings
    settings.file_format, settings.color_depth = "OPEN_EXR", "32"
    image = bpy.data.images.load(exr)
    len(image.pixels)  # load it: the node reads layers only from a loaded multilayer image
    assert image.type == "MULTILAYER", image.type
    tree = bpy.data.node_groups.new("greybox_matte", "CompositorNodeTree")
    scene.compositing_node_group = tree
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    node = tree.nodes.new("CompositorNodeCryptomatteV2")
    node.source, node.image = "IMAGE", image
    output = tree.nodes.new("NodeGroupOutput")
    tree.links.new(node.outputs["Matte"], output.inputs[0])
    for i, (layer, names) in enumerate(queries):
        node.layer_name = layer
        node.matte_id = names  # Blender hashes the names itself
        scene.render.filepath = f"{out_dir}/matte_{i}.exr"
        bpy.ops.render.render(write_still=True)
    print("MATTES", len(queries))
""")


@pytest.mark.skipif(int(version("bpy").split(".")[0]) < 5,
                    reason="the compositor's Python API (compositing_node_group, group output) is Blender 5's")
def test_blenders_cryptomatte_node_picks_each_object_by_name(tmp_path):
    from passes.blender_render import PassRenderer
    from passes.render_chunk import write_frame_outputs

    scene = cube_scene()  # "cube" (table) on "floor" (floor), with background
    passes = PassRenderer(scene, threads=2).render(2)
    write_frame_outputs(tmp_path, scene, passes, passes_template(control=["seg"]), None)
    exr = tmp_path / "passes" / "0002.exr"
    queries = [("CryptoObject", "cube"), ("CryptoObject", "floor"), ("CryptoObject", "cube, floor"),
               ("CryptoMaterial", "table"), ("CryptoObject", "nothing_by_this_name")]
    expected = [passes.instance_id == 1, passes.instance_id == 2, passes.instance_id > 0,
                passes.class_id == 16, np.zeros(passes.instance_id.shape, bool)]
    assert 0 < expected[0].sum() < expected[2].sum() < passes.instance_id.size  # both objects and background in view
    proc = subprocess.run([sys.executable, "-c", _BLENDER_MATTE, str(exr), str(scene.width), str(scene.height),
                           str(tmp_path), json.dumps(queries)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and "MATTES 5" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    for i, want in enumerate(expected):
        _, channels = read_exr(tmp_path / f"matte_{i}.exr")
        matte = channels["R"]
        assert matte.shape == want.shape
        np.testing.assert_array_equal(matte, want.astype(np.float32), err_msg=str(queries[i]))


# --------------------------------------------------------------------------------------------
# Ids that survive OpenImageIO
# --------------------------------------------------------------------------------------------


def _oiiotool() -> str:
    path = shutil.which("oiiotool")
    assert path, "oiiotool is missing: scripts/setup_environment.sh installs it (apt-get install openimageio-tools)"
    return path


def test_float_id_copies_and_cryptomatte_survive_oiiotool(tmp_path):
    from passes.pass_exr import write_passes_exr

    scene, passes = labelled_scene()
    write_passes_exr(tmp_path / "0003.exr", passes, scene)
    subprocess.run([_oiiotool(), str(tmp_path / "0003.exr"),
                    "--ch", "instance.id,instance_float.id,class_float.id,CryptoObject00.R,CryptoObject00.G,"
                    "CryptoObject00.B,CryptoObject00.A", "-d", "float", "-o", str(tmp_path / "converted.exr")],
                   check=True, capture_output=True, timeout=60)
    header, channels = read_exr(tmp_path / "converted.exr")
    ids = passes.instance_id.astype(np.float64)
    # OpenImageIO reads uint32 as normalised floats: the uint32 channel's ids are gone ...
    np.testing.assert_allclose(channels["instance.id"], ids / 4294967295.0, rtol=1e-6)
    assert channels["instance.id"].max() < 1e-9
    # ... the float copies arrive exactly, and so do the Cryptomatte ids and their manifest.
    np.testing.assert_array_equal(channels["instance_float.id"], ids.astype(np.float32))
    np.testing.assert_array_equal(channels["class_float.id"], passes.class_id.astype(np.float32))
    _, original = read_exr(tmp_path / "0003.exr")
    np.testing.assert_array_equal(channels["CryptoObject00.R"], original["CryptoObject00.R"])
    manifests = [json.loads(v) for k, v in header.items() if k.endswith("/manifest")]
    assert {"sofa", "room.floor", "objects.crate"} in [set(m) for m in manifests]


# --------------------------------------------------------------------------------------------
# passes.exr_channels and passes.exr_compression
# --------------------------------------------------------------------------------------------


def test_exr_channels_keep_only_the_groups_asked_for_and_read_back_as_none(tmp_path):
    from passes.pass_exr import exr_channel_names, read_passes_exr, write_passes_exr

    scene, passes = labelled_scene()
    write_passes_exr(tmp_path / "few.exr", passes, scene, groups=["depth", "instance", "cryptomatte"])
    _, channels = read_exr(tmp_path / "few.exr")
    assert sorted(channels) == exr_channel_names(["depth", "instance", "cryptomatte"]) == sorted(
        ["depth.Z", "instance.id"] + [f"{layer}00.{c}" for layer in ("CryptoObject", "CryptoMaterial") for c in "RGBA"])
    back = read_passes_exr(tmp_path / "few.exr")
    np.testing.assert_array_equal(back.depth, passes.depth)
    np.testing.assert_array_equal(back.instance_id, passes.instance_id)
    assert back.normal is None and back.flow_backward is None and back.uv is None and back.class_id is None
    assert (back.height, back.width) == (40, 64)
    # Uncompressed scanlines: the pixel bytes plus a header and 16 bytes a line (offset table, line header).
    write_passes_exr(tmp_path / "full.exr", passes, scene)
    h, w = passes.instance_id.shape
    for name, bytes_per_pixel in (("few.exr", 4 + 4 + 2 * 16), ("full.exr", 13 * 4 + 2 * 4 + 2 * 16)):
        overhead = (tmp_path / name).stat().st_size - h * w * bytes_per_pixel
        assert 16 * h <= overhead < 16 * h + 4096, (name, overhead)


@pytest.mark.parametrize("compression", ["zip", "piz", "zstd"])
def test_lossless_compression_round_trips_exactly(tmp_path, compression):
    import OpenEXR

    from passes.pass_exr import read_passes_exr, write_passes_exr

    scene, passes = labelled_scene()
    plain = write_passes_exr(tmp_path / "plain.exr", passes, scene)
    assert plain == write_passes_exr(tmp_path / "again.exr", passes, scene, compression="none")  # default unchanged
    digest = write_passes_exr(tmp_path / "packed.exr", passes, scene, compression=compression)
    assert digest == write_passes_exr(tmp_path / "packed_again.exr", passes, scene, compression=compression)
    assert digest != plain
    with OpenEXR.File(str(tmp_path / "packed.exr")) as exr:  # default reading groups each layer's channels
        assert exr.header()["compression"] == getattr(OpenEXR, f"{compression.upper()}_COMPRESSION")
    a, b = read_passes_exr(tmp_path / "plain.exr"), read_passes_exr(tmp_path / "packed.exr")
    for field in ("depth", "normal", "flow_forward", "flow_backward", "instance_id", "class_id", "uv"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert read_exr(tmp_path / "plain.exr")[1].keys() == read_exr(tmp_path / "packed.exr")[1].keys()


def test_the_pass_groups_match_the_schema():
    from passes.frame_passes import EXR_GROUPS
    from scenes.template_schema import EXR_CHANNEL_GROUPS, EXR_COMPRESSIONS, EXR_GROUPS_NEEDED_BY
    from passes.pass_exr import COMPRESSIONS

    assert tuple(EXR_GROUPS) == EXR_CHANNEL_GROUPS
    assert tuple(COMPRESSIONS) == EXR_COMPRESSIONS
    assert all(set(groups) <= set(EXR_GROUPS) for groups in EXR_GROUPS_NEEDED_BY.values())


@pytest.mark.parametrize("overrides, message", [
    (['passes.exr_channels=["depth", "flow"]'],
     "passes.exr_channels = [\"depth\", \"flow\"]: leaves out 'normal', 'class', 'instance', which the NPR stylizer "
     "(style.stylizer = 'npr') reads from passes/NNNN.exr; add 'normal', 'class', 'instance' to passes.exr_channels "
     "or set style.stylizer = 'diffusion'"),
    (['style.stylizer="diffusion"', 'style.consistency.mode="flow_warp"', 'passes.exr_channels=["depth", "instance"]'],
     "leaves out 'flow', 'uv', which consistency mode 'flow_warp' (style.consistency.mode) reads"),
    (['style.stylizer="diffusion"', 'style.consistency.mode="keyframes"', 'passes.exr_channels=["flow", "uv", "instance"]'],
     "leaves out 'depth', which consistency mode 'keyframes'"),
    (['style.stylizer="diffusion"', 'style.init_image="npr_draft"', 'passes.exr_channels=["depth"]'],
     "which the NPR drafts of style.init_image = 'npr_draft' reads from passes/NNNN.exr; add 'normal', 'class', "
     "'instance' to passes.exr_channels or set style.init_image = 'none'"),
    (['passes.exr_channels=["depth", "normal", "class", "instance", "normal"]'], "lists normal more than once"),
    (['passes.exr_channels=["depth", "motion"]'], "passes.exr_channels.1 = 'motion': must be one of 'depth', 'normal'"),
    (['passes.exr_channels=[]'], "passes.exr_channels = []: needs at least 1 item"),
    (['passes.exr_compression="dwaa"'], "passes.exr_compression = 'dwaa': 'dwaa' is lossy"),
    (['passes.exr_compression="pxr24"'], "use one of none, rle, zips, zip, piz, zstd"),
    (['passes.exr_compression="lzma"'], "passes.exr_compression = 'lzma': must be one of 'none', 'rle'"),
])
def test_validation_refuses_exr_options_a_later_stage_cannot_live_with(overrides, message):
    from greybox.errors import InputError
    from scenes.template_loading import load_template

    with pytest.raises(InputError) as err:
        load_template("living_room", overrides)
    assert message in str(err.value)
    assert all(p["key"].startswith("passes.exr_") for p in err.value.problems)


def test_validation_accepts_what_the_stages_need():
    from scenes.template_loading import load_template

    ok = [
        ['passes.exr_channels=["normal", "class", "instance"]'],  # NPR per frame
        ['style.stylizer="diffusion"', 'passes.exr_channels=["depth"]'],  # diffusion reads control images only
        ['style.stylizer="diffusion"', 'style.consistency.mode="flow_warp"', 'passes.exr_channels=["flow", "uv", "instance"]'],
        ['style.stylizer="diffusion"', 'style.consistency.mode="keyframes"', 'style.init_image="npr_draft"',
         'passes.exr_channels=["depth", "uv", "instance"]'],  # npr_draft applies to per_frame only
        ['passes.exr_compression="zip"'],
    ]
    for overrides in ok:
        load_template("living_room", overrides)
    default = load_template("living_room").template.passes
    assert default.exr_compression == "none" and default.exr_channels == [
        "depth", "normal", "flow", "instance", "class", "uv", "float_ids", "cryptomatte"]


def test_the_memory_estimate_follows_what_the_exr_writer_holds():
    from passes.pass_exr import writer_bytes_per_pixel
    from render_farm.task_memory import CALIBRATED_EXR_GROUPS, estimate_peak_bytes

    # Counted by hand: the file's 4-byte planes, copies of the 8 multi-component planes (normal,
    # flow, uv), and what the writer derives (float ids 2 planes, Cryptomatte 2 id planes + coverage + zeros).
    assert writer_bytes_per_pixel(CALIBRATED_EXR_GROUPS) == 4 * 13 + 4 * 10
    assert writer_bytes_per_pixel() == 4 * (13 + 2 + 8) + 4 * 10 + 4 * 2 + 4 * 4
    assert writer_bytes_per_pixel(["normal", "class", "instance"]) == 4 * 5 + 4 * 3
    side = 2048
    calibrated = estimate_peak_bytes("passes", side, side)
    assert estimate_peak_bytes("passes", side, side, exr_channels=CALIBRATED_EXR_GROUPS) == calibrated
    assert estimate_peak_bytes("passes", side, side, exr_channels=["normal", "class", "instance"]) == calibrated
    default = estimate_peak_bytes("passes", side, side, exr_channels=list(CALIBRATED_EXR_GROUPS) + ["float_ids", "cryptomatte"])
    assert default >= 1.68e9  # measured with benchmarks/task_memory.py at 2048^2 with every group: never under
    assert default - calibrated == 64 * side * side
