"""What the estimator knows of each family's model: parameter counts, LoRA modules, activations per sample.

Counted on sd-scripts' own model code at the pinned commit (docs/estimator.md §1 for SDXL, §9 for FLUX.1,
Chroma and SD 1.5); `benchmarks/family_sizes.py` recounts them. Pure data and arithmetic: the VRAM
estimate (lorakit.plan.estimate) and the time model (lorakit.plan.timing) read a family's `Arch`.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30

# (in, out, count, where) of the Linear / 1×1-conv modules networks.lora wraps; `where` is the latent
# downscale the module runs at (1: full latent size), CONTEXT for cross-attention k/v on the text tokens,
# PER_SAMPLE for a module that sees one token per sample.
CONTEXT = 0
PER_SAMPLE = -1
CONTEXT_TOKENS = 77


@dataclass(frozen=True)
class TextEncoder:
    name: str
    params: int
    lora_per_rank: int  # networks.lora / lora_flux modules when this encoder trains
    lora_modules: int


@dataclass(frozen=True)
class Blocks:
    """A DiT's transformer blocks, as sd-scripts' block swap counts them (docs/estimator.md §9.3)."""

    double: int
    single: int
    double_params: int
    single_params: int
    max_swap: int

    def swapped_params(self, n: int) -> int:
        """flux_models.enable_block_swap(n) moves n // 2 double blocks and 2 × (n − n // 2) single blocks to the CPU."""
        double = n // 2
        return double * self.double_params + 2 * (n - double) * self.single_params


@dataclass(frozen=True)
class Arch:
    family: str
    denoiser: str  # what the frozen model is called in messages
    params: int  # the denoiser (U-Net or transformer)
    text_encoders: tuple[TextEncoder, ...]
    vae_params: int
    lora_per_rank: int  # the denoiser's LoRA parameters per unit of rank (network_dim)
    lora_modules: int
    lora_table: tuple[tuple[int, int, int, int], ...] = ()  # U-Nets: (in, out, count, where), for the FLOPs
    blocks: Blocks | None = None  # DiTs only
    lora_token_per_rank: int = 0  # DiTs: the LoRA modules on the token path (not the per-sample modulation)

    @property
    def transformer(self) -> bool:
        return self.blocks is not None

    @property
    def text_encoder_params(self) -> int:
        return sum(te.params for te in self.text_encoders)


CLIP_L = TextEncoder("CLIP-L", 123_060_480, 165_888, 72)
# SDXL's two encoders as one (docs/estimator.md §1.1–1.2)
SDXL_TEXT_ENCODERS = TextEncoder("CLIP-L + OpenCLIP bigG", 817_720_320, 165_888 + 737_280, 72 + 192)
# T5-XXL encoder (flux_utils' T5 config): LoRA on q/k/v/o and the gated MLP of 24 layers with train_t5xxl
T5XXL = TextEncoder("T5-XXL", 4_762_310_656, 1_818_624, 168)

SDXL_LORA_TABLE = (
    (1280, 1280, 372, 4), (2048, 1280, 120, CONTEXT), (640, 640, 70, 2), (1280, 10240, 60, 4),
    (5120, 1280, 60, 4), (2048, 640, 20, CONTEXT), (640, 5120, 10, 2), (2560, 640, 10, 2),
)
# SD 1.5's 16 Transformer2DModel (5 at 320 wide, 5 at 640, 5 at 1280, 1 in the middle): proj_in/out, attn1
# q/k/v/out and attn2 q/out (c→c), the GEGLU (c→8c, 4c→c), attn2 k/v on the 768-wide context. Σ(in+out)·count
# = 423,936 per rank (192 modules), as counted on sd-scripts' original_unet.
SD15_LORA_TABLE = (
    (320, 320, 40, 1), (320, 2560, 5, 1), (1280, 320, 5, 1), (768, 320, 10, CONTEXT),
    (640, 640, 40, 2), (640, 5120, 5, 2), (2560, 640, 5, 2), (768, 640, 10, CONTEXT),
    (1280, 1280, 40, 4), (1280, 10240, 5, 4), (5120, 1280, 5, 4), (768, 1280, 10, CONTEXT),
    (1280, 1280, 8, 8), (1280, 10240, 1, 8), (5120, 1280, 1, 8), (768, 1280, 2, CONTEXT),
)

