"""A batch (`greybox render A.toml B.toml ...`, or a sweep) checks every shot before any work starts:
one bad shot stops the whole batch with exit 2 (3 for missing weights), and nothing is written -- no
output folder, nothing in the store -- for the good shots either."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from render_farm.cli import main
from tests.support.tiny_templates import TINY

ROOM = textwrap.dedent("""\
    schema_version = 1
    name = "room"
    seed = 1
    [generator]
    kind = "room"
    [generator.room]
    width = 4.0
    depth = 3.0
    height = 2.6
    doors = [{ wall = "south", offset = 1.0, width = 0.9, height = 2.1 }]
    [camera.path]
    kind = "static"
    position = [2.0, 1.5, 1.5]
    look_at = [2.0, 3.0, 1.0]
    [render]
    resolution = [64, 64]
    frame_start = 1
    frame_end = 2
    """)



def nothing_written(out: Path, store: Path) -> bool:
    return not out.exists() and not (store.exists() and any(p.is_file() for p in store.rglob("*")))


@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "good.toml"
    path.write_text(ROOM.replace('name = "room"', 'name = "good"'))
    return path


def run(tmp_path, *args) -> int:
    return main([*args, "--out", str(tmp_path / "out"), "--store", str(tmp_path / "store")])


@pytest.mark.parametrize("command", ["passes", "render"])
def test_an_invalid_template_in_a_batch_stops_it_before_anything_is_written(tmp_path, good, command, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("fps = 12", "fps = 0"))
    assert run(tmp_path, command, str(good), str(bad)) == 2
    assert nothing_written(tmp_path / "out", tmp_path / "store")
    err = capsys.readouterr().err
    assert "bad.toml" in err and "render.fps" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["passes", "render"])
def test_a_shot_whose_scene_cannot_be_built_stops_the_batch_before_anything_is_written(tmp_path, good, command, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(ROOM.replace("offset = 1.0", "offset = 100.0"))  # valid TOML and schema; the door misses the wall
    assert run(tmp_path, command, str(good), str(bad)) == 2
    assert nothing_written(tmp_path / "out", tmp_path / "store")
    err = capsys.readouterr().err
    assert "generator.room.doors.0.offset" in err and "100" in err and "Traceback" not in err


def test_a_sweep_with_one_invalid_value_stops_before_anything_is_written(tmp_path, good, capsys):
    assert run(tmp_path, "render", str(good), "--sweep", "render.fps=[12, -1]") == 2
    assert nothing_written(tmp_path / "out", tmp_path / "store")
    assert "render.fps" in capsys.readouterr().err


def test_a_sweep_with_one_unbuildable_value_stops_before_anything_is_written(tmp_path, good, capsys):
    assert run(tmp_path, "passes", str(good), "--sweep", "generator.room.doors.0.offset=[1.0, 2.0, 100.0]") == 2
    assert nothing_written(tmp_path / "out", tmp_path / "store")
    assert "generator.room.doors.0.offset" in capsys.readouterr().err


def test_a_diffusion_shot_without_weights_stops_the_batch_with_exit_3_before_anything_is_written(tmp_path, good, capsys):
    diffusion = tmp_path / "diffusion.toml"
    diffusion.write_text(TINY + textwrap.dedent(f"""
        [style]
        stylizer = "diffusion"
        model = "{tmp_path / 'no_such_model'}"
        controlnets = [{{ pass = "depth", model = "{tmp_path / 'no_such_controlnet'}" }}]
        """))
    assert run(tmp_path, "render", str(good), str(diffusion)) == 3
    assert nothing_written(tmp_path / "out", tmp_path / "store")
    assert "no_such_model" in capsys.readouterr().err
