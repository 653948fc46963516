"""What a set of values means beyond its keys: the optimizer sd-scripts will build, whether the text
encoders train, what changes captions or images from step to step. Planning, the estimator and the
gates all read values through these, so they agree."""

from __future__ import annotations

from lorakit.config.values import Values


def optimizer_name(values: Values) -> str:
    name = values["optimizer_type"] or ""
    if values["use_8bit_adam"]:
        return "AdamW8bit"
    if values["use_lion_optimizer"]:
        return "Lion"
    return name or "AdamW"


def is_adaptive(values: Values) -> bool:
    """Optimizers that pick their own step size, so learning rate × steps means nothing."""
    name = optimizer_name(values).lower()
    if name.startswith("dadapt") or "prodigy" in name:
        return True
    return name == "adafactor" and not adafactor_fixed_lr(values)


def adafactor_fixed_lr(values: Values) -> bool:
    args = [a.replace(" ", "").lower() for a in values["optimizer_args"] or []]
    return "relative_step=false" in args


def trains_text_encoder(values: Values) -> bool:
    return not values["network_train_unet_only"]


def unet_lr(values: Values) -> float:
    return values["unet_lr"] if values["unet_lr"] is not None else values["learning_rate"]


def caption_augmentations(values: Values) -> list[str]:
    """What changes a caption from step to step, which cached text-encoder outputs cannot follow."""
    found = [k for k in ("shuffle_caption",) if values[k]]
    return found + [k for k in ("caption_dropout_rate", "caption_tag_dropout_rate", "token_warmup_step") if (values[k] or 0) > 0]


def image_augmentations(values: Values) -> list[str]:
    """What changes an image from epoch to epoch, which cached latents cannot follow."""
    return [k for k in ("color_aug", "random_crop") if values[k]]
