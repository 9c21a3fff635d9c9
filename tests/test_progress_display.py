"""greybox's own progress: frames per stage with the time left at the stage's pace (reused frames are
done, not timed), on stderr-like streams that are not terminals (logs, CI) as plain lines."""

from __future__ import annotations

import io
from types import SimpleNamespace

from render_farm.progress_display import ProgressDisplay


def task(kind, frames, tid):
    return SimpleNamespace(kind=kind, frames=tuple(frames), task_id=tid)


def test_time_left_follows_the_computed_frames_only():
    passes = [task("passes", range(1 + 4 * i, 5 + 4 * i), f"passes/{i}") for i in range(2)]
    stylize = [task("stylize", [f], f"stylize/{f}") for f in range(1, 9)]
    stream = io.StringIO()
    display = ProgressDisplay([*passes, *stylize], stream=stream, plain_interval_s=0)
    with display:
        display.on_event("cached", passes[0], {})  # 4 frames from the store: no pace yet
        assert display.seconds_left("passes") is None
        display.on_event("started", passes[1], {})
        display.on_event("done", passes[1], {})
        assert display.seconds_left("passes") == 0.0
        for t in stylize[:3]:
            display.on_event("started", t, {})
        display.started_at["stylize"] = 100.0
        display.on_event("cached", stylize[0], {})
        display.on_event("done", stylize[1], {})
        display.on_event("done", stylize[2], {})
        # 2 frames computed in 10 s, 5 of 8 left: 25 s at that pace
        assert display.seconds_left("stylize", now=110.0) == 25.0
    lines = stream.getvalue().splitlines()
    assert lines[0] == "progress: passes 4/8 frames (4 reused), stylize 0/8 frames"
    assert all(line.startswith("progress: ") for line in lines)
    assert "stylize 3/8 frames (1 reused, ~" in lines[-1] and " left)" in lines[-1]
