"""Out-of-memory recovery: a run whose trainer dies of CUDA out-of-memory finishes anyway, training the same recipe.

`launch` runs the plan as `lorakit.run.launch.run_plan` does; when an attempt ends with CUDA
out-of-memory (and only then: a NaN loss, a missing module or a bad argument is never "recovered"),
it holds on to the plan's lock and:

1. records the setup that did not fit as a measured point for the plan's GPU in the calibration file
   (lorakit.run.calibrate.record_out_of_memory), so Gate 3 and the next plan for that card count it;
2. plans one notch down (lorakit.plan.revise): the first notch whose revision passes every gate (a notch
   Gate 3 still finds over the budget gets the next one added); your own values are never changed;
3. keeps the old plan files in `.lorakit-history/` and writes the revision (source `auto:oom-recovery`);
4. resumes from the newest saved state when there is one and the revision keeps the step count, and
   otherwise starts again (the failed attempt's outputs move to `previous/`), saying why;
5. starts the next attempt in the same run.json, whose `attempts` list every start.

After `max_recoveries` recoveries, or when no notch is left, it stops with a verdict that says what was
tried and what to do. Ctrl-C while it re-plans (or during any attempt) stops the whole run (exit 130).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.plan.build import Plan, PlanResult, load_plan
from lorakit.plan.revise import Notch, blocked_notches, notches, revise, write_revision
from lorakit.run.calibrate import record_out_of_memory
from lorakit.run.diagnose import GPU_OUT_OF_MEMORY, replan_command
from lorakit.run.earlier import move_aside, output_dir_of, output_name_of, plan_lock
from lorakit.run.launch import LaunchOptions, run_plan
from lorakit.run.outputs import latest_state, model_files, saved_step, state_folders
from lorakit.run.process import Stopper
from lorakit.run.record import Attempt, Change, RunRecord, now_iso, write_record
from lorakit.watch.events import Event, LogMessage
from lorakit.watch.gpumon import Monitor

OVER_BUDGET = "hardware/vram-over-budget"


@dataclass
class RecoverOptions:
    enabled: bool = True  # --no-recover: off
    max_recoveries: int = 2  # --max-recoveries N
    quality: bool = False  # --recover quality: rank, resolution and precision may be lowered too


@dataclass
class NextAttempt:
    attempt: Attempt
    resume: bool
    plan_files: Path | None  # where the failed attempt's plan files are kept now


class GiveUp(Exception):
    """No next attempt: `diagnosis` says why, `suggestion` what to do."""

    def __init__(self, diagnosis: str, suggestion: str):
        super().__init__(diagnosis)
        self.diagnosis, self.suggestion = diagnosis, suggestion


def launch(plan_dir: Path, options: LaunchOptions | None = None, recover: RecoverOptions | None = None,
           on_event: Callable[[Event], None] | None = None, env: dict[str, str] | None = None,
           stopper: Stopper | None = None, monitor: Monitor | None = None) -> RunRecord:
    """Launch the plan, recovering from CUDA out-of-memory as the module docstring says; returns the whole run's record."""
    options, recover = options or LaunchOptions(), recover or RecoverOptions()
    if not recover.enabled:
        return run_plan(plan_dir, options, on_event, env, stopper, monitor)
    stopper = stopper or Stopper()
    folder = Path(load_plan(Path(plan_dir)).plan_dir)
    with plan_lock(folder):
        attempts = [Attempt(number=1)]
        record = run_plan(folder, options, on_event, env, stopper, monitor, attempts=attempts)
        warnings: list[str] = []
        while recoverable(record):
            with stopper.training():  # Ctrl-C while re-planning asks the stopper, so nothing more starts
                try:
                    warnings += _remember_out_of_memory(folder)
                    if len(attempts) > recover.max_recoveries:
                        raise GiveUp(f"it ran out of GPU memory in {len(attempts)} attempts; lorakit stopped after "
                                     f"--max-recoveries {recover.max_recoveries}",
                                     _what_next(load_plan(folder), recover, more=True))
                    following = next_attempt(folder, attempts, recover)
                except GiveUp as verdict:
                    return _give_up(folder, record, warnings, verdict)
                except LorakitError as exc:  # the dataset went missing since planning, a damaged calibration file
                    return _give_up(folder, record, warnings, GiveUp(
                        f"lorakit could not plan it again: {' '.join(exc.message.split())}",
                        exc.fix or "fix that, re-plan (`lorakit plan ... --force`) and launch again"))
            attempts[-1].plan_files = str(following.plan_files) if following.plan_files else None
            if stopper.stopped.is_set():
                return _interrupted(folder, record, attempts, warnings)
            warnings += _announce(following, on_event)
            attempts.append(following.attempt)
            again = replace(options, resume=following.resume, fresh=False, resume_if_possible=False)
            record = run_plan(folder, again, on_event, env, stopper, monitor, attempts=attempts)
        if len(attempts) > 1:  # the record is the whole run's: its start, its training time, what recovery said
            record.started, record.warnings = attempts[0].started, [*warnings, *record.warnings]
            record.duration_s = round(sum(a.duration_s or 0.0 for a in attempts), 2)
            write_record(folder, record)
        return record


