"""What a model `.safetensors` file holds, told from its tensor names alone (the header; no weights read).

Each kind is recognized by names only that kind of file has (the formats sd-scripts loads: BFL and
ComfyUI single files, Stable Diffusion checkpoints, Diffusers and Transformers single files). A file
that matches none is "unknown" and never refused: the check only catches a file given for the wrong
role (a T5-XXL given as `clip_l`, an SDXL checkpoint given to a FLUX plan), which sd-scripts would
load with `strict=False` or fail on after minutes of loading.
"""

from __future__ import annotations

from collections.abc import Iterable

PREFIX = "model.diffusion_model."  # ComfyUI-style checkpoints keep the transformer under this prefix
KIND_LABEL = {
    "flux": "a FLUX.1 transformer", "chroma": "a Chroma transformer", "sdxl": "an SDXL checkpoint",
    "sd1": "an SD 1.x checkpoint", "sd2": "an SD 2.x checkpoint", "ae": "a FLUX autoencoder (ae)",
    "vae": "a Stable Diffusion VAE", "clip_l": "a CLIP-L text encoder", "clip": "a CLIP text encoder (not CLIP-L)",
    "t5xxl": "a T5 text encoder", "lora": "a LoRA",
}
# The kind each role of each family expects; roles not listed (a base of another family) are not checked.
EXPECTED = {
    ("sdxl", "base"): "sdxl", ("sd15", "base"): "sd1", ("flux1", "base"): "flux", ("chroma", "base"): "chroma",
    ("sdxl", "vae"): "vae", ("sd15", "vae"): "vae", ("flux1", "ae"): "ae", ("chroma", "ae"): "ae",
    ("flux1", "clip_l"): "clip_l", ("flux1", "t5xxl"): "t5xxl", ("chroma", "t5xxl"): "t5xxl",
}
CLIP_L_LAYERS = 12


def _layers(names: list[str], prefix: str) -> int:
    return len({n[len(prefix):].split(".")[0] for n in names if n.startswith(prefix)})


def recognize(tensor_names: Iterable[str]) -> str | None:
    """The kind of model file (a key of KIND_LABEL), or None when the names match no kind lorakit knows."""
    names = [n.removeprefix(PREFIX) for n in tensor_names]
    if not names:
        return None

    def has(prefix: str) -> bool:
        return any(n.startswith(prefix) for n in names)

    if names and all(n.startswith(("lora_", "lycoris_")) for n in names):
        return "lora"
    if has("double_blocks.") and has("single_blocks.") or has("transformer_blocks.") and has("single_transformer_blocks."):
        return "chroma" if has("distilled_guidance_layer.") else "flux"
    if has("conditioner.embedders.1.") or has("label_emb."):
        return "sdxl"
    if has("cond_stage_model.model."):
        return "sd2"
    if has("cond_stage_model.transformer."):
        return "sd1"
    if has("encoder.block.") and (has("shared.") or any(".SelfAttention." in n for n in names)):
        return "t5xxl"
    if has("text_model.encoder.layers."):
        return "clip_l" if _layers(names, "text_model.encoder.layers.") == CLIP_L_LAYERS else "clip"
    if has("encoder.") and has("decoder."):
        return "vae" if has("quant_conv.") or has("post_quant_conv.") else "ae"
    return None


def wrong_kind(family: str, role: str, tensor_names: Iterable[str]) -> str | None:
    """The kind the file is when it is recognizably not what this role of this family loads; else None."""
    expected = EXPECTED.get((family, role))
    kind = recognize(tensor_names)
    if expected is None or kind is None or kind == expected or kind == "lora":
        return None  # a LoRA has its own finding (model/lora-as-base)
    return kind
