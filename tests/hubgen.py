"""Test helpers: hand-written .safetensors files, and a Hugging Face cache laid out as huggingface_hub lays it out."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from lorakit.models.source import TOKENIZER_REPOS

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_FILE = "sd_xl_base_1.0.safetensors"


def safetensors_bytes(tensors: dict[str, int], metadata: dict[str, str] | None = None) -> bytes:
    """A valid safetensors file: each tensor a flat F32 vector of the given length (zeros)."""
    header: dict = {"__metadata__": metadata} if metadata is not None else {}
    offset = 0
    for name, length in tensors.items():
        header[name] = {"dtype": "F32", "shape": [length], "data_offsets": [offset, offset + 4 * length]}
        offset += 4 * length
    raw = json.dumps(header).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + b"\x00" * offset


def write_safetensors(path: Path, tensors: dict[str, int], metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(safetensors_bytes(tensors, metadata))
    return path


def fake_checkpoint(n: int = 64) -> bytes:
    """A stand-in for an SDXL checkpoint: U-Net and text-encoder tensor names, tiny."""
    return safetensors_bytes({"model.diffusion_model.input_blocks.0.0.weight": n,
                              "conditioner.embedders.0.transformer.text_model.embeddings.position_ids": n})


def fake_lora(steps: int = 720) -> bytes:
    return safetensors_bytes(
        {"lora_unet_input_blocks_1_1_proj_in.lora_down.weight": 16, "lora_unet_input_blocks_1_1_proj_in.lora_up.weight": 16,
         "lora_unet_input_blocks_1_1_proj_in.alpha": 1},
        {"ss_steps": str(steps), "ss_epoch": "12", "ss_network_dim": "16", "ss_base_model_version": "sdxl_base_v1-0"})


def cache_files(cache: Path, repo_id: str, files: dict[str, bytes], *, revision: str = "main",
                commit: str = COMMIT) -> Path:
    """Put files in `cache` as huggingface_hub does: blobs named by hash, relative snapshot links, a ref."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    if revision != commit:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / revision).write_text(commit)
    return snapshot


def diffusers_files(weights: int = 8) -> dict[str, bytes]:
    """The files of a tiny SDXL diffusers repo, as lorakit downloads them."""
    index = {"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "tokenizer_2": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "image_encoder": [None, None]}
    files = {"model_index.json": json.dumps(index).encode(), "scheduler/scheduler_config.json": b"{}"}
    for name in ("unet", "vae"):
        files[f"{name}/config.json"] = b"{}"
        files[f"{name}/diffusion_pytorch_model.safetensors"] = safetensors_bytes({"w": weights})
    for name in ("text_encoder", "text_encoder_2"):
        files[f"{name}/config.json"] = b"{}"
        files[f"{name}/model.safetensors"] = safetensors_bytes({"w": weights})
    for name in ("tokenizer", "tokenizer_2"):
        files[f"{name}/vocab.json"] = b"{}"
        files[f"{name}/merges.txt"] = b"#version: 0.2\n"
    return files


def tokenizer_files() -> dict[str, bytes]:
    return {"vocab.json": b"{}", "merges.txt": b"#version: 0.2\n", "tokenizer_config.json": b"{}"}


def cache_sdxl(cache: Path, *, tokenizers: bool = True) -> Path:
    """What a default plan needs, cached: a stand-in SDXL checkpoint (and sd-scripts' tokenizers). The snapshot folder."""
    snapshot = cache_files(cache, SDXL, {SDXL_FILE: fake_checkpoint()})
    for repo in TOKENIZER_REPOS if tokenizers else ():
        cache_files(cache, repo, tokenizer_files())
    return snapshot