def _remember_out_of_memory(folder: Path) -> list[str]:
    """Record the setup that did not fit first, so Gate 3 judges the revision with it (and so do the next plans);
    a calibration file lorakit cannot write costs the lesson, not the run."""
    try:
        record_out_of_memory(load_plan(folder))
    except OSError as exc:
        return [f"the setup that ran out of GPU memory was not recorded in the calibration file "
                f"({exc.strerror or exc}: {exc.filename or ''}); the next plan for this card may choose it again"]
    return []


def recoverable(record: RunRecord) -> bool:
    """Only CUDA out-of-memory: RAM running out, a NaN loss, a missing module or bad arguments are not the GPU's size."""
    return (record.state == "failed" and record.problem == "out-of-memory"
            and (record.diagnosis or "").startswith(GPU_OUT_OF_MEMORY))


def next_attempt(folder: Path, attempts: list[Attempt], recover: RecoverOptions) -> NextAttempt:
    """Write the revision one notch down, and decide how the next attempt starts (resumed: docs/sd-scripts.md §8)."""
    plan = load_plan(folder)
    values = plan.value_set
    available = notches(values, quality=recover.quality)
    if not available:
        raise GiveUp("it ran out of GPU memory and lorakit has no change left that it may make",
                     _what_next(plan, recover, more=False))
    result, chosen = _first_that_passes(plan, available, len(attempts) + 1, recover)
    changes = [Change(key=key, old=values.get(key), new=value) for notch in chosen for key, value, _ in notch.settings]
    revised = result.plan
    resume, why = _how_to_start(plan, revised)
    if not resume:
        output_dir, name = output_dir_of(plan), output_name_of(plan)
        if model_files(output_dir, name) or state_folders(output_dir, name):
            kept = move_aside(folder, output_dir, name, keep_outputs=False, keep_record=True)
            why += f"; the failed attempt's outputs moved to {kept.relative_to(folder)}"
    plan_files = write_revision(result)
    quality = [notch.quality for notch in chosen if notch.quality]
    attempt = Attempt(number=len(attempts) + 1, changes=changes, why=why, quality=bool(quality))
    return NextAttempt(attempt, resume, plan_files)


def _first_that_passes(plan: Plan, available: list[Notch], number: int,
                       recover: RecoverOptions) -> tuple[PlanResult, list[Notch]]:
    """One notch, or as many more as Gate 3 needs to find the estimate within the budget; other gate errors stop."""
    chosen: list[Notch] = []
    for notch in available:
        chosen.append(notch)
        names = " + ".join(n.name for n in chosen)
        result = revise(plan, [s for n in chosen for s in n.settings],
                        f"revision for attempt {number}: out-of-memory recovery ({names})")
        errors = [f for f in result.plan.findings if f.level == "error"]
        if not errors:
            return result, chosen
        if any(f.code != OVER_BUDGET for f in errors):
            raise GiveUp("it ran out of GPU memory, and the plan one notch down does not pass the gates: "
                         + "; ".join(f"{f.code}: {f.message}" for f in errors if f.code != OVER_BUDGET),
                         "fix those, re-plan (`lorakit plan ... --force`) and launch again")
    raise GiveUp(f"it ran out of GPU memory, and even with every change lorakit may make ({names}) the estimate "
                 "stays over the budget now that the setup that failed counts as measured",
                 _what_next(plan, recover, more=False))


