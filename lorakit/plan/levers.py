"""The fit's levers: changes to the values that save memory or time, and what each does to the estimate.

lorakit.plan.fit picks the cheapest set that fits the card; Gate 3 (lorakit.plan.hardware) names the
smallest set as its fix. The U-Net families' memory savers trade quality (rank, fp8, resolution); a DiT's
follow sd-scripts' FLUX guide in order (docs/families.md §5): cached text-encoder outputs, fp8 base weights,
8-bit AdamW, then `blocks_to_swap` (quality kept, speed traded, system RAM used), with an fp8 T5-XXL file where
the encoder's weights are what is over.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

from lorakit.config.derived import caption_augmentations, image_augmentations
from lorakit.config.family import family_named
from lorakit.config.presets import PresetRegistry
from lorakit.config.schema import registry
from lorakit.config.values import Values
from lorakit.plan.estimate import TrainingSetup, canonical_optimizer, max_swap, smallest_swap, text_encoders_gib

LOW_VRAM_PRESET = "lowvram-8gb"
SWAP = "block swap"
FP8_T5 = "comfyanonymous/flux_text_encoders:t5xxl_fp8_e4m3fn.safetensors"  # docs/families.md §2, §5


@dataclass(frozen=True)
class Lever:
    """One change to the values and what it does to the estimator's setup."""

    name: str
    cost: int  # quality given up: 0 none; the fit tries cheaper levers first
    settings: tuple[tuple[str, object, str], ...]  # (key, value, why)
    apply: Callable[[TrainingSetup], TrainingSetup]
    fit_uses: str = "never"  # "any" card, "low-vram" (8–10 GB) cards only, or "never" (Gate 3 advice only)
    group: str = ""  # levers of one group exclude each other (768² or 512²)
    quality: str = ""  # what it costs, for the fit's warning
    needs: tuple[str, ...] = ()  # levers (by name) that come first when they are on offer: the FLUX guide's order

    def keys(self) -> list[str]:
        return [key for key, _, _ in self.settings]

    def flags(self) -> str:
        return " ".join(f"--set {key}={_flag(value)}" for key, value, _ in self.settings)

    def sized(self, blocks: int) -> Lever:
        """The block-swap lever with the number of blocks the search found."""
        key, _, why = self.settings[0]
        return replace(self, settings=((key, blocks, why),), apply=lambda s: s.with_(blocks_to_swap=blocks))


