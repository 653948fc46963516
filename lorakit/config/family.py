"""Model families: which sd-scripts script trains a base model, and the facts lorakit plans it by.

A plan's family comes from its base preset (`[preset] family = "flux1"` in `presets/flux1-dev.toml`) and
is stored as the lorakit key `family`, with that preset as its source. Everything that differs between
families and is plain data lives here; the rules that differ (Gate 2's asserts, the estimator's
components) read these fields. A new family is one more entry, its base preset, its argument table
(`lorakit/data/sd-scripts-args/SCRIPT.json`, derived by `tools/derive_arguments.py`) and its own rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    script: str  # the sd-scripts training script, run through accelerate
    base_preset: str
    # Preset tables this family reads, most general first: a preset's [values], then [family.NAME] for each
    # name here. Chroma trains through the FLUX script and shares FLUX's recipes unless a preset says otherwise.
    recipes: tuple[str, ...]
    native_resolution: int  # the side of the square the base model was trained at
    bucket_step: int  # bucket_reso_steps must be a multiple of this (the script's verify_bucket_reso_steps)
    model_keys: tuple[str, ...]  # the arguments that name model files, the base model first
    gui_flag: str | None  # the Kohya GUI checkbox that selects this family's script (none: SD 1.x)
    transformer: bool  # a DiT (no U-Net, no CLIP skip, flow matching)
    default_model: str
    model_source: str  # where the default model is explained
    tokenizers: tuple[str, ...]  # the Hub repos sd-scripts loads tokenizers from when it starts

    @property
    def script_stem(self) -> str:
        return self.script.removesuffix(".py")


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("sdxl", "SDXL", "sdxl_train_network.py", "sdxl-base", ("sdxl",), 1024, 32,
               ("pretrained_model_name_or_path", "vae"), "sdxl", False,
               "stabilityai/stable-diffusion-xl-base-1.0", "docs/recommendations.md §1 Base model",
               ("openai/clip-vit-large-patch14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k")),
        Family("flux1", "FLUX.1 [dev]", "flux_train_network.py", "flux1-dev", ("flux1",), 1024, 32,
               ("pretrained_model_name_or_path", "ae", "clip_l", "t5xxl"), "flux1_checkbox", True,
               "black-forest-labs/FLUX.1-dev:flux1-dev.safetensors", "docs/families.md §2",
               ("openai/clip-vit-large-patch14", "google/t5-v1_1-xxl")),
        Family("chroma", "Chroma", "flux_train_network.py", "chroma", ("flux1", "chroma"), 1024, 32,
               ("pretrained_model_name_or_path", "ae", "t5xxl"), "flux1_checkbox", True,
               "lodestones/Chroma1-Base:Chroma.safetensors", "docs/families.md §3",
               ("openai/clip-vit-large-patch14", "google/t5-v1_1-xxl")),  # FLUX's tokenizer strategy loads both
        Family("sd15", "SD 1.5", "train_network.py", "sd15", ("sd15",), 512, 64,
               ("pretrained_model_name_or_path", "vae"), None, False,
               "stable-diffusion-v1-5/stable-diffusion-v1-5", "docs/families.md §4", ("openai/clip-vit-large-patch14",)),
    )
}
DEFAULT_FAMILY = "sdxl"
SCRIPTS = tuple(dict.fromkeys(family.script for family in FAMILIES.values()))


def family_named(name: str) -> Family:
    family = FAMILIES.get(name)
    if family is None:
        raise UserError(f"unknown model family '{name}'; lorakit plans {', '.join(FAMILIES)}.",
                        fix="`lorakit presets` lists each family's base preset")
    return family
