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
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lorakit import __version__
from lorakit.errors import GateError, UserError
from lorakit.machine.trainer import trainer_command
from lorakit.models.fetch import LocalModels, relocate
from lorakit.models.source import ModelSection
from lorakit.plan.build import Plan, load_plan
from lorakit.run.diagnose import Ending, diagnose
from lorakit.run.doctor import DoctorOptions, DoctorReport, run_doctor
from lorakit.run.outputs import latest_state, list_outputs, model_files, sample_files, saved_step, state_folders
from lorakit.run.process import Interrupted, Stopper, drain, end_group, process_alive, signal_group, start_group
from lorakit.run.record import FINAL_STATES, PREVIOUS_DIR, RUN_FILE, RunRecord, now_iso, read_record, write_record
from lorakit.watch.events import Event, Exited, LogMessage, Mismatch, Problem, Started, TrainingSummary
from lorakit.watch.gpumon import Monitor, open_monitor, watched_gpus
from lorakit.watch.parse import StreamParser
from lorakit.watch.tally import RunTally

if TYPE_CHECKING:
    from lorakit.watch.tbwriter import TensorBoardWriter

LOG_FILE = Path("logs") / "train.log"
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
        return " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env_changes.items()) + " " + shlex.join(self.command)


# --- before the start -----------------------------------------------------------------------------

def prepare_launch(plan_dir: Path, options: LaunchOptions | None = None, env: dict[str, str] | None = None, *,
                   check_outputs: bool = True) -> LaunchSetup:
    """Gate 4, the output-folder rules and the exact command; raises instead of starting a bad run."""
    options = options or LaunchOptions()
    plan = load_plan(plan_dir)
    plan_dir = plan_dir.resolve() if plan_dir.is_dir() else plan_dir.resolve().parent  # PLAN or PLAN/plan.json
    base_env = dict(os.environ if env is None else env)
    models_here = relocate(plan.model)  # the Hub cache is located once per launch
    report = run_doctor(plan, DoctorOptions(options.sd_scripts, options.python, options.gpus, options.cpu, base_env),
                        models_here)
    errors = [f for f in report.findings if f.level == "error"]
    if errors:
        raise GateError(f"the environment check (Gate 4) found {len(errors)} error(s); the trainer was not started.",
                        errors, fix="Fix the errors above (each says how), then launch again; `lorakit doctor PLAN` re-checks.")
    if options.resume and options.fresh:
        raise UserError("--resume and --fresh contradict each other.", fix="pick one")
    resume_from = None
    output_dir, name = _output_dir(plan), _output_name(plan)
    if check_outputs:
        resume_from = _check_outputs(plan_dir, output_dir, name, plan.total_steps, options)
    elif options.resume:
        resume_from = latest_state(output_dir, name)
    command = trainer_command(report.python, Path(report.sd_scripts), plan_dir / "config.toml", plan.value_set,
                              cpu=report.cpu, gpu_ids=options.gpus)
    if resume_from is not None:
        # without --skip_until_initial_step sd-scripts restarts at step 0 and only skips whole epochs (docs/sd-scripts.md §8)
        command += ["--resume", str(resume_from), "--skip_until_initial_step"]
    changes = dict(TRAINER_ENV)
    if "CUDA_VISIBLE_DEVICES" in base_env:
        changes["CUDA_VISIBLE_DEVICES"] = base_env["CUDA_VISIBLE_DEVICES"]
    warnings = [f.message for f in report.findings if f.level == "warning"]
    return LaunchSetup(plan, plan_dir, command, base_env | changes, changes, report.cpu, report, report.base_model or "",
                       resume_from, warnings, models_here=models_here)


def _output_dir(plan: Plan) -> Path:
    return Path(plan.value_set["output_dir"] or Path(plan.plan_dir) / "output")


def _output_name(plan: Plan) -> str:
    return plan.value_set["output_name"] or "last"