def _how_to_start(plan: Plan, revised: Plan) -> tuple[bool, str]:
    state = latest_state(output_dir_of(plan), output_name_of(plan))
    if state is None:
        return False, "started again: the failed attempt saved no training state to resume from"
    if revised.total_steps != plan.total_steps:
        return False, (f"started again: the change alters the step count ({plan.total_steps} → {revised.total_steps}), "
                       f"so the saved state {state.name} does not continue it")
    done = saved_step(state)
    if done is not None and done >= revised.total_steps:
        return False, f"started again: the saved state {state.name} is at the last step"
    return True, f"resumed from {state.name} (step {done}): the change keeps the step count"


def _what_next(plan: Plan, recover: RecoverOptions, *, more: bool) -> str:
    """What the user can do: free one of their own values, allow quality levers, or give the run more attempts."""
    values = plan.value_set
    blocked = blocked_notches(values, quality=recover.quality)
    advice = []
    if blocked:
        notch, keys = blocked[0]
        yours = ", ".join(f"{key}={values.get(key)} ({values.yours(key)})" for key in keys)
        advice.append(f"your own {yours} stops lorakit from using {notch.name}; change it: "
                      + replan_command(plan, {key: value for key, value, _ in notch.settings}))
    if not recover.quality and notches(values, quality=True) != notches(values, quality=False):
        advice.append(f"or launch with `--recover quality` to let lorakit lower rank, resolution or precision "
                      f"(`lorakit launch {plan.plan_dir} --fresh --recover quality`)")
    if more:
        advice.append(f"or launch again with `--fresh --max-recoveries {recover.max_recoveries + 2}`")
    if not advice:
        advice.append("train on a card with more memory (re-plan it with --target-gpu)")
    return "; ".join(advice)


def _announce(following: NextAttempt, on_event: Callable[[Event], None] | None) -> list[str]:
    """Say what the recovery did, in the output; a recovery that gave up quality says so loudly (and run.json keeps it)."""
    attempt = following.attempt
    lines = [f"CUDA out of memory: recovering with attempt {attempt.number}: {attempt.changes_text()} "
             f"(source auto:oom-recovery); {attempt.why}"]
    warnings = []
    if attempt.quality:
        warnings.append(f"QUALITY LOWERED by out-of-memory recovery (--recover quality), attempt {attempt.number}: "
                        f"{attempt.changes_text()}. The LoRA will not be the one the plan first described.")
        lines.append(warnings[-1])
    if on_event is not None:
        for line in lines:
            on_event(LogMessage("WARNING", line))
    return warnings


def _give_up(folder: Path, record: RunRecord, warnings: list[str], verdict: GiveUp) -> RunRecord:
    tried = [a for a in record.attempts if a.changes]
    history = "; ".join(f"attempt {a.number}: {a.changes_text()} ({a.state})" for a in tried)
    record.diagnosis = (f"{record.diagnosis}. Out-of-memory recovery stopped: {verdict.diagnosis}"
                        + (f" (tried {history})" if history else ""))
    record.suggestion = verdict.suggestion
    record.warnings = [*warnings, *record.warnings]
    write_record(folder, record)
    return record


def _interrupted(folder: Path, record: RunRecord, attempts: list[Attempt], warnings: list[str]) -> RunRecord:
    record.state = "interrupted"
    record.diagnosis = (f"stopped on request while lorakit recovered from out-of-memory; the plan was revised, "
                        f"attempt {len(attempts) + 1} did not start (`lorakit launch {folder} --resume-if-possible` goes on)")
    record.suggestion, record.ended, record.attempts = None, now_iso(), attempts
    record.warnings = [*warnings, *record.warnings]
    write_record(folder, record)
    return record

