"""What the Kohya SS GUI hands sd-scripts for a LoRA config (docs/kohya-gui.md §5, §9), for SDXL, FLUX.1, Chroma
and SD 1.5.

The GUI's Train button writes a training TOML from the config (`train_model` → `config_toml_data`),
drops every value equal to "", False, None or 0, and runs the script its model checkboxes select
(`sdxl_train_network.py`, `flux_train_network.py`, `train_network.py`, see `families.gui_script`) with
`--config_file TOML` followed by the tokens of `additional_parameters`, which override the TOML. This
module restates that, so lorakit can tell what a GUI config trains (import) and check that an exported
plan trains the same thing through the GUI (export).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from lorakit.kohya_gui.families import (
    CHROMA,
    FLUX_NETWORK_FIELDS,
    GGPO_FIELDS,
    SDXL_ONLY_TYPES,
    allowed_lora_type,
    gui_family,
    gui_script,
)
from lorakit.kohya_gui.keys import ARGS_PATTERN

SAMPLE_PROMPT_FILE = os.path.join("sample", "prompt.txt")  # under output_dir
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")  # what the GUI counts when it computes steps

# LoRA_type → (network_module, how its network_args are built)
LYCORIS_ALGOS = {
    "LyCORIS/BOFT": "boft", "LyCORIS/Diag-OFT": "diag-oft", "LyCORIS/DyLoRA": "dylora", "LyCORIS/GLoRA": "glora",
    "LyCORIS/iA3": "ia3", "LyCORIS/LoCon": "locon", "LyCORIS/LoHa": "loha", "LyCORIS/LoKr": "lokr",
    "LyCORIS/Native Fine-Tuning": "full",
}
BLOCK_ARGS = ("down_lr_weight", "mid_lr_weight", "up_lr_weight", "block_lr_zero_threshold", "block_dims",
              "block_alphas", "conv_block_dims", "conv_block_alphas")
LORAPLUS_ARGS = ("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio")


@dataclass
class GuiRun:
    """One Train press: the TOML the GUI writes, the extra command-line tokens, and what else it decided."""

    toml: dict[str, Any]
    extra_args: list[str]
    sample_prompts_text: str
    refusals: dict[str, str] = field(default_factory=dict)  # field → why the GUI would not start this run
    steps_from_folders: bool = False  # max_train_steps is computed from train_data_dir's folders × epoch


def _network(c: dict[str, Any]) -> tuple[str | None, str]:
    """network_module and the network_args string, as train_model builds them for c["LoRA_type"]."""
    kind = c["LoRA_type"]
    if kind in LYCORIS_ALGOS:
        return "lycoris.kohya", _lycoris_args(c, LYCORIS_ALGOS[kind])
    if kind == "Flux1":
        return "networks.lora_flux", _flux_args(c)
    if kind == "Flux1 OFT":
        return "networks.oft_flux", " enable_all_linear=True" if c["enable_all_linear"] else ""
    if kind in ("Kohya LoHa", "Kohya LoKr"):
        return ("networks.lokr" if kind == "Kohya LoKr" else "networks.loha"), _native_loha_lokr_args(c, kind == "Kohya LoKr")
    names = [*BLOCK_ARGS, "rank_dropout", "module_dropout"]
    if kind == "Kohya DyLoRA":
        names = ["conv_dim", "conv_alpha", *BLOCK_ARGS, "unit", "rank_dropout", "module_dropout"]
    args = "".join(f" {name}={c[name]}" for name in names if c[name])
    if kind == "Kohya LoCon":
        args = f' conv_dim="{c["conv_dim"]}" conv_alpha="{c["conv_alpha"]}"' + args
    module = {"Standard": "networks.lora", "Kohya LoCon": "networks.lora", "LoRA-FA": "networks.lora_fa",
              "Kohya DyLoRA": "networks.dylora"}.get(kind)
    return module, args


def _flux_args(c: dict[str, Any]) -> str:
    """network_args of the Flux1 type: its non-empty dimension and block fields, split mode, then dropouts."""
    names = [*FLUX_NETWORK_FIELDS, *(GGPO_FIELDS if c["train_lora_ggpo"] else ())]
    args = {name: c[name] for name in names if c[name]}
    if c["split_mode"]:
        args["train_blocks"] = "single"  # the GUI forces it, whatever train_blocks says
    if c["split_qkv"]:
        args["split_qkv"] = True
    if c["train_t5xxl"]:
        args["train_t5xxl"] = True
    text = "".join(f" {name}={value}" for name, value in args.items())
    return text + "".join(f" {name}={c[name]}" for name in ("rank_dropout", "module_dropout") if float(c[name]) > 0)


def _lycoris_args(c: dict[str, Any], algo: str) -> str:
    head = f" preset={c['LyCORIS_preset']} conv_dim={c['conv_dim']} conv_alpha={c['conv_alpha']}"
    tail = {
        "boft": " module_dropout={module_dropout} use_tucker={use_tucker} rank_dropout={rank_dropout} "
                "rank_dropout_scale={rank_dropout_scale} algo=boft train_norm={train_norm}",
        "diag-oft": " module_dropout={module_dropout} use_tucker={use_tucker} rank_dropout={rank_dropout} "
                    "rank_dropout_scale={rank_dropout_scale} constraint={constrain} rescaled={rescaled} "
                    "algo=diag-oft train_norm={train_norm}",
        "dylora": " use_tucker={use_tucker} block_size={unit} rank_dropout={rank_dropout} "
                  "module_dropout={module_dropout} algo=dylora train_norm={train_norm}",
        "glora": " use_tucker={use_tucker} rank_dropout={rank_dropout} module_dropout={module_dropout} "
                 "rank_dropout_scale={rank_dropout_scale} algo=glora train_norm={train_norm}",
        "ia3": " train_on_input={train_on_input} algo=ia3",
        "locon": " use_tucker={use_tucker} rank_dropout={rank_dropout} bypass_mode={bypass_mode} dora_wd={dora_wd} "
                 "module_dropout={module_dropout} use_tucker={use_tucker} use_scalar={use_scalar} "
                 "rank_dropout_scale={rank_dropout_scale} algo=locon train_norm={train_norm}",
        "loha": " use_tucker={use_tucker} rank_dropout={rank_dropout} bypass_mode={bypass_mode} dora_wd={dora_wd} "
                "module_dropout={module_dropout} use_tucker={use_tucker} use_scalar={use_scalar} "
                "rank_dropout_scale={rank_dropout_scale} algo=loha train_norm={train_norm}",
        "lokr": " use_tucker={use_tucker} rank_dropout={rank_dropout} bypass_mode={bypass_mode} dora_wd={dora_wd} "
                "module_dropout={module_dropout} factor={factor} use_cp={use_cp} use_scalar={use_scalar} "
                "decompose_both={decompose_both} rank_dropout_scale={rank_dropout_scale} algo=lokr train_norm={train_norm}",
    }
    if algo == "full":
        return (f" preset={c['LyCORIS_preset']} rank_dropout={c['rank_dropout']} module_dropout={c['module_dropout']}"
                f" rank_dropout_scale={c['rank_dropout_scale']} algo=full train_norm={c['train_norm']}")
    return head + tail[algo].format(**c)


def _native_loha_lokr_args(c: dict[str, Any], is_lokr: bool) -> str:
    parts = []
    if float(c["conv_dim"]) > 0:
        parts.append(f"conv_dim={int(c['conv_dim'])}")
        alpha = c["conv_alpha"]
        parts.append(f"conv_alpha={int(alpha) if float(alpha) == int(alpha) else alpha}")
    if c["use_tucker"]:
        parts.append("use_tucker=True")
    if is_lokr and int(c["factor"]) != -1:
        parts.append(f"factor={int(c['factor'])}")
    for name in ("rank_dropout", "module_dropout"):
        if float(c[name]) > 0:
            parts.append(f"{name}={c[name]}")
    return (" " + " ".join(parts)) if parts else ""


def _split(text: str) -> list[str]:
    return str(text).replace('"', "").split()


def resolve_warmup(lr_warmup: Any, lr_warmup_steps: Any) -> int | float:
    """The GUI's resolve_lr_warmup_steps: an absolute override wins, else percent / 100 (a ratio)."""
    def number(value: Any) -> float:
        try:
            return float(value) if value not in (None, "") else 0.0
        except (TypeError, ValueError):
            return 0.0

    warmup, steps = number(lr_warmup), number(lr_warmup_steps)
    if steps > 0:
        return int(steps)
    return warmup / 100 if warmup != 0 else 0