ARCHS: dict[str, Arch] = {
    "sdxl": Arch("sdxl", "U-Net", 2_567_463_684, (SDXL_TEXT_ENCODERS,), 83_653_863, 2_659_840, 722, SDXL_LORA_TABLE),
    "sd15": Arch("sd15", "U-Net", 859_520_964, (CLIP_L,), 83_653_863, 423_936, 192, SD15_LORA_TABLE),
    "flux1": Arch("flux1", "FLUX.1 transformer", 11_901_408_320, (CLIP_L, T5XXL), 83_819_683, 4_786_176, 304,
                  blocks=Blocks(19, 38, 339_831_296, 141_591_808, 35), lora_token_per_rank=3_502_080),
    # Chroma: FLUX's blocks without their modulation Linears (an approximator gives them), no CLIP-L
    "chroma": Arch("chroma", "Chroma transformer", 8_899_983_424, (T5XXL,), 83_819_683, 3_502_080, 228,
                   blocks=Blocks(19, 38, 226_548_224, 113_271_040, 35), lora_token_per_rank=3_502_080),
}


def arch_for(family: str) -> Arch:
    return ARCHS.get(family, ARCHS["sdxl"])


# --- activations per sample (docs/estimator.md §5.1 SDXL, §9.4 the others), GiB, before the peak ratio k ---

def unet_saved_gib(family: str, megapixels: float, checkpointing: bool, naive_attention: bool) -> float:
    """Saved-for-backward tensors of a U-Net with LoRA under bf16 autocast, per sample."""
    mp = megapixels
    if family == "sd15":
        # measured on the meta device without checkpointing: 1.39 / 2.60 / 4.28 GiB at 512² / 768² / 1024²;
        # with checkpointing SDXL's ratio of the two (0.082); plain attention: SDXL's term × 6.4 (4× the
        # tokens at the top attention level, 8 heads against 10, one block per level against two)
        naive = 6.4 * (0.8 if checkpointing else 15.5) * mp * mp if naive_attention else 0.0
        return (0.30 * mp if checkpointing else 0.43 + 3.66 * mp) + naive
    if checkpointing:
        return 0.61 * mp + (0.8 * mp * mp if naive_attention else 0.0)
    return 0.21 + 7.46 * mp + (15.5 * mp * mp if naive_attention else 0.0)


# A FLUX block's saved tensors per token (img and txt alike) with LoRA, bf16, flash attention: measured on
# the meta device at 1024² (4608 tokens): a double block 1.177 GB, a single block 0.834 GB.
DOUBLE_BLOCK_BYTES_PER_TOKEN = 255_337
SINGLE_BLOCK_BYTES_PER_TOKEN = 180_950
HIDDEN = 3072


def dit_tokens(width: int, height: int, text_tokens: int) -> int:
    """Image tokens (the 16-channel latent at 1/8, in 2×2 patches) plus T5's text tokens."""
    return (width // 16) * (height // 16) + text_tokens


def dit_saved_gib(blocks: Blocks, tokens: int, checkpointing: bool) -> float:
    """Without checkpointing every block's tensors stay; with it (sd-scripts checkpoints each block) the
    blocks' bf16 inputs stay and one block at a time is recomputed in the backward pass."""
    if checkpointing:
        per_token = (blocks.double + blocks.single) * HIDDEN * 2 + DOUBLE_BLOCK_BYTES_PER_TOKEN
    else:
        per_token = blocks.double * DOUBLE_BLOCK_BYTES_PER_TOKEN + blocks.single * SINGLE_BLOCK_BYTES_PER_TOKEN
    return tokens * per_token / GIB
