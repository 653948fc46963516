"""The packages a plan needs in the trainer's Python: what its script, optimizer, attention and network import.

sd-scripts imports most optional packages only when an option asks for them (`library/train_util.py`
`get_optimizer`, the network module, `--xformers`, `--log_with wandb`; docs/sd-scripts.md §1), so a
missing `bitsandbytes` stops an 8-bit optimizer but not AdamW, and a DAdapt* optimizer needs
`dadaptation`, which sd-scripts' requirements.txt does not install. Gate 4 requires what the plan
imports and warns about the rest of requirements.txt; every fix installs exactly what is missing
(never `pip install -r requirements.txt`, whose `-e .` writes into the sd-scripts checkout).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from lorakit.config.values import Values
from lorakit.findings import Finding, finding

# import name → pip distribution, where they differ
DISTRIBUTIONS = {
    "lion_pytorch": "lion-pytorch", "pytorch_optimizer": "pytorch-optimizer", "lycoris": "lycoris-lora",
    "prodigyplus": "prodigy-plus-schedule-free", "cv2": "opencv-python", "PIL": "pillow", "yaml": "pyyaml",
    "huggingface_hub": "huggingface-hub", "sklearn": "scikit-learn",
}
# modules that ship with sd-scripts itself (its `library` and `networks` folders) or with torch
BUNDLED = ("library", "networks", "torch")


@dataclass(frozen=True)
class Need:
    module: str  # what sd-scripts imports
    why: str  # the plan's setting that makes it import it

    @property
    def distribution(self) -> str:
        return distribution_of(self.module)


def distribution_of(module: str) -> str:
    return DISTRIBUTIONS.get(module, module.replace("_", "-"))


def plan_needs(values: Values) -> list[Need]:
    """The optional packages this plan's settings make sd-scripts import while training."""
    needs = _optimizer_needs(values)
    if _value(values, "optimizer_schedulefree_wrapper"):
        needs.append(Need("schedulefree", "optimizer_schedulefree_wrapper"))
    if values["xformers"]:
        needs.append(Need("xformers", "xformers = true"))
    module = values["network_module"] or "networks.lora"
    if module.split(".")[0] not in BUNDLED:
        needs.append(Need(module.split(".")[0], f"network_module = {module}"))
    if _value(values, "log_with") in ("wandb", "all"):
        needs.append(Need("wandb", f"log_with = {values['log_with']}"))
    unique: dict[str, Need] = {}
    for need in needs:
        unique.setdefault(need.module, need)
    return list(unique.values())


def _value(values: Values, key: str) -> object:
    """A value, or None for an argument lorakit's table does not list (the plan cannot have set it)."""
    try:
        return values[key]
    except KeyError:
        return None


def _optimizer_needs(values: Values) -> list[Need]:
    """train_util.get_optimizer's imports, by optimizer name (case-insensitive, as sd-scripts compares them)."""
    name = values["optimizer_type"] or ""
    why = f"optimizer_type = {name}"
    if _value(values, "use_8bit_adam"):
        name, why = "AdamW8bit", "use_8bit_adam"
    elif _value(values, "use_lion_optimizer"):
        name, why = "Lion", "use_lion_optimizer"
    lower = name.lower()
    if lower == "lion":
        return [Need("lion_pytorch", why)]
    if lower.endswith("8bit") or lower in ("pagedadamw", "pagedadamw32bit"):
        return [Need("bitsandbytes", why)]
    if lower.startswith("dadapt"):
        return [Need("dadaptation", why)]
    if lower == "prodigy":
        return [Need("prodigyopt", why)]
    if lower.endswith("schedulefree"):
        return [Need("schedulefree", why)]
    if "." in name and name.split(".")[0] not in BUNDLED:
        return [Need(name.split(".")[0], why)]  # "module.Class": sd-scripts imports the module
    return []  # AdamW, AdamW-less torch.optim names, Adafactor (transformers), SGDNesterov: nothing optional


def pip_install(python: str, distributions: list[str], requirements: dict[str, str | None]) -> str:
    """`python -m pip install` of exactly these distributions, at requirements.txt's pins where it pins them."""
    pins = {_normal(name): pin for name, pin in requirements.items()}
    words = [f"{d}=={pins[_normal(d)]}" if pins.get(_normal(d)) else d for d in distributions]
    return f"{shlex.quote(python)} -m pip install " + " ".join(shlex.quote(w) for w in words)


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def import_findings(imports: dict[str, dict], needs: list[Need], python: str,
                    requirements: dict[str, str | None]) -> list[Finding]:
    """An error for each module the trainer must import (torch, accelerate, what the plan needs) and cannot."""
    why = {need.module: need.why for need in needs}
    findings = []
    for name, info in imports.items():
        if info["ok"]:
            continue
        if name in ("torch", "torchvision"):
            fix = (f"{shlex.quote(python)} -m pip install torch torchvision (a CUDA build matching your driver, e.g. "
                   "--index-url https://download.pytorch.org/whl/cu124; see vendor/README.md)")
        elif name == "xformers":
            fix = f"{pip_install(python, ['xformers'], requirements)}, or re-plan with --set xformers=false --set sdpa=true"
        else:
            fix = pip_install(python, [distribution_of(name)], requirements)
        because = f" (the plan's {why[name]} imports it)" if name in why else ""
        findings.append(finding("env/missing-module", "error", 4,
                                f"the trainer's Python cannot import {name}{because}: {info['error']}", fix))
    return findings


def requirement_findings(distributions: dict[str, str | None], requirements: dict[str, str | None], python: str,
                         needed: set[str]) -> list[Finding]:
    """sd-scripts' other requirements: missing or other versions are warnings, since this plan does not import them."""
    needed = {_normal(n) for n in needed}
    missing = [name for name in requirements if distributions.get(name) is None and _normal(name) not in needed]
    other = [name for name, pin in requirements.items() if pin and distributions.get(name) not in (None, pin)]
    findings = []
    if missing:
        findings.append(finding(
            "env/requirements-missing", "warning", 4,
            f"{len(missing)} of sd-scripts' requirements are not installed in the trainer's Python: {', '.join(missing)}. "
            "This plan does not import them (other optimizers and tools do).",
            pip_install(python, missing, requirements)))
    if other:
        shown = [f"{name} {distributions[name]} (wants {requirements[name]})" for name in other]
        findings.append(finding("env/requirements-version", "warning", 4,
                                f"installed versions differ from sd-scripts' requirements.txt: {', '.join(shown)}.",
                                pip_install(python, other, requirements)))
    return findings