def _check_outputs(plan_dir: Path, output_dir: Path, name: str, planned_steps: int, options: LaunchOptions) -> Path | None:
    """Refuse to train over earlier results; --resume continues them, --fresh moves them aside.

    Only this plan's files count (its output_name's saves and states), so plans can share an output_dir.
    """
    record_path = plan_dir / RUN_FILE
    try:
        previous = read_record(record_path) if record_path.is_file() else None
    except UserError:
        if not options.fresh:
            raise UserError(f"{record_path} is damaged, so lorakit cannot tell what the last run did.",
                            fix="pass --fresh to start again (the damaged record and old outputs move to "
                                f"{PREVIOUS_DIR}/ in the plan folder)") from None
        previous = None
    if previous is not None and previous.state == "running":
        if previous.pid and process_alive(previous.pid):
            raise UserError(f"a run of this plan is still going (pid {previous.pid}, started {previous.started}).",
                            fix=f"wait for it, or stop it with: kill -INT {previous.pid}")
        # lorakit was killed before it could close the record; say so instead of keeping "running"
        previous.state = "interrupted"
        previous.diagnosis = "lorakit was stopped before the trainer ended; the next launch closed this record"
        write_record(plan_dir, previous)
    has_outputs = bool(model_files(output_dir, name) or state_folders(output_dir, name)) or previous is not None
    if options.resume:
        state = latest_state(output_dir, name)
        if state is None:
            raise UserError(f"there is no saved state (*-state folder) in {output_dir} to resume from.",
                            fix="re-plan with --set save_state=true so runs can be resumed, or start again with --fresh")
        done = saved_step(state)
        if done is not None and done >= planned_steps:
            raise UserError(f"the newest saved state, {state.name}, already trained all {planned_steps} steps; there is "
                            "nothing left to resume.", fix="pass --fresh to train the plan again")
        _move_aside(plan_dir, output_dir, name, keep_outputs=True)
        return state
    if options.fresh:
        _move_aside(plan_dir, output_dir, name, keep_outputs=False)
        return None
    if has_outputs:
        state = latest_state(output_dir, name)
        resume = f"--resume to continue from {state.name}, or " if state else ""
        raise UserError(f"{plan_dir} already has the outputs of an earlier run; lorakit will not train over them.",
                        fix=f"pass {resume}--fresh to start again (the old outputs move to {PREVIOUS_DIR}/ in the plan folder)")
    return None


def _move_aside(plan_dir: Path, output_dir: Path, name: str, *, keep_outputs: bool) -> None:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    keep = plan_dir / PREVIOUS_DIR / stamp
    for n in range(2, 1000):  # two starts within one second keep both earlier runs apart
        if not keep.exists():
            break
        keep = plan_dir / PREVIOUS_DIR / f"{stamp}-{n}"
    moves = [(plan_dir / RUN_FILE, keep / RUN_FILE), (plan_dir / LOG_FILE, keep / LOG_FILE.name)]
    if not keep_outputs and output_dir.is_dir():
        if output_dir.resolve().is_relative_to(plan_dir.resolve()):
            moves.append((output_dir, keep / "output"))
        else:  # an output_dir shared with other plans: only this plan's files move
            ours = model_files(output_dir, name) + state_folders(output_dir, name) + sample_files(output_dir, name)
            moves += [(path, keep / "output" / path.relative_to(output_dir)) for path in ours]
    for source, target in moves:
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), str(target))


# --- the run --------------------------------------------------------------------------------------

