"""Looks (issue 15), end to end through the job runner with NPR (no weights): which units rerun when only a
brand colour changes, a look reused across two shots and its figure, look ids in the keys (the same
request gives the same bytes whatever other looks the store holds), looks chained in one command,
``--stylizer baked`` at zero denoising steps, and ``scene/textured.glb`` re-read by Blender's importer.

The tiny-model counterparts (brand figures) are in tests/test_brand_colours.py; benchmarks/looks.py
measures the living room."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli_commands import TINY

# the second shot: the same scene seen from further round (30..90 degrees, the first sees 0..40)
TINY_B = TINY.replace("start_angle = 0.0", "start_angle = 30.0").replace("end_angle = 40.0", "end_angle = 90.0")
BRAND = '\n[[style.brand_colors]]\ntarget = "box1"\ncolor = "{}"\n'


@pytest.fixture(scope="module")
def executor():
    from render_farm.local_executor import LocalExecutor

    ex = LocalExecutor(1)
    yield ex
    ex.shutdown()


@pytest.fixture(scope="module")
def shots(tmp_path_factory, executor):
    """Shot A (keyframes, NPR) rendered into a store, and shot B starting from A's look (by folder)."""
    root = tmp_path_factory.mktemp("looks")
    (root / "a.toml").write_text(TINY)
    (root / "b.toml").write_text(TINY_B)
    store = root / "store"
    summary_a = _run(root, executor, ["a.toml"], "a", store)
    summary_b = _run(root, executor, ["b.toml"], "b", store, overrides=[f"style.look.from={root / 'a'}"])
    return root, store, summary_a, summary_b


def _run(root: Path, executor, templates, out, store, **request) -> dict:
    from render_farm.job_execution import run_job
    from render_farm.job_request import JobRequest

    request.setdefault("stylizer", "npr")
    request.setdefault("consistency", "keyframes")
    job = JobRequest(command="render", templates=[str(root / t) for t in templates], **request)
    return run_job(job, root / out, store=store, executor=executor, progress=False).to_json()


def _frames(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "frames").glob("*.png"))}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_a_brand_colour_change_replays_the_generation_and_reruns_only_its_atlas(shots, executor, tmp_path):
    root, store, summary_a, _ = shots
    assert summary_a["units"]["look"] == {"ran": 5, "reused": 0}  # generation, floor, box1, environment, look
    (root / "a_blue.toml").write_text(TINY + BRAND.format("#1F4E79"))
    (root / "a_red.toml").write_text(TINY + BRAND.format("#C8102E"))
    for name in ("a_blue", "a_red"):
        summary = _run(root, executor, [f"{name}.toml"], name, store)
        # the generation, the floor's and the environment's atlases are reused; box1's atlas and the look rerun
        assert summary["units"]["look"] == {"ran": 2, "reused": 3}, summary["units"]
        assert summary["units"]["passes"] == {"ran": 0, "reused": 4}
        assert summary["units"]["stylize"] == {"ran": 4, "reused": 0}  # every frame shows box1
    plain, red = _manifest(root / "a")["look"], _manifest(root / "a_red")["look"]
    assert red["generation_key"] == plain["generation_key"] and red["id"] != plain["id"]
    for name in ("floor", "~environment"):
        assert red["atlases"][name]["key"] == plain["atlases"][name]["key"]
    assert red["atlases"]["box1"]["key"] != plain["atlases"]["box1"]["key"] and red["atlases"]["box1"]["brand"] == "#C8102E"
    # the replay gives the bytes a regeneration from an empty store gives
    _run(root, executor, ["a_red.toml"], "a_red_fresh", tmp_path / "empty_store")
    assert _frames(root / "a_red") == _frames(root / "a_red_fresh")
    assert _frames(root / "a_red") != _frames(root / "a")
    # a shot starting from the red look keeps box1's red texels bit for bit (the same colour, the same lightness fit)
    from stylize.look_atlases import read_look

    _run(root, executor, ["b.toml"], "b_from_red", store, overrides=[f"style.look.from={root / 'a_red'}"])
    red_box, inherited_box = read_look(root / "a_red").atlases["box1"], read_look(root / "b_from_red").atlases["box1"]
    assert inherited_box.brand == "#C8102E" and red_box.stats["lightness_fit"] == inherited_box.stats["lightness_fit"]
    np.testing.assert_array_equal(inherited_box.colour[red_box.known], red_box.colour[red_box.known])


