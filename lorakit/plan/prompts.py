"""Sample prompts for sd-scripts' `--sample_prompts` .txt format (docs/sd-scripts.md §7), built from class tokens.

The options differ by family (docs/families.md §8): for SDXL and SD 1.5 `--l` is the CFG scale and `--g` is
not read; for FLUX.1 and Chroma `--g` is the embedded guidance (sample_guidance) and `--l` the CFG scale
(1.0: none). No line names a sampler: SDXL and SD 1.5 take config.toml's sample_sampler, and the FLUX
script has one sampler of its own.
"""

from __future__ import annotations

from lorakit.config.family import family_named
from lorakit.config.schema import resolution_tuple
from lorakit.config.values import Values
from lorakit.dataset.scan import Subset

MAX_PROMPTS = 6


def _clean(text: str) -> str:
    # One prompt per line, and " --" starts an option in sd-scripts' parser.
    return " ".join(text.split()).replace(" --", " -").lstrip("#")


def subjects(subsets: list[Subset]) -> list[str]:
    """What the prompts are about: each training subset's class tokens, else a caption of it."""
    found: list[str] = []
    for subset in subsets:
        if subset.is_reg:
            continue
        subject = subset.class_tokens or next((img.caption for img in subset.images if img.caption), None)
        if subject and subject not in found:
            found.append(subject)
    return found


def sample_prompt_lines(values: Values, subsets: list[Subset]) -> list[str]:
    # Lines given as they are (e.g. a Kohya GUI's prompts): one prompt per line, as sd-scripts reads them.
    literal = [part.strip() for line in values["sample_prompt_lines"] or [] for part in line.splitlines()]
    literal = [line for line in literal if line and not line.startswith("#")]
    if literal:
        return literal
    templates = values["sample_prompt_templates"] or ["{tokens}"]
    width, height = resolution_tuple(values["resolution"])
    prefix = values["sample_prompt_prefix"] or ""
    negative = values["sample_negative_prompt"] or ""
    seed = values["sample_seed"]
    lines: list[str] = []
    for subject in subjects(subsets) or [""]:
        for template in templates:
            if len(lines) >= MAX_PROMPTS:
                return lines
            prompt = _clean(prefix + template.replace("{tokens}", subject)).strip(" ,")
            if not prompt or any(line.startswith(prompt + " --") for line in lines):
                continue  # a template without {tokens} gives the same prompt for every subject
            options = f" --w {width} --h {height} --d {seed + len(lines)}{guidance_options(values)} --s {values['sample_steps']}"
            if negative:
                options = f" --n {_clean(negative)}" + options
            lines.append(prompt + options)
    return lines


def guidance_options(values: Values) -> str:
    """` --l CFG`, and for a transformer family ` --g GUIDANCE` first (left out when unset: sd-scripts uses 3.5)."""
    cfg = f" --l {values['sample_cfg']:g}"
    guidance = values["sample_guidance"]
    if not family_named(values.family).transformer or guidance is None:
        return cfg
    return f" --g {guidance:g}" + cfg