def run_plan(plan_dir: Path, options: LaunchOptions | None = None, on_event: Callable[[Event], None] | None = None,
             env: dict[str, str] | None = None, stopper: Stopper | None = None,
             monitor: Monitor | None = None) -> RunRecord:
    """Launch the plan and watch it to the end; returns the final run record (also in run.json)."""
    from lorakit.models.fetch import ensure_local

    options = options or LaunchOptions()
    setup = prepare_launch(Path(plan_dir), options, env)
    # Models last: Gate 4 has passed, so a download is never wasted on a run that cannot start.
    setup.models = ensure_local(setup.models_here or relocate(setup.plan.model), setup.plan_dir)
    setup.command += setup.models.trainer_args(setup.plan.model)
    stopper = stopper or Stopper()
    if stopper.stopped.is_set():
        raise Interrupted("stopped before the trainer started; nothing was trained.")
    with stopper.training():
        return Launch(setup, options, on_event, stopper, monitor).run()


class Launch:
    """One running trainer: its process group, readers, parsers, consumers and record."""

    def __init__(self, setup: LaunchSetup, options: LaunchOptions, on_event: Callable[[Event], None] | None,
                 stopper: Stopper, monitor: Monitor | None):
        self.setup, self.options, self.stopper = setup, options, stopper
        self.plan = setup.plan
        self.on_event = on_event
        self.tally = RunTally()
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
        )

    def run(self) -> RunRecord:
        plan_dir = self.setup.plan_dir
        log = str(plan_dir / LOG_FILE)
        (plan_dir / LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
        self._open_tensorboard()
        started_wall = time.time()
        self.record.started = now_iso()
        try:
            process = start_group(self.setup.command, self.setup.env)
        except OSError as exc:
            return self._finish(started_wall, Ending(None, None, [Problem("crash", f"could not start the trainer: {exc}")],
                                                     False, log=log))
        self.record.pid = process.pid
        write_record(plan_dir, self.record)
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
        with open(self.setup.plan_dir / LOG_FILE, "ab") as log:
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
                    log.write(data)
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
                    log.flush()
                    self._update_record()
                self._handle_stop(now)
                if exited_at is None and process.poll() is not None:
                    exited_at = now
                elif exited_at is not None and now - exited_at > self.options.pipe_grace_s:
                    # the trainer is gone but something it started still holds the pipes open
                    end_group(process, self.options.group_grace_s)
        return process.wait()

    def _emit(self, event: Event, at: float) -> None:
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

    def _update_record(self) -> None:
        tally, record = self.tally, self.record
        record.steps_done = tally.steps_done
        record.total_steps = tally.total_steps
        record.epoch, record.epochs = tally.epoch, tally.epochs
        record.last_loss, record.min_loss = tally.last_loss, tally.min_loss
        record.peak_vram_gib = round(tally.peak_vram_gib, 2) if tally.peak_vram_gib is not None else None
        record.seconds_per_step = tally.seconds_per_step
        record.it_per_s = tally.it_per_s
        write_record(self.setup.plan_dir, record)

    def _final_output_written(self, started_wall: float) -> bool:
        values = self.plan.value_set
        final = _output_dir(self.plan) / f"{values['output_name'] or 'last'}.{values['save_model_as'] or 'safetensors'}"
        return final.is_file() and final.stat().st_mtime >= started_wall - 1

    def _finish(self, started_wall: float, ending: Ending) -> RunRecord:
        verdict = diagnose(ending, self.plan, python=self.setup.doctor.python, sd_scripts=self.setup.doctor.sd_scripts)
        record = self.record
        record.state = verdict.state  # type: ignore[assignment]
        record.problem, record.diagnosis, record.suggestion = verdict.problem, verdict.diagnosis, verdict.suggestion
        record.exit_code, record.signal = ending.exit_code, ending.signal
        record.outputs = list_outputs(_output_dir(self.plan), since=started_wall, name=_output_name(self.plan))
        record.ended = now_iso()
        record.duration_s = round(time.time() - started_wall, 2)
        self._update_record()
        assert record.state in FINAL_STATES
        if self.tensorboard is not None:
            self.tensorboard.close(record.state)
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


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a trainer log, with the bar's `\\r` redraws reduced to their last frame."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join([line for line in shown if line.strip()][-lines:])
