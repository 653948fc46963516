"""Render the plan folder's files (and the Hub model card) from the Jinja templates in `templates/`.

Templates hold layout and comments; every value goes through the `toml` filter (tomli-w),
`shquote` (shlex), `yaml`, `md_code` or `pystr`, so paths with quotes, spaces or non-ASCII characters stay valid.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lorakit.config.schema import SUBSET_ONLY_KEYS, registry, resolution_tuple
from lorakit.config.values import ResolvedValue, Values
from lorakit.dataset.scan import Subset
from lorakit.machine.trainer import CPU_THREADS_FLAG
from lorakit.util import tomlio
from lorakit.util.resources import templates_dir

# config.toml tables, for people: sd-scripts flattens them (docs/sd-scripts.md §2), so the names carry no meaning.
SECTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("model", ("pretrained_model_name_or_path", "model_type", "ae", "clip_l", "t5xxl", "vae", "tokenizer_cache_dir",
               "no_half_vae", "disable_mmap_load_safetensors")),
    ("network", ("network_module", "network_dim", "network_alpha", "network_args", "network_dropout",
                 "network_train_unet_only", "network_train_text_encoder_only", "network_weights", "dim_from_weights",
                 "base_weights", "base_weights_multiplier", "scale_weight_norms")),
    ("optimizer", ("optimizer_type", "optimizer_args", "learning_rate", "unet_lr", "text_encoder_lr", "lr_scheduler",
                   "lr_scheduler_type", "lr_scheduler_args", "lr_warmup_steps", "lr_decay_steps", "lr_scheduler_num_cycles",
                   "lr_scheduler_power", "lr_scheduler_timescale", "lr_scheduler_min_lr_ratio", "max_grad_norm")),
    ("training", ("max_train_epochs", "max_train_steps", "train_batch_size", "gradient_accumulation_steps", "seed",
                  "min_snr_gamma", "noise_offset", "adaptive_noise_scale", "multires_noise_iterations",
                  "multires_noise_discount", "ip_noise_gamma", "max_token_length", "prior_loss_weight", "loss_type")),
    ("flow_matching", ("guidance_scale", "timestep_sampling", "discrete_flow_shift", "sigmoid_scale",
                       "model_prediction_type", "apply_t5_attn_mask", "t5xxl_max_token_length")),
    ("memory_and_speed", ("mixed_precision", "full_bf16", "full_fp16", "fp8_base", "fp8_base_unet", "blocks_to_swap",
                          "cpu_offload_checkpointing", "gradient_checkpointing", "sdpa", "xformers", "mem_eff_attn", "cache_latents",
                          "cache_latents_to_disk", "cache_text_encoder_outputs", "cache_text_encoder_outputs_to_disk",
                          "vae_batch_size", "max_data_loader_n_workers", "persistent_data_loader_workers", "lowram",
                          "highvram")),
    ("dataset", ("dataset_config",)),
    ("output", ("output_dir", "output_name", "save_model_as", "save_precision", "save_every_n_epochs",
                "save_every_n_steps", "save_n_epoch_ratio", "save_last_n_epochs", "save_last_n_steps", "save_state",
                "save_state_on_train_end", "save_last_n_epochs_state", "save_last_n_steps_state", "training_comment")),
    ("sampling", ("sample_prompts", "sample_every_n_steps", "sample_every_n_epochs", "sample_at_first", "sample_sampler")),
    ("logging", ("logging_dir", "log_with", "log_prefix", "log_tracker_name", "log_config")),
]


@dataclass
class Entry:
    key: str
    value: Any
    source: str
    note: str


def _comment(text: Any) -> str:
    return " ".join(str(text).split())


@cache
def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
    )
    env.filters["toml"] = tomlio.value
    env.filters["toml_key"] = tomlio.key
    env.filters["comment"] = _comment
    env.filters["shquote"] = lambda v: shlex.quote(str(v))
    env.filters["shjoin"] = lambda argv: shlex.join(str(a) for a in argv)
    env.filters["yaml"] = _yaml
    env.filters["md_code"] = _md_code
    env.filters["pystr"] = lambda v: repr(str(v))
    return env


def _yaml(value: Any) -> str:
    # JSON is YAML: a JSON scalar or list is a valid YAML flow value, quoted and escaped correctly.
    return json.dumps(value, ensure_ascii=False)


def _md_code(value: Any) -> str:
    """Inline Markdown code that survives backticks in the text (CommonMark: a longer fence)."""
    text = " ".join(str(value).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def _entries(values: Values, target: str) -> list[Entry]:
    keys = registry(values.family)
    return [
        Entry(key, _toml_ready(key, item), item.source, item.note)
        for key, item in values.items()
        if item.value is not None and keys[key].target == target
    ]


def _toml_ready(key: str, item: ResolvedValue) -> Any:
    # dataset.toml wants resolution as [w, h]; config.toml never holds it (it is a dataset key).
    if key == "resolution":
        return list(resolution_tuple(item.value))
    return item.value


def config_sections(values: Values) -> list[dict]:
    entries = {e.key: e for e in _entries(values, "config")}
    sections: list[dict[str, Any]] = []
    for name, keys in SECTIONS:
        chosen = [entries.pop(k) for k in keys if k in entries]
        if chosen:
            sections.append({"name": name, "entries": chosen})
    if entries:
        sections.append({"name": "other", "entries": sorted(entries.values(), key=lambda e: e.key)})
    return sections


def render_config(plan: Any, values: Values, config_path: Path) -> str:
    return render("config.toml.j2", plan=plan, sections=config_sections(values), config_path=str(config_path))


def render_dataset(plan: Any, values: Values, subsets: list[Subset]) -> str:
    dataset_entries = _entries(values, "dataset")
    general = [e for e in dataset_entries if e.key not in SUBSET_ONLY_KEYS]
    subset_only = [e for e in dataset_entries if e.key in SUBSET_ONLY_KEYS]
    rows = [
        {
            "folder_name": s.folder_name,
            "image_count": s.image_count,
            "image_dir": str(s.image_dir),
            "num_repeats": s.num_repeats,
            "class_tokens": s.class_tokens,
            "is_reg": s.is_reg,
            "repeats_source": s.repeats_source,
        }
        for s in subsets
    ]
    return render("dataset.toml.j2", plan=plan, general=general, subsets=rows, subset_only=subset_only)


def render_prompts(plan: Any, lines: list[str]) -> str:
    return render("sample_prompts.txt.j2", plan=plan, lines=lines)


def render_launch(plan: Any, *, command: list[str], cpu_command: list[str]) -> str:
    """launch.sh: `command`, or `cpu_command` where `lorakit launch` would train on the CPU, decided when it runs
    (its thread count too, as `lorakit launch` counts the cores of the machine it runs on)."""
    threads = cpu_command.index(CPU_THREADS_FLAG) + 1
    cpu_line = " ".join('"$threads"' if i == threads else shlex.quote(word) for i, word in enumerate(cpu_command))
    return render("launch.sh.j2", plan=plan, command=command, cpu_line=cpu_line)
