"""Versions of a job folder (NPR, no weights): every finished render kept whole under versions/NNN,
a change outside the direction keys refused (exit 2, what differs) unless --force, which keeps the
earlier versions; `greybox inspect` shows the history; `--revert N` makes N the latest again
without recomputing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from render_farm.cli import main
from tests.test_style_regions import SHOT

NPR = SHOT + '\n[style]\nstylizer = "npr"\n'


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frame_digests(folder: Path) -> dict[str, str]:
    return {p.name: digest(p) for p in sorted((folder / "frames").glob("*.png"))}


def store_units(store: Path) -> set[str]:
    return {p.name for p in (store / "objects").glob("*/*")}


def test_versions_force_inspect_and_revert(tmp_path, capsys):
    template = tmp_path / "lamp.toml"
    template.write_text(NPR)
    out, store = tmp_path / "out", tmp_path / "store"
    run = ["render", str(template), "--out", str(out), "--store", str(store), "--workers", "1", "--threads", "1"]
    assert main(run) == 0
    v1 = frame_digests(out)
    assert len(v1) == 4
    entry = json.loads((out / "versions/001/version.json").read_text())
    assert entry["kind"] == "render" and entry["version"] == 1
    assert frame_digests(out / "versions/001") == v1
    assert digest(out / "versions/001/manifest.json") == digest(out / "manifest.json") == entry["manifests"]["lamp"]
    assert (out / "versions/001/video.mp4").read_bytes() == (out / "video.mp4").read_bytes()

    # the same render again is the same version
    assert main(run) == 0
    assert sorted(p.name for p in (out / "versions").iterdir()) == ["001"]

    # a change outside the direction keys: refused, nothing written
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main([*run, "--set", "style.toon_levels=2"]) == 2
    err = capsys.readouterr().err
    assert "style.toon_levels" in err and "--force" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    # --force: a new base; version 1 kept whole
    assert main([*run, "--set", "style.toon_levels=2", "--force"]) == 0
    v2 = frame_digests(out)
    assert v2 != v1
    assert frame_digests(out / "versions/001") == v1 and frame_digests(out / "versions/002") == v2
    entry = json.loads((out / "versions/002/version.json").read_text())
    assert entry["kind"] == "force" and any("toon_levels" in line for line in entry["changed"])
    assert entry["units"]["stylize"]["ran"] == 4

    # inspect shows the history
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "versions (latest last" in text and "2  force" in text and "toon_levels" in text

    # revert: version 1 is the latest again, nothing computed (the store gains no unit)
    units = store_units(store)
    assert main(["render", str(out), "--revert", "1"]) == 0
    assert frame_digests(out) == v1 and digest(out / "manifest.json") == digest(out / "versions/001/manifest.json")
    assert (out / "video.mp4").read_bytes() == (out / "versions/001/video.mp4").read_bytes()
    assert store_units(store) == units
    entry = json.loads((out / "versions/003/version.json").read_text())
    assert entry["kind"] == "revert" and entry["reverted_to"] == 1
    assert frame_digests(out / "versions/002") == v2  # never overwritten
    # the folder's record is version 1's again: the first command is the same version, no refusal
    assert main(run) == 0
    assert sorted(p.name for p in (out / "versions").iterdir()) == ["001", "002", "003"]

    # a version that does not exist, or whose files were changed: exit 2, nothing written
    capsys.readouterr()
    assert main(["render", str(out), "--revert", "9"]) == 2
    assert "no such version" in capsys.readouterr().err
    victim = next((out / "versions/002/frames").iterdir())
    victim.unlink()
    victim.write_bytes(b"not a png")
    assert main(["render", "--out", str(out), "--revert", "2"]) == 2
    assert "missing or changed" in capsys.readouterr().err
    assert frame_digests(out) == v1


def test_an_edit_is_not_a_resume_and_needs_no_force(tmp_path, capsys):
    template = tmp_path / "lamp.toml"
    template.write_text(NPR)
    out, store = tmp_path / "out", tmp_path / "store"
    run = ["render", str(template), "--out", str(out), "--store", str(store), "--workers", "1", "--threads", "1"]
    assert main(run) == 0
    region = ["--set", 'style.regions=[{objects = ["lamp"], prompt = "a red lamp"}]']
    capsys.readouterr()
    assert main([*run, *region, "--resume"]) == 2  # not the recorded request continued
    assert "style.regions" in capsys.readouterr().err
    assert main([*run, *region]) == 0
    entry = json.loads((out / "versions/002/version.json").read_text())
    assert entry["kind"] == "edit" and entry["base"] == 1 and entry["changed"][0].startswith("style.regions: [] -> ")
