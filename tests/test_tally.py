"""How the run tally times steps from when the bar's redraws arrive."""

from __future__ import annotations

import pytest

from lorakit.watch.events import Progress
from lorakit.watch.tally import RunTally


def test_steps_read_in_one_chunk_are_timed_by_the_next_chunk_not_as_zero_seconds():
    tally = RunTally()
    # a busy reader gets steps 1-3 in one read at t=10.0, then steps 4-6 in one read at t=13.0
    for step in (1, 2, 3):
        tally.add(Progress(step=step, total=6, loss=None), at=10.0)
    for step in (4, 5, 6):
        tally.add(Progress(step=step, total=6, loss=None), at=13.0)
    assert tally.seconds_per_step == pytest.approx(1.0)  # 3 s over the 3 steps from 3 to 6


def test_a_resumed_run_starts_at_its_saved_step_and_does_not_time_its_warm_up_step():
    tally = RunTally(start_step=3)
    assert tally.steps_done == 3  # the state's steps count before this start trains any
    # the bar (shifted to true steps) shows step 3 at t=0, step 4 after a slow warm-up, then 1 s per step
    for step, at in ((3, 0.0), (4, 20.0), (5, 21.0)):
        tally.add(Progress(step=step, total=6, loss=None), at=at)
    assert tally.seconds_per_step == pytest.approx(1.0)
