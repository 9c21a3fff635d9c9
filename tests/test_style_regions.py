"""Region prompts and reference images without model weights: the keys, their validation, the build
check, confined and hashed reference images, the mask rule against a brute-force oracle, and the
store keys a region change reruns."""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from greybox.errors import InputError
from scenes.style_regions import Targets, resolve_targets, scene_objects, target_problems, touching
from scenes.template_loading import load_template
from scenes.template_schema import StyleSpec
from stylize.region_masks import attention_grids, attention_weights, frame_direction, level_weights, owner_map

SHOT = textwrap.dedent("""\
    schema_version = 1
    name = "lamp"
    seed = 3

    [generator]
    kind = "none"

    [[objects]]
    name = "floor"
    primitive = "plane"
    position = [0.0, 0.0, 0.0]
    size = [8.0, 8.0]
    class = "floor"

    [[objects]]
    name = "box1"
    primitive = "box"
    position = [0.0, 0.0, 0.5]
    size = [1.0, 1.0, 1.0]
    class = "table"

    [[objects]]
    name = "lamp"
    primitive = "box"
    position = [0.0, 2.6, 0.6]
    size = [0.6, 0.6, 1.2]
    class = "lamp"

    [camera]
    focal_length = 50.0

    [camera.path]
    kind = "orbit"
    center = [0.0, 0.0, 0.5]
    radius = 5.0
    height = 2.0
    start_angle = 0.0
    end_angle = 270.0

    [render]
    resolution = [32, 32]
    frame_start = 1
    frame_end = 4

    [passes]
    control = ["depth", "seg"]
""")
REGIONS = textwrap.dedent("""\

    [style]
    stylizer = "diffusion"
    prompt = "a room"

    [[style.regions]]
    objects = ["lamp"]
    prompt = "a brass lamp"

    [[style.regions]]
    classes = ["table"]
    objects = ["box*"]
    prompt = "an oak table"
    negative_prompt = "plastic"

    [[style.reference_images]]
    image = "refs/mood.png"
    scale = 0.6

    [[style.reference_images]]
    image = "refs/fabric.png"
    objects = ["lamp"]

    [style.ip_adapter]
    model = "h94/IP-Adapter"
    subfolder = "models"
    weight_name = "ip-adapter_sd15.safetensors"
    image_encoder = ""
""")


