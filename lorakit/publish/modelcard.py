"""The model card (`README.md`) `lorakit push` uploads, from the plan, the LoRA's metadata and its samples.

The YAML header makes the Hub show the repo as a LoRA of its base: `base_model` +
`base_model_relation: adapter`, the `lora` / `template:sd-lora` tags and the family's own (`stable-diffusion-xl`,
`flux`, `sd-1.5`, ...), the licence (FLUX.1 [dev]'s non-commercial one as `license: other` with its name and
link), the instance prompt, and the sample images as the widget gallery (docs/families.md §9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorakit.config.family import family_named
from lorakit.config.values import HEADLINE_KEYS
from lorakit.models.source import BASE_KEY, KNOWN_REPOS, human_bytes
from lorakit.plan.build import Plan
from lorakit.plan.render import render
from lorakit.publish.artifacts import LoraFile, Sample
from lorakit.util.text import show

TAGS = ["text-to-image", "lora", "template:sd-lora", "sd-scripts", "lorakit"]


@dataclass(frozen=True)
class FamilyCard:
    """What a card says of its family: its name, Hub tags, its base repo and that repo's licence, and the
    dtype the diffusers example loads it in."""

    model: str
    tags: tuple[str, ...]
    repo: str
    license: str
    license_name: str | None = None  # for license "other": the Hub's name and link of the licence
    license_link: str | None = None
    dtype: str = "float16"


FAMILY_CARDS = {
    "sdxl": FamilyCard("Stable Diffusion XL", ("stable-diffusion-xl",), "stabilityai/stable-diffusion-xl-base-1.0",
                       "openrail++"),
    "flux1": FamilyCard("FLUX.1 [dev]", ("flux",), "black-forest-labs/FLUX.1-dev", "other",
                        "flux-1-dev-non-commercial-license",
                        "https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md", "bfloat16"),
    "chroma": FamilyCard("Chroma", ("flux", "chroma"), "lodestones/Chroma1-Base", "apache-2.0", dtype="bfloat16"),
    "sd15": FamilyCard("Stable Diffusion 1.5", ("stable-diffusion", "sd-1.5"), "stable-diffusion-v1-5/stable-diffusion-v1-5",
                       "creativeml-openrail-m"),
}


def family_card(family: str) -> FamilyCard:
    return FAMILY_CARDS[family_named(family).name]


def card_tags(family: str) -> list[str]:
    return [TAGS[0], *family_card(family).tags, *TAGS[1:]]
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
    license_name: str | None = None
    license_link: str | None = None
    notes: list[str] = field(default_factory=list)  # for the person pushing, not the card


def card_facts(plan: Plan, repo_id: str, *, base_model: str | None = None, license_id: str | None = None) -> CardFacts:
    base = plan.model.base
    hub_base = base_model or (base.repo_id if base.kind == "hub" else None)
    known = KNOWN_REPOS.get(hub_base or "")
    family = family_card(plan.family)
    facts = CardFacts(repo_id, hub_base, license_id or (known.license if known else None))
    if facts.license is None and hub_base == family.repo:  # the family's own base: its licence is known
        facts.license, facts.license_name, facts.license_link = family.license, family.license_name, family.license_link
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
    family = family_card(plan.family)
    return render(
        "model_card.md.j2",
        title=plan.name,
        repo_id=facts.repo_id,
        base_model=facts.base_model,
        base_file=base.filename if facts.base_model == base.repo_id else None,
        # a local base is named by its file name: the card must not publish the trainer's folders
        base_label=base.reference if base.kind == "hub" else Path(base.value).name,
        license=facts.license,
        license_name=facts.license_name,
        license_link=facts.license_link,
        tags=card_tags(plan.family),
        model=family.model,
        example_base=facts.base_model or family.repo,
        dtype=family.dtype,
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
