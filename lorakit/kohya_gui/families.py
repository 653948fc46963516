"""Which model family a Kohya SS GUI LoRA config trains, and what the GUI passes sd-scripts per family.

The GUI picks the training script from its model checkboxes, in this order: `sdxl` → sdxl_train_network.py,
`flux1_checkbox` → flux_train_network.py (Chroma when the "Base Model Type" `model_type` is "chroma", GUI
master only), then SD3, HunyuanImage, Anima and Lumina, and otherwise train_network.py (SD 1.x, or SD 2.x
with `v2`). Many of its fields reach sd-scripts only for one family (docs/kohya-gui.md §5.2, §9).
"""

from __future__ import annotations

from typing import Any

from lorakit.config.family import FAMILIES, family_named
from lorakit.kohya_gui.keys import VERSIONS, version_keys

# The model checkboxes of the LoRA tab, and the script each selects (first one ticked wins; none: train_network.py).
MODEL_FLAGS = ("v2", "v_parameterization", "sdxl", "flux1_checkbox", "sd3_checkbox", "hunyuan_image_checkbox",
               "anima_checkbox", "lumina_checkbox")
SCRIPT_FLAGS = {"sdxl": "sdxl_train_network.py", "flux1_checkbox": "flux_train_network.py",
                "sd3_checkbox": "sd3_train_network.py", "hunyuan_image_checkbox": "hunyuan_image_train_network.py",
                "anima_checkbox": "anima_train_network.py", "lumina_checkbox": "lumina_train_network.py"}
OTHER_SCRIPT = "train_network.py"
CHROMA = "chroma"

# LoRA types of other model families (the GUI's network modules for them), and the native LoHa/LoKr types the GUI
# allows only with SDXL (or Anima).
NON_SDXL_TYPES = frozenset({"Flux1", "Flux1 OFT", "HunyuanImage-2.1", "Anima", "Lumina"})
FLUX_TYPES = frozenset({"Flux1", "Flux1 OFT"})
SDXL_ONLY_TYPES = frozenset({"Kohya LoHa", "Kohya LoKr"})

# GUI fields train_model passes only when flux1_checkbox is ticked (their sd-scripts names where they differ).
FLUX_FIELDS = {
    "flux1_cache_text_encoder_outputs": "cache_text_encoder_outputs",
    "flux1_cache_text_encoder_outputs_to_disk": "cache_text_encoder_outputs_to_disk",
    **{name: name for name in (
        "ae", "clip_l", "t5xxl", "model_type", "fp8_base_unet", "split_mode", "t5xxl_max_token_length",
        "guidance_scale", "mem_eff_save", "apply_t5_attn_mask", "cpu_offload_checkpointing", "blocks_to_swap",
        "single_blocks_to_swap", "double_blocks_to_swap", "discrete_flow_shift", "model_prediction_type",
        "timestep_sampling")},
}
# GUI fields passed only when sdxl is ticked.
SDXL_FIELDS = {"sdxl_no_half_vae": "no_half_vae", "sdxl_cache_text_encoder_outputs": "cache_text_encoder_outputs"}
# Fields of every family that the GUI leaves out of a FLUX run's TOML (Chroma also leaves out clip_l).
NOT_FOR_FLUX = frozenset({"max_token_length", "train_inpainting"})
# Fields of the Flux1 LoRA type that become network_args (`name=value` when not empty).
FLUX_NETWORK_FIELDS = ("img_attn_dim", "img_mlp_dim", "img_mod_dim", "single_dim", "txt_attn_dim", "txt_mlp_dim",
                       "txt_mod_dim", "single_mod_dim", "in_dims", "train_double_block_indices",
                       "train_single_block_indices")
GGPO_FIELDS = ("ggpo_beta", "ggpo_sigma")


def gui_script(c: dict[str, Any]) -> str:
    """The sd-scripts script the GUI launches for config `c` (every key present)."""
    return next((script for flag, script in SCRIPT_FLAGS.items() if c.get(flag)), OTHER_SCRIPT)


