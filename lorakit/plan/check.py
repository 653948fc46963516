"""Gate 2: parameters. sd-scripts' own asserts that can be decided before training (docs/sd-scripts.md §11), and
what would fail or mislead later though sd-scripts does not assert it; then the seeds' advice
(lorakit.plan.advice). Each rule is a small function that returns findings; none changes a value.
"""

from __future__ import annotations

from collections.abc import Callable

from lorakit.config.derived import adafactor_fixed_lr, caption_augmentations, image_augmentations, optimizer_name
from lorakit.config.keyvalue import check_key_value_items
from lorakit.config.schema import resolution_tuple
from lorakit.findings import Finding, finding
from lorakit.plan.advice import (
    adaptive_lr,
    alpha_vs_rank,
    clip_skip,
    image_count,
    lr_times_steps,
    repeats_setting,
    step_targets,
    text_encoder_lr,
    unused_reg,
    upscaled,
)
from lorakit.plan.context import CheckContext

SCHEDULERS = {
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay", "piecewise_constant", "adafactor",
}
BROKEN_SCHEDULERS = {"reduce_lr_on_plateau", "cosine_warmup_with_min_lr"}
OPTIMIZERS = {
    "adamw", "adamw8bit", "pagedadamw", "pagedadamw8bit", "pagedadamw32bit", "lion", "lion8bit", "pagedlion8bit",
    "sgdnesterov", "sgdnesterov8bit", "dadaptation", "dadaptadampreprint", "dadaptadagrad", "dadaptadam",
    "dadaptadan", "dadaptadanip", "dadaptlion", "dadaptsgd", "prodigy", "adafactor", "radamschedulefree",
    "adamwschedulefree", "sgdschedulefree",
}
TORCH_OPTIMIZERS = {"SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "ASGD", "LBFGS", "NAdam", "RAdam",
                    "RMSprop", "Rprop", "SparseAdam", "Adafactor"}
LORA_NETWORK_ARGS = {
    "conv_dim", "conv_alpha", "rank_dropout", "module_dropout", "block_dims", "block_alphas", "conv_block_dims",
    "conv_block_alphas", "down_lr_weight", "mid_lr_weight", "up_lr_weight", "block_lr_zero_threshold",
    "loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio", "dropout",
}
LORA_NUMBER_ARGS = {"conv_dim", "conv_alpha", "rank_dropout", "module_dropout", "dropout", "loraplus_lr_ratio",
                    "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio", "block_lr_zero_threshold"}
GATE = 2


def _is_number(text: str, *, integer: bool = False) -> bool:
    try:
        int(text) if integer else float(text)
    except ValueError:
        return False
    return True


def check_parameters(ctx: CheckContext) -> list[Finding]:
    found: list[Finding] = []
    for rule in RULES:
        found += rule(ctx)
    return found


# --- sd-scripts asserts and raises (errors) ---------------------------------------------------------

def required_values(ctx: CheckContext) -> list[Finding]:
    return [
        finding("params/required-value", "error", GATE,
                f"a preset needs {key} set by you (it has no safe default).",
                f"add --set {key}=...", key=key)
        for key in ctx.required if not ctx.values.user_set(key)
    ]


