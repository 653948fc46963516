"""Step math exactly as sd-scripts counts (docs/sd-scripts.md §5, §8, §7).

Images × repeats go into buckets, regularisation images are balanced against the training
samples, batches never mix buckets, accelerate shards batches over processes, and a step is an
optimizer step (every gradient-accumulation micro-batches and at each epoch's end). The plan also
predicts the checkpoint files and the steps at which sample images are made. Images that
validation_split holds out (lorakit.dataset.validation) are not trained on and not counted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from lorakit.config.limits import MAX_TRAIN_STEPS
from lorakit.dataset.buckets import BucketAssigner, BucketSettings
from lorakit.dataset.reading import Subset
from lorakit.dataset.validation import ValidationSplit, held_out
from lorakit.errors import UserError
from lorakit.findings import EXAMPLES


class BucketCount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int
    height: int
    images: int
    samples: int
    batches: int


class StepMath(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_train_images: int  # Σ train images × repeats ("num train images * repeats")
    num_reg_images: int  # Σ reg images × repeats, before balancing ("num reg images")
    reg_samples: int  # reg samples per epoch after balancing against the train samples
    unused_reg_images: int
    buckets: list[BucketCount]
    batch_size: int
    gradient_accumulation_steps: int
    num_processes: int
    batches_per_epoch: int  # all processes (len(train_dataloader) before accelerate shards it)
    batches_per_process: int  # what sd-scripts prints as "num batches per epoch"
    steps_per_epoch: int
    epochs: int
    total_steps: int
    mean_ar_error: float | None
    upscaled_images: int
    max_upscale: float
    unplaceable_images: int = 0  # images no bucket can hold (sd-scripts fails on them)
    unplaceable_examples: list[str] = []
    validation_images: int = 0  # training images held out for validation_split (they do not train)


class Placed:
    """Each image's bucket, computed once per plan; repeats are applied afterwards (cheap to redo)."""

    def __init__(self, subsets: Sequence[Subset], settings: BucketSettings, split: ValidationSplit | None = None):
        self.settings = settings
        assigner = BucketAssigner(settings)
        self.subsets = list(subsets)
        held = held_out(self.subsets, split) if split is not None else [[] for _ in self.subsets]
        self.held_out: list[list[str]] = [[s.images[i].path for i in h] for s, h in zip(self.subsets, held, strict=True)]
        self.kept_counts = [s.image_count - len(h) for s, h in zip(self.subsets, held, strict=True)]
        self.train_counts: list[Counter] = []  # per subset: bucket -> unique images
        self.reg_order: list[tuple[int, tuple[int, int]]] = []  # (subset index, bucket) in sd-scripts' order
        ar_errors: list[float] = []
        self.upscaled = 0
        self.max_upscale = 1.0
        self.unplaceable: list[str] = []  # images with a side below one bucket step (bucket_no_upscale)
        for index, subset in enumerate(self.subsets):
            counts: Counter = Counter()
            skip = set(held[index])
            for position, image in enumerate(subset.images):
                if position in skip:
                    continue
                placement = assigner.place(image.width, image.height)
                if not placement.usable:
                    self.unplaceable.append(image.path)
                    continue
                counts[placement.bucket] += 1
                if subset.is_reg:
                    self.reg_order.append((index, placement.bucket))
                else:
                    ar_errors.append(abs(placement.ar_error))
                    if placement.upscale > 1.0 + 1e-9:
                        self.upscaled += 1
                        self.max_upscale = max(self.max_upscale, placement.upscale)
            self.train_counts.append(counts)
        # sd-scripts averages the error over every registered image; train images dominate it.
        self.mean_ar_error = (sum(ar_errors) / len(ar_errors)) if (settings.enable_bucket and ar_errors) else None