def folder_steps(train_data_dir: str, reg_data_dir: str, batch: int, accumulation: int, epoch: int) -> int:
    """max_train_steps the GUI computes when it is 0 and there is no dataset_config (docs/kohya-gui.md §5.3)."""
    total = 0
    for entry in sorted(os.listdir(train_data_dir)) if os.path.isdir(train_data_dir) else []:
        folder = os.path.join(train_data_dir, entry)
        if not os.path.isdir(folder):
            continue
        try:
            repeats = int(entry.split("_")[0])
        except ValueError:
            continue
        images = sum(1 for name in os.listdir(folder) if name.lower().endswith(IMAGE_SUFFIXES))
        total += repeats * images
    return int(math.ceil(total / int(batch) / int(accumulation) * int(epoch) * (2 if reg_data_dir else 1)))


def _refusals(c: dict[str, Any]) -> dict[str, str]:
    """The GUI's own checks before it starts a run (docs/kohya-gui.md §5.5), keyed by the field they are about."""
    found = {}
    for key in ("lr_scheduler_args", "optimizer_args"):
        if not ARGS_PATTERN.match(str(c[key])):
            found[key] = f"{key} {c[key]!r} is not a 'k=v k=v' string"
    family, kind = gui_family(c), c["LoRA_type"]
    if c["flux1_checkbox"] and not allowed_lora_type("flux1", kind):
        found["LoRA_type"] = f"LoRA_type {kind!r}: with FLUX.1 ticked it must be 'Flux1', 'Flux1 OFT' or a LyCORIS type"
    elif kind in SDXL_ONLY_TYPES and not (c["sdxl"] or c["anima_checkbox"]):
        found["LoRA_type"] = f"LoRA_type {kind!r} requires SDXL (or Anima) ticked"
    elif family and not allowed_lora_type(family, kind):  # lorakit's own check: the module would not fit the model
        found["LoRA_type"] = f"LoRA_type {kind!r} is not a network of the model the config trains"
    if int(c["bucket_reso_steps"]) < 1:
        found["bucket_reso_steps"] = "bucket_reso_steps must be at least 1"
    if not 0 <= float(c["noise_offset"]) <= 1:
        found["noise_offset"] = f"noise_offset {c['noise_offset']} is outside 0..1"
    if float(c["text_encoder_lr"]) == 0 and float(c["t5xxl_lr"]) > 0:
        found["t5xxl_lr"] = "t5xxl_lr is set while text_encoder_lr is 0"
    if float(c["learning_rate"]) == 0 and float(c["text_encoder_lr"]) == 0 and float(c["unet_lr"]) == 0:
        found["learning_rate"] = "all three learning rates are 0 ('Please input learning rate values.')"
    if not str(c["output_dir"]).strip():
        found["output_dir"] = "output_dir is empty"
    if not c["dataset_config"] and not c["train_data_dir"]:
        found["train_data_dir"] = "train_data_dir is empty and there is no dataset_config"
    if family is None:
        found["sdxl"] = (f"the config trains with {gui_script(c)}{' and v2 (SD 2.x)' if c['v2'] else ''}, a model "
                         "family lorakit does not plan")
    return found


