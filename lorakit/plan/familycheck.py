"""Gate 2's rules that belong to one family (docs/families.md §7): what flux_train_network.py asserts and
defaults to for FLUX.1 and Chroma, the Stable Diffusion arguments a transformer family ignores, and SD 1.5's
size, CLIP skip and prompt-length rules. lorakit.plan.check runs these beside the rules every family shares.
"""

from __future__ import annotations

import re

from lorakit.config.family import Family, family_named
from lorakit.config.schema import resolution_tuple
from lorakit.config.values import Values
from lorakit.findings import Finding, finding
from lorakit.plan.context import CheckContext

GATE = 2
FLUX_GUIDANCE = 1.0  # docs/families.md §2: FLUX.1 [dev] trains at 1.0; sd-scripts' default is 3.5
CHROMA_GUIDANCE = 0.0  # docs/families.md §3: Chroma is not guidance-distilled
FLUX_SAMPLING = ("shift", "flux_shift")  # the guide's advice for FLUX.1 (sd-scripts' default is sigma)
CHROMA_SAMPLING = ("sigmoid",)  # the guide's advice for Chroma
SHIFT_VALUE = 3.1582  # the guide's discrete_flow_shift with shift sampling (sd-scripts' default is 3.0)
# Samplings that read discrete_flow_shift: `shift` directly, `sigma` through the noise scheduler's timesteps.
SHIFT_READERS = ("shift", "sigma")
# The Stable Diffusion arguments flux_train_network.py parses but never reads (its guide lists the first four;
# its loss skips the SD loss weightings and its noise is plain Gaussian), with the value that means "off".
SD_ONLY_KEYS: dict[str, object] = {
    "v2": False, "v_parameterization": False, "clip_skip": 1, "max_token_length": None, "min_snr_gamma": None,
    "noise_offset": None, "multires_noise_iterations": None, "zero_terminal_snr": False,
    "scale_v_pred_loss_like_noise_pred": False, "v_pred_like_loss": None, "debiased_estimation_loss": False,
}
# LoRA modules for a U-Net family and for the FLUX transformer: one of the other kind finds no layers it knows.
SD_MODULES = ("networks.lora", "networks.dylora", "networks.lora_fa", "networks.oft")
FLUX_MODULES = ("networks.lora_flux", "networks.oft_flux")
CLIP_TOKENS = 75  # CLIP's prompt window without max_token_length
WORD_OR_MARK = re.compile(r"\w+(?:'\w+)?|[^\w\s]")  # each is at least one CLIP token


def family_of(ctx: CheckContext) -> Family:
    return family_named(ctx.values.family)


def is_chroma(values: Values) -> bool:
    return values["model_type"] == "chroma"


def network_arg(values: Values, name: str) -> str | None:
    """The text of one `network_args` item (networks read them as strings)."""
    items = [item.split("=", 1) for item in values["network_args"] or [] if "=" in item]
    return next((value.strip() for key, value in items if key.strip() == name), None)


def expected_module(family: Family) -> str:
    return FLUX_MODULES[0] if family.transformer else SD_MODULES[0]


def _active(value: object, off: object) -> bool:
    return value is not None and value is not False and value != 0 and value != off


# --- FLUX.1 and Chroma: flux_train_network.py ---------------------------------------------------------

