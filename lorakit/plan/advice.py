"""Gate 2's advice: the seeds' recommendations (adaptive learning rates, alpha against rank, step and
dose targets, the text encoders' learning rate, how many images) and notes on settings that do less than
they seem. Warnings and notes only; lorakit.plan.check runs these after sd-scripts' own asserts. The
targets are the plan's own values: a family's base preset sets its own (FLUX's are not the seeds' SDXL
numbers), and messages name who advises them.
"""

from __future__ import annotations

from lorakit.config.derived import is_adaptive, optimizer_name, trains_text_encoder, unet_lr
from lorakit.config.family import family_named
from lorakit.config.values import USER_SOURCE, Values
from lorakit.dataset.steps import at_batch, batch1_dose, batch1_steps, effective_batch
from lorakit.findings import Finding, finding
from lorakit.plan.context import CheckContext

GATE = 2


def adviser(values: Values, key: str, verb: str) -> str:
    """Who set a target and `verb` ("advise"), for messages: the seeds (lorakit's defaults), a preset, or the user."""
    source = values.source(key)
    if source.startswith("preset:"):
        return f"the {source.removeprefix('preset:')} preset {verb}s"
    return f"your --set {verb}s" if source == USER_SOURCE else f"the seeds {verb}"


def clip_skip(ctx: CheckContext) -> list[Finding]:
    """SDXL's clip skip; SD 1.5 reads it, and the transformer families refuse it (lorakit.plan.familycheck)."""
    v = ctx.values
    out: list[Finding] = []
    if v.family != "sdxl":
        return out
    if v["clip_skip"] is not None:
        out.append(finding("params/clip-skip", "warning", GATE,
                           f"clip_skip {v['clip_skip']} does nothing when training SDXL (sd-scripts only logs a warning).",
                           "--set clip_skip=none; use clip skip when generating instead", key="clip_skip"))
    if v["generation_clip_skip"]:
        out.append(finding("params/generation-clip-skip", "info", GATE,
                           f"generate with clip skip {v['generation_clip_skip']} ({v['model_flavour']}); it is a generation "
                           "setting that sd-scripts ignores for SDXL, so it is not written to config.toml.",
                           key="generation_clip_skip"))
    return out


