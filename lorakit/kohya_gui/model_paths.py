"""The model files of an exported plan as GUI fields: the paths config.toml gives sd-scripts, or a plain Hub id.

The base model, the VAE and (FLUX.1, Chroma) the `ae`, `clip_l` and `t5xxl` files go in as the absolute paths
config.toml gives sd-scripts (lorakit's links for Hub files), except a plain Hub id that sd-scripts, started by
the GUI, loads as the same model itself (docs/kohya-gui.md §2.7, §5.5). On load the GUI opens a base model
`.safetensors` file to tick the model checkboxes; a file it cannot open unticks them (§8.3).
"""

from __future__ import annotations

import re
from pathlib import Path

from lorakit.config.family import family_named
from lorakit.findings import Finding, finding
from lorakit.models.roles import KNOWN_REPOS
from lorakit.models.source import ModelSource, fetch_fix
from lorakit.plan.build import Plan

GATE = 2
# A Hub id the GUI lets through to sd-scripts without a local file or folder (validate_model_path, docs/kohya-gui.md §5.5).
GUI_HUB_ID = re.compile(r"^[\w-]+/[\w-]+$")
# The GUI's built-in SDXL base id: loading it ticks SDXL, where a missing file unticks it (docs/kohya-gui.md §2.7, §8.3).
SDXL_BASE_ID = "stabilityai/stable-diffusion-xl-base-1.0"


def model_sources(plan: Plan) -> list[ModelSource]:
    """The model files the plan names through a key (base, VAE, and the family's other model files)."""
    return [s for s in plan.model.sources() if s.key and s.value.strip()]


def trained_path(source: ModelSource) -> str:
    """The absolute path config.toml gives sd-scripts for a model (lorakit's link for a Hub file or folder)."""
    return source.trainer_path or source.path or source.value


def kept_hub_id(source: ModelSource) -> str | None:
    """The plain Hub id the GUI gets instead of a path, where sd-scripts loading that id itself takes the same model."""
    if source.kind != "hub" or source.value != source.repo_id:
        return None  # a revision or a file was asked for: only lorakit's path gives sd-scripts exactly that
    if source.role == "base" and source.repo_id in KNOWN_REPOS:
        return source.repo_id  # its diffusers copy, which sd-scripts downloads itself, is the same model
    if source.layout != "checkpoint" and GUI_HUB_ID.match(source.repo_id or ""):
        return source.repo_id  # a diffusers repo at its default branch, which sd-scripts downloads itself
    return None


def gui_model(source: ModelSource, plan: Plan, findings: list[Finding]) -> str:
    """The GUI field's value for one model file, with what the user should know about it."""
    kept = kept_hub_id(source)
    if kept in KNOWN_REPOS:
        known = " which it knows as SDXL," if kept == SDXL_BASE_ID else ""
        findings.append(finding(
            "gui/model-hub-id", "info", GATE,
            f"the GUI gets the base model as the Hub id {kept},{known} and sd-scripts started by the GUI "
            "loads that repo's diffusers copy (a download into the GUI machine's Hugging Face cache "
            f"on first use), where `lorakit launch` loads the repo's single-file checkpoint {source.filename}: "
            "the same model from other files.", None, key=source.key))
    if kept:
        return kept
    path = trained_path(source)
    found = _model_path_finding(source, path, plan)
    if found:
        findings.append(found)
    return path


def _model_path_finding(source: ModelSource, path: str, plan: Plan) -> Finding | None:
    """A warning when the GUI gets a model path that exists only on this machine, or not yet, or not at all."""
    sentences, fixes = [], []
    if source.kind == "hub":
        state = "" if source.status == "cached" else " (it exists once the model is downloaded)"
        sentences.append(f"the GUI gets the {source.label} {source.reference} as {path}, lorakit's link into this "
                         f"machine's Hugging Face cache{state}; the path exists only on this machine, and the GUI "
                         "refuses to train with a model path that does not exist")
        if source.status != "cached":
            fixes.append(fetch_fix(source, Path(plan.plan_dir)) + " before training in the GUI")
        fixes.append("for a GUI on another machine, make and export the plan on that machine")
    elif source.status == "missing":
        sentences.append(f"the {source.label} {path} does not exist on this machine, and the GUI refuses to train "
                         "with a model path that does not exist")
        fixes.append(f"put the {source.label} there, or make the plan again with its path")
    family = family_named(plan.family)
    if source.role == "base" and path.lower().endswith(".safetensors") and family.gui_flag:
        which = "the file" if sentences else f"the base model file {path}"
        box = "SDXL" if family.name == "sdxl" else "FLUX.1"
        sentences.append(f"on load the GUI opens {which} to detect the model type, and if the file is missing on the "
                         f"GUI's machine it unticks {box} (and trains an SD 1.5 LoRA)")
        fixes += [] if fixes else ["make sure the file exists at that path on the GUI's machine"]
        fixes.append(f"check that '{box}' is ticked after loading")
    if not sentences:
        return None
    return finding("gui/model-path", "warning", GATE, "; ".join(sentences) + ".", "; ".join(fixes), key=source.key)
