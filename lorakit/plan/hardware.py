"""Gate 3: hardware. The VRAM estimate against the budget (with the smallest change that fits when it
does not), the system RAM the run needs against what the probed machine has, bf16 on cards that lack it,
and disk space for the checkpoints. Each rule is a small function
of the CheckContext, as in Gate 2 (lorakit.plan.check); none changes a value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lorakit.config.values import Values
from lorakit.findings import Finding, finding
from lorakit.machine.probe import VRAM_MARGIN
from lorakit.plan.arch import T5XXL
from lorakit.plan.assumptions import Assumptions
from lorakit.plan.context import CheckContext
from lorakit.plan.cpu import is_cpu, ram_budget
from lorakit.plan.estimate import (
    GIB,
    RAM_PROCESS_GIB,
    TrainingSetup,
    largest_batch,
    lora_file_bytes,
    lora_params,
    optimizer_bytes_per_param,
    ram_gib,
    setup_from_values,
    swapped_gib,
    vram_gib,
)
from lorakit.plan.levers import FP8_T5, Lever, apply_levers, checkpointing_lever, combinations, memory_levers, size_swap, speedup_levers

GATE = 3
MAX_ADVICE_LEVERS = 4  # FLUX's guide steps are four: fp8 base, 8-bit AdamW, block swap, fp8 T5-XXL
# values whose --set can push a plan over its budget, named in the message when you set them
MEMORY_KEYS = (
    "train_batch_size", "resolution", "network_dim", "network_args", "gradient_checkpointing", "mixed_precision",
    "full_bf16", "full_fp16", "fp8_base", "fp8_base_unet", "network_train_unet_only", "cache_latents",
    "cache_text_encoder_outputs", "optimizer_type", "sdpa", "xformers", "mem_eff_attn", "no_half_vae",
    "blocks_to_swap", "t5xxl",
)


def check_hardware(ctx: CheckContext) -> list[Finding]:
    if ctx.target is None:
        return []
    found: list[Finding] = []
    for rule in HARDWARE_RULES:
        found += rule(ctx)
    return found


@dataclass
class Advice:
    levers: tuple[Lever, ...]
    batch: int | None  # a smaller batch size, when the advice needs one
    vram_gib: float

    def flags(self) -> str:
        parts = [lever.flags() for lever in self.levers]
        if self.batch is not None:
            parts.insert(0, f"--set train_batch_size={self.batch}")
        return " ".join(parts)


def smallest_change(values: Values, setup: TrainingSetup, budget_gib: float, overhead_gib: float) -> Advice | None:
    """The cheapest set of changes (yours included) that fits: fewest quality losses, then fewest --set."""
    levers = checkpointing_lever(setup) + speedup_levers(values, setup) + memory_levers(values, setup, respect_user=False)
    best: tuple[tuple[int, int], Advice] | None = None
    for combo in combinations(levers, MAX_ADVICE_LEVERS):
        changed = apply_levers(setup, combo)
        top = largest_batch(changed, overhead_gib, budget_gib)
        if top == 0:
            continue
        batch = None if top >= setup.batch_size else top
        flags = sum(len(lever.settings) for lever in combo) + (batch is not None)
        rank = (sum(lever.cost for lever in combo), flags)
        if best is None or rank < best[0]:
            sized = size_swap(combo, changed.with_(batch_size=batch or setup.batch_size), overhead_gib, budget_gib)
            if sized is None:
                continue
            chosen, fitted = sized
            best = (rank, Advice(chosen, batch, vram_gib(fitted, overhead_gib)))
    return best[1] if best else None


# --- rules ----------------------------------------------------------------------------------------

def vram_budget(ctx: CheckContext) -> list[Finding]:
    target = ctx.target
    if target is None:  # only the dataset is checked
        return []
    assumptions = ctx.assumptions or Assumptions.uncalibrated()
    if is_cpu(target):
        return ram_budget(ctx.values, target, assumptions.overhead_gib)
    setup = setup_from_values(ctx.values)
    estimate = vram_gib(setup, assumptions.overhead_gib)
    budget = target.budget_gib
    if estimate <= budget:
        return []
    yours: dict[str, list[str]] = {}
    for key in MEMORY_KEYS:
        if ctx.values.user_set(key):
            yours.setdefault(ctx.values.yours(key), []).append(f"{key}={ctx.values[key]}")
    set_by_you = "".join(f" You set {', '.join(keys)}" + ("." if where == "your --set" else f" ({where}).")
                         for where, keys in yours.items())
    message = (f"the estimated peak VRAM, {estimate:.1f} GiB, is over the {budget:.1f} GiB budget on {target.name} "
               f"({target.vram_total_gib:.1f} GiB less the {VRAM_MARGIN:.0%} margin) by {estimate - budget:.1f} GiB: "
               f"the run would likely run out of memory.{set_by_you}")
    advice = smallest_change(ctx.values, setup, budget, assumptions.overhead_gib)
    card = f"a card with at least {estimate / (1 - VRAM_MARGIN):.0f} GiB (--target-gpu)"
    if advice is not None:
        fix = f"the smallest change that fits: {advice.flags()} (est. {advice.vram_gib:.1f} GiB); or plan for {card}"
    else:
        fix = f"no change of up to {MAX_ADVICE_LEVERS} settings fits this card; plan for {card}"
    return [finding("hardware/vram-over-budget", "error", GATE, message, fix)]


def ram_budget_rule(ctx: CheckContext) -> list[Finding]:
    """The system RAM the run needs (docs/estimator.md §9.5) against what the probed machine has available."""
    target = ctx.target
    if target is None or is_cpu(target) or target.ram_available_gib is None:
        return []  # a catalog card's machine is not this one; the CPU target's RAM is the VRAM rule's
    setup = setup_from_values(ctx.values)
    need = ram_gib(setup)
    if need <= target.ram_available_gib:
        return []
    swap = (f", of which blocks_to_swap {setup.blocks_to_swap} holds {swapped_gib(setup):.1f} GiB through training"
            if setup.blocks_to_swap else "")
    fixes = []  # what shrinks the weights held in RAM (swapping fewer blocks does not: they were loaded anyway)
    if setup.arch.transformer and not setup.fp8_unet:
        fixes.append("--set fp8_base=true (the transformer is cast to fp8 as it loads: half its RAM)")
    if setup.arch.transformer and T5XXL in setup.arch.text_encoders and not setup.t5_fp8_file:
        fixes.append(f"--set t5xxl={FP8_T5} (half T5-XXL's RAM)")
    fixes += ["close other programs", "train on a machine with more RAM"]
    return [finding(
        "hardware/ram-over-budget", "error", GATE,
        f"the run needs about {need:.1f} GiB of system RAM (the process's {RAM_PROCESS_GIB:g} GiB and the model files "
        f"sd-scripts loads into RAM before training{swap}), but this machine has {target.ram_available_gib:.1f} GiB "
        f"available ({target.ram_total_gib or 0:.1f} GiB in all): loading would swap or be killed.",
        "; or ".join(fixes), key="blocks_to_swap" if setup.blocks_to_swap else None)]


def bf16_support(ctx: CheckContext) -> list[Finding]:
    target, v = ctx.target, ctx.values
    if target is None or target.bf16:
        return []
    used = [key for key in ("mixed_precision", "full_bf16") if (v[key] == "bf16" if key == "mixed_precision" else v[key])]
    if not used:
        return []
    who = " and ".join(f"{key} ({v.yours(key) if v.user_set(key) else v.source(key)})" for key in used)
    fix = "--set mixed_precision=fp16 --set no_half_vae=true" + (" --set full_bf16=false" if "full_bf16" in used else "")
    return [finding("hardware/no-bf16", "error", GATE,
                    f"{target.name} (compute capability {target.compute_capability}) has no bf16, which needs 8.0 or "
                    f"newer, but the plan uses it: {who}.",
                    fix + " (fp16 with the VAE in fp32; full_fp16 instead of full_bf16 if you need 16-bit weights)",
                    key=used[0])]


def checkpoint_bytes(ctx: CheckContext) -> tuple[int, int]:
    """(bytes of one saved LoRA file, bytes of one training-state folder)."""
    v = ctx.values
    setup = setup_from_values(v)
    precision = v["save_precision"]
    if precision in ("fp16", "bf16") or (precision is None and setup.full_half):
        save_bytes = 2
    else:
        save_bytes = 4  # "float", or no save_precision: sd-scripts saves in the fp32 training dtype (docs/estimator.md §1.2)
    param_bytes = 2 if setup.full_half else 4
    # an accelerate state holds the trainable weights and the optimizer's states
    state = lora_params(setup) * (param_bytes + optimizer_bytes_per_param(setup.optimizer, param_bytes))
    return lora_file_bytes(setup, save_bytes), int(state)


def disk_space(ctx: CheckContext) -> list[Finding]:
    if ctx.disk_free_gib is None or not ctx.saves:
        return []
    file_bytes, state_bytes = checkpoint_bytes(ctx)
    kept = [s for s in ctx.saves if s.kept]
    transient = 1 if len(kept) < len(ctx.saves) else 0  # save_last_n_*: one more file exists until the old is deleted
    files = len(kept) + transient
    # states are pruned apart from the files (save_last_n_*_state), with the same one-more-until-deleted
    saved_states = [s for s in ctx.saves if s.state_dir]
    kept_states = sum(1 for s in saved_states if s.state_kept)
    states = kept_states + (1 if kept_states < len(saved_states) else 0)
    need = (files * file_bytes + states * state_bytes) / GIB
    if need <= ctx.disk_free_gib:
        return []
    parts = f"{files} LoRA file(s) × {file_bytes / 2**20:.0f} MiB"
    if states:
        parts += f" + {states} state folder(s) × {state_bytes / 2**20:.0f} MiB"
    return [finding("hardware/disk-space", "error", GATE,
                    f"the checkpoints need {need:.2f} GiB ({parts}), but only {ctx.disk_free_gib:.2f} GiB is free "
                    f"where they are saved ({ctx.values['output_dir']}).",
                    "free disk space, save less often (save_every_n_epochs) or keep fewer (save_last_n_epochs), "
                    "keep fewer states (save_last_n_steps_state), --set save_state=false, "
                    "or --set output_dir=... on a larger disk", key="output_dir")]


HARDWARE_RULES: list[Callable[[CheckContext], list[Finding]]] = [vram_budget, ram_budget_rule, bf16_support, disk_space]
