"""`lorakit launch`: start sd-scripts through accelerate, watch it, and keep a true record of the run.

`run_plan` is the whole launch without any printing: it runs Gate 4 (doctor), refuses a plan that
already has outputs unless told to resume or start fresh, starts the trainer in its own process
group with an argument list, reads stdout and stderr continuously (a full pipe would stall
training) into `<plan>/logs/train.log`, parses them into events, samples the GPU, writes lorakit's
TensorBoard events and keeps `<plan>/run.json` current. Events go to `on_event` (the live display,
the batch runner). A `Stopper` (lorakit.run.process) ends a run cleanly from another thread or a signal
handler: the trainer's group gets SIGINT, then SIGTERM, then SIGKILL; no process is left behind.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import os
import queue
import shlex
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lorakit import __version__
from lorakit.errors import GateError, UserError
from lorakit.machine.trainer import trainer_command
from lorakit.models.fetch import LocalModels, relocate
from lorakit.models.source import ModelSection
from lorakit.plan.build import Plan, load_plan
from lorakit.plan.paths import left_behind
from lorakit.run.diagnose import Ending, diagnose, replan_command
from lorakit.run.doctor import DoctorOptions, DoctorReport, run_doctor
from lorakit.run.earlier import LOG_FILE, if_possible, output_dir_of, output_name_of, plan_lock
from lorakit.run.earlier import check_outputs as check_earlier
from lorakit.run.outputs import latest_state, list_outputs, saved_step
from lorakit.run.process import Interrupted, Stopper, drain, end_group, signal_group, start_group
from lorakit.run.record import FINAL_STATES, RUN_FILE, Attempt, RecordNotWritten, RunRecord, now_iso, write_record
from lorakit.util.files import disk_full_text, is_disk_full
from lorakit.watch.events import (
    Event,
    Exited,
    LogMessage,
    Mismatch,
    Problem,
    Started,
    TrainingSummary,
)
from lorakit.watch.gpumon import Monitor, open_monitor, watched_gpus
from lorakit.watch.parse import StreamParser
from lorakit.watch.resumed import ResumedSteps
from lorakit.watch.tally import RunTally

if TYPE_CHECKING:
    from lorakit.watch.tbwriter import TensorBoardWriter

# Set for every trainer: unbuffered prints (events arrive when they happen), UTF-8 for sd-scripts'
# Japanese messages whatever the locale, and a wider Rich console so fewer log lines wrap.
TRAINER_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8", "COLUMNS": "200"}


@dataclass
class LaunchOptions:
    sd_scripts: str | None = None
    python: str | None = None
    gpus: str | None = None  # accelerate --gpu_ids; overrides the plan's gpu_ids
    cpu: bool = False  # train on the CPU even when CUDA is there (it is chosen anyway when there is none)
    resume: bool = False  # continue from the newest *-state folder
    resume_if_possible: bool = False  # --resume when there is a state, a start when the plan never ran
    fresh: bool = False  # start again, moving the old outputs to <plan>/previous/<time>/
    tensorboard: bool = True
    tensorboard_experiment: bool = True  # False when a batch writes one HParams experiment for all its runs
    stop_on_nan: bool = True  # a NaN loss ruins the LoRA; stop instead of training on
    sigint_grace_s: float = 30.0
    sigterm_grace_s: float = 15.0
    # after the trainer exited, how long what it started may hold its pipes open before the group is ended
    pipe_grace_s: float = 2.0
    group_grace_s: float = 2.0  # ending the group: the wait after SIGTERM, then after SIGKILL
    record_every_s: float = 5.0
    gpu_every_s: float = 2.0


@dataclass
class LaunchSetup:
    """Everything decided before the trainer starts (also what --dry-run prints)."""

    plan: Plan
    plan_dir: Path
    command: list[str]
    env: dict[str, str]  # the trainer's whole environment
    env_changes: dict[str, str]  # what lorakit set or changed in it
    cpu: bool
    doctor: DoctorReport
    base_model: str  # the base model as this machine has it, for people
    resume_from: Path | None = None
    warnings: list[str] = field(default_factory=list)
    models: LocalModels | None = None  # the model files on this machine (ensure_local), once fetched
    models_here: ModelSection | None = None  # the plan's models as this machine has them (Gate 4 looked)

    @property
    def shell_line(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env_changes.items())
        return f"cd {shlex.quote(str(self.plan_dir))} && {env} {shlex.join(self.command)}"


# --- before the start -----------------------------------------------------------------------------

def prepare_launch(plan_dir: Path, options: LaunchOptions | None = None, env: dict[str, str] | None = None, *,
                   check_outputs: bool = True) -> LaunchSetup:
    """Gate 4, the output-folder rules and the exact command; raises instead of starting a bad run."""
    options = options or LaunchOptions()
    plan = load_plan(plan_dir)
    plan_dir = Path(plan.plan_dir)  # where the folder is now (PLAN or PLAN/plan.json was given)
    _refuse_paths_left_behind(plan)
    base_env = dict(os.environ if env is None else env)
    models_here = relocate(plan.model)  # the Hub cache is located once per launch
    report = run_doctor(plan, DoctorOptions(options.sd_scripts, options.python, options.gpus, options.cpu, base_env),
                        models_here)
    errors = [f for f in report.findings if f.level == "error"]
    if errors:
        raise GateError(f"the environment check (Gate 4) found {len(errors)} error(s); the trainer was not started.",
                        errors, fix="Fix the errors above (each says how), then launch again; `lorakit doctor PLAN` re-checks.")
    if sum((options.resume, options.fresh, options.resume_if_possible)) > 1:
        raise UserError("--resume, --resume-if-possible and --fresh contradict each other.", fix="pick one")
    resume_from = None
    output_dir, name = output_dir_of(plan), output_name_of(plan)
    warnings = []
    if check_outputs:
        resume, fresh = options.resume, options.fresh
        if options.resume_if_possible:
            resume, fresh, note = if_possible(plan_dir, output_dir, name)
            warnings += [note] if note else []
        resume_from = check_earlier(plan_dir, output_dir, name, plan.total_steps, resume=resume, fresh=fresh)
    elif options.resume or options.resume_if_possible:
        resume_from = latest_state(output_dir, name)
    # relative, as in launch.sh: the trainer starts in the plan folder
    command = trainer_command(report.python, Path(report.sd_scripts), Path("config.toml"), plan.value_set,
                              cpu=report.cpu, gpu_ids=options.gpus)
    if resume_from is not None:
        # without --skip_until_initial_step sd-scripts restarts at step 0 and only skips whole epochs (docs/sd-scripts.md §8)
        command += ["--resume", str(resume_from), "--skip_until_initial_step"]
    changes = dict(TRAINER_ENV)
    if "CUDA_VISIBLE_DEVICES" in base_env:
        changes["CUDA_VISIBLE_DEVICES"] = base_env["CUDA_VISIBLE_DEVICES"]
    warnings += [f.message for f in report.findings if f.level == "warning"]
    return LaunchSetup(plan, plan_dir, command, base_env | changes, changes, report.cpu, report, report.base_model or "",
                       resume_from, warnings, models_here=models_here)


def _refuse_paths_left_behind(plan: Plan) -> None:
    stale = left_behind(plan.values, Path(plan.planned_in), Path(plan.plan_dir))
    if stale:
        raise UserError(
            f"this plan was made in {plan.planned_in} and has been copied or moved to {plan.plan_dir}, but its "
            f"config.toml still names files in the old folder ({', '.join(stale)}): a launch would train there. "
            "Plans made by this lorakit name their own files relative to the plan folder.",
            fix=f"re-plan it where it is now (your outputs stay): {replan_command(plan, {})}")


# --- the run --------------------------------------------------------------------------------------

def run_plan(plan_dir: Path, options: LaunchOptions | None = None, on_event: Callable[[Event], None] | None = None,
             env: dict[str, str] | None = None, stopper: Stopper | None = None,
             monitor: Monitor | None = None, *, attempts: list[Attempt] | None = None) -> RunRecord:
    """Launch the plan and watch it to the end; returns the final run record (also in run.json).

    `attempts` (lorakit.run.recover) are the run's earlier attempts and this one, last: the caller holds the
    plan lock, and for a later attempt it has dealt with the earlier attempt's outputs already.
    """
    from lorakit.models.fetch import ensure_local

    options = options or LaunchOptions()
    folder = Path(load_plan(Path(plan_dir)).plan_dir)  # a folder that is not a plan gets no lock file
    # the lock: before --fresh or --resume move anything, and until the record is closed
    with plan_lock(folder) if attempts is None else nullcontext():
        setup = prepare_launch(folder, options, env, check_outputs=attempts is None or len(attempts) == 1)
        # Models last: Gate 4 has passed, so a download is never wasted on a run that cannot start.
        setup.models = ensure_local(setup.models_here or relocate(setup.plan.model), setup.plan_dir)
        setup.command += setup.models.trainer_args(setup.plan.model)
        stopper = stopper or Stopper()
        if stopper.stopped.is_set():
            raise Interrupted("stopped before the trainer started; nothing was trained.")
        with stopper.training():
            return Launch(setup, options, on_event, stopper, monitor, attempts or [Attempt(number=1)]).run()



class Launch:
    """One running trainer: its process group, readers, parsers, consumers and record."""

    def __init__(self, setup: LaunchSetup, options: LaunchOptions, on_event: Callable[[Event], None] | None,
                 stopper: Stopper, monitor: Monitor | None, attempts: list[Attempt]):
        self.setup, self.options, self.stopper = setup, options, stopper
        self.attempts = attempts  # the earlier attempts of this run, and this one last
        self.plan = setup.plan
        self.on_event = on_event
        # sd-scripts' bar counts only the steps of this start; everything lorakit shows counts from the plan's step 0
        self.step_offset = (saved_step(setup.resume_from) or 0) if setup.resume_from is not None else 0
        self.true_steps = ResumedSteps(self.step_offset)
        self.tally = RunTally(start_step=self.step_offset)
        self.monitor = monitor
        self.stop_reason: str | None = None
        self._signals_sent = 0
        self._next_signal_at: float | None = None
        self._handled_requests = 0
        self.tensorboard: TensorBoardWriter | None = None
        self.record = RunRecord(
            state="running", plan=self.plan.name, plan_dir=str(setup.plan_dir), plan_created=self.plan.created,
            planned_steps=self.plan.total_steps,
            command=setup.command, environment=setup.env_changes, sd_scripts=setup.doctor.sd_scripts,
            sd_scripts_commit=setup.doctor.sd_scripts_commit, sd_scripts_version=setup.doctor.sd_scripts_version,
            sd_scripts_checked_by=setup.doctor.sd_scripts_checked_by, python=setup.doctor.python, cpu=setup.cpu,
            gpu=_gpu_description(setup, options), base_model=setup.base_model, models=setup.models,
            resumed_from=str(setup.resume_from) if setup.resume_from else None,
            warnings=list(setup.warnings), log=str(setup.plan_dir / LOG_FILE), lorakit_version=__version__,
            attempts=attempts,
        )

    def run(self) -> RunRecord:
        plan_dir = self.setup.plan_dir
        log = str(plan_dir / LOG_FILE)
        (plan_dir / LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
        self._open_tensorboard()
        started_wall = time.time()
        self.record.started = now_iso()
        try:
            # in the plan folder: config.toml names the plan's own files relative to it
            process = start_group(self.setup.command, self.setup.env, cwd=plan_dir)
        except OSError as exc:
            return self._finish(started_wall, Ending(None, None, [Problem("crash", f"could not start the trainer: {exc}")],
                                                     False, log=log))
        self.record.pid = process.pid
        failure = self._write_record()
        if failure is not None:  # a run without a record must not go on
            end_group(process, self.options.group_grace_s)
            raise RecordNotWritten(plan_dir / RUN_FILE, failure, "the trainer was stopped as soon as it started")
        monitor = self.monitor or open_monitor(self.options.gpus or self.plan.value_set["gpu_ids"], self.setup.env,
                                               cpu=self.setup.cpu)
        for warning in self.setup.warnings:
            self._emit(LogMessage("WARNING", warning), time.monotonic())
        self._emit(Started(process.pid, self.setup.command), time.monotonic())
        try:
            exit_code = self._watch(process, monitor)
        except BaseException as exc:
            # lorakit itself was interrupted or failed while watching: end the trainer and still close the record
            end_group(process, self.options.group_grace_s)
            if isinstance(exc, KeyboardInterrupt):
                self.stop_reason = "interrupted"
            else:
                self.tally.problems.append(Problem("crash", f"lorakit stopped watching the run: {exc!r}"))
            self._finish(started_wall, Ending(process.poll(), None, self.tally.problems, False,
                                              stopped=self.stop_reason, log=log))
            raise
        finally:
            end_group(process, self.options.group_grace_s)
            monitor.close()
        signal_name = signal.Signals(-exit_code).name if exit_code is not None and exit_code < 0 else None
        self._emit(Exited(exit_code, signal_name), time.monotonic())
        ending = Ending(exit_code, signal_name, self.tally.problems, self._final_output_written(started_wall),
                        stopped=self.stop_reason, log=log)
        return self._finish(started_wall, ending)

    # --- watching ---------------------------------------------------------------------------------

    def _watch(self, process, monitor: Monitor) -> int | None:
        chunks: queue.Queue = queue.Queue()
        readers = [threading.Thread(target=drain, args=(stream, name, chunks), daemon=True)
                   for name, stream in (("stdout", process.stdout), ("stderr", process.stderr))]
        for reader in readers:
            reader.start()
        parsers = {"stdout": StreamParser(), "stderr": StreamParser()}
        decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in parsers}
        open_streams = len(readers)
        last_record = last_gpu = time.monotonic()
        exited_at: float | None = None
        # unbuffered: a full disk shows at the write that failed, not at a later flush or close
        with open(self.setup.plan_dir / LOG_FILE, "ab", buffering=0) as log:
            while open_streams:
                try:
                    name, data = chunks.get(timeout=0.2)
                except queue.Empty:
                    name, data = None, b""
                now = time.monotonic()
                if name is not None and data is None:
                    open_streams -= 1
                    events = parsers[name].feed(decoders[name].decode(b"", final=True)) + parsers[name].close()
                elif data:
                    self._write_log(log, data, now)
                    events = parsers[name].feed(decoders[name].decode(data))
                else:
                    events = []
                for event in events:
                    self._emit(event, now)
                if now - last_gpu >= self.options.gpu_every_s:
                    last_gpu = now
                    sample = monitor.sample()
                    if sample is not None:
                        self._emit(sample, now)
                if now - last_record >= self.options.record_every_s:
                    last_record = now
                    self._update_record()
                self._handle_stop(now)
                if exited_at is None and process.poll() is not None:
                    exited_at = now
                elif exited_at is not None and now - exited_at > self.options.pipe_grace_s:
                    # the trainer is gone but something it started still holds the pipes open
                    end_group(process, self.options.group_grace_s)
        return process.wait()

    def _write_log(self, log, data: bytes, at: float) -> None:
        if self.stop_reason == "disk-full":
            return
        try:
            log.write(data)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._disk_full(exc, self.setup.plan_dir / LOG_FILE, at)

    def _disk_full(self, exc: OSError, path: Path, at: float) -> None:
        """lorakit cannot keep the log or the record: stop the trainer (its own saves would fail too) and say why."""
        if self.stop_reason == "disk-full":
            return
        self.stop_reason = "disk-full"
        self._emit(Problem("disk-full", f"lorakit cannot write {path}: {disk_full_text(exc, path)}"), at)
        self._signal_group(signal.SIGINT, at)

    def _emit(self, event: Event, at: float) -> None:
        event = self.true_steps(event)
        self.tally.add(event, at)
        if isinstance(event, TrainingSummary):
            mismatch = self._compare_with_plan(event)
            if mismatch:
                self.record.warnings.append(mismatch)
                self._emit(Mismatch(mismatch), at)
        if isinstance(event, Problem) and event.kind == "nan-loss" and self.options.stop_on_nan and self.stop_reason is None:
            self.stop_reason = "nan-loss"
            self._signal_group(signal.SIGINT, at)
        if self.tensorboard is not None:
            self.tensorboard(event)
        if self.on_event is not None:
            self.on_event(event)

    def _compare_with_plan(self, summary: TrainingSummary) -> str | None:
        if self.setup.resume_from is not None:
            return None  # a resumed run counts its steps differently
        math_ = self.plan.step_math
        differences = []
        for label, said, planned in (("total steps", summary.total_steps, self.plan.total_steps),
                                     ("epochs", summary.epochs, self.plan.epochs),
                                     ("batches per epoch", summary.batches_per_epoch, math_.batches_per_process)):
            if said is not None and said != planned:
                differences.append(f"{label} {said} (plan: {planned})")
        if not differences:
            return None
        return ("sd-scripts will run differently from the plan's prediction: " + ", ".join(differences)
                + ". The dataset may have changed since planning; re-plan to see why.")

    # --- stopping ---------------------------------------------------------------------------------

    def _handle_stop(self, now: float) -> None:
        requests = self.stopper.requests
        if requests > self._handled_requests:
            new = requests - self._handled_requests
            self._handled_requests = requests
            if self.stop_reason is None or self.stop_reason == "nan-loss":
                self.stop_reason = "interrupted"
            for _ in range(new):
                self._escalate(now)
        elif self._next_signal_at is not None and now >= self._next_signal_at:
            self._escalate(now)

    def _escalate(self, now: float) -> None:
        order = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
        if self._signals_sent < len(order):
            self._signal_group(order[self._signals_sent], now)

    def _signal_group(self, sig: signal.Signals, now: float) -> None:
        pid = self.record.pid
        if pid is None:
            return
        signal_group(pid, sig)
        self._signals_sent = {signal.SIGINT: 1, signal.SIGTERM: 2, signal.SIGKILL: 3}[sig]
        grace = {signal.SIGINT: self.options.sigint_grace_s, signal.SIGTERM: self.options.sigterm_grace_s}.get(sig)
        self._next_signal_at = now + grace if grace is not None else None

    # --- the record -------------------------------------------------------------------------------

    def _open_tensorboard(self) -> None:
        if not self.options.tensorboard:
            return
        from lorakit.errors import UserError as _Missing
        from lorakit.watch.tbwriter import TensorBoardWriter, plan_hparams

        folder = self.setup.plan_dir / "tensorboard" / "lorakit" / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        try:
            self.tensorboard = TensorBoardWriter(folder, plan_hparams(self.plan.value_set) | {"lorakit/plan": self.plan.name},
                                                 experiment=self.options.tensorboard_experiment)
        except _Missing as exc:
            self.record.warnings.append(f"no TensorBoard events: {exc.message} {exc.fix}")
            if self.on_event is not None:
                self.on_event(LogMessage("WARNING", self.record.warnings[-1]))
            return
        self.record.tensorboard = str(folder)

    def _write_record(self) -> OSError | None:
        """Write run.json; a full disk is returned (the caller decides), any other failure raised."""
        try:
            write_record(self.setup.plan_dir, self.record)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            return exc
        return None

    def _update_record(self) -> OSError | None:
        tally, record = self.tally, self.record
        record.steps_done = tally.steps_done
        record.total_steps = tally.total_steps
        record.epoch, record.epochs = tally.epoch, tally.epochs
        record.last_loss, record.min_loss = tally.last_loss, tally.min_loss
        record.peak_vram_gib = round(tally.peak_vram_gib, 2) if tally.peak_vram_gib is not None else None
        record.seconds_per_step = tally.seconds_per_step
        record.it_per_s = tally.it_per_s
        self.attempts[-1].follow(record)
        record.attempts = self.attempts
        failure = self._write_record()
        if failure is not None:
            self._disk_full(failure, self.setup.plan_dir / RUN_FILE, time.monotonic())
        return failure

    def _final_output_written(self, started_wall: float) -> bool:
        values = self.plan.value_set
        final = output_dir_of(self.plan) / f"{values['output_name'] or 'last'}.{values['save_model_as'] or 'safetensors'}"
        return final.is_file() and final.stat().st_mtime >= started_wall - 1

    def _finish(self, started_wall: float, ending: Ending) -> RunRecord:
        verdict = diagnose(ending, self.plan, python=self.setup.doctor.python, sd_scripts=self.setup.doctor.sd_scripts)
        record = self.record
        record.state = verdict.state  # type: ignore[assignment]
        record.problem, record.diagnosis, record.suggestion = verdict.problem, verdict.diagnosis, verdict.suggestion
        record.exit_code, record.signal = ending.exit_code, ending.signal
        record.outputs = list_outputs(output_dir_of(self.plan), since=started_wall, name=output_name_of(self.plan))
        record.ended = now_iso()
        record.duration_s = round(time.time() - started_wall, 2)
        failure = self._update_record()
        assert record.state in FINAL_STATES
        if self.tensorboard is not None:
            self.tensorboard.close(record.state)
        if failure is not None:
            why = f" ({record.problem}: {record.diagnosis})" if record.problem else ""
            raise RecordNotWritten(self.setup.plan_dir / RUN_FILE, failure, f"the run ended as {record.state}{why}")
        return record


def _gpu_description(setup: LaunchSetup, options: LaunchOptions) -> str:
    if setup.cpu:
        return "cpu"
    from lorakit.machine.probe import probe

    gpus = probe().gpus
    wanted = watched_gpus(options.gpus or setup.plan.value_set["gpu_ids"], setup.env)
    chosen = [g for g in gpus if wanted is None or g.index in wanted]
    if not chosen:
        return "cuda"
    return ", ".join(f"{g.name} (GPU {g.index})" for g in chosen)