def _flag(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- levers ---------------------------------------------------------------------------------------

def checkpointing_lever(setup: TrainingSetup) -> list[Lever]:
    if setup.gradient_checkpointing:
        return []
    return [Lever("gradient checkpointing", 0, (
        ("gradient_checkpointing", True, "recomputes activations in the backward pass: ~13× less activation memory"),),
        lambda s: s.with_(gradient_checkpointing=True))]


def speedup_levers(values: Values, setup: TrainingSetup) -> list[Lever]:
    """Changes that save memory and time at no cost in quality: an attention backend, caching."""
    out = []
    if setup.attention == "none":
        out.append(Lever("SDPA attention", 0, (
            ("sdpa", True, "no attention backend was set; plain attention needs ~17 GiB more at 1024² and runs "
                           "memory-bound (docs/estimator.md §5.1, §6)"),),
            lambda s: s.with_(attention="sdpa")))
    if not setup.cache_latents and not image_augmentations(values):
        out.append(Lever("cached latents", 0, (
            ("cache_latents", True, "the VAE encodes each image once and leaves the GPU: −25% work per step, "
                                    "no VAE in VRAM (docs/estimator.md §6)"),),
            lambda s: s.with_(cache_latents=True)))
    if not setup.train_text_encoders and not setup.cache_text_encoder_outputs and not caption_augmentations(values) \
            and has_key(values, "cache_text_encoder_outputs"):
        out.append(Lever("cached text-encoder outputs", 0, (
            ("cache_text_encoder_outputs", True, "the text encoders are not trained: their outputs are computed once "
                                                 f"and their {text_encoders_gib(setup):.1f} GiB of weights leave the GPU"),),
            lambda s: s.with_(cache_text_encoder_outputs=True)))
    return out


def has_key(values: Values, key: str) -> bool:
    """Whether the plan's training script has `key` (train_network.py, SD 1.5's, cannot cache text-encoder outputs)."""
    return key in registry(values.family)


@cache
def _seed_recipe() -> dict[str, str]:
    """Where the low-VRAM steps come from: the built-in lowvram-8gb preset's citations of docs/recommendations.md §8."""
    return {key: entry.from_ for key, entry in PresetRegistry(include_user_dir=False).get(LOW_VRAM_PRESET).values.items()}


def memory_levers(values: Values, setup: TrainingSetup, *, respect_user: bool) -> list[Lever]:
    """Changes that trade quality (or speed) for memory, cheapest first; with `respect_user`, none touches a value you set."""
    out = []
    dit = setup.arch.transformer
    family = family_named(setup.family)
    if setup.train_text_encoders and setup.train_unet:
        settings: list[tuple[str, object, str]] = [(
            "network_train_unet_only", True,
            "training the text encoders does not fit: they stay frozen (sd-scripts docs highly recommend U-Net-only "
            "training for SDXL LoRA, and FLUX LoRAs train the transformer only)")]
        can_cache = not caption_augmentations(values) and not (respect_user and values.user_set("cache_text_encoder_outputs")) \
            and has_key(values, "cache_text_encoder_outputs")
        if can_cache:
            settings.append(("cache_text_encoder_outputs", True,
                             "frozen text encoders: their outputs are cached and their weights leave the GPU"))
        out.append(Lever(f"train the {setup.arch.denoiser} only", 1, tuple(settings),
                         lambda s: s.with_(train_text_encoders=False, cache_text_encoder_outputs=can_cache or s.cache_text_encoder_outputs),
                         fit_uses="any", quality=f"the text encoders do not learn the trigger word (the {setup.arch.denoiser} alone does)"))
    if dit:
        out += _dit_levers(values, setup)
    elif canonical_optimizer(setup.optimizer) == "adamw":
        out.append(Lever("8-bit AdamW", 1, (
            ("optimizer_type", "AdamW8bit", "8-bit optimizer states (bitsandbytes): 2 bytes per parameter instead of 8"),),
            lambda s: s.with_(optimizer="AdamW8bit")))
    if setup.mixed_precision in ("bf16", "fp16") and not setup.full_half:
        key = "full_bf16" if setup.mixed_precision == "bf16" else "full_fp16"
        out.append(Lever(f"{key}", 2, (
            (key, True, "LoRA weights, gradients and optimizer states in 16 bits"),),
            lambda s: s.with_(full_half=True)))
    recipe = _seed_recipe()
    # on a DiT, quality goes only after the guide's steps (block swap) have not been enough
    last_resort = (SWAP,) if dit else ()
    if setup.network_dim > 16:
        out.append(Lever("rank 16, alpha 1", 2, (
            ("network_dim", 16, recipe["network_dim"]),
            ("network_alpha", 1.0, recipe["network_alpha"])),
            lambda s: s.with_(network_dim=16), fit_uses="low-vram", needs=last_resort,
            quality="rank 16 holds less detail, and alpha 1 scales each update down"))
    if not dit and not setup.fp8_unet and setup.mixed_precision != "no":
        out.append(Lever("fp8 base weights", 4, (
            ("fp8_base", True, "sd-scripts docs (docs/sd-scripts.md §12): fp8 U-Net and text-encoder weights, experimental; "
                               "halves the frozen model's memory"),),
            lambda s: s.with_(fp8_unet=True, fp8_text_encoders=True), fit_uses="low-vram",
            quality="the LoRA trains against fp8 copies of the frozen weights (experimental in sd-scripts)"))

    def at_side(side: int) -> Callable[[TrainingSetup], TrainingSetup]:
        return lambda s: s.with_(width=side, height=side)

    for side, cost, low, high in ((768, 5, 256, 1536), (512, 8, 256, 1024)):
        if setup.megapixels > side * side / 1e6 + 1e-9:
            out.append(Lever(f"{side}² resolution", cost, (
                ("resolution", f"{side},{side}", recipe["resolution"]),
                ("min_bucket_reso", low, recipe["min_bucket_reso"]),
                ("max_bucket_reso", high, recipe["max_bucket_reso"])),
                at_side(side), fit_uses="low-vram", group="resolution", needs=last_resort,
                quality=f"{side}² images lose detail against {family.title}'s native {family.native_resolution}²"))
    if respect_user:
        out = [lever for lever in out if not any(values.user_set(key) for key in lever.keys())]
    return out


def _dit_levers(values: Values, setup: TrainingSetup) -> list[Lever]:
    """FLUX's steps (docs/families.md §5), each tried only after the ones before it (`needs`)."""
    out = []
    if not setup.fp8_unet and setup.mixed_precision != "no":
        out.append(Lever("fp8 base weights", 1, (
            ("fp8_base", True, "fp8 transformer weights: half its memory; sd-scripts' FLUX guide plans every memory tier "
                               "with fp8_base (docs/families.md §5)"),),
            lambda s: s.with_(fp8_unet=True, fp8_text_encoders=True), fit_uses="any",
            quality="the LoRA trains against fp8 copies of the frozen transformer (as the guide's tiers do)"))
    if canonical_optimizer(setup.optimizer) == "adamw":
        out.append(Lever("8-bit AdamW", 1, (
            ("optimizer_type", "AdamW8bit", "8-bit optimizer states (bitsandbytes): 2 bytes per parameter instead of 8; "
                                            "the guide's 12 GB tier uses it (docs/families.md §5)"),),
            lambda s: s.with_(optimizer="AdamW8bit"), fit_uses="any", needs=("fp8 base weights",),
            quality="8-bit optimizer states"))
    if max_swap(setup) and not values["cpu_offload_checkpointing"]:
        top = max_swap(setup)
        out.append(Lever(SWAP, 1, (
            ("blocks_to_swap", top, "transformer blocks wait in system RAM and move onto the GPU as they run: the "
                                    "same training, slower steps (docs/families.md §5)"),),
            lambda s: s.with_(blocks_to_swap=top), fit_uses="any", needs=("fp8 base weights", "8-bit AdamW"),
            quality="slower steps (block transfers over PCIe), and the swapped blocks need system RAM"))
    if any(te.name == "T5-XXL" for te in setup.arch.text_encoders) and not setup.t5_fp8_file:
        out.append(Lever("fp8 T5-XXL", 1, (
            ("t5xxl", FP8_T5, "the fp8 T5-XXL file: half the encoder's 8.9 GiB while it caches its outputs "
                              "(sd-scripts' guide recommends it below 12 GB, docs/families.md §5)"),),
            lambda s: s.with_(t5_fp8_file=True), fit_uses="any",
            quality="text embeddings from fp8 T5-XXL weights"))
    return out


def size_swap(levers: tuple[Lever, ...], setup: TrainingSetup, overhead_gib: float,
              budget_gib: float) -> tuple[tuple[Lever, ...], TrainingSetup] | None:
    """With the block-swap lever among `levers`: the fewest blocks that fit (None: not even the most)."""
    if not any(lever.name == SWAP for lever in levers):
        return levers, setup
    blocks = smallest_swap(setup, overhead_gib, budget_gib)
    if blocks is None:
        return None
    sized = tuple(lever.sized(blocks) if lever.name == SWAP else lever for lever in levers)
    return sized, setup.with_(blocks_to_swap=blocks)


def combinations(levers: list[Lever], max_size: int | None = None) -> list[tuple[Lever, ...]]:
    """Every compatible set of levers, cheapest (then smallest) first; the empty set comes first."""
    offered = {lever.name for lever in levers}
    found = []
    for size in range(0, (max_size if max_size is not None else len(levers)) + 1):
        for combo in itertools.combinations(levers, size):
            groups = [lever.group for lever in combo if lever.group]
            names = {lever.name for lever in combo}
            in_order = all(need in names for lever in combo for need in lever.needs if need in offered)
            if len(groups) == len(set(groups)) and in_order:
                found.append(combo)
    return sorted(found, key=lambda c: (sum(lever.cost for lever in c), len(c)))


def apply_levers(setup: TrainingSetup, levers: tuple[Lever, ...]) -> TrainingSetup:
    for lever in levers:
        setup = lever.apply(setup)
    return setup
