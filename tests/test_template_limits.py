"""Templates an attacker or a typo would write: refused at validation with a key path, exit 2, never a
traceback; values that would validate and crash later (huge rooms, frame ranges, seeds) are refused too."""

from __future__ import annotations

import json
import time

import pytest

from greybox.errors import InputError
from render_farm.cli import main
from scenes.template_loading import MAX_STRING_LENGTH, find_template, load_template
from scenes.template_schema import MAX_FRAMES_PER_SHOT
from tests.support.tiny_templates import TINY

LIVING_ROOM = find_template("living_room").read_text()


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _validate(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["validate", *args])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def _problems(overrides, name="living_room"):
    with pytest.raises(InputError) as info:
        load_template(name, overrides)
    return info.value.problems


def test_nesting_500_deep_in_the_file_names_the_key(tmp_path, capsys):
    deep = "[" * 500 + "]" * 500
    path = tmp_path / "deep.toml"
    path.write_text(LIVING_ROOM.replace("[camera.path]", f"[camera.path]\nweird = {deep}\n"))
    code, out, err = _validate(capsys, str(path), "--json")
    assert code == 2
    [problem] = _strict_json(out)
    assert problem["key"] == "camera.path.weird" and "nest" in problem["message"]
    # Deep, but within what the parser takes: the key path of the first level too deep.
    path.write_text(LIVING_ROOM + "\n[x]\ny = " + "[" * 40 + "]" * 40 + "\n")
    code, out, err = _validate(capsys, str(path))
    assert code == 2 and "x.y.0.0" in err and "at most 16" in err


def test_nesting_500_deep_in_a_set_value(capsys):
    code, out, err = _validate(capsys, "living_room", "--set", "style.prompt=" + "[" * 500 + "]" * 500)
    assert code == 2 and "style.prompt" in err and "too deeply" in err
    code, out, err = _validate(capsys, "living_room", "--set", "style.prompt=" + "{a=" * 30 + "1" + "}" * 30, "--json")
    assert code == 2 and _strict_json(out)[0]["key"].startswith("style.prompt.a.a")


def test_a_key_part_that_is_a_digit_but_not_ascii_is_a_key(capsys):
    code, out, err = _validate(capsys, "living_room", "--set", "render.²=1")
    assert code == 2 and "render.²" in err and "unknown key" in err
    code, out, err = _validate(capsys, "living_room", "--set", "style.controlnets.٣.scale=1.0")
    assert code == 2 and "unknown key" in err or "not a table" in err


@pytest.mark.parametrize("override, key, fragment", [
    ("generator.room.width=1e30", "generator.room.width", "at most 10000"),
    ("generator.room.depth=1e30", "generator.room.depth", "at most 10000"),
    ("render.frame_end=1000000000000000000000000000000", "render.frame_end", "at most 1000000"),
    (f"render.frame_end={2**62}", "render.frame_end", "at most 1000000"),
    ("render.frame_end=3000000", "render.frame_end", "at most 1000000"),
    ("render.frame_end=1000000", "render.frame_end", f"at most {MAX_FRAMES_PER_SHOT} frames"),
    ("style.seed=-1", "style.seed", "at least 0"),
    (f"style.seed={2**63}", "style.seed", "less than"),
    ("camera.focal_length=" + "9" * 300, "camera.focal_length", "at most 1000"),
    ("camera.focal_length=" + "9" * 400, "camera.focal_length", "at most 1000"),
    ("camera.focal_length=-" + "9" * 400, "camera.focal_length", "greater than 1"),
    ("camera.clip_start=1e-300", "camera.clip_start", "at least 1e-06"),
    ("camera.path.end_angle=1e308", "camera.path.end_angle", "at most 36000"),
    ("schema_version=1.0", "schema_version", "an integer"),
    ("schema_version=true", "schema_version", "an integer"),
    ("name='" + "n" * 65 + "'", "name", "at most 64 characters"),
])
def test_values_that_would_crash_later_are_refused_at_validation(override, key, fragment):
    problems = _problems([override])
    assert [p["key"] for p in problems] == [key], problems
    assert fragment in problems[0]["message"], problems[0]["message"]


def test_the_frame_limit_is_a_count_not_a_frame_number():
    last = 500_000 + MAX_FRAMES_PER_SHOT - 1
    loaded = load_template("living_room", ["render.frame_start=500000", f"render.frame_end={last}"])
    assert len(loaded.template.render.frames) == MAX_FRAMES_PER_SHOT
    problems = _problems(["render.frame_start=500000", f"render.frame_end={last + 1}"])
    assert problems[0]["key"] == "render.frame_end" and f"frame_end <= {last}" in problems[0]["message"]


def test_validate_json_is_strict_json(capsys):
    code, out, err = _validate(capsys, "living_room", "--json", "--set", "style.guidance_scale=nan",
                               "--set", "camera.focal_length=inf", "--set", "style.strength=-inf")
    assert code == 2
    values = {p["key"]: p["value"] for p in _strict_json(out)}
    assert values == {"style.guidance_scale": "nan", "camera.focal_length": "inf", "style.strength": "-inf"}