def compute_steps(
    placed: Placed,
    repeats: Sequence[int],
    *,
    batch_size: int,
    gradient_accumulation_steps: int = 1,
    num_processes: int = 1,
    max_train_epochs: int | None = None,
    max_train_steps: int | None = None,
) -> StepMath:
    """`repeats[i]` is subset i's num_repeats. Epochs win over steps, as in sd-scripts."""
    samples: Counter = Counter()
    unique: Counter = Counter()
    num_train = 0
    num_reg = 0
    for subset, images, count, rep in zip(placed.subsets, placed.kept_counts, placed.train_counts, repeats, strict=True):
        if rep < 1:
            continue
        if subset.is_reg:
            num_reg += images * rep
            continue
        num_train += images * rep
        for bucket, n in count.items():
            samples[bucket] += n * rep
            unique[bucket] += n
    reg_repeats = _balance_reg([repeats[i] for i, _ in placed.reg_order], num_train)
    reg_samples = 0
    unused = 0
    for (index, bucket), rep in zip(placed.reg_order, reg_repeats, strict=True):
        if repeats[index] < 1:
            continue
        if rep == 0:
            unused += 1
            continue
        samples[bucket] += rep
        unique[bucket] += 1
        reg_samples += rep

    buckets = [
        BucketCount(width=w, height=h, images=unique[(w, h)], samples=n, batches=math.ceil(n / batch_size))
        for (w, h), n in sorted(samples.items())
        if n > 0
    ]
    batches = sum(b.batches for b in buckets)
    per_process = math.ceil(batches / num_processes)
    steps_per_epoch = math.ceil(per_process / gradient_accumulation_steps)
    if max_train_epochs is not None:
        epochs = max_train_epochs
        total = epochs * steps_per_epoch
    else:
        total = max_train_steps if max_train_steps is not None else 1600
        epochs = math.ceil(total / steps_per_epoch) if steps_per_epoch else 0
    return StepMath(
        num_train_images=num_train,
        num_reg_images=num_reg,
        reg_samples=reg_samples,
        unused_reg_images=unused,
        buckets=buckets,
        batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        num_processes=num_processes,
        batches_per_epoch=batches,
        batches_per_process=per_process,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        total_steps=total,
        mean_ar_error=placed.mean_ar_error,
        upscaled_images=placed.upscaled,
        max_upscale=round(placed.max_upscale, 3),
        unplaceable_images=len(placed.unplaceable),
        unplaceable_examples=placed.unplaceable[:EXAMPLES],
        validation_images=sum(len(h) for h, rep in zip(placed.held_out, repeats, strict=True) if rep >= 1),
    )


def _balance_reg(reg_repeats: list[int], num_train: int) -> list[int]:
    """Final repeats of each reg image (0: not used), as DreamBoothDataset balances them.

    Reg images are registered in order until their repeats reach the train samples; if all are
    registered and it is still short, each gets one more repeat, round-robin, until it matches.
    """
    result = [0] * len(reg_repeats)
    usable = [i for i, r in enumerate(reg_repeats) if r >= 1]
    if not usable or num_train <= 0:
        return result
    n = 0
    for i in usable:
        result[i] = reg_repeats[i]
        n += reg_repeats[i]
        if n >= num_train:
            return result
    short = num_train - n
    rounds, rest = divmod(short, len(usable))
    for position, i in enumerate(usable):
        result[i] += rounds + (1 if position < rest else 0)
    return result


class SaveEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str  # "epoch", "step" or "final"
    file: str
    epoch: int
    step: int
    state_dir: str | None = None
    kept: bool = True  # False when save_last_n_* deletes it later in the run
    state_kept: bool = True  # False when save_last_n_*_state (or save_last_n_*) deletes its state folder later


# The most checkpoint files and sample points a plan lists (README, Limits): a run that writes more
# than 10,000 LoRA files (hundreds of GB) or stops 10,000 times to sample is a typo, and plan.json
# stays small.
MAX_SAVES = 10_000
MAX_SAMPLE_POINTS = 10_000


def check_run_size(math_: StepMath) -> None:
    """Refuse a run longer than lorakit plans, before anything is listed per step or per checkpoint."""
    if math_.total_steps > MAX_TRAIN_STEPS:
        raise UserError(
            f"the run would train {math_.total_steps:,} steps ({math_.epochs:,} epochs of {math_.steps_per_epoch:,}); "
            f"lorakit plans at most {MAX_TRAIN_STEPS:,} steps (the seeds train 1500-3000).",
            fix="lower max_train_epochs or max_train_steps, or the repeats in the folder names",
        )


def _check_count(what: str, count: int, limit: int, option: str) -> None:
    if count > limit:
        raise UserError(f"the run would {what} {count:,} times; lorakit plans at most {limit:,}.",
                        fix=f"raise {option} so that fewer are made")


