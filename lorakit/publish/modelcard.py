"""The model card (`README.md`) `lorakit push` uploads, from the plan, the LoRA's metadata and its samples.

The YAML header makes the Hub show the repo as a LoRA of its SDXL base: `base_model` +
`base_model_relation: adapter`, the `lora` / `stable-diffusion-xl` / `template:sd-lora` tags, the
licence, the instance prompt, and the sample images as the widget gallery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorakit.config.values import HEADLINE_KEYS
from lorakit.models.source import BASE_KEY, KNOWN_REPOS, human_bytes
from lorakit.plan.build import Plan
from lorakit.plan.render import render
from lorakit.publish.artifacts import LoraFile, Sample
from lorakit.util.text import show

TAGS = ["text-to-image", "stable-diffusion-xl", "lora", "template:sd-lora", "sd-scripts", "lorakit"]
SAMPLES_DIR = "samples"
# Values that describe how the LoRA was trained. Run plumbing (paths, caching, sampling) stays out, and
# so do the step and epoch limits: the card gives the steps and epochs the run made.
SETTING_KEYS = [k for k in HEADLINE_KEYS if k not in (BASE_KEY, "cache_latents", "cache_text_encoder_outputs",
                                                     "sample_every_n_steps", "gradient_checkpointing",
                                                     "max_train_epochs", "max_train_steps")]
SETTING_KEYS += ["network_module", "min_snr_gamma", "noise_offset", "seed"]


@dataclass
class CardFacts:
    """What the card says beyond the plan: where it goes and what the user named."""

    repo_id: str
    base_model: str | None = None  # the base's Hub id; None when training used a local file nobody named
    license: str | None = None
    notes: list[str] = field(default_factory=list)  # for the person pushing, not the card


def card_facts(plan: Plan, repo_id: str, *, base_model: str | None = None, license_id: str | None = None) -> CardFacts:
    base = plan.model.base
    hub_base = base_model or (base.repo_id if base.kind == "hub" else None)
    known = KNOWN_REPOS.get(hub_base or "")
    facts = CardFacts(repo_id, hub_base, license_id or (known.license if known else None))
    if hub_base is None:
        facts.notes.append(f"the base model is a local file ({base.value}); pass --base-model REPO_ID to link "
                           "the LoRA to its base on the Hub")
    if facts.license is None:
        facts.notes.append("the card names no licence; pass --license with the base model's licence id "
                           "(e.g. openrail++)")
    return facts


def sample_url(sample: Sample) -> str:
    return f"{SAMPLES_DIR}/{sample.path.name}"


def render_card(plan: Plan, lora: LoraFile, samples: list[Sample], facts: CardFacts) -> str:
    values = plan.value_set
    train = [s for s in plan.dataset.subsets if not s.is_reg and s.class_tokens]
    instance_prompts = list(dict.fromkeys(s.class_tokens for s in train if s.class_tokens))
    triggers = list(dict.fromkeys(p.split()[0] for p in instance_prompts if p.split()))
    metadata = lora.metadata
    base = plan.model.base
    return render(
        "model_card.md.j2",
        title=plan.name,
        repo_id=facts.repo_id,
        base_model=facts.base_model,
        base_file=base.filename if facts.base_model == base.repo_id else None,
        # a local base is named by its file name: the card must not publish the trainer's folders
        base_label=base.reference if base.kind == "hub" else Path(base.value).name,
        license=facts.license,
        tags=TAGS,
        instance_prompt=", ".join(instance_prompts) or None,
        instance_prompts=instance_prompts,
        trigger_words=triggers,
        samples=[{"url": sample_url(s), "prompt": s.prompt or (instance_prompts[0] if instance_prompts else plan.name)}
                 for s in samples],
        lora_file=lora.path.name,
        lora_size=human_bytes(lora.path.stat().st_size),
        steps=metadata.get("ss_steps", plan.total_steps),
        epochs=metadata.get("ss_epoch", plan.epochs),
        settings=[(k, show(values[k])) for k in SETTING_KEYS if values[k] is not None],
        images=plan.dataset.images,
        reg_images=plan.dataset.reg_images,
        total_steps=plan.total_steps,
        lorakit_version=plan.lorakit_version,
        sd_scripts_commit=plan.sd_scripts_commit,
    )
