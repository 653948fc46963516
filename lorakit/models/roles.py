"""The model files of each family, as data: which argument names which file, which files lorakit knows.

A family's model arguments are `Family.model_keys` (config/family.py), the base model first. Each
argument is a *role*: `pretrained_model_name_or_path` the base model (FLUX's and Chroma's transformer),
`vae` SDXL's and SD 1.5's optional VAE, and FLUX's `ae` (autoencoder), `clip_l` and `t5xxl` (text
encoders). What lorakit knows offline about files on the Hub (sizes, which role a file plays, gated
repositories) is here; sd-scripts' tokenizers are `Family.tokenizers`. docs/families.md "Models per
family" explains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lorakit.config.family import Family, family_named

Role = Literal["base", "vae", "ae", "clip_l", "t5xxl", "tokenizer"]
ROLE_OF_KEY: dict[str, Role] = {"pretrained_model_name_or_path": "base", "vae": "vae", "ae": "ae",
                                "clip_l": "clip_l", "t5xxl": "t5xxl"}
ROLE_LABEL: dict[str, str] = {"base": "base model", "vae": "VAE", "ae": "autoencoder (ae)",
                              "clip_l": "CLIP-L text encoder", "t5xxl": "T5-XXL text encoder", "tokenizer": "tokenizer"}
OPTIONAL_KEYS = frozenset({"vae"})  # sd-scripts takes the VAE from the base model when none is given
SINGLE_FILE_ROLES = frozenset({"ae", "clip_l", "t5xxl"})  # flux_utils loads each from one .safetensors file


@dataclass(frozen=True)
class KnownRepo:
    checkpoint: str
    approx_bytes: int
    license: str
    why: str


# Hub ids whose bare id (no ':FILENAME') means their single-file checkpoint for the base model.
KNOWN_REPOS = {
    "stabilityai/stable-diffusion-xl-base-1.0": KnownRepo(
        "sd_xl_base_1.0.safetensors", 6_940_000_000, "openrail++",
        "the repo's single-file SDXL 1.0 checkpoint (3.47 B parameters in fp16, about 6.94 GB)"),
    "stable-diffusion-v1-5/stable-diffusion-v1-5": KnownRepo(
        "v1-5-pruned-emaonly.safetensors", 4_270_000_000, "creativeml-openrail-m",
        "the repo's single-file SD 1.5 checkpoint with EMA weights (about 4.27 GB; smaller than its Diffusers folder)"),
}


@dataclass(frozen=True)
class KnownFile:
    role: Role
    approx_bytes: int | None  # None: lorakit does not know it offline
    family: str | None = None  # for a base model: the family it is the base of


# Files on the Hub whose role and size lorakit knows without asking the Hub (sizes as the Hub lists them).
KNOWN_FILES: dict[tuple[str, str], KnownFile] = {
    ("black-forest-labs/FLUX.1-dev", "flux1-dev.safetensors"): KnownFile("base", 23_800_000_000, "flux1"),
    ("black-forest-labs/FLUX.1-dev", "ae.safetensors"): KnownFile("ae", 335_000_000),
    ("black-forest-labs/FLUX.1-schnell", "ae.safetensors"): KnownFile("ae", 335_000_000),
    ("comfyanonymous/flux_text_encoders", "clip_l.safetensors"): KnownFile("clip_l", 246_000_000),
    ("comfyanonymous/flux_text_encoders", "t5xxl_fp16.safetensors"): KnownFile("t5xxl", 9_790_000_000),
    ("comfyanonymous/flux_text_encoders", "t5xxl_fp8_e4m3fn.safetensors"): KnownFile("t5xxl", 4_890_000_000),
    ("lodestones/Chroma1-Base", "Chroma.safetensors"): KnownFile("base", None, "chroma"),
    ("stabilityai/stable-diffusion-xl-base-1.0", "sd_xl_base_1.0.safetensors"): KnownFile("base", 6_940_000_000, "sdxl"),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "v1-5-pruned-emaonly.safetensors"): KnownFile("base", 4_270_000_000, "sd15"),
}

# The files sd-scripts' guide names for each FLUX role: what a fix suggests.
SUGGESTED = {
    "ae": "black-forest-labs/FLUX.1-dev:ae.safetensors",
    "clip_l": "comfyanonymous/flux_text_encoders:clip_l.safetensors",
    "t5xxl": "comfyanonymous/flux_text_encoders:t5xxl_fp16.safetensors",
}


@dataclass(frozen=True)
class Gated:
    license: str
    page: str


# Repositories whose files the Hub serves only to accounts that accepted their licence.
GATED = {
    "black-forest-labs/FLUX.1-dev": Gated("the FLUX.1 [dev] Non-Commercial License",
                                          "https://huggingface.co/black-forest-labs/FLUX.1-dev"),
}

def known_file(repo_id: str | None, filename: str | None) -> KnownFile | None:
    return KNOWN_FILES.get((repo_id or "", filename or ""))


def single_file_only(family: str, role: str) -> bool:
    """Whether sd-scripts loads this role of the family from one file only (FLUX and Chroma: every role)."""
    return role in SINGLE_FILE_ROLES or role == "base" and family_named(family).transformer


def required(key: str) -> bool:
    """Whether the model argument must be set (unset, sd-scripts has nothing to load for it)."""
    return key not in OPTIONAL_KEYS


def suggestion(family: Family, role: str) -> str:
    """A value that fills the role, for a fix: the family's default base model, or the guide's file."""
    return family.default_model if role == "base" else SUGGESTED.get(role, "a local .safetensors file")


def file_for(repo_id: str | None, role: str) -> str | None:
    """The file lorakit knows in this repo for this role (the fix for a Hub id without ':FILENAME')."""
    return next((name for (repo, name), known in KNOWN_FILES.items() if repo == repo_id and known.role == role), None)
