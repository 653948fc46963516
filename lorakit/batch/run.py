"""`lorakit batch run`: train a batch's plans through exactly the launch code, resumably.

One worker per GPU slot (each run sees only its card through CUDA_VISIBLE_DEVICES), each taking the
next pending run. What happens to a run depends on its run.json: succeeded runs are skipped, an
interrupted one resumes from its newest saved state (or starts again when it has none), failed ones
rerun only when asked. A lock file keeps a second runner off the batch; a lock left by a dead
runner is taken over (lorakit.util.lock). One Stopper ends every running launch (Ctrl-C in the CLI).
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lorakit.batch.manifest import BatchManifest, BatchRun, load_batch
from lorakit.errors import LorakitError, UserError
from lorakit.plan.build import load_plan
from lorakit.run.launch import LaunchOptions
from lorakit.run.outputs import latest_state, model_files
from lorakit.run.process import Interrupted, Stopper
from lorakit.run.record import RUN_FILE, RunRecord, now_iso, read_record
from lorakit.run.recover import RecoverOptions
from lorakit.run.recover import launch as launch_recovering
from lorakit.util.files import write_text_atomic
from lorakit.util.lock import PidLock
from lorakit.util.reading import read_json
from lorakit.watch.events import Event

LOCK_FILE = "batch.lock"
PROGRESS_FILE = "batch-run.json"
Action = Literal["start", "resume", "restart", "skip"]


@dataclass
class BatchRunOptions:
    gpus: list[str] | None = None  # one slot per id; None: one slot with the environment as it is
    sd_scripts: str | None = None
    python: str | None = None
    retry_failed: bool = False
    stop_on_failure: bool = False
    tensorboard: bool = True
    recover: RecoverOptions = field(default_factory=RecoverOptions)  # out-of-memory recovery, as `launch` does


@dataclass
class Decision:
    action: Action
    reason: str


@dataclass
class Outcome:
    run: str
    action: Action
    reason: str
    slot: str | None = None
    state: str | None = None  # the run.json state after the launch
    error: str | None = None  # why the launch did not start (Gate 4, a lock of its own, ...)


@dataclass(frozen=True)
class BatchCounts:
    """How the runs of one `batch run` ended, for its summary line."""

    succeeded: int
    failed: int  # failed, or could not start
    interrupted: int
    not_started: int  # skipped, or left waiting when the batch stopped


@dataclass
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: bool = False  # Ctrl-C, or --stop-on-failure after a failure
    total: int = 0  # runs in the batch
    warnings: list[str] = field(default_factory=list)

    @property
    def not_reached(self) -> int:
        """Runs left waiting when the batch stopped early."""
        return self.total - len(self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed" or o.error]

    def counts(self) -> BatchCounts:
        return BatchCounts(
            succeeded=sum(o.state == "succeeded" for o in self.outcomes),
            failed=len(self.failed),
            interrupted=sum(o.state == "interrupted" for o in self.outcomes),
            not_started=sum(o.state is None and not o.error for o in self.outcomes) + self.not_reached,
        )


def decide(run: BatchRun, options: BatchRunOptions) -> Decision:
    """What to do with one run, from its run.json (read fresh: another launch may have changed it)."""
    if run.status != "planned":
        return Decision("skip", "skipped when planned (gate errors)")
    plan_dir = Path(run.plan_dir)
    if not (plan_dir / "plan.json").is_file():
        return Decision("skip", f"its plan folder {plan_dir} is missing; re-plan the batch (lorakit batch plan ... --force)")
    plan = load_plan(plan_dir)
    record = _record(plan_dir)
    output_dir, name = Path(plan.value_set["output_dir"]), plan.value_set["output_name"]
    if record is None:
        leftovers = bool(model_files(output_dir, name))
        return Decision("restart" if leftovers else "start", "outputs without a run record" if leftovers else "not run yet")
    if record.plan_created and record.plan_created != plan.created:
        return Decision("restart", "re-planned since its last run")
    if record.state == "succeeded":
        return Decision("skip", "succeeded already")
    if record.state == "failed":
        if options.retry_failed:
            return Decision("restart", f"failed before ({record.problem or record.diagnosis}); --retry-failed")
        return Decision("skip", f"failed before ({record.problem or record.diagnosis}); rerun with --retry-failed")
    state = latest_state(output_dir, name)
    if state is not None:
        return Decision("resume", f"{record.state}; resuming from {state.name}")
    return Decision("restart", f"{record.state} with no saved state to resume from")


def _record(plan_dir: Path) -> RunRecord | None:
    path = plan_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        return read_record(path)
    except UserError:
        return None


def run_batch(
    batch_dir: Path,
    options: BatchRunOptions | None = None,
    *,
    stopper: Stopper | None = None,
    on_event: Callable[[str, Event], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    env: dict[str, str] | None = None,
) -> BatchResult:
    """Run every pending plan of the batch; returns what happened to each."""
    options = options or BatchRunOptions()
    stopper = stopper or Stopper()
    manifest = load_batch(batch_dir)
    base_env = dict(os.environ if env is None else env)
    with batch_lock(batch_dir):
        progress = Progress(batch_dir)
        result = BatchResult(total=len(manifest.runs), warnings=[progress.problem] if progress.problem else [])
        if options.tensorboard:
            try:
                write_hparams_experiment(batch_dir, manifest)
            except UserError as exc:  # tensorboard is not installed: the runs go on without it, as a launch does
                result.warnings.append(f"no TensorBoard HParams experiment: {exc.message} {exc.fix or ''}".strip())
        todo: queue.Queue[BatchRun] = queue.Queue()
        for run in manifest.runs:
            decision = decide(run, options)
            if decision.action == "skip":
                outcome = Outcome(run.id, "skip", decision.reason, state=_state(run))
                result.outcomes.append(outcome)
                if on_outcome:
                    on_outcome(outcome)
            else:
                todo.put(run)
        halt = threading.Event()
        lock = threading.Lock()

        def worker(slot: str | None) -> None:
            while not (stopper.stopped.is_set() or halt.is_set()):
                try:
                    run = todo.get_nowait()
                except queue.Empty:
                    return
                outcome = _launch(run, slot, options, stopper, base_env, on_event, progress)
                with lock:
                    result.outcomes.append(outcome)
                    if options.stop_on_failure and (outcome.state == "failed" or outcome.error):
                        halt.set()
                if on_outcome:
                    on_outcome(outcome)

        slots: list[str | None] = list(options.gpus) if options.gpus else [None]
        threads = [threading.Thread(target=worker, args=(slot,), name=f"batch-slot-{slot}") for slot in slots]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result.stopped = stopper.stopped.is_set() or halt.is_set()
        order = {run.id: i for i, run in enumerate(manifest.runs)}
        result.outcomes.sort(key=lambda o: order[o.run])
        return result


def _state(run: BatchRun) -> str | None:
    record = _record(Path(run.plan_dir)) if run.status == "planned" else None
    return record.state if record else None


def _launch(run: BatchRun, slot: str | None, options: BatchRunOptions, stopper: Stopper, base_env: dict[str, str],
            on_event: Callable[[str, Event], None] | None, progress: Progress) -> Outcome:
    decision = decide(run, options)  # again: the run may have changed while it waited
    if decision.action == "skip":
        return Outcome(run.id, "skip", decision.reason, slot, _state(run))
    env = dict(base_env)
    if slot is not None:
        env["CUDA_VISIBLE_DEVICES"] = slot
    launch_options = LaunchOptions(
        sd_scripts=options.sd_scripts, python=options.python, resume=decision.action == "resume",
        fresh=decision.action == "restart", tensorboard=options.tensorboard, tensorboard_experiment=False,
    )
    progress.started(run.id, slot)
    forward = (lambda event: on_event(run.id, event)) if on_event else None
    try:
        record = launch_recovering(Path(run.plan_dir), launch_options, options.recover, on_event=forward, env=env,
                                   stopper=stopper)
    except Interrupted:
        progress.ended(run.id)
        return Outcome(run.id, decision.action, "stopped before its trainer started", slot)
    except LorakitError as exc:
        message = " ".join(exc.render().split())
        found = [f"{f.code}: {f.message} (fix: {f.fix})" for f in getattr(exc, "findings", []) if f.level == "error"]
        if found:  # a failed Gate 4 says which checks failed, here and in `batch status`
            message += " " + " ".join(found)
        progress.ended(run.id, error=message)
        return Outcome(run.id, decision.action, decision.reason, slot, error=message)
    except Exception as exc:  # noqa: BLE001  (a bug must not silently end a worker and the rest of the batch)
        message = f"lorakit failed while running it: {type(exc).__name__}: {exc}"
        progress.ended(run.id, error=message)
        return Outcome(run.id, decision.action, decision.reason, slot, error=message)
    progress.ended(run.id, state=record.state)
    return Outcome(run.id, decision.action, decision.reason, slot, record.state)


class Progress:
    """`DIR/batch-run.json`: which runs this runner attempted, on which slot, and why a launch did not start."""

    def __init__(self, batch_dir: Path):
        self.path = batch_dir / PROGRESS_FILE
        self._lock = threading.Lock()
        self.data, self.problem = read_progress(batch_dir)
        self.data["runner"] = {"pid": os.getpid(), "started": now_iso(), "ended": None}
        self._save()

    def started(self, run: str, slot: str | None) -> None:
        with self._lock:
            entry = self.data["runs"].setdefault(run, {"attempts": 0})
            entry.update(attempts=entry["attempts"] + 1, slot=slot, started=now_iso(), ended=None, error=None)
            self._save()

    def ended(self, run: str, *, state: str | None = None, error: str | None = None) -> None:
        with self._lock:
            self.data["runs"][run].update(ended=now_iso(), state=state, error=error)
            self.data["runner"]["ended"] = now_iso()
            self._save()

    def _save(self) -> None:
        write_text_atomic(self.path, json.dumps(self.data, indent=2, ensure_ascii=False) + "\n")


def read_progress(batch_dir: Path) -> tuple[dict, str | None]:
    """The progress file's data (empty when there is none yet), and what is wrong with a file that cannot be read."""
    path = batch_dir / PROGRESS_FILE
    empty: dict = {"runner": None, "runs": {}}
    if not path.exists():
        return empty, None
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:
        if isinstance(data, dict) and isinstance(data.get("runs"), dict):
            return data, None
        why = "not a batch progress record"
    # Damaged, not fatal: each run's own run.json still says how it went; only why runs could not start is lost.
    return empty, (f"cannot read {path} ({why}); lorakit goes on without it, so it cannot say why earlier runs "
                   f"could not start; `lorakit batch run` starts the file afresh.")


