"""The content-addressed store: keys, records written after outputs, corruption detection, views."""

from __future__ import annotations

import os

from greybox.frame_files import frame_name
from greybox.frame_ranges import chunk_frames, format_frames, parse_frames
from render_farm.job_plan import passes_inputs, stylize_batches, stylize_inputs
from render_farm.task_store import RECORD_NAME, TaskStore, unit_key

import pytest
from greybox.errors import InputError


def _commit(store: TaskStore, key: str, files: dict[str, bytes]) -> dict:
    staging = store.new_staging(key)
    for rel, data in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(data)
    return store.commit(key, staging, {"note": "x"})


def test_commit_then_load_and_link(tmp_path):
    store = TaskStore(tmp_path / "store")
    key = unit_key("passes", {"frame": 1})
    record = _commit(store, key, {"passes/0001.exr": b"exr", "control/seg/0001.png": b"png"})
    assert set(record["outputs"]) == {"passes/0001.exr", "control/seg/0001.png"}
    assert record["outputs"]["passes/0001.exr"]["size"] == 3
    loaded, reason = store.load_record(key)
    assert loaded == record and reason is None
    view = tmp_path / "view"
    store.link_into(key, record, view)
    assert (view / "passes/0001.exr").read_bytes() == b"exr"
    assert os.stat(view / "passes/0001.exr").st_ino == os.stat(store.unit_dir(key) / "passes/0001.exr").st_ino
    assert not any((store.root / "staging").iterdir())


def test_truncated_or_corrupted_output_is_detected(tmp_path):
    store = TaskStore(tmp_path / "store")
    key = unit_key("passes", {"frame": 2})
    _commit(store, key, {"passes/0002.exr": b"0123456789"})
    path = store.unit_dir(key) / "passes/0002.exr"
    path.write_bytes(b"01234")
    record, reason = store.load_record(key)
    assert record is None and "has 5 bytes, its record says 10" in reason
    path.write_bytes(b"0123456780")
    record, reason = store.load_record(key)
    assert record is None and "sha256" in reason
    # Recomputing replaces the broken unit.
    fresh = _commit(store, key, {"passes/0002.exr": b"0123456789"})
    assert store.load_record(key)[0] == fresh


def test_unit_without_record_is_not_done(tmp_path):
    store = TaskStore(tmp_path / "store")
    key = unit_key("stylize", {"frame": 3})
    _commit(store, key, {"frames/0003.png": b"img"})
    (store.unit_dir(key) / RECORD_NAME).unlink()
    assert store.load_record(key) == (None, None)


def test_keys_follow_what_a_stage_reads():
    resolved = {"name": "a", "description": "d", "seed": 1, "objects": [{"position": [0, 0, 0]}],
                "render": {"fps": 24}, "passes": {}, "style": {"prompt": "one"}}
    prompt = {**resolved, "style": {"prompt": "two"}}
    moved = {**resolved, "objects": [{"position": [1, 0, 0]}]}
    assert passes_inputs(resolved) == passes_inputs(prompt)
    assert passes_inputs(resolved) != passes_inputs(moved)
    assert stylize_inputs(resolved) != stylize_inputs(prompt)
    assert unit_key("passes", {"f": 1}) != unit_key("passes", {"f": 1}, ["upstream"])


def test_frame_selection_parsing():
    assert parse_frames("1-3,7,5-6", 1, 24) == [1, 2, 3, 5, 6, 7]
    assert parse_frames(None, 3, 5) == [3, 4, 5]
    for bad in ("0-3", "20-30", "3-1", "a", "1,,2"):
        with pytest.raises(InputError, match="--frames"):
            parse_frames(bad, 1, 24)
    assert format_frames([1, 2, 3, 7]) == "1-3,7"
    assert frame_name(7) == "0007" and frame_name(12345) == "12345"
    # Chunks keep fixed boundaries whichever frames are selected.
    assert chunk_frames([3, 4, 5, 9], 4, 1) == [[3, 4], [5], [9]]


def test_stylize_batches_per_frame_fixed_and_sequences_whole():
    assert stylize_batches("per_frame", [1, 2, 3, 4, 5], 2, 1) == [[1, 2], [3, 4], [5]]
    # Batch boundaries are counted from frame_start, whichever frames are selected.
    assert stylize_batches("per_frame", [2, 3, 4], 2, 1) == [[2], [3, 4]]
    # flow_warp and keyframes: the shot's frames form one sequence (each frame builds on earlier ones).
    assert stylize_batches("flow_warp", [1, 2, 3], 4, 1) == [[1, 2, 3]]
    assert stylize_batches("keyframes", list(range(1, 25)), 4, 1) == [list(range(1, 25))]
    with pytest.raises(InputError, match="consecutive"):
        stylize_batches("keyframes", [1, 2, 5], 4, 1)