def flux_guidance(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    if not family_of(ctx).transformer:
        return []
    guidance = v["guidance_scale"]
    if is_chroma(v):
        if guidance == CHROMA_GUIDANCE:
            return []
        return [finding("params/chroma-guidance", "error", GATE,
                        f"guidance_scale is {guidance:g}; Chroma is not guidance-distilled, and sd-scripts' guide "
                        "requires 0.0 to train it without a guidance embedding.",
                        "--set guidance_scale=0.0", key="guidance_scale")]
    if guidance == FLUX_GUIDANCE:
        return []
    default = " (sd-scripts' default)" if not v.is_set("guidance_scale") else ""
    return [finding("params/flux-guidance", "warning", GATE,
                    f"guidance_scale is {guidance:g}{default}; FLUX.1 [dev] is guidance-distilled and sd-scripts' guide "
                    "trains it at 1.0: other values bend what the LoRA learns towards that guidance.",
                    "--set guidance_scale=1.0", key="guidance_scale")]


def flux_timesteps(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    if not family_of(ctx).transformer:
        return []
    out = []
    sampling = v["timestep_sampling"]
    advised = CHROMA_SAMPLING if is_chroma(v) else FLUX_SAMPLING
    model = "Chroma" if is_chroma(v) else "FLUX.1"
    if sampling not in advised:
        out.append(finding("params/flux-timestep-sampling", "warning", GATE,
                           f"timestep_sampling is {sampling}; sd-scripts' guide advises {' or '.join(advised)} for {model}"
                           + (" (sigma is sd-scripts' default)." if sampling == "sigma" else "."),
                           f"--set timestep_sampling={advised[0]}", key="timestep_sampling"))
    if v["model_prediction_type"] != "raw":
        out.append(finding("params/flux-model-prediction", "warning", GATE,
                           f"model_prediction_type is {v['model_prediction_type']}; sd-scripts' guide advises raw for "
                           f"{model} (sigma_scaled is sd-scripts' default).",
                           "--set model_prediction_type=raw", key="model_prediction_type"))
    if v.is_set("discrete_flow_shift") and sampling not in SHIFT_READERS:
        out.append(finding("params/discrete-flow-shift-unused", "warning", GATE,
                           f"discrete_flow_shift {v['discrete_flow_shift']:g} does nothing with timestep_sampling {sampling}: "
                           "it acts only with shift (and, through the noise scheduler, sigma).",
                           "--set timestep_sampling=shift, or --set discrete_flow_shift=none", key="discrete_flow_shift"))
    elif sampling == "shift" and not v.is_set("discrete_flow_shift"):
        out.append(finding("params/discrete-flow-shift-default", "info", GATE,
                           f"timestep_sampling shift uses sd-scripts' default discrete_flow_shift 3.0; the guide's "
                           f"recommended settings use {SHIFT_VALUE}.",
                           f"--set discrete_flow_shift={SHIFT_VALUE}", key="discrete_flow_shift"))
    return out


def flux_text_encoders(ctx: CheckContext) -> list[Finding]:
    """Caching text-encoder outputs is refused only while T5-XXL trains (network_args train_t5xxl=True)."""
    v = ctx.values
    if not family_of(ctx).transformer:
        return []
    out = []
    trains_t5 = network_arg(v, "train_t5xxl") == "True"  # lora_flux reads exactly the text "True"
    caches = v["cache_text_encoder_outputs"] or v["cache_text_encoder_outputs_to_disk"]
    if trains_t5 and caches:
        out.append(finding("params/te-cache-while-t5-trains", "error", GATE,
                           "cache_text_encoder_outputs with network_args train_t5xxl=True: T5-XXL's outputs change while "
                           "it trains, so they cannot be cached (sd-scripts raises ValueError).",
                           "--set cache_text_encoder_outputs=false (and cache_text_encoder_outputs_to_disk=false), or "
                           "drop train_t5xxl=True from network_args", key="cache_text_encoder_outputs"))
    if trains_t5 and v["network_train_unet_only"]:
        out.append(finding("params/t5-train-needs-text-encoders", "warning", GATE,
                           "network_args train_t5xxl=True does nothing while network_train_unet_only is set: sd-scripts "
                           "applies no text-encoder LoRA.",
                           "--set network_train_unet_only=false, or drop train_t5xxl=True", key="network_args"))
    if is_chroma(v) and not v["apply_t5_attn_mask"]:
        out.append(finding("params/chroma-t5-attn-mask", "error", GATE,
                           "Chroma needs apply_t5_attn_mask (sd-scripts asserts).",
                           "--set apply_t5_attn_mask=true", key="apply_t5_attn_mask"))
    return out


def flux_offload(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    if not family_of(ctx).transformer or not v["cpu_offload_checkpointing"]:
        return []
    if v["blocks_to_swap"]:
        return [finding("params/blocks-swap-vs-cpu-offload", "error", GATE,
                        f"blocks_to_swap {v['blocks_to_swap']} cannot be combined with cpu_offload_checkpointing "
                        "(sd-scripts asserts).",
                        "--set cpu_offload_checkpointing=false (block swap saves more)", key="cpu_offload_checkpointing")]
    if is_chroma(v):
        return [finding("params/chroma-cpu-offload", "warning", GATE,
                        "cpu_offload_checkpointing does nothing for Chroma: its blocks checkpoint on the GPU "
                        "(sd-scripts' guide: not supported for Chroma).",
                        "--set cpu_offload_checkpointing=false, or blocks_to_swap to save VRAM", key="cpu_offload_checkpointing")]
    return []


def model_type(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    family = family_of(ctx)
    if not family.transformer or is_chroma(v) == (family.name == "chroma"):
        return []
    base = "chroma" if is_chroma(v) else "flux1-dev"
    return [finding("params/model-type", "warning", GATE,
                    f"model_type {v['model_type']} trains {'Chroma' if is_chroma(v) else 'FLUX.1'}, but this is a "
                    f"{family.title} plan: its guidance, sampling and sample-prompt values are {family.title}'s.",
                    f"plan with --preset {base} instead of --set model_type", key="model_type")]


def sd_only_keys(ctx: CheckContext) -> list[Finding]:
    """Stable Diffusion arguments the transformer families' script parses and ignores: a warning, so a plan never
    promises a setting that training will not apply (a warning, not an error: the run trains, without them, and
    the Kohya GUI's own FLUX presets carry some)."""
    v = ctx.values
    family = family_of(ctx)
    if not family.transformer:
        return []
    return [finding("params/sd-only-key", "warning", GATE,
                    f"{key} is {v[key]}, a Stable Diffusion argument that {family.script} ignores for {family.title}"
                    + (" (use t5xxl_max_token_length)." if key == "max_token_length" else "."),
                    f"--set {key}=none", key=key)
            for key, off in SD_ONLY_KEYS.items() if _active(v[key], off)]


def transformer_extras(ctx: CheckContext) -> list[Finding]:
    """Settings that only mean something for a U-Net's sampler or attention."""
    v = ctx.values
    family = family_of(ctx)
    if not family.transformer:
        return []
    out = []
    if v.is_set("sample_sampler"):
        out.append(finding("params/sample-sampler-ignored", "info", GATE,
                           f"sample_sampler {v['sample_sampler']} is not used: {family.script} draws {family.title} "
                           "samples with its own Euler flow sampler.", "--set sample_sampler=none", key="sample_sampler"))
    chosen = [k for k in ("mem_eff_attn", "xformers") if v[k]]
    if chosen:
        out.append(finding("params/attention-ignored", "info", GATE,
                           f"{' and '.join(chosen)} do nothing for {family.title}: its transformer always uses PyTorch's "
                           "scaled-dot-product attention.", f"--set {chosen[0]}=false", key=chosen[0]))
    return out


def sample_guidance(ctx: CheckContext) -> list[Finding]:
    """`--g` in sample prompts: the embedded guidance of FLUX.1 and Chroma, which SDXL and SD 1.5 do not read."""
    v = ctx.values
    family = family_of(ctx)
    guidance = v["sample_guidance"]
    if v["sample_prompt_lines"]:
        return []  # lines given as they are carry their own options
    if not family.transformer:
        return [] if guidance is None else [finding(
            "params/sample-guidance-unused", "info", GATE,
            f"sample_guidance {guidance:g} is not written: {family.title} samples have no embedded guidance (--g); "
            "sample_cfg is their CFG scale.", "--set sample_guidance=none", key="sample_guidance")]
    out = []
    if v["sample_negative_prompt"] and v["sample_cfg"] == 1:
        out.append(finding("params/sample-negative-ignored", "info", GATE,
                           f"sample_negative_prompt is not used: {family.title} samples at sample_cfg 1 (--l 1) draw "
                           "without classifier-free guidance, so sd-scripts ignores the negative prompt.",
                           "--set sample_cfg=3.5 (slower samples), or --set sample_negative_prompt=none",
                           key="sample_negative_prompt"))
    if is_chroma(v) and guidance != CHROMA_GUIDANCE:
        shown = "unset (sd-scripts samples at 3.5)" if guidance is None else f"{guidance:g}"
        out.append(finding("params/chroma-sample-guidance", "warning", GATE,
                           f"sample_guidance is {shown}; Chroma has no embedded guidance, so its samples need --g 0 "
                           "(sd-scripts' guide) and sample_cfg for guidance.", "--set sample_guidance=0", key="sample_guidance"))
    return out


# --- every family: the network module -----------------------------------------------------------------

def network_module(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    family = family_of(ctx)
    module = v["network_module"]
    expected = expected_module(family)
    if not module or module == expected:
        return []
    other = SD_MODULES if family.transformer else FLUX_MODULES
    if module in other:
        return [finding("params/network-module-family", "error", GATE,
                        f"network_module {module} adapts {'Stable Diffusion U-Nets' if family.transformer else 'the FLUX transformer'}; "
                        f"{family.title} needs {expected}.", f"--set network_module={expected}", key="network_module")]
    hint = "pip install lycoris-lora in the trainer's environment" if module.startswith("lycoris") else \
        "make sure the trainer's environment can import it"
    return [finding("params/network-module", "info", GATE,
                    f"network_module is {module}; lorakit's size and step predictions assume {expected} for {family.title}.",
                    hint, key="network_module")]


# --- SD 1.5: train_network.py --------------------------------------------------------------------------

def sd15_resolution(ctx: CheckContext) -> list[Finding]:
    v = ctx.values
    family = family_of(ctx)
    if family.name != "sd15":
        return []
    width, height = resolution_tuple(v["resolution"])
    side = (width * height) ** 0.5
    native = family.native_resolution
    if 0.75 * native <= side <= 1.5 * native:
        return []
    effect = ("repeats subjects and loses coherence, and every step costs several times as much" if side > native
              else "learns too little detail")
    return [finding("params/sd15-resolution", "warning", GATE,
                    f"resolution {width}x{height}: SD 1.5 was trained at {native}²; far from it the model {effect}.",
                    f"--set resolution={native},{native}", key="resolution")]


def sd15_clip_skip(ctx: CheckContext) -> list[Finding]:
    """SD 1.5 reads clip_skip (SDXL and the transformers do not: lorakit.plan.advice and sd_only_keys say so)."""
    v = ctx.values
    if family_of(ctx).name != "sd15" or v["clip_skip"] is None:
        return []
    if v["clip_skip"] > 2:
        return [finding("params/sd15-clip-skip", "warning", GATE,
                        f"clip_skip {v['clip_skip']}: SD 1.5 checkpoints are made for 1 (the base) or 2 (anime "
                        "fine-tunes); deeper skips drop what the prompt says.", "--set clip_skip=2 (or none)", key="clip_skip")]
    return [finding("params/sd15-clip-skip", "info", GATE,
                    f"clip_skip {v['clip_skip']}: generate with the same clip skip the LoRA was trained with.", key="clip_skip")]


def caption_tokens(ctx: CheckContext) -> list[Finding]:
    """CLIP reads 75 tokens of a caption unless max_token_length is 150 or 225; the rest is cut off."""
    v = ctx.values
    if family_of(ctx).transformer:
        return []  # T5-XXL reads 512 tokens (256 for schnell)
    limit = v["max_token_length"] or CLIP_TOKENS
    long = [img.path for subset in ctx.dataset.subsets for img in subset.images
            if img.caption and len(WORD_OR_MARK.findall(img.caption)) > limit]
    if not long:
        return []
    fix = f"--set max_token_length={150 if limit < 150 else 225}, or shorten the captions" if limit < 225 else \
        "shorten the captions"
    return [finding("dataset/caption-tokens", "warning", 1,
                    f"{len(long)} caption(s) have more than {limit} words and marks, so more than {limit} CLIP tokens: "
                    "sd-scripts cuts the rest off.", fix, paths=long)]
