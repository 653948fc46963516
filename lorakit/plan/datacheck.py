"""`lorakit dataset check`: Gate 1 on its own, with a per-folder table and the bucket histogram.

With `deep`, every image is also decoded with Pillow as sd-scripts will load it (slow: every pixel is read).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lorakit.config.presets import PresetRegistry
from lorakit.config.resolve import resolve
from lorakit.config.values import Values
from lorakit.dataset.steps import StepMath
from lorakit.findings import Finding, finding, sort_findings
from lorakit.plan.analysis import DatasetAnalysis, DatasetStats, analyse_dataset
from lorakit.plan.check import check_parameters


@dataclass
class DatasetReport:
    analysis: DatasetAnalysis
    values: Values
    findings: list[Finding]

    def summary(self) -> DatasetSummary:
        return DatasetSummary(dataset=self.analysis.stats(), step_math=self.analysis.steps, findings=self.findings)


class DatasetSummary(BaseModel):
    """`lorakit dataset check --json`: the folders, the step math and Gate 1's findings."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetStats
    step_math: StepMath
    findings: list[Finding]


def check_dataset(
    dataset: Path,
    *,
    reg: Path | None = None,
    token: str | None = None,
    presets: list[str] | None = None,
    overrides: list[str] | None = None,
    presets_dirs: list[Path] | None = None,
    deep: bool = False,
) -> DatasetReport:
    resolution = resolve(PresetRegistry(presets_dirs), presets or [], overrides or [])
    analysis = analyse_dataset(resolution.values, dataset, reg, token)
    findings = analysis.train.findings + (analysis.reg.findings if analysis.reg else [])
    dataset_rules = check_parameters(analysis.context(resolution.values, None, []))
    findings += [f for f in dataset_rules if f.gate == 1]
    if deep:
        findings += _decode_all(analysis)
    return DatasetReport(analysis, resolution.values, sort_findings(findings))


def _decode_all(analysis: DatasetAnalysis) -> list[Finding]:
    from lorakit.dataset.decode import undecodable

    bad = undecodable(img.path for subset in analysis.subsets for img in subset.images)
    if not bad:
        return []
    return [finding(
        "dataset/undecodable-image", "error", 1,
        f"{len(bad)} image(s) fail to decode in PIL, as sd-scripts would load them (e.g. {bad[0].reason}); "
        "sd-scripts stops on the first one it reaches.",
        "copy or export them again from the original, or remove them", paths=[b.path for b in bad])]
