"""What an earlier run of a plan left behind, and the lock that keeps two runs of one plan apart.

A launch never trains over earlier results: `check_outputs` refuses, or continues them (--resume), or
moves them into `<plan>/previous/<time>/` (--fresh), whose run.json then names where its files are;
`if_possible` chooses between those for --resume-if-possible.
`plan_lock` is taken before any of that, so a second launch or `batch run` of a plan that is training is
refused before it changes anything.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path

from lorakit.errors import Busy, UserError
from lorakit.plan.build import Plan
from lorakit.run.outputs import latest_state, model_files, sample_files, saved_step, state_folders
from lorakit.run.process import process_alive
from lorakit.run.record import PREVIOUS_DIR, RUN_FILE, read_record, write_record
from lorakit.util.lock import PLAN_LOCK_FILE, PidLock

LOG_FILE = Path("logs") / "train.log"
LOCK_FILE = PLAN_LOCK_FILE


def output_dir_of(plan: Plan) -> Path:
    return Path(plan.value_set["output_dir"] or Path(plan.plan_dir) / "output")


def output_name_of(plan: Plan) -> str:
    return plan.value_set["output_name"] or "last"


def check_outputs(plan_dir: Path, output_dir: Path, name: str, planned_steps: int, *, resume: bool, fresh: bool) -> Path | None:
    """Refuse to train over earlier results; --resume continues them, --fresh moves them aside.

    Only this plan's files count (its output_name's saves and states), so plans can share an output_dir.
    """
    record_path = plan_dir / RUN_FILE
    try:
        previous = read_record(record_path) if record_path.is_file() else None
    except UserError:
        if not fresh:
            raise UserError(f"{record_path} is damaged, so lorakit cannot tell what the last run did.",
                            fix="pass --fresh to start again (the damaged record and old outputs move to "
                                f"{PREVIOUS_DIR}/ in the plan folder)") from None
        previous = None
    if previous is not None and previous.state == "running":
        copied = not _same_folder(previous.plan_dir, plan_dir)
        if previous.pid and process_alive(previous.pid) and not copied:
            # a lorakit without the plan lock (plan_lock below) is training it
            raise Busy(f"a run of this plan is still going (pid {previous.pid}, started {previous.started}).",
                       fix=f"wait for it, or stop it with: kill -INT {previous.pid}")
        previous.state = "interrupted"
        if copied:  # the folder was copied while its run was going: the record is the original's
            previous.diagnosis = (f"this record was copied from {previous.plan_dir} while that run was going; "
                                  "the next launch here closed it")
        else:  # lorakit was killed before it could close the record; say so instead of keeping "running"
            previous.diagnosis = "lorakit was stopped before the trainer ended; the next launch closed this record"
        write_record(plan_dir, previous)
    has_outputs = bool(model_files(output_dir, name) or state_folders(output_dir, name)) or previous is not None
    if resume:
        state = latest_state(output_dir, name)
        if state is None:
            raise UserError(f"there is no saved state (*-state folder) in {output_dir} to resume from.",
                            fix="re-plan with --set save_state=true so runs can be resumed, or start again with --fresh")
        done = saved_step(state)
        if done is not None and done >= planned_steps:
            raise UserError(f"the newest saved state, {state.name}, already trained all {planned_steps} steps; there is "
                            "nothing left to resume.", fix="pass --fresh to train the plan again")
        move_aside(plan_dir, output_dir, name, keep_outputs=True)
        return state
    if fresh:
        move_aside(plan_dir, output_dir, name, keep_outputs=False)
        return None
    if has_outputs:
        state = latest_state(output_dir, name)
        or_resume = f"--resume to continue from {state.name}, or " if state else ""
        raise UserError(f"{plan_dir} already has the outputs of an earlier run; lorakit will not train over them.",
                        fix=f"pass {or_resume}--fresh to start again (the old outputs move to {PREVIOUS_DIR}/ in the plan folder)")
    return None


def if_possible(plan_dir: Path, output_dir: Path, name: str) -> tuple[bool, bool, str | None]:
    """--resume-if-possible as (resume, fresh, what lorakit does): for a requeued or copied run that may have a state.

    A saved state is resumed; a plan that never ran starts. LoRA files without a state are refused, as a plain
    launch refuses them (nothing would continue them); a run that left only its record and log (stopped before
    its first save) starts again, its record and log moved aside, since there is nothing to train over.
    """
    if latest_state(output_dir, name) is not None:
        return True, False, None
    if model_files(output_dir, name):
        raise UserError(f"{plan_dir} has LoRA files of an earlier run but no saved state to resume from; lorakit "
                        "will not train over them.",
                        fix=f"pass --fresh to start again (the old outputs move to {PREVIOUS_DIR}/ in the plan folder)")
    if (plan_dir / RUN_FILE).is_file():
        return False, True, (f"the earlier run left no saved state and no LoRA, so this run starts again; its record "
                             f"and log moved to {PREVIOUS_DIR}/ in the plan folder")
    return False, False, None


def _same_folder(recorded: str, plan_dir: Path) -> bool:
    try:
        return Path(recorded).resolve() == plan_dir.resolve()
    except OSError:
        return False


def move_aside(plan_dir: Path, output_dir: Path, name: str, *, keep_outputs: bool, keep_record: bool = False) -> Path:
    """Move the earlier run's record, log and (unless `keep_outputs`) outputs into previous/TIME/, which is returned.

    `keep_record`: a run that starts again within itself (lorakit.run.recover) keeps its record and log.
    """
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    keep = plan_dir / PREVIOUS_DIR / stamp
    for n in range(2, 1000):  # two starts within one second keep both earlier runs apart
        if not keep.exists():
            break
        keep = plan_dir / PREVIOUS_DIR / f"{stamp}-{n}"
    moves = [] if keep_record else [(plan_dir / RUN_FILE, keep / RUN_FILE), (plan_dir / LOG_FILE, keep / LOG_FILE.name)]
    if not keep_outputs and output_dir.is_dir():
        if output_dir.resolve().is_relative_to(plan_dir.resolve()):
            moves.append((output_dir, keep / "output"))
        else:  # an output_dir shared with other plans: only this plan's files move
            ours = model_files(output_dir, name) + state_folders(output_dir, name) + sample_files(output_dir, name)
            moves += [(path, keep / "output" / path.relative_to(output_dir)) for path in ours]
    moved = []
    for source, target in moves:
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), str(target))
            moved.append((source, target))
    point_record_at(keep, moved)
    return keep


def point_record_at(keep: Path, moved: list[tuple[Path, Path]]) -> None:
    """The moved run.json names its log, outputs and states where they are now, not where the new run writes."""
    path = keep / RUN_FILE
    try:
        record = read_record(path) if path.is_file() else None
    except UserError:
        return  # a damaged record is kept as it was
    if record is None:
        return

    def now_at(old: str | None) -> str | None:
        if old is None:
            return None
        for source, target in moved:
            if Path(old) == source or Path(old).is_relative_to(source):
                return str(target / Path(old).relative_to(source))
        return old

    record.log = now_at(record.log)
    record.resumed_from = now_at(record.resumed_from)
    for output in record.outputs:
        output.path = now_at(output.path) or output.path
    write_record(keep, record)




def plan_lock(plan_dir: Path) -> PidLock:
    """One run per plan: `<plan>/run.lock`, held by the lorakit process that runs it (`launch` or `batch run`)."""
    return PidLock(plan_dir / LOCK_FILE, what="this plan", doing="training",
                   why="A second run would train into the same output/, logs/train.log and run.json.")