def test_a_shot_starting_from_a_look_keeps_its_colours(shots):
    from passes.pass_exr import read_passes_exr
    from stylize.look_atlases import read_look
    from stylize.warp_error import cross_shot_difference

    root, _, _, summary_b = shots
    look_a, look_b = read_look(root / "a"), read_look(root / "b")
    manifest_b = _manifest(root / "b")
    assert manifest_b["look"]["from"]["id"] == look_a.id and manifest_b["look"]["from"]["kind"] == "folder"
    assert look_b.id == manifest_b["look"]["id"] != look_a.id
    # every texel A's look saw is B's, bit for bit; B adds what A never saw
    added = 0
    for name, atlas_a in look_a.atlases.items():
        atlas_b = look_b.atlases[name]
        assert (atlas_b.known >= atlas_a.known).all()
        np.testing.assert_array_equal(atlas_b.colour[atlas_a.known], atlas_a.colour[atlas_a.known])
        added += int(atlas_b.known.sum() - atlas_a.known.sum())
    assert added > 0  # B's camera saw more of the floor and the background
    # the figure: over pixels of the same surface point in both, at most A's long-range E_warp
    def shot(folder):
        files = sorted((folder / "frames").glob("*.png"))
        from PIL import Image

        return ([np.asarray(Image.open(f).convert("RGB")) for f in files],
                [read_passes_exr(folder / "passes" / f"{f.stem}.exr") for f in files])

    frames_a, passes_a = shot(root / "a")
    frames_b, passes_b = shot(root / "b")
    sizes = {a.instance_id: int(a.colour.shape[0]) for a in look_a.atlases.values() if a.instance_id > 0}
    figure = cross_shot_difference(frames_a, passes_a, frames_b, passes_b, sizes)
    long_range = _manifest(root / "a")["consistency"]["warp_error"]["long_mae"]
    assert figure["pixels"] > 1000 and figure["matched_fraction"] > 0.3, figure
    assert figure["mae"] <= long_range, (figure, long_range)
    # an independent, stricter reading of the same figure: pixels in the very same texel of both shots
    def by_texel(frames, passes):
        out = {}
        for image, p in zip(frames, passes):
            sel = (p.instance_id > 0) & (p.uv[..., 2] >= 1.0)
            for (y, x) in zip(*np.nonzero(sel)):
                i = int(p.instance_id[y, x])
                s = sizes[i]
                key = (i, int(p.uv[y, x, 0] * s), int(p.uv[y, x, 1] * s))
                out.setdefault(key, image[y, x].astype(float) / 255.0)
        return out

    texels_a = by_texel(frames_a, passes_a)
    texels_b = by_texel(frames_b, passes_b)
    common = sorted(set(texels_a) & set(texels_b))
    assert len(common) > 200
    assert float(np.mean([np.abs(texels_a[k] - texels_b[k]).mean() for k in common])) <= long_range


def test_the_look_id_is_an_input_other_looks_in_the_store_change_nothing(shots, executor, tmp_path):
    root, store, _, _ = shots
    look_a = _manifest(root / "a")["look"]["id"]
    # another store holding A and other looks (a brand colour, another camera path), then B from A
    other = tmp_path / "store"
    (tmp_path / "a.toml").write_text(TINY)
    (tmp_path / "a_green.toml").write_text(TINY + BRAND.format("#2E8B57"))
    (tmp_path / "b.toml").write_text(TINY_B)
    _run(tmp_path, executor, ["a_green.toml"], "a_green", other)
    _run(tmp_path, executor, ["b.toml"], "b_alone", other)
    _run(tmp_path, executor, ["a.toml"], "a", other)
    assert _manifest(tmp_path / "a")["look"]["id"] == look_a
    by_id = _run(tmp_path, executor, ["b.toml"], "b_by_id", other, overrides=[f"style.look.from={look_a}"])
    assert by_id["units"]["look"]["ran"] == 5  # nothing of B-from-A was in this store
    assert _frames(tmp_path / "b_by_id") == _frames(root / "b")
    assert _manifest(tmp_path / "b_by_id")["look"]["id"] == _manifest(root / "b")["look"]["id"]
    assert _frames(tmp_path / "b_alone") != _frames(root / "b")  # the source look is what made B's frames


