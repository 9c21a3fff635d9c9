"""Template validation: every problem on its own line, naming the key path, the value and the fix."""

import math

import pytest

from greybox.errors import InputError
from scenes.semantic_palette import UnknownClassError, palette, resolve_class
from scenes.template_loading import (
    apply_override,
    bundled_templates,
    find_template,
    load_template,
    parse_override,
)


def problems_for(overrides, name="living_room"):
    with pytest.raises(InputError) as info:
        load_template(name, overrides)
    return info.value.problems


def keys(problems):
    return [p["key"] for p in problems]


def test_bundled_templates_are_valid_and_listed():
    listed = dict(bundled_templates())
    assert {"living_room", "bedroom"} <= set(listed)
    for name, description in listed.items():
        assert description and "\n" not in description
        loaded = load_template(name)
        assert loaded.template.name == name
        assert len(loaded.template_hash) == 64


def test_template_addressable_by_name_and_path():
    by_name = load_template("bedroom")
    by_path = load_template(str(find_template("bedroom")))
    assert by_name.template_hash == by_path.template_hash


def test_missing_template_names_the_bundled_ones():
    with pytest.raises(InputError, match="living_room"):
        load_template("no_such_template")


@pytest.mark.parametrize(
    "override, key, fragment",
    [
        ("render.resolution=[500, 512]", "render.resolution.0", "multiple of 8"),
        ("render.resolution=[8200, 512]", "render.resolution.0", "at most 8192"),
        ("render.resolution=[0, 512]", "render.resolution.0", "at least 8"),
        ("render.fps=0", "render.fps", "at least 1"),
        ("seed=1.5", "seed", "integer"),
        ("seed=-1", "seed", "at least 0"),
        ("style.guidance_scale=nan", "style.guidance_scale", "finite"),
        ("style.guidance_scale=inf", "style.guidance_scale", "finite"),
        ("camera.focal_length=-4.0", "camera.focal_length", "greater than"),
        ("render.colour=1", "render.colour", "unknown key"),
        ("style.scheduler='Nope'", "style.scheduler", "UniPCMultistepScheduler"),
        ("camera.path.kind='spiral'", "camera.path.kind", "orbit"),
        ("passes.seg_background='screen'", "passes.seg_background", "ambiguous"),
        ("passes.seg_background='unicorn'", "passes.seg_background", "unknown semantic class"),
        ("style.controlnets.0.pass='edges'", "style.controlnets.0.pass", "depth"),
    ],
)
def test_bad_values_name_key_value_and_allowed(override, key, fragment):
    problems = problems_for([override])
    assert key in keys(problems), problems
    line = next(p for p in problems if p["key"] == key)
    assert fragment in line["message"]


def test_several_problems_reported_together_one_line_each():
    with pytest.raises(InputError) as info:
        load_template("living_room", ["render.fps=0", "seed=1.5", "style.strength=2.0"])
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith("living_room: ") for line in lines)
    assert any("render.fps = 0" in line for line in lines)


def test_frame_end_before_start_refused():
    problems = problems_for(["render.frame_start=10", "render.frame_end=5"])
    assert any("frame_end 5 is before frame_start 10" in p["message"] for p in problems)


def test_walkthrough_needs_three_points():
    problems = problems_for(['camera.path={kind="walkthrough", points=[[0,0,1],[1,1,1]]}'])
    assert "camera.path.points" in keys(problems)
    assert "at least 3" in problems[0]["message"]


def test_ambiguous_class_lists_candidates():
    for name in ("stool", "screen", "counter", "pot", "ground"):
        with pytest.raises(UnknownClassError) as info:
            resolve_class(name)
        assert "ambiguous" in str(info.value)
        assert str(info.value).count("(") >= 2  # at least two candidates, each with its names


def test_class_by_any_name_or_index():
    assert resolve_class("painting").index == resolve_class("picture").index == 22
    assert resolve_class(23).name == "sofa"
    assert resolve_class("Coffee Table").index == 64
    assert resolve_class("wall").class_id == 1
    assert len(palette()) == 150


def test_overrides_parse_toml_values_else_strings():
    assert parse_override("style.controlnets.0.scale=0.8") == (["style", "controlnets", 0, "scale"], 0.8)
    assert parse_override("style.prompt=a red sofa") == (["style", "prompt"], "a red sofa")
    assert parse_override("render.resolution=[256, 256]")[1] == [256, 256]
    assert parse_override("style.seed=0")[1] == 0
    with pytest.raises(InputError):
        parse_override("no-equals-sign")


def test_override_list_item_by_index_applies():
    loaded = load_template("living_room", ["style.controlnets.1.scale=0.25", "render.resolution=[256, 128]"])
    assert loaded.template.style.controlnets[1].scale == 0.25
    assert loaded.template.render.width == 256 and loaded.template.render.height == 128


def test_override_out_of_range_index_is_an_input_error():
    with pytest.raises(InputError, match="no list item 9"):
        load_template("living_room", ["style.controlnets.9.scale=1.0"])
    data = {"a": [1]}
    with pytest.raises(InputError):
        apply_override(data, ["a", 3], 2, "a.3=2")


def test_seed_zero_is_a_seed_and_style_seed_defaults_to_scene_seed():
    loaded = load_template("living_room", ["seed=0"])
    assert loaded.template.seed == 0
    assert loaded.template.style_seed == 0
    assert load_template("living_room", ["seed=0", "style.seed=5"]).template.style_seed == 5


def test_template_hash_tracks_content():
    a = load_template("living_room").template_hash
    b = load_template("living_room", ["style.prompt='another prompt'"]).template_hash
    assert a != b
    assert a == load_template("living_room").template_hash


def test_consistency_shorthand_string():
    loaded = load_template("living_room", ["style.consistency='keyframes'"])
    assert loaded.template.style.consistency.mode == "keyframes"


def test_duplicate_object_names_refused():
    objects = '[{name="a", primitive="box", position=[0,0,0], size=[1,1,1], class="table"}, {name="a", primitive="plane", position=[0,0,0], size=[1,1], class="floor"}]'
    problems = problems_for([f"objects={objects}"])
    assert any("unique" in p["message"] for p in problems)


def test_non_finite_in_toml_file(tmp_path):
    path = tmp_path / "t.toml"
    text = find_template("living_room").read_text().replace("fps = 24", "fps = 24\n") .replace("guidance_scale = 7.5", "guidance_scale = nan")
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_template(str(path))
    assert any(p["key"] == "style.guidance_scale" and isinstance(p["value"], float) and math.isnan(p["value"]) for p in info.value.problems)


def test_invalid_toml_is_an_input_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("schema_version = 1\nname = \n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_template(str(path))


def test_unsupported_schema_version(tmp_path):
    path = tmp_path / "v2.toml"
    path.write_text(find_template("living_room").read_text().replace("schema_version = 1", "schema_version = 2"))
    with pytest.raises(InputError, match="schema_version"):
        load_template(str(path))
