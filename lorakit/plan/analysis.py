"""The dataset as a plan sees it: Gate 1's scans, the repeats chosen for flat folders, and the step math."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lorakit.config.limits import MAX_REPEATS
from lorakit.config.schema import resolution_tuple
from lorakit.config.values import Values
from lorakit.dataset.buckets import BucketSettings
from lorakit.dataset.scan import DatasetScan, Subset, check_reg_overlap, scan_dataset
from lorakit.dataset.steps import Placed, StepMath
from lorakit.dataset.validation import ValidationSplit, split_findings
from lorakit.errors import UserError
from lorakit.machine.probe import TargetGpu
from lorakit.plan.context import CheckContext
from lorakit.plan.fit import choose_repeats, steps_for_repeats


class SubsetStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folder: str
    image_dir: str
    images: int
    num_repeats: int
    repeats_source: str
    class_tokens: str | None
    is_reg: bool
    captions: int
    steps_per_image: int | None
    # validation_split: how many images sd-scripts holds out of training, and which (file names in image_dir)
    held_out: int = 0
    held_out_images: list[str] = []


class DatasetStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: str
    layout: str
    images: int
    reg_root: str | None
    reg_images: int
    subsets: list[SubsetStats]


@dataclass
class DatasetAnalysis:
    train: DatasetScan
    reg: DatasetScan | None
    subsets: list[Subset]  # train subsets, then reg subsets
    repeats: list[int]
    steps: StepMath
    held_out: list[list[str]] = field(default_factory=list)  # per subset: image paths validation_split holds out

    def context(self, values: Values, target: TargetGpu | None, required: list[str], **hardware) -> CheckContext:
        return CheckContext(values, self.train, self.reg, self.repeats, self.steps, target, required, **hardware)

    def stats(self) -> DatasetStats:
        return DatasetStats(
            root=str(self.train.root),
            layout=self.train.layout,
            images=self.train.image_count,
            reg_root=str(self.reg.root) if self.reg else None,
            reg_images=self.reg.image_count if self.reg else 0,
            subsets=[
                SubsetStats(
                    folder=s.folder_name,
                    image_dir=str(s.image_dir),
                    images=s.image_count,
                    num_repeats=r,
                    repeats_source=s.repeats_source,
                    class_tokens=s.class_tokens,
                    is_reg=s.is_reg,
                    captions=sum(1 for img in s.images if img.caption is not None),
                    steps_per_image=None if s.is_reg else r * self.steps.epochs,
                    held_out=len(held),
                    held_out_images=[os.path.basename(p) for p in held],
                )
                for s, r, held in zip(self.subsets, self.repeats, self.held_out or [[] for _ in self.subsets], strict=True)
            ],
        )


def scan_folders(values: Values, dataset: Path, reg_dir: Path | None, token: str | None) -> tuple[DatasetScan, DatasetScan | None]:
    """Gate 1: read the training (and regularisation) folders as sd-scripts will."""
    train = scan_dataset(dataset, caption_extension=values["caption_extension"], token=token,
                         enable_wildcard=values["enable_wildcard"])
    reg = None
    if reg_dir is not None:
        reg = scan_dataset(reg_dir, caption_extension=values["caption_extension"], is_reg=True,
                           enable_wildcard=values["enable_wildcard"])
        reg.findings += check_reg_overlap(train, reg)
    return train, reg


def analyse_dataset(values: Values, dataset: Path, reg_dir: Path | None, token: str | None) -> DatasetAnalysis:
    """Scan the folders (Gate 1), choose repeats for flat folders, and count steps as sd-scripts will."""
    return analyse_scans(values, *scan_folders(values, dataset, reg_dir, token))


def analyse_scans(values: Values, train: DatasetScan, reg: DatasetScan | None) -> DatasetAnalysis:
    """Choose repeats for flat folders and count steps as sd-scripts will."""
    subsets = train.subsets + (reg.subsets if reg else [])
    if values.user_set("max_train_steps") and not values.user_set("max_train_epochs"):
        values.set("max_train_epochs", None, "auto:max_train_steps-set",
                   "you set max_train_steps; sd-scripts would let epochs override it")
    split = ValidationSplit(values["validation_split"] or 0.0, values["validation_seed"], values["seed"])
    train.findings += split_findings(train.subsets, split)
    placed = Placed(subsets, _bucket_settings(values), split)
    repeats = _repeats(subsets, placed, values)
    for subset, r in zip(subsets, repeats, strict=True):
        subset.num_repeats = r
    return DatasetAnalysis(train, reg, subsets, repeats, steps_for_repeats(placed, repeats, values), placed.held_out)


def _bucket_settings(values: Values) -> BucketSettings:
    return BucketSettings(
        resolution=resolution_tuple(values["resolution"]),
        enable_bucket=bool(values["enable_bucket"]),
        no_upscale=bool(values["bucket_no_upscale"]),
        min_reso=values["min_bucket_reso"],
        max_reso=values["max_bucket_reso"],
        steps=values["bucket_reso_steps"] or 64,
    )


def _repeats(subsets: list[Subset], placed: Placed, values: Values) -> list[int]:
    repeats = [s.num_repeats if s.num_repeats is not None else 1 for s in subsets]
    for index, subset in enumerate(subsets):
        if subset.num_repeats is not None:
            continue
        if values.user_set("dataset_repeats"):
            if values["dataset_repeats"] > MAX_REPEATS:
                raise UserError(f"--set dataset_repeats={values['dataset_repeats']}: lorakit plans at most {MAX_REPEATS:,} "
                                "repeats per folder (docs/sd-scripts.md §4).", fix="--set dataset_repeats=10 (or what you mean)")
            repeats[index] = values["dataset_repeats"]
            subset.repeats_source = "--set dataset_repeats"
        else:
            repeats[index], subset.repeats_source = choose_repeats(placed, repeats, index, values)
    return repeats