def test_looks_chain_in_one_command_in_a_recorded_order(shots, executor):
    root, store, _, _ = shots
    (root / "b_prev.toml").write_text(TINY_B.replace('name = "tiny"', 'name = "tiny_b"')
                                      + '\n[style.look]\nfrom = "previous"\n')
    _run(root, executor, ["a.toml", "b_prev.toml"], "chain", store)
    shots_dirs = sorted(p.parent for p in (root / "chain").glob("*/manifest.json"))
    assert len(shots_dirs) == 2
    first, second = (_manifest(d) for d in shots_dirs)
    if first["look"].get("from"):
        first, second = second, first
    assert first["look"]["id"] == _manifest(root / "a")["look"]["id"]  # the same request, the same look
    assert second["look"]["from"]["kind"] == "previous" and second["look"]["from"]["id"] == first["look"]["id"]
    assert second["look"]["id"] == _manifest(root / "b")["look"]["id"]  # as B from A's folder


def test_baked_renders_another_camera_path_from_a_look_with_zero_steps(shots, executor):
    from stylize.look_atlases import read_look

    root, store, _, _ = shots
    summary = _run(root, executor, ["b.toml"], "b_baked", store, stylizer="baked", consistency=None,
                   overrides=[f"style.look.from={root / 'a'}"])
    assert summary["units"]["passes"] == {"ran": 0, "reused": 4}  # B's passes were rendered before
    manifest = _manifest(root / "b_baked")
    consistency = manifest["consistency"]
    assert consistency["mode"] == "baked" and consistency["denoising_steps"] == 0
    assert set(consistency["denoising_steps_by_frame"].values()) == {0} and consistency["generated_frames"] == []
    look, source = manifest["look"], read_look(root / "a")
    assert look["from"]["id"] == source.id
    assert "push-pull" in look["fill"]["never_seen_texels"]
    for name, atlas in source.atlases.items():  # nothing generated: the look's texels are the source's
        entry = look["atlases"][name]
        assert entry["seen"] == atlas.stats["seen"] <= int(atlas.known.sum())  # seen: inside the UV islands
        assert entry["never_seen"] == entry["texels"] - entry["seen"] and entry["inherited"] == entry["seen"]
        assert entry["texels"] <= atlas.known.size
    assert look["never_seen_texels"] == sum(e["never_seen"] for e in look["atlases"].values()) > 0
    # with no generation, the baked frames are B's frames from A's look wherever A saw the surface
    assert _frames(root / "b_baked").keys() == _frames(root / "b").keys()


def test_textured_glb_reimports_with_each_atlas_as_base_colour(shots):
    import bpy

    from stylize.look_atlases import read_look

    root, _, _, _ = shots
    look = read_look(root / "a")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(root / "a" / "scene" / "textured.glb"))
    meshes = {o.name: o for o in bpy.context.scene.objects if o.type == "MESH"}
    assert sorted(meshes) == ["box1", "floor"]
    for name, obj in meshes.items():
        material = obj.active_material
        assert material is not None and material.node_tree is not None, name
        bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        links = bsdf.inputs["Base Color"].links
        assert links and links[0].from_node.type == "TEX_IMAGE", name
        image = links[0].from_node.image
        atlas = look.atlases[name]
        assert tuple(image.size) == (atlas.colour.shape[1], atlas.colour.shape[0])
        assert len(obj.data.uv_layers) >= 1
        # Blender's pixels are bottom-up floats; the atlas is 16-bit: compare at 8 bits
        pixels = np.array(image.pixels[:], dtype=np.float32).reshape(image.size[1], image.size[0], 4)[..., :3]
        expected = np.clip(np.rint(atlas.colour * 255.0), 0, 255)
        got = np.rint(pixels * 255.0)
        assert np.abs(got - expected).max() <= 1 or np.abs(got[::-1] - expected).max() <= 1, name
