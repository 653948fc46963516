"""`--target-gpu cpu`: plan a short smoke run on this machine's CPU, honestly.

sd-scripts trains on the CPU (accelerate's `--cpu`), in bf16 or fp32; fp16 stalls there, and a step takes
seconds even at 256² (docs/estimator.md §8). A CPU plan therefore checks that the setup trains rather than
training a usable LoRA: unless you set them, the fit makes it a few steps at 512² (or the preset's smaller
size), batch 1, gradient checkpointing, no sample images, in bf16 — each value with the source
`auto:cpu-smoke` and a warning that says so. Gate 3 compares the run's memory with the machine's RAM
instead of VRAM, and the time is a rough CPU figure scaled from one measured run.
"""

from __future__ import annotations

from lorakit.config.schema import resolution_tuple
from lorakit.config.values import Values
from lorakit.findings import Finding, finding
from lorakit.machine.probe import VRAM_MARGIN, TargetGpu
from lorakit.plan.estimate import TrainingSetup, setup_from_values, vram_gib
from lorakit.plan.estimate import ram_gib as system_ram_gib
from lorakit.plan.timing import TimeReport, tflop_per_sample, tflop_per_step

SOURCE = "auto:cpu-smoke"
SMOKE_STEPS = 10
SMOKE_SIDE = 512
GATE = 3
# The measured CPU run (docs/estimator.md §8): SDXL, 2 cores, 256², batch 1, gradient checkpointing, SDPA.
MEASURED_CORES = 2
MEASURED_PIXELS = 256 * 256
MEASURED_SECONDS_PER_STEP = {"bf16": 3.7, "no": 12.5}
# Its resident memory was 14.5 GB (13.5 GiB) at 256², with the checkpoint mapped on top: the estimator's
# components (a fair proxy for the weights and activations) never count for less than that.
MEASURED_RAM_GIB = 13.5


def is_cpu(target: TargetGpu | None) -> bool:
    return target is not None and target.device == "cpu"


def fit_for_cpu(values: Values, target: TargetGpu) -> list[Finding]:
    """Make the plan a smoke run for the CPU, changing only what you did not set; the warning says what it did."""
    changed: list[str] = []

    def change(key: str, value: object, note: str) -> None:
        if values.user_set(key) or values.get(key) == value:
            return
        values.set(key, value, SOURCE, note)
        changed.append(f"{key} unset" if value is None else f"{key}={value}")

    change("max_train_steps", SMOKE_STEPS, f"a smoke run on the CPU: {SMOKE_STEPS} steps show that the setup trains "
           "(a CPU step takes seconds to minutes, docs/estimator.md §8)")
    if not values.user_set("max_train_steps"):
        change("max_train_epochs", None, "epochs would win over the smoke run's step count (docs/sd-scripts.md §5)")
    width, height = resolution_tuple(values["resolution"])
    if max(width, height) > SMOKE_SIDE:
        change("resolution", f"{SMOKE_SIDE},{SMOKE_SIDE}", f"{SMOKE_SIDE}² keeps a CPU step to about a minute")
    change("train_batch_size", 1, "batch 1: the measured CPU run's setting")
    change("gradient_checkpointing", True, "less memory for the same work on the CPU's RAM")
    if not values["xformers"] and not values["mem_eff_attn"]:
        change("sdpa", True, "PyTorch's own attention, which runs on the CPU (xformers does not)")
    for key in ("sample_every_n_steps", "sample_every_n_epochs"):
        change(key, None, "no sample images: a sample image takes minutes on the CPU")
    change("sample_at_first", False, "no sample images: a sample image takes minutes on the CPU")
    if values["mixed_precision"] == "fp16":
        change("mixed_precision", "bf16", "fp16 stalls on the CPU (docs/estimator.md §8); bf16 was the fastest measured")
    if values["full_fp16"]:
        change("full_fp16", False, "fp16 stalls on the CPU")
    warmup = values["lr_warmup_steps"]
    if isinstance(warmup, int) and not isinstance(warmup, bool) and warmup >= (values["max_train_steps"] or SMOKE_STEPS):
        change("lr_warmup_steps", 0, "the smoke run is shorter than the warmup")
    steps = values["max_train_steps"] if values["max_train_epochs"] is None else None
    length = f"{steps} steps" if steps is not None else f"{values['max_train_epochs']} epochs (you set them)"
    return [finding(
        "hardware/cpu-smoke-run", "warning", GATE,
        f"planned for {target.name}: a SMOKE RUN of {length} at {values['resolution']}, batch "
        f"{values['train_batch_size']}, no sample images. It checks that the setup trains on this machine; it does "
        f"not train a usable LoRA. lorakit changed: {', '.join(changed) or 'nothing (you set these values)'}.",
        "plan the real run for its GPU with --target-gpu NAME (`lorakit probe --catalog`)")]


