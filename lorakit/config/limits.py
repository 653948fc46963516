"""The range of values lorakit plans with: the lowest that make sense to sd-scripts, the highest that a
LoRA run could mean (a larger one is a typo, and would make the step math, the predicted checkpoints and
the samples grow without bound)."""

from __future__ import annotations

# Lowest values that make sense (sd-scripts divides by several of these, and a negative count trains nothing).
# (minimum, whether the minimum itself is allowed)
MINIMUMS: dict[str, tuple[float, bool]] = {
    **{key: (1, True) for key in (
        "train_batch_size", "gradient_accumulation_steps", "max_train_epochs", "max_train_steps", "network_dim",
        "bucket_reso_steps", "min_bucket_reso", "max_bucket_reso", "save_every_n_epochs", "save_every_n_steps",
        "save_n_epoch_ratio", "save_last_n_epochs", "save_last_n_steps", "save_last_n_epochs_state",
        "save_last_n_steps_state", "vae_batch_size", "dataset_repeats", "lr_scheduler_num_cycles",
        "num_processes", "num_machines", "sample_steps", "target_steps_min", "target_steps_max",
        "steps_per_image_min", "steps_per_image_max", "images_min", "images_max",
    )},
    **{key: (0, True) for key in (
        "learning_rate", "unet_lr", "text_encoder_lr", "max_grad_norm", "min_snr_gamma", "noise_offset",
        "max_data_loader_n_workers", "keep_tokens", "caption_dropout_rate", "caption_tag_dropout_rate",
        "caption_dropout_every_n_epochs", "network_dropout", "lr_warmup_steps", "lr_decay_steps", "seed",
        "machine_rank", "sample_cfg", "prior_loss_weight", "min_timestep", "max_timestep", "sample_seed",
    )},
    "network_alpha": (0, False),
}

# Highest values lorakit plans (docs/sd-scripts.md §5): far beyond any LoRA run (the seeds train 1500-3000
# steps), low enough that the step math, the predicted checkpoints and samples stay small, and a typo
# (an extra three zeros) is caught before it asks for years of GPU time.
MAX_TRAIN_STEPS = 1_000_000
# sd-scripts passes the seed to accelerate's set_seed, which seeds numpy: 0 to 2**32 - 1, a larger seed crashes at start.
MAX_SEED = 2**32 - 1
MAX_RESOLUTION = 16384
# Repeats per folder: a `1000000000_x` folder would grow the step math past gigabytes (docs/sd-scripts.md §4).
MAX_REPEATS = 10_000
MAXIMUMS: dict[str, int] = {
    **{key: MAX_TRAIN_STEPS for key in (
        "max_train_steps", "max_train_epochs", "lr_warmup_steps", "lr_decay_steps", "target_steps_min",
        "target_steps_max", "save_every_n_steps", "save_every_n_epochs", "sample_every_n_steps",
        "sample_every_n_epochs", "gradient_accumulation_steps",
    )},
    "dataset_repeats": MAX_REPEATS,
    # accelerate's process and machine counts: far beyond any cluster a LoRA is trained on
    **{key: 1024 for key in ("num_processes", "num_machines", "machine_rank")},
    # lorakit tries each repeat count up to steps_per_image_max when it picks repeats for a flat folder
    **{key: 100_000 for key in ("steps_per_image_min", "steps_per_image_max")},
    **{key: MAX_SEED for key in ("seed", "sample_seed")},
    # pixels: 16384 is 256 times SDXL's training area; buckets are listed one step at a time up to the largest
    **{key: MAX_RESOLUTION for key in ("min_bucket_reso", "max_bucket_reso", "bucket_reso_steps")},
}
