"""Recount docs/estimator.md §9's numbers on sd-scripts' own model classes (PyTorch's meta device: no weights,
no GPU, a few seconds): parameters, LoRA parameters per rank, saved-for-backward bytes of a FLUX block, FLOPs.

    /path/to/trainer/python benchmarks/family_sizes.py /path/to/sd-scripts

Needs the trainer's Python (torch, transformers). Flash attention is stood in for by a function that keeps
what it keeps for the backward pass (q, k, v, the output and the log-sum-exp), as the GPU's SDPA does.
"""

from __future__ import annotations

import json
import re
import sys

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


class Flash(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v):
        o = torch.empty_like(q)
        ctx.save_for_backward(q, k, v, o, torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device))
        return o

    @staticmethod
    def backward(ctx, g):
        return g, g, g


class Lora(nn.Module):
    """A LoRA module's forward: the frozen Linear plus up(down(x)); down keeps its input for the backward pass."""

    def __init__(self, linear: nn.Linear, rank: int = 16):
        super().__init__()
        self.linear = linear
        self.down = nn.Linear(linear.in_features, rank, bias=False, dtype=torch.bfloat16)
        self.up = nn.Linear(rank, linear.out_features, bias=False, dtype=torch.bfloat16)

    def forward(self, x):
        return self.linear(x) + self.up(self.down(x))


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def lora_per_rank(model: nn.Module, classes: tuple[str, ...], convs: bool = False) -> tuple[int, int]:
    per_rank = modules = 0
    for module in model.modules():
        if module.__class__.__name__ in classes:
            for child in module.modules():
                if isinstance(child, nn.Linear):
                    per_rank, modules = per_rank + child.in_features + child.out_features, modules + 1
                elif convs and isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1):
                    per_rank, modules = per_rank + child.in_channels + child.out_channels, modules + 1
    return per_rank, modules


def with_lora(block: nn.Module) -> nn.Module:
    for parent in list(block.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Lora(child))
    for name, p in block.named_parameters():
        p.requires_grad_(".down." in name or ".up." in name)
    return block


def saved_bytes(run, params) -> int:
    frozen, seen = {id(p) for p in params}, {}

    def pack(t):
        if id(t) not in frozen and not isinstance(t, nn.Parameter) and id(t) not in seen:
            seen[id(t)] = t
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(t.numel() * t.element_size() for t in seen.values())


def main(sd_scripts: str) -> None:
    sys.path.insert(0, sd_scripts)
    import transformers
    from library import chroma_models, flux_models, original_unet

    out: dict[str, float] = {}
    with torch.device("meta"):
        flux = flux_models.Flux(flux_models.configs["dev"].params)
        chroma = chroma_models.Chroma(chroma_models.chroma_params)
        unet = original_unet.UNet2DConditionModel(sample_size=64, attention_head_dim=8, cross_attention_dim=768)
        source = open(f"{sd_scripts}/library/flux_utils.py", encoding="utf-8").read()
        config = json.loads(re.search(r'T5_CONFIG_JSON = """(.*?)"""', source, re.S).group(1))
        t5 = transformers.T5EncoderModel(transformers.T5Config(**config))
        ae = flux_models.AutoEncoder(flux_models.configs["dev"].ae_params)
    for name, model in (("flux1", flux), ("chroma", chroma)):
        out[f"{name}_params"] = count(model)
        out[f"{name}_double_block"], out[f"{name}_single_block"] = count(model.double_blocks[0]), count(model.single_blocks[0])
        out[f"{name}_lora_per_rank"], out[f"{name}_lora_modules"] = lora_per_rank(model, ("DoubleStreamBlock", "SingleStreamBlock"))
    out["t5xxl_params"], out["flux_ae_params"], out["sd15_unet_params"] = count(t5), count(ae), count(unet)
    out["sd15_lora_per_rank"], out["sd15_lora_modules"] = lora_per_rank(unet, ("Transformer2DModel",), convs=True)

    torch.nn.functional.scaled_dot_product_attention = lambda q, k, v, attn_mask=None, **_: Flash.apply(q, k, v)
    with torch.device("meta"):
        double = with_lora(flux_models.DoubleStreamBlock(3072, 24, 4.0, qkv_bias=True).to(torch.bfloat16))
        single = with_lora(flux_models.SingleStreamBlock(3072, 24, 4.0).to(torch.bfloat16))
        img = torch.randn(1, 4096, 3072, dtype=torch.bfloat16, requires_grad=True)
        txt = torch.randn(1, 512, 3072, dtype=torch.bfloat16, requires_grad=True)
        x = torch.randn(1, 4608, 3072, dtype=torch.bfloat16, requires_grad=True)
        vec = torch.randn(1, 3072, dtype=torch.bfloat16)
        pe = torch.randn(1, 1, 4608, 64, 2, 2)
        out["flux_double_saved_bytes_per_token"] = saved_bytes(lambda: double._forward(img, txt, vec, pe), double.parameters()) / 4608
        out["flux_single_saved_bytes_per_token"] = saved_bytes(lambda: single._forward(x, vec, pe), single.parameters()) / 4608
        with FlopCounterMode(display=False) as flops:
            double._forward(img, txt, vec, pe)
        out["flux_double_linear_tflop_1024"] = flops.get_total_flops() / 1e12  # Linears and LoRA; attention stood in for
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/sd-scripts")