def gui_run(c: dict[str, Any]) -> GuiRun:
    """The run the GUI starts for the full config `c` (every LoRA key present)."""
    refusals = _refusals(c)
    sdxl, flux = bool(c["sdxl"]), bool(c["flux1_checkbox"])
    max_train_steps = int(c["max_train_steps"])
    lr_warmup, lr_warmup_steps = c["lr_warmup"], c["lr_warmup_steps"]
    steps_from_folders = False
    if c["dataset_config"]:
        if max_train_steps > 0:
            if float(lr_warmup_steps or 0) <= 0 and float(lr_warmup or 0) != 0:
                lr_warmup_steps = round(float(lr_warmup) * max_train_steps / 100)
                lr_warmup = 0
        else:
            lr_warmup_steps = 0
    elif max_train_steps == 0:
        steps_from_folders = True
        max_train_steps = folder_steps(c["train_data_dir"], c["reg_data_dir"], c["train_batch_size"],
                                       c["gradient_accumulation_steps"], c["epoch"])
    module, network_args = _network(c)
    network_args += "".join(f" {name}={c[name]}" for name in LORAPLUS_ARGS if c[name])
    te, unet = float(c["text_encoder_lr"]), float(c["unet_lr"])
    te_list = [te, float(c["t5xxl_lr"])] if te > 0 and c["t5xxl_lr"] > 0 else ([te, te] if te > 0 else [])
    original, multires = c["noise_offset_type"] == "Original", c["noise_offset_type"] == "Multires"
    inpainting = bool(c["train_inpainting"]) and not flux  # the FLUX script has no inpainting
    output_dir = c["output_dir"]
    data: dict[str, Any] = {
        "adaptive_noise_scale": c["adaptive_noise_scale"] if c["adaptive_noise_scale"] != 0 and original else None,
        "async_upload": c["async_upload"],
        "bucket_no_upscale": c["bucket_no_upscale"],
        "bucket_reso_steps": c["bucket_reso_steps"],
        "cache_latents": c["cache_latents"] and not inpainting,
        "cache_latents_to_disk": c["cache_latents_to_disk"] and not inpainting,
        "cache_text_encoder_outputs": True if (sdxl and c["sdxl_cache_text_encoder_outputs"])
        or (flux and c["flux1_cache_text_encoder_outputs"]) else None,
        "cache_text_encoder_outputs_to_disk": flux and c["flux1_cache_text_encoder_outputs_to_disk"],
        "caption_dropout_every_n_epochs": int(c["caption_dropout_every_n_epochs"]),
        "caption_dropout_rate": c["caption_dropout_rate"],
        "caption_extension": c["caption_extension"],
        "clip_skip": c["clip_skip"] if c["clip_skip"] != 0 else None,
        "color_aug": c["color_aug"],
        "dataset_config": c["dataset_config"],
        "debiased_estimation_loss": c["debiased_estimation_loss"],
        "dynamo_backend": c["dynamo_backend"],
        "dim_from_weights": c["dim_from_weights"],
        "enable_bucket": c["enable_bucket"],
        "epoch": int(c["epoch"]),
        "flip_aug": c["flip_aug"],
        "fp8_base": c["fp8_base"],
        "fp8_base_unet": c["fp8_base_unet"] if flux else None,
        "full_bf16": c["full_bf16"],
        "full_fp16": c["full_fp16"],
        "gradient_accumulation_steps": int(c["gradient_accumulation_steps"]),
        "gradient_checkpointing": c["gradient_checkpointing"],
        "highvram": c["highvram"],
        "huber_c": c["huber_c"],
        "huber_scale": c["huber_scale"],
        "huber_schedule": c["huber_schedule"],
        **{k: c[k] for k in ("huggingface_repo_id", "huggingface_token", "huggingface_repo_type",
                             "huggingface_repo_visibility", "huggingface_path_in_repo")},
        "ip_noise_gamma": c["ip_noise_gamma"] if c["ip_noise_gamma"] != 0 else None,
        "ip_noise_gamma_random_strength": c["ip_noise_gamma_random_strength"],
        "keep_tokens": int(c["keep_tokens"]),
        "learning_rate": float(c["learning_rate"]),
        "logging_dir": c["logging_dir"],
        "log_config": c["log_config"],
        "log_tracker_name": c["log_tracker_name"],
        "log_tracker_config": c["log_tracker_config"],
        "loss_type": c["loss_type"],
        "lr_scheduler": c["lr_scheduler"],
        "lr_scheduler_args": _split(c["lr_scheduler_args"]),
        "lr_scheduler_num_cycles": int(c["lr_scheduler_num_cycles"]) if c["lr_scheduler_num_cycles"] != "" else int(c["epoch"]),
        "lr_scheduler_power": c["lr_scheduler_power"],
        "lr_scheduler_type": c["lr_scheduler_type"] or None,
        "lr_warmup_steps": resolve_warmup(lr_warmup, lr_warmup_steps),
        "masked_loss": c["masked_loss"],
        "max_bucket_reso": c["max_bucket_reso"],
        "max_grad_norm": c["max_grad_norm"],
        "max_timestep": c["max_timestep"] if c["max_timestep"] != 0 else None,
        "max_token_length": int(c["max_token_length"]) if not flux else None,
        "max_train_epochs": int(c["max_train_epochs"]) if int(c["max_train_epochs"]) != 0 else None,
        "max_train_steps": max_train_steps if max_train_steps != 0 else None,
        "mem_eff_attn": c["mem_eff_attn"],
        **{k: c[k] for k in ("metadata_author", "metadata_description", "metadata_license", "metadata_tags",
                             "metadata_title")},
        "min_bucket_reso": int(c["min_bucket_reso"]),
        "min_snr_gamma": c["min_snr_gamma"] if c["min_snr_gamma"] != 0 else None,
        "min_timestep": c["min_timestep"] if c["min_timestep"] != 0 else None,
        "mixed_precision": c["mixed_precision"],
        "multires_noise_discount": c["multires_noise_discount"] if multires else None,
        "multires_noise_iterations": c["multires_noise_iterations"] if c["multires_noise_iterations"] != 0 and multires else None,
        "network_alpha": c["network_alpha"],
        "network_args": _split(network_args),
        "network_dim": c["network_dim"],
        "network_dropout": c["network_dropout"],
        "network_module": module,
        "network_train_unet_only": te == 0 and unet != 0,
        "network_train_text_encoder_only": te != 0 and unet == 0,
        "network_weights": c["network_weights"],
        "no_half_vae": True if sdxl and c["sdxl_no_half_vae"] else None,
        "noise_offset": c["noise_offset"] if c["noise_offset"] != 0 and original else None,
        "noise_offset_random_strength": c["noise_offset_random_strength"] if original else None,
        "noise_offset_type": c["noise_offset_type"],
        "optimizer_type": c["optimizer"],
        "optimizer_args": _split(c["optimizer_args"]),
        "output_dir": output_dir,
        "output_name": c["output_name"],
        "persistent_data_loader_workers": int(bool(c["persistent_data_loader_workers"])),
        "pretrained_model_name_or_path": c["pretrained_model_name_or_path"],
        "prior_loss_weight": c["prior_loss_weight"],
        "random_crop": c["random_crop"],
        "reg_data_dir": c["reg_data_dir"],
        "resolution": c["max_resolution"],
        "resume": c["resume"],
        "resume_from_huggingface": c["resume_from_huggingface"],
        "sample_every_n_epochs": c["sample_every_n_epochs"] if c["sample_every_n_epochs"] != 0 else None,
        "sample_every_n_steps": c["sample_every_n_steps"] if c["sample_every_n_steps"] != 0 else None,
        "sample_prompts": os.path.join(output_dir, SAMPLE_PROMPT_FILE),
        "sample_sampler": c["sample_sampler"],
        **{k: (c[k] if c[k] != 0 else None) for k in ("save_every_n_epochs", "save_every_n_steps", "save_last_n_steps",
                                                       "save_last_n_steps_state", "save_last_n_epochs",
                                                       "save_last_n_epochs_state")},
        "save_model_as": c["save_model_as"],
        "save_precision": c["save_precision"],
        "save_state": c["save_state"],
        "save_state_on_train_end": c["save_state_on_train_end"],
        "save_state_to_huggingface": c["save_state_to_huggingface"],
        "scale_v_pred_loss_like_noise_pred": c["scale_v_pred_loss_like_noise_pred"],
        "scale_weight_norms": c["scale_weight_norms"],
        "sdpa": True if c["xformers"] == "sdpa" else None,
        "seed": int(c["seed"]) if int(c["seed"]) != 0 else None,
        "shuffle_caption": c["shuffle_caption"],
        "skip_cache_check": c["skip_cache_check"],
        "text_encoder_lr": te_list or None,
        "train_batch_size": c["train_batch_size"],
        "train_data_dir": c["train_data_dir"],
        "train_inpainting": inpainting,
        "training_comment": c["training_comment"],
        "unet_lr": unet if unet != 0.0 else None,
        "log_with": c["log_with"],
        "v2": c["v2"],
        "v_parameterization": c["v_parameterization"],
        "v_pred_like_loss": c["v_pred_like_loss"] if c["v_pred_like_loss"] != 0 else None,
        "vae": c["vae"],
        "vae_batch_size": c["vae_batch_size"] if c["vae_batch_size"] != 0 else None,
        "wandb_api_key": c["wandb_api_key"],
        "wandb_run_name": c["wandb_run_name"] if c["wandb_run_name"] != "" else c["output_name"],
        "weighted_captions": c["weighted_captions"],
        "xformers": True if c["xformers"] == "xformers" else None,
        **(_flux_toml(c) if flux else {}),
    }
    # `value not in ["", False, None]`: 0 and 0.0 equal False, so zeros vanish too (docs/kohya-gui.md §5.1).
    toml = {k: v for k, v in data.items() if not _dropped(v)}
    toml["max_data_loader_n_workers"] = int(c["max_data_loader_n_workers"])
    if flux and str(c["model_type"]).lower() == CHROMA:
        # Chroma needs the T5 mask (sd-scripts asserts it) and guidance 0.0, which the zero filter above dropped.
        toml["apply_t5_attn_mask"] = True
        toml["guidance_scale"] = float(c["guidance_scale"])
    return GuiRun(toml=dict(sorted(toml.items())), extra_args=_split(c["additional_parameters"]),
                  sample_prompts_text=str(c["sample_prompts"]), refusals=refusals,
                  steps_from_folders=steps_from_folders)