def predict_saves(
    math_: StepMath,
    *,
    output_name: str,
    extension: str,
    save_every_n_epochs: int | None,
    save_every_n_steps: int | None,
    save_n_epoch_ratio: int | None = None,
    save_last_n_epochs: int | None = None,
    save_last_n_steps: int | None = None,
    save_state: bool = False,
    save_state_on_train_end: bool = False,
    save_last_n_steps_state: int | None = None,
    save_last_n_epochs_state: int | None = None,
) -> list[SaveEvent]:
    """The checkpoint files sd-scripts writes, in order; work and memory grow with the files, not the steps.

    States are pruned apart from the files: save_last_n_*_state, when set (not 0), replaces
    save_last_n_* for them (docs/sd-scripts.md §8)."""
    check_run_size(math_)
    epochs, total, spe = math_.epochs, math_.total_steps, math_.steps_per_epoch
    if save_n_epoch_ratio:
        save_every_n_epochs = math.floor(epochs / save_n_epoch_ratio) or 1
    step_files: dict[int, SaveEvent] = {}
    if save_every_n_steps:
        _check_count("save a checkpoint", total // save_every_n_steps, MAX_SAVES, "save_every_n_steps")
        for step in range(save_every_n_steps, total + 1, save_every_n_steps):
            step_files[step] = SaveEvent(
                kind="step", file=f"{output_name}-step{step:08d}.{extension}", epoch=math.ceil(step / spe), step=step,
                state_dir=f"{output_name}-step{step:08d}-state" if save_state else None,
            )
            if save_last_n_steps is not None:
                remove = step - save_last_n_steps - 1
                remove -= remove % save_every_n_steps
                if remove >= 0 and remove in step_files:
                    step_files[remove].kept = False
            last_n_state = save_last_n_steps_state or save_last_n_steps
            if save_state and last_n_state is not None:
                remove = step - last_n_state - 1
                remove -= remove % save_every_n_steps
                if remove in step_files:
                    step_files[remove].state_kept = False
    epoch_files: dict[int, SaveEvent] = {}
    if save_every_n_epochs:
        _check_count("save a checkpoint", (epochs - 1) // save_every_n_epochs, MAX_SAVES, "save_every_n_epochs")
        for epoch in range(save_every_n_epochs, epochs, save_every_n_epochs):
            epoch_files[epoch] = SaveEvent(
                kind="epoch", file=f"{output_name}-{epoch:06d}.{extension}", epoch=epoch, step=min(epoch * spe, total),
                state_dir=f"{output_name}-{epoch:06d}-state" if save_state else None,
            )
            if save_last_n_epochs is not None:
                remove = epoch - save_every_n_epochs * save_last_n_epochs
                if remove in epoch_files:
                    epoch_files[remove].kept = False
            last_n_state = save_last_n_epochs_state or save_last_n_epochs
            if save_state and last_n_state is not None:
                remove = epoch - save_every_n_epochs * last_n_state
                if remove in epoch_files:
                    epoch_files[remove].state_kept = False
    events = sorted([*step_files.values(), *epoch_files.values()], key=lambda e: (e.step, e.kind != "step"))
    events.append(SaveEvent(
        kind="final", file=f"{output_name}.{extension}", epoch=epochs, step=total,
        state_dir=f"{output_name}-state" if (save_state or save_state_on_train_end) else None,
    ))
    return events


def predict_sample_steps(
    math_: StepMath,
    *,
    sample_every_n_steps: int | None,
    sample_every_n_epochs: int | None,
    sample_at_first: bool = False,
) -> list[int]:
    """Global steps after which sample images are generated (0: before training)."""
    check_run_size(math_)
    steps = [0] if sample_at_first else []
    if sample_every_n_epochs is not None and sample_every_n_epochs > 0:
        _check_count("make sample images", math_.epochs // sample_every_n_epochs, MAX_SAMPLE_POINTS, "sample_every_n_epochs")
        steps += [min(e * math_.steps_per_epoch, math_.total_steps)
                  for e in range(sample_every_n_epochs, math_.epochs + 1, sample_every_n_epochs)]
    elif sample_every_n_steps is not None and sample_every_n_steps > 0:
        _check_count("make sample images", math_.total_steps // sample_every_n_steps, MAX_SAMPLE_POINTS,
                     "sample_every_n_steps")
        steps += list(range(sample_every_n_steps, math_.total_steps + 1, sample_every_n_steps))
    return steps


# --- the seeds' targets are read at batch 1 -----------------------------------------------------------

def effective_batch(steps: StepMath) -> int:
    return steps.batch_size * steps.gradient_accumulation_steps * steps.num_processes


def batch1_steps(steps: StepMath) -> int:
    """The seeds' step targets are for batch 1: an epoch is one pass over the data whatever the batch,
    so a run of N steps at effective batch B does the work of N × B steps at batch 1."""
    return steps.total_steps * effective_batch(steps)


def batch1_dose(lr: float, steps: StepMath) -> float:
    """learning rate × steps read at batch 1 under the square-root rule (lorakit.plan.fit): the same
    training at batch B uses √B × the learning rate over 1/B of the steps, so lr × steps × √B."""
    return lr * steps.total_steps * effective_batch(steps) ** 0.5


def at_batch(steps: StepMath) -> str:
    batch = effective_batch(steps)
    return f" at batch {batch}" if batch > 1 else ""