def is_flux(family: str) -> bool:
    return family_named(family).script == SCRIPT_FLAGS["flux1_checkbox"]


def gui_family(c: dict[str, Any]) -> str | None:
    """The lorakit family config `c` trains, or None for a model family lorakit does not plan (SD3, SD 2.x, ...)."""
    script = gui_script(c)
    if script == OTHER_SCRIPT:
        return None if c.get("v2") else "sd15"
    if script == SCRIPT_FLAGS["flux1_checkbox"]:
        return CHROMA if str(c.get("model_type") or "").lower() == CHROMA else "flux1"
    return next((f.name for f in FAMILIES.values() if f.script == script and not is_flux(f.name)), None)


def family_flags(family: str) -> dict[str, Any]:
    """The model fields of an export for `family`: its checkbox on, every other one off."""
    flag = family_named(family).gui_flag
    flags: dict[str, Any] = {name: name == flag for name in MODEL_FLAGS}
    if is_flux(family):
        flags["model_type"] = CHROMA if family == CHROMA else "flux"
    return flags


def family_fields(family: str) -> set[str]:
    """The GUI fields a config needs for the GUI to train `family` (its checkbox; Chroma's model type too)."""
    flag = family_named(family).gui_flag
    return ({flag} if flag else set()) | ({"model_type"} if family == CHROMA else set())


def version_refusal(family: str, version: str) -> str | None:
    """Why GUI `version` cannot express a `family` config (it lacks the family's fields), or None."""
    missing = sorted(family_fields(family) - set(version_keys(version)))
    if not missing:
        return None
    return (f"the Kohya SS GUI {VERSIONS[version]} has no {' or '.join(missing)} field, so it cannot train a "
            f"{family_named(family).title} LoRA (FLUX.1 came with GUI v25, Chroma's 'Base Model Type' after v26.0.0 "
            "on master)")


def allowed_lora_type(family: str, lora_type: str) -> bool:
    """Whether the GUI trains `lora_type` for `family` (its pre-launch checks, docs/kohya-gui.md §5.5)."""
    if is_flux(family):
        return lora_type in FLUX_TYPES or "LyCORIS" in lora_type
    if lora_type in NON_SDXL_TYPES:
        return False
    return family == "sdxl" or lora_type not in SDXL_ONLY_TYPES


def passed_fields(family: str) -> dict[str, str]:
    """GUI field → sd-scripts argument for the family-only fields the GUI passes for `family`."""
    if family == "sdxl":
        return dict(SDXL_FIELDS)
    if is_flux(family):
        return {k: v for k, v in FLUX_FIELDS.items() if not (family == CHROMA and k == "clip_l")}
    return {}


def withheld_fields(family: str) -> frozenset[str]:
    """GUI fields named like an sd-scripts argument of `family` that the GUI does not pass for it."""
    others = (set(FLUX_FIELDS) | set(SDXL_FIELDS)) - set(passed_fields(family))
    return frozenset(others | (NOT_FOR_FLUX if is_flux(family) else set()))


# What the GUI's "Base Model Type" change event sets when it switches to Chroma (class_flux1.model_type_change).
CHROMA_ON_SWITCH = {"guidance_scale": 0, "apply_t5_attn_mask": True, "timestep_sampling": "sigmoid"}


def loaded_with_events(c: dict[str, Any], shown_model_type: str = "flux") -> tuple[dict[str, Any], list[str]]:
    """Config `c` as the GUI holds it after its load-time change events, and the fields they changed.

    Loading a Chroma config into a GUI that shows "flux" (a fresh GUI does) switches the Base Model Type,
    and that change event then overwrites three fields with Chroma's defaults, whatever the file says.
    """
    if not c.get("flux1_checkbox") or str(c.get("model_type")) != CHROMA or shown_model_type == CHROMA:
        return c, []
    changed = [k for k, v in CHROMA_ON_SWITCH.items() if c.get(k) != v]
    return {**c, **CHROMA_ON_SWITCH}, changed