def seconds_per_step(setup: TrainingSetup, cores: int | None) -> float:
    """The measured SDXL CPU step (docs/estimator.md §8) scaled by pixels × batch and by cores, and for another
    family by its FLOPs against SDXL's at the same size (docs/estimator.md §9.6): a rough figure."""
    measured = MEASURED_SECONDS_PER_STEP["bf16" if setup.mixed_precision == "bf16" else "no"]
    pixels = setup.width * setup.height * setup.batch_size * setup.gradient_accumulation_steps
    family = tflop_per_sample(setup) / tflop_per_sample(setup.with_(family="sdxl")) if setup.family != "sdxl" else 1.0
    return measured * pixels / MEASURED_PIXELS * MEASURED_CORES / max(1, cores or 1) * family


def time_report(setup: TrainingSetup, target: TargetGpu, total_steps: int) -> TimeReport:
    seconds = seconds_per_step(setup, target.cpu_count)
    return TimeReport(
        seconds_per_step=round(seconds, 2), total_hours=round(seconds * total_steps / 3600, 3),
        tflop_per_step=round(tflop_per_step(setup), 3), peak_tflops=None, mfu=None, calibrated=False,
        efficiency_source=(f"rough CPU figure: {MEASURED_SECONDS_PER_STEP['bf16']} s/step in bf16, "
                           f"{MEASURED_SECONDS_PER_STEP['no']} in fp32 measured at 256² on {MEASURED_CORES} cores, "
                           "scaled by pixels and cores (docs/estimator.md §8)"),
    )


def ram_gib(setup: TrainingSetup, overhead_gib: float) -> float:
    """A FLUX run also holds its cached-away encoders in RAM (docs/estimator.md §9.5); SDXL was measured."""
    held = system_ram_gib(setup) if setup.arch.transformer else 0.0
    return max(vram_gib(setup, overhead_gib), MEASURED_RAM_GIB, held)


def ram_budget(values: Values, target: TargetGpu, overhead_gib: float) -> list[Finding]:
    """Gate 3 on the CPU: the run's memory (the VRAM estimate's parts, at least the measured run's) against RAM."""
    estimate = ram_gib(setup_from_values(values), overhead_gib)
    findings = []
    if estimate > target.budget_gib:
        findings.append(finding(
            "hardware/ram-over-budget", "error", GATE,
            f"the run needs about {estimate:.1f} GiB of RAM on the CPU (the estimator's weights and activations, at "
            f"least the {MEASURED_RAM_GIB} GiB a 256² CPU run used), over the {target.budget_gib:.1f} GiB budget "
            f"({target.vram_total_gib:.1f} GiB RAM less the {VRAM_MARGIN:.0%} margin).",
            "train on a machine with more RAM, or on a GPU (--target-gpu NAME)"))
    if values["mixed_precision"] == "fp16" or values["full_fp16"]:
        findings.append(finding(
            "hardware/fp16-on-cpu", "error", GATE,
            "fp16 on the CPU: sd-scripts stalls in latent caching, and `lorakit doctor` refuses it (docs/estimator.md §8).",
            "--set mixed_precision=bf16 (or no), and full_fp16=false", key="mixed_precision"))
    return findings