def batch_lock(batch_dir: Path) -> PidLock:
    """One runner per batch: `batch.lock` in the batch folder (each launch also locks its own plan)."""
    return PidLock(batch_dir / LOCK_FILE, what="this batch", doing="being run",
                   why="A second runner would start the same plans again.")


def write_hparams_experiment(batch_dir: Path, manifest: BatchManifest) -> None:
    """One HParams experiment for `tensorboard --logdir DIR`: the keys that differ between runs, and the metrics.

    Each run's lorakit events carry its session (all its values as hparams); this experiment says which of
    them to show, so TensorBoard's HParams view compares the batch as one experiment.
    """
    from lorakit.watch.tbwriter import write_experiment

    keys = varying_keys(manifest)
    write_experiment(batch_dir / "hparams", keys)


def varying_keys(manifest: BatchManifest) -> dict[str, object]:
    """The plan values that differ between the batch's planned runs (swept keys first), with an example value."""
    values: dict[str, list] = {}
    runs = manifest.planned()
    for run in runs:
        path = Path(run.plan_dir) / "plan.json"
        if not path.is_file():
            continue
        try:
            plan_values = read_json(path)["values"]
            pairs = [(key, json.dumps(item.get("value"), sort_keys=True)) for key, item in plan_values.items()]
        except (OSError, ValueError, LookupError, TypeError, AttributeError):
            continue  # a damaged plan.json is reported by `batch status`; it only loses its hyperparameters here
        for key, seen in pairs:
            values.setdefault(key, []).append(seen)
    varying = [k for k, seen in values.items() if len(set(seen)) > 1 or len(seen) < len(runs)]
    skip = {"output_name", "output_dir", "dataset_config", "logging_dir", "sample_prompts"}
    ordered = list(manifest.sweeps) + sorted(k for k in varying if k not in manifest.sweeps and k not in skip)
    return {k: json.loads(values[k][0]) for k in ordered if k in values}
