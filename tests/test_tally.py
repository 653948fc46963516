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