def test_duplicate_names_are_reported_at_each_duplicates_key(capsys):
    objects = ('[{name="a", primitive="box", position=[0,0,0], size=[1,1,1], class="table"},'
               ' {name="b", primitive="box", position=[0,0,0], size=[1,1,1], class="table"},'
               ' {name="a", primitive="plane", position=[0,0,0], size=[1,1], class="floor"}]')
    code, out, err = _validate(capsys, "living_room", "--json", "--set", f"objects={objects}",
                               "--set", 'generator.room.furniture=[{kind="lamp"}, {kind="lamp"}, {kind="rug", name="a"}]')
    assert code == 2
    problems = _strict_json(out)
    assert {p["key"]: p["value"] for p in problems} == {
        "objects.0.name": "a", "objects.2.name": "a", "generator.room.furniture.2.name": "a",
        "generator.room.furniture.0.kind": "lamp", "generator.room.furniture.1.kind": "lamp",
    }
    first = next(p for p in problems if p["key"] == "objects.0.name")
    assert "objects.2.name" in first["message"] and "generator.room.furniture.2.name" in first["message"]


def test_strings_and_files_have_a_size_limit(tmp_path, capsys):
    path = tmp_path / "long.toml"
    path.write_text(TINY.replace('description = "two boxes on a floor"', f'description = "{"x" * (200 << 10)}"'))
    started = time.perf_counter()
    code, out, err = _validate(capsys, str(path), "--json")
    assert time.perf_counter() - started < 5
    [problem] = _strict_json(out)
    assert code == 2 and problem["key"] == "description" and f"at most {MAX_STRING_LENGTH}" in problem["message"]
    assert len(problem["value"]) <= 200
    huge = tmp_path / "huge.toml"
    with open(huge, "w") as handle:
        handle.write(TINY + "\n# " + "x" * (17 << 20) + "\n")
    code, out, err = _validate(capsys, str(huge))
    assert code == 2 and "larger than 16 MiB" in err


def test_integers_too_long_to_read(tmp_path, capsys):
    code, out, err = _validate(capsys, "living_room", "--set", "seed=" + "9" * 5000)
    assert code == 2 and "seed" in err and "4300" in err
    path = tmp_path / "digits.toml"
    path.write_text(TINY.replace("seed = 3", "seed = " + "9" * 5000))
    code, out, err = _validate(capsys, str(path), "--json")
    assert code == 2 and _strict_json(out)[0]["key"] == "seed"


def test_set_problems_name_their_key_path(capsys):
    code, out, err = _validate(capsys, "living_room", "--json", "--set", "style.controlnets.9.scale=1.0")
    [problem] = _strict_json(out)
    assert code == 2 and problem["key"] == "style.controlnets.9.scale" and "no list item 9" in problem["message"]


def test_a_huge_frame_end_with_one_frame_asked_is_refused_before_anything_is_written(tmp_path, capsys):
    path = tmp_path / "long_shot.toml"
    path.write_text(TINY.replace("frame_end = 4", "frame_end = 1000000000"))
    out, store = tmp_path / "out", tmp_path / "store"
    started = time.perf_counter()
    assert main(["passes", str(path), "--out", str(out), "--store", str(store), "--frames", "1-1"]) == 2
    assert main(["passes", str(path), "--out", str(out), "--store", str(store)]) == 2
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err
    assert "render.frame_end" in err and "Traceback" not in err
    assert not out.exists() and not store.exists()


def test_only_the_frames_asked_for_are_planned(tmp_path):
    from render_farm.job_plan import build_graph
    from render_farm.job_request import JobRequest, resolve_shots

    path = tmp_path / "long_shot.toml"
    path.write_text(TINY.replace("frame_end = 4", f"frame_end = {MAX_FRAMES_PER_SHOT}"))
    shots = resolve_shots(JobRequest(command="render", templates=[str(path)], frames="5000-5002"))
    assert shots[0].frames == [5000, 5001, 5002]
    graph = build_graph(shots, command="render", job_dir=tmp_path / "out")
    assert sorted(f for t in graph if t.kind == "passes" for f in t.frames) == [5000, 5001, 5002]
    assert next(t for t in graph if t.kind == "scene").params["frames"] == [5000, 5001, 5002]


def test_a_long_shots_depth_range_is_bounded():
    """A shot at the frame limit projects at most MAX_PROJECTIONS points (evenly spaced frames, first
    and last included); a short one uses every frame."""
    from passes.depth_range import MAX_PROJECTIONS, range_frames

    assert range_frames(1, 48, 14_000).tolist() == list(range(1, 49))
    long = range_frames(1, MAX_FRAMES_PER_SHOT, 14_000)
    assert long[0] == 1 and long[-1] == MAX_FRAMES_PER_SHOT and len(long) * 14_000 <= MAX_PROJECTIONS
    assert (long[1:] > long[:-1]).all()
