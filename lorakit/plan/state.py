"""Periodic training state for long plans, so a crash, out-of-memory or preemption loses little.

A plan whose estimated training time is over STATE_EVERY_MINUTES saves an accelerate state about every
STATE_EVERY_MINUTES and keeps only the last KEEP_STATES of them. sd-scripts writes a state only beside a
LoRA file, at each save point (save_every_n_steps, save_every_n_epochs), and prunes states with
save_last_n_*_state, which counts steps or epochs, not folders (docs/sd-scripts.md §8). So the step
interval is also the interval of the step LoRA files; those are kept (they are small and worth choosing
from), the states are pruned.

Values you set are never changed: `--set save_state=false` turns this off, `--set save_state=true`
keeps your own schedule as it is, and `--fit off` changes no value. Short plans, plans without a time estimate (no peak FLOP/s for the
card) and CPU runs get no periodic state.
"""

from __future__ import annotations

from lorakit.config.values import Values
from lorakit.plan.timing import TimeReport

STATE_EVERY_MINUTES = 20  # inside the 15–30 minutes a lost stretch of training may cost
KEEP_STATES = 2  # the newest may be half-written when the run dies; the one before it is whole
SOURCE = "auto:periodic-state"


def round_interval(steps: float) -> int:
    """A readable step count within a quarter of `steps`: 1234 → 1250, 87 → 90, 7 → 7."""
    if steps >= 100:
        return max(50, round(steps / 50) * 50)
    if steps >= 20:
        return round(steps / 10) * 10
    return max(1, round(steps))


def state_interval(time: TimeReport) -> int | None:
    """Steps in about STATE_EVERY_MINUTES of training, or None without a time estimate."""
    if not time.seconds_per_step:
        return None
    return round_interval(STATE_EVERY_MINUTES * 60 / time.seconds_per_step)


def plan_periodic_state(values: Values, time: TimeReport, total_steps: int, *, cpu: bool, fit: str) -> None:
    """Turn on save_state with a step interval and a keep-last limit when the plan is long enough."""
    if cpu or fit == "off" or values.user_set("save_state"):  # --fit off: lorakit changes no value
        return
    interval = state_interval(time)
    if interval is None or interval >= total_steps:
        return  # no estimate, or the run ends before the first periodic state: the final file is all there is
    minutes = round(interval * (time.seconds_per_step or 0) / 60)
    hours = time.total_hours or 0
    values.set("save_state", True, SOURCE,
               f"the run is estimated at {hours:.1f} h: a state about every {STATE_EVERY_MINUTES} min lets "
               f"`launch --resume` continue after a crash (--set save_state=false to turn off)")
    if not values["save_every_n_steps"]:
        values.set("save_every_n_steps", interval, SOURCE,
                   f"≈ {minutes} min of training at the estimated {time.seconds_per_step:.2f} s/step; "
                   f"sd-scripts saves a state only beside a LoRA file")
    step_interval = values["save_every_n_steps"]
    if not values.user_set("save_last_n_steps_state"):
        # sd-scripts deletes the state of step s − n − 1 rounded down to the interval: n = (K − 1) × interval keeps K
        values.set("save_last_n_steps_state", (KEEP_STATES - 1) * step_interval, SOURCE,
                   f"keeps the last {KEEP_STATES} step states on disk, older ones are deleted")
    if values["save_every_n_epochs"] and not values.user_set("save_last_n_epochs_state"):
        values.set("save_last_n_epochs_state", 1, SOURCE,
                   "each epoch save also writes a state; keep only the newest of those")