def _flux_toml(c: dict[str, Any]) -> dict[str, Any]:
    """The FLUX.1 fields of the TOML (flux1_checkbox ticked); Chroma gets model_type and no CLIP-L."""
    chroma = str(c["model_type"]).lower() == CHROMA
    return {
        "model_type": CHROMA if chroma else None, "ae": c["ae"], "clip_l": None if chroma else c["clip_l"],
        "t5xxl": c["t5xxl"], "split_mode": c["split_mode"], "t5xxl_max_token_length": int(c["t5xxl_max_token_length"]),
        "guidance_scale": float(c["guidance_scale"]), "mem_eff_save": c["mem_eff_save"],
        "apply_t5_attn_mask": c["apply_t5_attn_mask"], "cpu_offload_checkpointing": c["cpu_offload_checkpointing"],
        "blocks_to_swap": c["blocks_to_swap"], "single_blocks_to_swap": c["single_blocks_to_swap"],
        "double_blocks_to_swap": c["double_blocks_to_swap"],
        "show_timesteps": c["show_timesteps"] or None,
        "show_timesteps_resolution": c["show_timesteps_resolution"] if c["show_timesteps"] else None,
        "discrete_flow_shift": float(c["discrete_flow_shift"]), "model_prediction_type": c["model_prediction_type"],
        "timestep_sampling": c["timestep_sampling"],
    }


def _dropped(value: Any) -> bool:
    if isinstance(value, (list, dict)):
        return False  # [] == "" / False / None are all false, so empty lists stay
    return value is None or value == "" or value is False or (isinstance(value, (int, float)) and value == 0)