def write_shot(folder: Path, extra: str = REGIONS, images: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "shot.toml"
    path.write_text(SHOT + extra)
    if images:
        from PIL import Image

        (folder / "refs").mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        for name in ("mood.png", "fabric.png"):
            Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(folder / "refs" / name)
    return path


# --------------------------------------------------------------------------------------------
# The keys and their validation
# --------------------------------------------------------------------------------------------


def test_the_keys_as_the_issue_spells_them(tmp_path):
    style = load_template(str(write_shot(tmp_path))).template.style
    assert [r.prompt for r in style.regions] == ["a brass lamp", "an oak table"]
    assert style.regions[1].objects == ["box*"] and style.regions[1].classes == ["table"]
    assert style.regions[1].negative_prompt == "plastic"
    assert [(r.image, r.scale, r.masked) for r in style.reference_images] == [("refs/mood.png", 0.6, False),
                                                                             ("refs/fabric.png", 1.0, True)]
    adapter = style.ip_adapter
    assert (adapter.model, adapter.subfolder, adapter.weight_name, adapter.image_encoder) == (
        "h94/IP-Adapter", "models", "ip-adapter_sd15.safetensors", "")


@pytest.mark.parametrize("override, key, fragment", [
    ('style.regions=[{prompt = "x"}]', "style.regions.0", "names no objects and no classes"),
    ('style.regions=[{objects = ["sofa"], prompt = ""}]', "style.regions.0.prompt", "at least 1"),
    ('style.regions=[{classes = ["sofaa"], prompt = "x"}]', "style.regions.0.classes", "unknown semantic class 'sofaa'"),
    ('style.regions=[{objects = ["so fa"], prompt = "x"}]', "style.regions.0.objects", "glob characters"),
    ('style.regions=[{objects = ["sofa", "sofa"], prompt = "x"}]', "style.regions.0.objects", "more than once"),
    ('style.regions=[{objects = ["sofa"], prompt = "x", colour = 1}]', "style.regions.0.colour", "unknown key"),
    ('style.reference_images=[{image = "refs/mood.gif"}]', "style.reference_images.0.image", "not an image"),
    ('style.reference_images=[{image = "a.png", scale = 0.0}]', "style.reference_images.0.scale", "greater than 0"),
    ('style.reference_images=[{image = "a.png", classes = ["nope"]}]', "style.reference_images.0.classes", "unknown semantic class"),
    ('style.ip_adapter.weight_name="ip-adapter_sd15.bin"', "style.ip_adapter.weight_name", "safetensors"),
    ('style.ip_adapter.subfolder="../models"', "style.ip_adapter.subfolder", "inside style.ip_adapter.model"),
    ('passes.exr_channels=["depth", "normal"]', "passes.exr_channels", "'instance', 'class'"),
])
def test_bad_keys_name_the_key_the_value_and_the_fix(tmp_path, override, key, fragment):
    with pytest.raises(InputError) as info:
        load_template(str(write_shot(tmp_path, images=False)), [override])
    found = {p["key"]: p["message"] for p in info.value.problems}
    assert key in found, found
    assert fragment in found[key]


def test_globs_and_classes_resolve_against_the_layout():
    style = StyleSpec.model_validate({"regions": [{"objects": ["chair_*"], "prompt": "a"},
                                                  {"classes": ["table"], "objects": ["sofa"], "prompt": "b"}],
                                      "reference_images": [{"image": "x.png"}, {"image": "y.png", "objects": ["chair_2"]}]})
    objects = [("chair_1", 4, 20), ("chair_2", 5, 20), ("sofa", 7, 24), ("desk", 9, 16), ("Chair_3", 10, 20)]
    (chairs, tables), (whole, masked) = resolve_targets(style, objects)
    assert chairs == Targets(frozenset({4, 5}), frozenset())  # case-sensitive: Chair_3 is not chair_*
    assert tables.instance_ids == {7} and tables.class_ids == {16}
    assert whole.whole_frame and masked.instance_ids == {5} and not masked.whole_frame
    assert touching([chairs, tables], [whole, masked], instances=[7], classes=[24]) == {"regions": [1], "reference_images": [0]}
    assert touching([chairs, tables], [whole, masked], instances=[5], classes=[20]) == {"regions": [0], "reference_images": [0, 1]}
    assert touching([chairs, tables], [whole, masked], instances=[9], classes=[16]) == {"regions": [1], "reference_images": [0]}
    problems = target_problems(StyleSpec.model_validate(
        {"regions": [{"objects": ["sofa", "lamp*"], "classes": ["bed"], "prompt": "a"}]}), objects)
    assert [(k, v) for k, v, _ in problems] == [("style.regions.0.objects.1", "lamp*"), ("style.regions.0.classes.0", "bed")]
    assert "chair_1" in problems[0][2] and "table" in problems[1][2]


def test_the_build_check_refuses_globs_that_match_nothing_before_anything_is_written(tmp_path, capsys):
    from render_farm.cli import main

    path = write_shot(tmp_path / "t")
    out, store = tmp_path / "out", tmp_path / "store"
    args = ["render", str(path), "--out", str(out), "--store", str(store)]
    assert main(args + ["--set", 'style.regions.0.objects=["lampp"]']) == 2
    err = capsys.readouterr().err
    assert "style.regions.0.objects.0 = 'lampp': matches no object of the scene" in err and "lamp" in err
    assert not out.exists() and not store.exists()
    assert main(args + ["--set", 'style.reference_images.1.classes=["bed"]']) == 2
    assert "style.reference_images.1.classes.0 = 'bed': no object of the scene has class 'bed'" in capsys.readouterr().err
    assert not out.exists() and not store.exists()
    assert main(["validate", str(path), "--set", 'style.regions.1.objects=["chair"]', "--json"]) == 2
    assert json.loads(capsys.readouterr().out)[0]["key"] == "style.regions.1.objects.0"
    assert main(["validate", str(path)]) == 0


# --------------------------------------------------------------------------------------------
# Reference images: confined like asset paths, read, hashed
# --------------------------------------------------------------------------------------------


def test_reference_images_are_confined_read_and_hashed(tmp_path):
    from scenes.reference_images import reference_image_files

    path = write_shot(tmp_path / "t")
    template = load_template(str(path)).template
    files = reference_image_files(template, str(path))
    assert [f.image for f in files] == ["refs/mood.png", "refs/fabric.png"]
    assert files[0].sha256 == hashlib.sha256((tmp_path / "t/refs/mood.png").read_bytes()).hexdigest()
    assert (files[0].width, files[0].height) == (20, 24)

    outside = tmp_path / "elsewhere.png"
    outside.write_bytes((tmp_path / "t/refs/mood.png").read_bytes())
    (tmp_path / "t/refs/link.png").symlink_to(outside)
    (tmp_path / "t/refs/text.png").write_text("not an image")
    inside_link = tmp_path / "t/refs/alias.png"
    inside_link.symlink_to(tmp_path / "t/refs/mood.png")
    cases = {"refs/link.png": "through a symbolic link", "../elsewhere.png": "outside the template's folder",
             str(outside): "outside the template's folder", "refs/missing.png": "no such file",
             "refs/text.png": "not an image Pillow can read"}
    for image, fragment in cases.items():
        bad = load_template(str(path), [f'style.reference_images.0.image="{image}"']).template
        with pytest.raises(InputError) as info:
            reference_image_files(bad, str(path))
        assert info.value.problems[0]["key"] == "style.reference_images.0.image" and fragment in str(info.value), image
    alias = load_template(str(path), ['style.reference_images.0.image="refs/alias.png"']).template
    assert reference_image_files(alias, str(path))[0].sha256 == files[0].sha256  # a link inside the folder is fine


def test_a_reference_image_outside_the_folder_stops_the_job_before_anything_is_written(tmp_path, capsys):
    from render_farm.cli import main

    path = write_shot(tmp_path / "t")
    os.symlink("/etc/hostname", tmp_path / "t/refs/host.png")
    out, store = tmp_path / "out", tmp_path / "store"
    code = main(["render", str(path), "--out", str(out), "--store", str(store),
                 "--set", 'style.reference_images.0.image="refs/host.png"'])
    assert code == 2 and "style.reference_images.0.image" in capsys.readouterr().err
    assert not out.exists() and not store.exists()


# --------------------------------------------------------------------------------------------
# The mask rule, against a brute-force oracle
# --------------------------------------------------------------------------------------------


def brute_force_weights(owner: np.ndarray, prompts: int, cell: int) -> np.ndarray:
    """Per cell of side ``cell`` output pixels (cut at the image's edge), the share of each prompt,
    by walking the pixels one by one."""
    height, width = owner.shape
    rows, cols = -(-height // cell), -(-width // cell)
    out = np.zeros((prompts, rows * cols))
    for r in range(rows):
        for c in range(cols):
            pixels = [owner[y, x] for y in range(r * cell, min((r + 1) * cell, height))
                      for x in range(c * cell, min((c + 1) * cell, width))]
            for p in range(prompts):
                out[p, r * cols + c] = sum(1 for v in pixels if v == p) / len(pixels)
    return out


def test_a_32_pixel_object_at_512_keeps_its_prompt_at_every_level():
    owner = np.zeros((512, 512), np.int16)
    owner[200:232, 296:328] = 1  # 32 x 32 on the latent grid, across two 64-pixel cells of the 8x8 level
    weights = attention_weights(owner, 2)
    assert sorted(weights) == [4, 16, 64, 256, 1024, 4096]  # 64x64 (the latent grid) down to 2x2
    for rows, cols, cell in attention_grids(512, 512):
        w = weights[rows * cols]
        assert np.allclose(w, brute_force_weights(owner, 2, cell), atol=1e-7), cell
        assert np.allclose(w.sum(axis=0), 1.0)
        inside = owner == 1
        for idx in np.flatnonzero(w[1] > 0):  # never past the cells the object's own pixels reach
            r, c = divmod(idx, cols)
            assert inside[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell].any()
    assert (weights[4096][1] == 1.0).sum() == 16  # 4x4 latent cells wholly inside, at full weight
    assert weights[64][1].max() <= 0.25  # the 8x8 level alone holds it at most at a quarter of a cell


def test_owner_map_last_region_wins_and_non_square_grids():
    rng = np.random.default_rng(5)
    instance = rng.integers(0, 6, (48, 80)).astype(np.uint32)
    classes = (instance * 3).astype(np.uint32)
    regions = [Targets(frozenset({1, 2}), frozenset()), Targets(frozenset(), frozenset({6})), Targets(frozenset({5}), frozenset())]
    owner = owner_map(instance, classes, regions)
    expected = np.zeros_like(owner)
    for k, t in enumerate(regions):
        expected[np.isin(instance, list(t.instance_ids)) | np.isin(classes, list(t.class_ids))] = k + 1
    assert np.array_equal(owner, expected) and (owner[instance == 2] == 2).all()  # class 6 is instance 2: region 2 wins
    for rows, cols, cell in attention_grids(48, 80):
        assert np.allclose(level_weights(owner, 4, rows, cols, cell), brute_force_weights(owner, 4, cell), atol=1e-7)
    assert attention_grids(48, 80)[:3] == [(6, 10, 8), (3, 5, 16), (2, 3, 32)]
    direction = frame_direction(3, instance, classes, regions, [Targets(frozenset(), frozenset(), True),
                                                                Targets(frozenset({99}), frozenset())])
    assert direction.regions == (0, 1, 2) and direction.references == (0,) and direction.masked == ()
    hidden = frame_direction(3, np.where(instance == 5, 0, instance).astype(np.uint32), classes, regions, [])
    assert hidden.regions == (0, 1) and hidden.owner.max() == 2  # region 2 not shown: the frame does not name it


# --------------------------------------------------------------------------------------------
# Keys: what a region touches
# --------------------------------------------------------------------------------------------


def test_stylize_keys_change_only_for_the_frames_a_region_touches(tmp_path):
    from render_farm.job_plan import stylize_keys, stylize_inputs

    layout = {"objects": [{"name": "floor", "instance_id": 1, "class": {"id": 4}},
                          {"name": "box1", "instance_id": 2, "class": {"id": 16}},
                          {"name": "lamp", "instance_id": 3, "class": {"id": 37}}]}
    view = tmp_path / "view"
    (view / "scene").mkdir(parents=True)
    (view / "scene" / "layout.json").write_text(json.dumps(layout))
    shows = {1: [1, 2], 2: [1, 2, 3], 3: [1, 2], 4: [1, 2, 3]}
    upstream = {"scene": {"scene": {"key": "scene-key"}},
                "passes": {str(f): {"key": f"p{f}", "meta": {"shows": {"instances": ids, "classes": []}}} for f, ids in shows.items()}}

    def keys(regions, references=(), mode="per_frame", batches=None):
        resolved = {"style": {"stylizer": "diffusion", "regions": regions, "reference_images": list(references)}, "seed": 1,
                    "render": {}}
        spec = {"base": stylize_inputs(resolved), "shared": ["scene-key"], "passes": {str(f): f"p{f}" for f in shows},
                "frames": list(shows), "batches": batches or {}, "mode": mode, "regions": regions,
                "references": [{"sha256": "h", **r} for r in references], "ip_adapter": {"id": "ip"} if references else None,
                "style": {"regions": regions, "reference_images": list(references)},
                "scene_task": "scene", "passes_tasks": {str(f): "passes" for f in shows}}
        return dict(stylize_keys(spec, upstream, None, str(view)))

    none = keys([])
    lamp = keys([{"objects": ["lamp"], "classes": [], "prompt": "brass", "negative_prompt": ""}])
    other = keys([{"objects": ["lamp"], "classes": [], "prompt": "red", "negative_prompt": ""}])
    assert [f for f in none if none[f] != lamp[f]] == ["2", "4"] and [f for f in lamp if lamp[f] != other[f]] == ["2", "4"]
    both = keys([{"objects": ["lamp"], "classes": [], "prompt": "brass", "negative_prompt": ""},
                 {"objects": ["box*"], "classes": [], "prompt": "oak", "negative_prompt": ""}])
    assert all(both[f] != lamp[f] for f in both)  # box1 is in every frame
    masked = keys([], [{"image": "a.png", "scale": 1.0, "objects": ["lamp"], "classes": []}])
    whole = keys([], [{"image": "a.png", "scale": 1.0, "objects": [], "classes": []}])
    assert [f for f in none if none[f] != masked[f]] == ["2", "4"] and all(whole[f] != none[f] for f in none)
    region = [{"objects": ["lamp"], "classes": [], "prompt": "brass", "negative_prompt": ""}]
    flow = keys([], mode="flow_warp"), keys(region, mode="flow_warp")
    assert [f for f in flow[0] if flow[0][f] != flow[1][f]] == ["2", "3", "4"]  # from the first frame it touches on
    atlases = keys([], mode="keyframes"), keys(region, mode="keyframes")
    assert all(atlases[0][f] != atlases[1][f] for f in atlases[0])
    batched = keys(region, batches={"1": [1, 2], "2": [1, 2], "3": [3, 4], "4": [3, 4]}), keys([], batches={"1": [1, 2], "2": [1, 2], "3": [3, 4], "4": [3, 4]})
    assert all(batched[0][f] != batched[1][f] for f in batched[0])


def test_passes_records_from_before_region_prompts_are_read_from_their_exr(tmp_path):
    """A store's passes units written before records said what each frame shows: the keys are read
    from the frames' own EXRs, the same as from the records (what the passes held in memory)."""
    from passes.render_chunk import shown_ids, write_frame_outputs
    from passes.scene_stage import write_scene_data
    from render_farm.job_plan import stylize_inputs, stylize_keys
    from scenes.template_schema import Template
    from tests.test_consistency_scenes import orbit_scene, scene_passes

    scene = orbit_scene(n_frames=3, size=32)
    npr = Template.model_validate({"schema_version": 1, "name": "boxes", "seed": 3, "render": {"resolution": [32, 32]},
                                   "camera": {"path": {"kind": "static", "position": [4.0, 0.0, 2.0], "look_at": [0.0, 0.0, 0.4]}},
                                   "style": {"stylizer": "npr"}})
    frames = scene_passes(scene)
    for p in frames:
        write_frame_outputs(tmp_path, scene, p, npr, None)
    write_scene_data(scene, tmp_path)
    region = [{"objects": ["box_b"], "classes": [], "prompt": "brass", "negative_prompt": ""}]
    resolved = {"style": {"stylizer": "diffusion", "regions": region, "reference_images": []}, "seed": 1, "render": {}}

    def keys(with_shows: bool):
        upstream = {"scene": {"scene": {"key": "scene-key"}},
                    "passes": {str(p.frame): {"key": f"p{p.frame}", **({"meta": {"shows": shown_ids(p)}} if with_shows else {})}
                               for p in frames}}
        spec = {"base": stylize_inputs(resolved), "shared": ["scene-key"], "passes": {str(p.frame): f"p{p.frame}" for p in frames},
                "frames": [p.frame for p in frames], "batches": {}, "mode": "per_frame", "regions": region, "references": [],
                "ip_adapter": None, "style": {"regions": region, "reference_images": []}, "scene_task": "scene",
                "passes_tasks": {str(p.frame): "passes" for p in frames}}
        return stylize_keys(spec, upstream, None, str(tmp_path))

    assert any(3 in shown_ids(p)["instances"] for p in frames)  # box_b (instance 3) is in view
    assert keys(False) == keys(True)