def text_encoder_cache(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    if not (v["cache_text_encoder_outputs"] or v["cache_text_encoder_outputs_to_disk"]):
        return []
    out = []
    if not v["network_train_unet_only"]:
        out.append(finding(
            "params/te-cache-needs-unet-only", "error", GATE,
            "cache_text_encoder_outputs needs network_train_unet_only: cached text-encoder outputs cannot train the "
            "text encoders (sd-scripts asserts).",
            "--set network_train_unet_only=true, or --set cache_text_encoder_outputs=false", key="cache_text_encoder_outputs"))
    clashes = caption_augmentations(v)
    if clashes:
        out.append(finding(
            "params/te-cache-vs-caption-augmentation", "error", GATE,
            f"cache_text_encoder_outputs cannot be combined with {', '.join(clashes)}: captions are encoded once, "
            "so they cannot change per step (sd-scripts asserts).",
            f"turn off {clashes[0]}, or --set cache_text_encoder_outputs=false", key="cache_text_encoder_outputs"))
    if v["cache_text_encoder_outputs_to_disk"] and not v["cache_text_encoder_outputs"]:
        out.append(finding(
            "params/te-cache-to-disk-implies-cache", "info", GATE,
            "cache_text_encoder_outputs_to_disk turns on cache_text_encoder_outputs as well.", key="cache_text_encoder_outputs_to_disk"))
    return out


def latent_cache(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    out = []
    if (v["cache_latents"] or v["cache_latents_to_disk"]) and image_augmentations(v):
        which = image_augmentations(v)[0]
        out.append(finding(
            "params/latent-cache-vs-augmentation", "error", GATE,
            f"cached latents cannot be combined with {which}: the image would have to change every epoch (sd-scripts asserts).",
            f"--set {which}=false, or --set cache_latents=false", key="cache_latents"))
    if v["cache_latents_to_disk"] and not v["cache_latents"]:
        out.append(finding("params/latent-cache-to-disk-implies-cache", "info", GATE,
                           "cache_latents_to_disk turns on cache_latents as well.", key="cache_latents_to_disk"))
    return out


def buckets(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    if not v["enable_bucket"]:
        return []
    out = []
    step = v["bucket_reso_steps"]
    if step % 32:
        out.append(finding(
            "params/bucket-steps", "error", GATE,
            f"bucket_reso_steps is {step}; SDXL needs a multiple of 32 (sd-scripts asserts).",
            "--set bucket_reso_steps=64", key="bucket_reso_steps"))
        return out
    width, height = resolution_tuple(v["resolution"])
    low = v["min_bucket_reso"] - v["min_bucket_reso"] % step
    high = v["max_bucket_reso"] + (step - v["max_bucket_reso"] % step) % step
    if min(width, height) < low:
        out.append(finding(
            "params/resolution-below-min-bucket", "error", GATE,
            f"resolution {width}x{height} has a side below min_bucket_reso {low}; sd-scripts asserts min(resolution) >= min_bucket_reso.",
            f"--set min_bucket_reso={min(width, height) - min(width, height) % step}", key="min_bucket_reso"))
    if max(width, height) > high:
        out.append(finding(
            "params/resolution-above-max-bucket", "error", GATE,
            f"resolution {width}x{height} has a side above max_bucket_reso {high}; sd-scripts asserts max(resolution) <= max_bucket_reso.",
            f"--set max_bucket_reso={max(width, height)}", key="max_bucket_reso"))
    return out


def scheduler(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    name = v["lr_scheduler"]
    out: list[Finding] = []
    if v["lr_scheduler_type"]:
        return out  # a custom class: sd-scripts passes its own args through
    if name in BROKEN_SCHEDULERS:
        out.append(finding(
            "params/broken-scheduler", "error", GATE,
            f"lr_scheduler {name} fails in sd-scripts at this commit (TypeError when the scheduler is built).",
            "--set lr_scheduler=cosine_with_min_lr (or cosine)", key="lr_scheduler"))
    elif name not in SCHEDULERS:
        out.append(finding(
            "params/unknown-scheduler", "error", GATE,
            f"lr_scheduler '{name}' is not a scheduler sd-scripts knows: {', '.join(sorted(SCHEDULERS))}.",
            "--set lr_scheduler=constant_with_warmup", key="lr_scheduler"))
    if name in ("constant", "adafactor") and v["lr_warmup_steps"]:
        out.append(finding(
            "params/warmup-with-constant", "error", GATE,
            f"lr_scheduler {name} takes no warmup, but lr_warmup_steps is {v['lr_warmup_steps']} (sd-scripts raises ValueError).",
            "--set lr_scheduler=constant_with_warmup, or --set lr_warmup_steps=0", key="lr_warmup_steps"))
    is_adafactor = optimizer_name(v).lower() == "adafactor"
    if name == "adafactor" and not is_adafactor:
        out.append(finding(
            "params/adafactor-scheduler", "error", GATE,
            "lr_scheduler adafactor works only with the Adafactor optimizer (sd-scripts asserts).",
            "--set lr_scheduler=constant_with_warmup", key="lr_scheduler"))
    return out


def precision(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    mp = v["mixed_precision"]
    out = []
    if v["full_bf16"] and mp != "bf16":
        out.append(finding("params/full-bf16-needs-bf16", "error", GATE,
                           f"full_bf16 needs mixed_precision bf16, not {mp} (sd-scripts asserts).",
                           "--set mixed_precision=bf16, or --set full_bf16=false", key="full_bf16"))
    if v["full_fp16"] and mp != "fp16":
        out.append(finding("params/full-fp16-needs-fp16", "error", GATE,
                           f"full_fp16 needs mixed_precision fp16, not {mp} (sd-scripts asserts).",
                           "--set mixed_precision=fp16, or --set full_fp16=false", key="full_fp16"))
    if (v["fp8_base"] or v["fp8_base_unet"]) and mp == "no":
        out.append(finding("params/fp8-needs-mixed-precision", "error", GATE,
                           "fp8_base needs mixed precision (bf16 or fp16) (sd-scripts asserts).",
                           "--set mixed_precision=bf16", key="fp8_base"))
    if mp == "no":
        out.append(finding("params/no-mixed-precision", "warning", GATE,
                           "mixed_precision is 'no': training runs in fp32, about twice the memory and much slower.",
                           "--set mixed_precision=bf16 (fp16 on cards before RTX 30xx)", key="mixed_precision"))
    if mp == "fp16" and not v["no_half_vae"]:
        out.append(finding("params/fp16-vae", "warning", GATE,
                           "fp16 without no_half_vae: the SDXL VAE overflows in fp16 and the loss turns NaN.",
                           "--set no_half_vae=true (or use bf16 where the card supports it)", key="no_half_vae"))
    return out


def key_value_lists(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    out = []
    for key, literal in (("optimizer_args", True), ("lr_scheduler_args", True), ("network_args", False)):
        problems = check_key_value_items(v[key] or [], literal_values=literal)
        if problems:
            out.append(finding(f"params/{key.replace('_', '-')}", "error", GATE,
                               f"{key}: " + "; ".join(problems) + " (sd-scripts fails parsing it).",
                               f"write each item as key=value, e.g. --set {key}='a=1 b=True'", key=key))
    if v["network_module"] == "networks.lora" and v["network_args"]:
        unknown = [item.split("=", 1)[0] for item in v["network_args"]
                   if "=" in item and item.split("=", 1)[0] not in LORA_NETWORK_ARGS]
        pairs = [item.split("=", 1) for item in v["network_args"] if "=" in item]
        bad = [f"{k}={x}" for k, x in pairs if k in LORA_NUMBER_ARGS and not _is_number(x, integer=k == "conv_dim")]
        if bad:
            out.append(finding("params/network-args-number", "error", GATE,
                               f"network_args {', '.join(bad)}: networks.lora reads these as numbers and fails on the text.",
                               "write a number, e.g. conv_dim=8 conv_alpha=4", key="network_args"))
        if unknown:
            out.append(finding("params/network-args-ignored", "warning", GATE,
                               f"networks.lora silently ignores network_args {', '.join(unknown)}.",
                               f"known keys: {', '.join(sorted(LORA_NETWORK_ARGS))}", key="network_args"))
    return out


def optimizer(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    out = []
    if v["use_8bit_adam"] and v["use_lion_optimizer"]:
        out.append(finding("params/optimizer-conflict", "error", GATE,
                           "use_8bit_adam and use_lion_optimizer are both set (sd-scripts asserts).",
                           "use optimizer_type alone", key="optimizer_type"))
    elif (v["use_8bit_adam"] or v["use_lion_optimizer"]) and v["optimizer_type"]:
        out.append(finding("params/optimizer-conflict", "error", GATE,
                           "the legacy use_8bit_adam/use_lion_optimizer flag is set together with optimizer_type (sd-scripts asserts).",
                           "drop the legacy flag and keep optimizer_type", key="optimizer_type"))
    name = v["optimizer_type"] or ""
    if name and name.lower() not in OPTIMIZERS and "." not in name and name not in TORCH_OPTIMIZERS:
        out.append(finding("params/unknown-optimizer", "error", GATE,
                           f"optimizer_type '{name}' is neither an sd-scripts optimizer, a torch.optim class, nor a dotted module.Class.",
                           "--set optimizer_type=AdamW (or Adafactor, Prodigy, AdamW8bit, ...)", key="optimizer_type"))
    if optimizer_name(v).lower() == "adafactor" and not adafactor_fixed_lr(v):
        out.append(finding("params/adafactor-relative-step", "warning", GATE,
                           "Adafactor without relative_step=False picks its own learning rate: sd-scripts forces the "
                           "adafactor scheduler and drops unet_lr/text_encoder_lr.",
                           "--set optimizer_args='scale_parameter=False relative_step=False warmup_init=False'", key="optimizer_args"))
    if v["fused_backward_pass"]:
        if optimizer_name(v).lower() != "adafactor" or v["gradient_accumulation_steps"] > 1:
            out.append(finding("params/fused-backward-pass", "error", GATE,
                               "fused_backward_pass needs Adafactor and gradient_accumulation_steps 1 (sd-scripts asserts).",
                               "--set fused_backward_pass=false", key="fused_backward_pass"))
        else:
            out.append(finding("params/fused-backward-pass", "warning", GATE,
                               "fused_backward_pass has no effect in sdxl_train_network.py (only sdxl_train.py implements it).",
                               "--set fused_backward_pass=false", key="fused_backward_pass"))
    return out


def model_flags(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    out = []
    if v["v2"]:
        out.append(finding("params/v2", "error", GATE, "v2 is set, but SDXL training asserts it is off.", "--set v2=false", key="v2"))
    if v["adaptive_noise_scale"] is not None and v["noise_offset"] is None:
        out.append(finding("params/adaptive-noise-needs-offset", "error", GATE,
                           "adaptive_noise_scale needs noise_offset (sd-scripts raises ValueError).",
                           "--set noise_offset=0.05", key="adaptive_noise_scale"))
    if v["scale_v_pred_loss_like_noise_pred"] and not v["v_parameterization"]:
        out.append(finding("params/v-pred-loss", "error", GATE,
                           "scale_v_pred_loss_like_noise_pred needs v_parameterization (sd-scripts raises ValueError).",
                           "--set scale_v_pred_loss_like_noise_pred=false", key="scale_v_pred_loss_like_noise_pred"))
    if v["v_pred_like_loss"] is not None and v["v_parameterization"]:
        out.append(finding("params/v-pred-like-loss", "error", GATE,
                           "v_pred_like_loss cannot be used with v_parameterization (sd-scripts raises ValueError).",
                           "--set v_pred_like_loss=none", key="v_pred_like_loss"))
    if v["zero_terminal_snr"] and not v["v_parameterization"]:
        out.append(finding("params/zero-terminal-snr", "warning", GATE,
                           "zero_terminal_snr without v_parameterization is unusual for SDXL (sd-scripts warns).",
                           key="zero_terminal_snr"))
    if v["network_train_unet_only"] and v["network_train_text_encoder_only"]:
        out.append(finding("params/nothing-to-train", "error", GATE,
                           "network_train_unet_only and network_train_text_encoder_only together leave nothing to train.",
                           "keep one of them", key="network_train_unet_only"))
    module = v["network_module"]
    if module and module != "networks.lora":
        hint = "pip install lycoris-lora in the trainer's environment" if module.startswith("lycoris") else \
            "make sure the trainer's environment can import it"
        out.append(finding("params/network-module", "info", GATE,
                           f"network_module is {module}; lorakit's size and step predictions assume networks.lora.",
                           hint, key="network_module"))
    if v["save_model_as"] in ("ckpt", "pt"):
        out.append(finding("params/save-format", "warning", GATE,
                           f"save_model_as {v['save_model_as']} writes a bare torch file without the ss_* metadata.",
                           "--set save_model_as=safetensors", key="save_model_as"))
    if v["log_with"] in ("wandb", "all"):
        out.append(finding("params/wandb", "info", GATE,
                           "log_with wandb needs the wandb package in the trainer's environment and a login.",
                           "pip install wandb; wandb login", key="log_with"))
    return out


def attention(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    chosen = [k for k in ("mem_eff_attn", "xformers", "sdpa") if v[k]]
    if not chosen:
        return [finding("params/no-attention-backend", "warning", GATE,
                        "no attention backend is set, so the SDXL U-Net uses plain attention: about 17 GiB more "
                        "activation memory at 1024² and much slower steps.",
                        "--set sdpa=true (or xformers=true with xformers installed)", key="sdpa")]
    if len(chosen) > 1:
        return [finding("params/several-attention-backends", "info", GATE,
                        f"{' and '.join(chosen)} are set; sd-scripts uses the first of mem_eff_attn > xformers > sdpa: {chosen[0]}.",
                        key=chosen[0])]
    return []


def sampling(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    out = []
    for key in ("sample_every_n_steps", "sample_every_n_epochs"):
        if v[key] is not None and v[key] <= 0:
            out.append(finding("params/sampling-disabled", "warning", GATE,
                               f"{key} is {v[key]}; sd-scripts disables sampling for values of 0 or less.",
                               f"--set {key}=none to say so, or a positive number", key=key))
    return out


# --- what would fail or mislead later, though sd-scripts does not assert it ---------------------------

def training_length(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    if v.is_set("max_train_epochs") or v.is_set("max_train_steps"):
        return []
    return [finding("params/no-training-length", "error", GATE,
                    "neither max_train_epochs nor max_train_steps is set, so sd-scripts would fall back to its default "
                    "of 1600 steps whatever the dataset.",
                    "--set max_train_epochs=10 (or the number of epochs you want)", key="max_train_epochs")]


def file_names(ctx: CheckContext) -> list[Finding]:
    names = [n for save in ctx.saves or [] for n in (save.file, save.state_dir) if n]
    longest = max(names, key=lambda n: len(n.encode()), default="")
    if len(longest.encode()) <= 255:
        return []
    return [finding("params/output-name-too-long", "error", GATE,
                    f"sd-scripts would save '{longest[:60]}…', a file name of {len(longest.encode())} bytes; file systems "
                    "allow 255.", "give a shorter --name (or --set output_name=...)", key="output_name")]


def unplaceable(ctx: CheckContext) -> list[Finding]:
    count = ctx.steps.unplaceable_images
    if not count:
        return []
    step = ctx.values["bucket_reso_steps"]
    return [finding("dataset/image-smaller-than-bucket-step", "error", 1,
                    f"{count} image(s) have a side shorter than bucket_reso_steps ({step} px) after resizing, so "
                    "bucket_no_upscale gives them a bucket of zero size and sd-scripts fails on them.",
                    "remove or crop them, or --set bucket_no_upscale=false", paths=ctx.steps.unplaceable_examples)]


RULES: list[Callable[[CheckContext], list[Finding]]] = [
    required_values, training_length, file_names, text_encoder_cache, latent_cache, buckets, scheduler, precision, key_value_lists,
    optimizer, model_flags, attention, sampling, clip_skip, adaptive_lr, alpha_vs_rank, step_targets,
    lr_times_steps, text_encoder_lr, image_count, unplaceable, upscaled, repeats_setting, unused_reg,
]
