"""A plan made again with a few values changed: the notches an out-of-memory recovery steps down
(lorakit.run.recover), and the revision itself.

The notches come in the order of what they cost, cheapest first; each is one change to the values:

1. changes that keep the recipe: the same effective batch through gradient accumulation (batch 4 →
   2 × accumulation 2 keeps the images per optimizer step, so the learning rate, the step count and the
   schedule stay), gradient checkpointing, cached latents and text-encoder outputs (where the fit would
   allow them: no augmentation that changes the images or captions every epoch), for FLUX and Chroma
   eight more transformer blocks swapped to system RAM (the same training, slower steps), a leaner
   attention backend (SDPA where none is set);
2. only when asked (`--recover quality`): the fit's memory levers (lorakit.plan.fit.memory_levers), which
   give up quality: the text encoders frozen, 8-bit AdamW, 16-bit LoRA weights, rank 16, fp8 base
   weights, 768² then 512².

Values you set (`--set`, or a config you imported) are never changed: a notch that would change one is
not taken, and `blocked_notches` says which of yours stand in the way.

The revision is the plan's own values with the changes (source `auto:oom-recovery`), planned again
through `make_plan`: the dataset is read again, the steps counted, every gate runs and every file is
rendered anew; the fit does not run again (its choices are among the values). `write_revision` keeps
the old plan files in the plan's `.lorakit-history/`, as `plan --force` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorakit.config.presets import Preset, PresetHeader
from lorakit.config.resolve import Resolution
from lorakit.config.values import Values
from lorakit.plan.build import HISTORY_DIR, Plan, PlanRequest, PlanResult, make_plan, write_plan
from lorakit.plan.estimate import TrainingSetup, max_swap, setup_from_values
from lorakit.plan.levers import checkpointing_lever, has_key, memory_levers, speedup_levers

RECOVERY_SOURCE = "auto:oom-recovery"
Setting = tuple[str, object, str]  # key, value, why


@dataclass(frozen=True)
class Notch:
    """One step down in memory: the values it changes, and what it costs in quality ("" keeps the recipe)."""

    name: str
    settings: tuple[Setting, ...]
    quality: str = ""

    def keys(self) -> list[str]:
        return [key for key, _, _ in self.settings]


def notches(values: Values, *, quality: bool, respect_user: bool = True) -> list[Notch]:
    """Every notch the values still allow, cheapest first; with `respect_user`, none touches a value you set."""
    setup = setup_from_values(values)
    found: list[Notch] = []
    split = batch_split(values)
    if split is not None:
        found.append(split)
    found += [Notch(lever.name, lever.settings) for lever in checkpointing_lever(setup)]
    # caching first, the attention backend last: the order the recipe-keeping changes are tried in
    free = sorted(speedup_levers(values, setup), key=lambda lever: lever.name == "SDPA attention")
    found += [Notch(lever.name, lever.settings) for lever in free if lever.name != "SDPA attention"]
    swap = swap_notch(values, setup)
    found += [swap] if swap is not None else []
    found += [Notch(lever.name, lever.settings) for lever in free if lever.name == "SDPA attention"]
    if quality:
        found += [Notch(lever.name, lever.settings, lever.quality or lever.name)
                  for lever in sorted(memory_levers(values, setup, respect_user=False), key=lambda lever: lever.cost)]
    found = [notch for notch in found if all(has_key(values, key) for key in notch.keys())]  # the family's script has them
    if respect_user:
        found = [notch for notch in found if not any(values.user_set(key) for key in notch.keys())]
    return found


SWAP_STEP = 8  # blocks moved to system RAM per recovery: a clear step down without swapping all at once


def swap_notch(values: Values, setup: TrainingSetup) -> Notch | None:
    """FLUX and Chroma: more transformer blocks waiting in system RAM; the recipe stays, the steps get slower."""
    top = max_swap(setup)
    now = values["blocks_to_swap"] or 0
    if not top or now >= top or values["cpu_offload_checkpointing"]:
        return None
    more = min(top, now + SWAP_STEP)
    why = (f"out of memory with {now} block(s) swapped: {more} of the transformer's blocks wait in system RAM and move "
           "onto the GPU as they run; the same training, slower steps (docs/families.md §5)")
    return Notch(f"swap {more} transformer blocks", (("blocks_to_swap", more, why),))


def blocked_notches(values: Values, *, quality: bool) -> list[tuple[Notch, list[str]]]:
    """The notches only your own values stand in the way of, each with the keys of yours it would change."""
    return [(notch, [key for key in notch.keys() if values.user_set(key)])
            for notch in notches(values, quality=quality, respect_user=False)
            if any(values.user_set(key) for key in notch.keys())]


def batch_split(values: Values) -> Notch | None:
    """Batch B → a divisor of it, the accumulation multiplied so the images per optimizer step stay B × A."""
    batch = values["train_batch_size"] or 1
    accumulation = values["gradient_accumulation_steps"] or 1
    if batch < 2:
        return None
    smaller = max(d for d in range(1, batch) if batch % d == 0)
    more = accumulation * (batch // smaller)
    why = (f"out of memory at batch {batch}: batch {smaller} × gradient accumulation {more} trains on the same "
           f"{batch * accumulation} images per optimizer step, so the learning rate, the step count and the schedule stay")
    return Notch("the same batch through gradient accumulation",
                 (("train_batch_size", smaller, why), ("gradient_accumulation_steps", more, why)))


def revise(plan: Plan, settings: list[Setting], note: str, *, source: str = RECOVERY_SOURCE) -> PlanResult:
    """The plan made again through `make_plan` with `settings` changed (nothing is written)."""
    values = Values({key: item.model_copy(deep=True) for key, item in plan.values.items()})
    for key, value, why in settings:
        values.set(key, value, source, why)
    # the presets are known by name only: their values are among the plan's, so none is read again
    presets = [Preset(name, Path(plan.plan_dir), False, PresetHeader()) for name in plan.presets]
    flat = plan.dataset.layout == "flat" and plan.dataset.subsets and plan.dataset.subsets[0].class_tokens
    request = PlanRequest(
        dataset=Path(plan.dataset.root),
        reg=Path(plan.dataset.reg_root) if plan.dataset.reg_root else None,
        token=plan.dataset.subsets[0].class_tokens if flat else None,
        target_gpu=plan.target.catalog_id if plan.target.source == "catalog" else None,
        out=Path(plan.plan_dir), name=plan.name, force=True,
        sd_scripts=plan.sd_scripts.path if plan.sd_scripts else None,
        fit="off",  # the fit chose among these values already; a revision changes only `settings`
        revision=Resolution(values, presets, [*plan.notes, note], []),
    )
    result = make_plan(request)
    if plan.vram is not None and result.plan.vram is not None:  # the mode that chose the values, not "off"
        result.plan.vram = result.plan.vram.model_copy(update={"fit": plan.vram.fit})
        result.files["plan.json"] = result.plan.model_dump_json(indent=2) + "\n"
    return result


def write_revision(result: PlanResult) -> Path | None:
    """Write the revised plan over the old one, by the run that holds its lock; returns where the old files are kept."""
    history = result.plan_dir / HISTORY_DIR
    before = set(history.iterdir()) if history.is_dir() else set()
    write_plan(result, force=True, lock_held=True)
    kept = sorted(set(history.iterdir()) - before) if history.is_dir() else []
    return kept[-1] if kept else None