def adaptive_lr(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    name = optimizer_name(v).lower()
    if not (name.startswith("dadapt") or name == "prodigy"):
        return []
    out = []
    lrs = {"learning_rate": v["learning_rate"], "unet_lr": v["unet_lr"]}
    if trains_text_encoder(v) and v["text_encoder_lr"]:
        lrs["text_encoder_lr"] = v["text_encoder_lr"][0]
    off = {k: lr for k, lr in lrs.items() if lr is not None and not 0.5 <= lr <= 2.0}
    if off:
        key = next(iter(off))
        out.append(finding("params/adaptive-optimizer-lr", "warning", GATE,
                           f"{optimizer_name(v)} adapts its own step size and expects learning rates around 1.0, but "
                           + ", ".join(f"{k} is {lr:g}" for k, lr in off.items()) + ".",
                           f"--set {key}=1.0", key=key))
    distinct = {lr for lr in lrs.values() if lr is not None}
    if len(distinct) > 1 and not off:
        out.append(finding("params/adaptive-optimizer-several-lrs", "info", GATE,
                           f"{optimizer_name(v)} takes only the first learning rate; the others are ignored.",
                           key="learning_rate"))
    return out


def alpha_vs_rank(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    dim = v["network_dim"] or 4
    alpha = v["network_alpha"]
    if alpha is not None and alpha > dim:
        return [finding("params/alpha-above-rank", "warning", GATE,
                        f"network_alpha {alpha:g} is above network_dim {dim}: the LoRA's updates are scaled up by {alpha / dim:g}x, "
                        "which over-trains quickly (docs/recommendations.md §5: alpha = rank, or rank/2 to be safer).",
                        f"--set network_alpha={dim}", key="network_alpha")]
    return []


def step_targets(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    out = []
    total = ctx.steps.total_steps
    seen = batch1_steps(ctx.steps)
    low, high = v["target_steps_min"], v["target_steps_max"]
    if total and not low <= seen <= high:
        direction = "more" if seen < low else "fewer"
        equivalent = f" (≈ {seen} at batch 1)" if seen != total else ""
        out.append(finding("params/total-steps", "warning", GATE,
                           f"{total} total steps{at_batch(ctx.steps)}{equivalent} is outside the {low}–{high} steps at batch 1 "
                           f"{adviser(v, 'target_steps_min', 'target')} for a {family_named(v.family).title} LoRA.",
                           f"train {direction} epochs (max_train_epochs) or change the folders' repeats", key="max_train_epochs"))
    lo_img, hi_img = v["steps_per_image_min"], v["steps_per_image_max"]
    subsets = ctx.dataset.subsets
    for subset, repeats in zip(subsets, ctx.repeats[: len(subsets)], strict=True):
        seen = repeats * ctx.steps.epochs
        if subset.images and not lo_img <= seen <= hi_img:
            direction = "under-trains" if seen < lo_img else "over-trains"
            out.append(finding("params/steps-per-image", "warning", GATE,
                               f"each image in '{subset.folder_name}' is seen {seen} times "
                               f"({repeats} repeats × {ctx.steps.epochs} epochs); "
                               f"{adviser(v, 'steps_per_image_min', 'advise')} {lo_img}–{hi_img}, so this likely {direction}.",
                               "adjust the folder's repeats or max_train_epochs", key="max_train_epochs"))
    return out


def lr_times_steps(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    low, high = v["lr_steps_min"], v["lr_steps_max"]
    if is_adaptive(v) or low is None or high is None:
        return []
    lr = unet_lr(v)
    dose = batch1_dose(lr, ctx.steps)
    batch = effective_batch(ctx.steps)
    product = f"learning rate {lr:g} × {ctx.steps.total_steps} steps" + (f" × √{batch} (batch {batch})" if batch > 1 else "")
    if dose > 3 * high:
        return [finding("params/lr-steps-fried", "warning", GATE,
                        f"{product} = {dose:.3g}, more than 3× the {high:g} "
                        "this preset intends: expect a fried LoRA (burnt colours, every output looking like the dataset).",
                        "lower learning_rate or train fewer epochs", key="learning_rate")]
    if dose < low / 3:
        return [finding("params/lr-steps-too-low", "warning", GATE,
                        f"{product} = {dose:.3g}, under a third of the {low:g} "
                        "this preset intends: the LoRA will likely learn nothing visible.",
                        "raise learning_rate or train more epochs", key="learning_rate")]
    return []


def text_encoder_lr(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    if not trains_text_encoder(v) or is_adaptive(v):
        return []
    te = v["text_encoder_lr"]
    if not te:
        return [finding("params/text-encoder-lr-unset", "info", GATE,
                        f"the text encoders train at learning_rate {v['learning_rate']:g}; docs/recommendations.md §3 advises 5e-5.",
                        "--set text_encoder_lr=5e-5 (or network_train_unet_only=true)", key="text_encoder_lr")]
    if te[0] > unet_lr(v):
        return [finding("params/text-encoder-lr-high", "warning", GATE,
                        f"text_encoder_lr {te[0]:g} is above the {family_named(v.family).denoiser}'s {unet_lr(v):g}; the "
                        "text encoders need gentler "
                        "treatment (docs/recommendations.md §3: 5e-5) or they overfit the trigger.",
                        "--set text_encoder_lr=5e-5", key="text_encoder_lr")]
    return []


def image_count(ctx: CheckContext) -> list[Finding]:
    count = ctx.dataset.image_count
    low, high = ctx.values["images_min"], ctx.values["images_max"]
    if not count or low <= count <= high:
        return []
    advice = "add varied images (angles, close-ups, full body)" if count < low else "a smaller set of your best images often trains better"
    return [finding("dataset/image-count", "warning" if count < low / 3 else "info", 1,
                    f"{count} training image(s); {adviser(ctx.values, 'images_min', 'advise')} {low}–{high} for this plan.",
                    advice)]


def upscaled(ctx: CheckContext) -> list[Finding]:
    s = ctx.steps
    if not s.upscaled_images:
        return []
    return [finding("dataset/upscaled-images", "warning" if s.max_upscale >= 1.5 else "info", 1,
                    f"{s.upscaled_images} image(s) are smaller than their bucket at resolution {ctx.values['resolution']} and "
                    f"will be enlarged (up to {s.max_upscale:.2f}×), which softens what the LoRA learns.",
                    "use larger source images, or --set bucket_no_upscale=true")]


def repeats_setting(ctx: CheckContext) -> list[Finding]:
    if ctx.values.user_set("dataset_repeats") and ctx.dataset.layout != "flat":
        return [finding("params/dataset-repeats-ignored", "warning", GATE,
                        "dataset_repeats is set, but the folder names give each subset its repeats; it is ignored.",
                        "rename the folders to change repeats", key="dataset_repeats")]
    return []


def unused_reg(ctx: CheckContext) -> list[Finding]:
    if ctx.reg is None:
        return []
    if ctx.steps.unused_reg_images:
        return [finding("dataset/reg-unused", "info", 1,
                        f"{ctx.steps.unused_reg_images} regularisation image(s) are not used: sd-scripts takes only as many "
                        f"as balance the {ctx.steps.num_train_images} training samples.")]
    return []
