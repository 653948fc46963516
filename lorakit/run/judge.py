"""Gate 4's findings from the installed sd-scripts' verdict (run/verdict.py): unknown keys, wrong values, other counts.

An unknown key is an error because sd-scripts would drop it without a word (docs/sd-scripts.md §2);
counts that differ from plan.json's are an error because the plan's saves, samples and schedule
were counted from them (docs/sd-scripts.md §5).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import tomllib

from lorakit import SD_SCRIPTS_COMMIT
from lorakit.config.argcheck import ArgProblem, argument_problems, flatten_config
from lorakit.findings import Finding, finding
from lorakit.machine.trainer import SdScriptsCheckout
from lorakit.plan.build import Plan
from lorakit.run.needs import pip_install
from lorakit.run.verdict import TrainerVerdict

# the arguments lorakit's launch command itself passes (machine/trainer.py trainer_command)
LAUNCH_ARGUMENTS = ("config_file",)
COMPARED = ("num_train_images", "num_reg_images", "batches_per_epoch", "steps_per_epoch", "epochs", "total_steps")
STAGES = {
    "config": "reading config.toml", "arguments": "checking the arguments", "dataset": "loading dataset.toml",
    "asserts": "checking the arguments against the dataset",
}


def who(checkout: SdScriptsCheckout) -> str:
    """sd-scripts as a finding names it: its version and commit."""
    commit = checkout.commit[:8] if checkout.commit != "unknown" else "commit unknown"
    return f"sd-scripts {checkout.version} ({commit})" if checkout.version else f"sd-scripts {commit}"


def checked_by(verdict: TrainerVerdict, checkout: SdScriptsCheckout) -> str:
    if verdict.asked:
        return f"{who(checkout)}'s own parser ({len(verdict.arguments)} arguments)" + (
            " and dataset code" if verdict.counts is not None else "")
    return f"lorakit's table of sd-scripts {SD_SCRIPTS_COMMIT[:8]}"


def verdict_findings(verdict: TrainerVerdict, checkout: SdScriptsCheckout, plan: Plan | None, python: str,
                     requirements: dict[str, str | None], reported_modules: set[str]) -> list[Finding]:
    """`reported_modules`: modules another rule already reported missing (not repeated here)."""
    findings = _not_asked(verdict, checkout, python, requirements, reported_modules)
    findings += _launch_arguments(verdict, checkout)
    if plan is None:
        return findings
    config = Path(plan.plan_dir) / "config.toml"
    findings += [_problem_finding(p, verdict, checkout, config) for p in argument_problems(_read(config), verdict.arguments)]
    refused_at_parse = verdict.count_stage == "config" and any(f.code == "env/unknown-argument" for f in findings)
    if not refused_at_parse:
        findings += _count_findings(verdict, checkout, plan)
    return findings


def _read(config: Path) -> dict:
    try:
        return flatten_config(tomllib.loads(config.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}  # a missing or broken config.toml is reported by sd-scripts' own reading (count_stage "config")


def _not_asked(verdict: TrainerVerdict, checkout: SdScriptsCheckout, python: str, requirements: dict[str, str | None],
               reported: set[str]) -> list[Finding]:
    if verdict.asked:
        return []
    from lorakit.run.needs import distribution_of

    findings = []
    fix = (f"check that {checkout.path} is a kohya-ss/sd-scripts checkout and that "
           f"`{python} {checkout.path}/{checkout.script} --help` runs")
    missing = verdict.missing_module
    if missing:
        fix = pip_install(python, [distribution_of(missing)], requirements)
        if missing not in reported:
            findings.append(finding("env/missing-module", "error", 4,
                                    f"sd-scripts' training script cannot import {missing} in the trainer's Python "
                                    f"({verdict.error}): the launch would fail at once.", fix))
    elif not verdict.script_imports:
        findings.append(finding("env/sd-scripts-broken", "error", 4,
                                f"sd-scripts' training script does not import in the trainer's Python ({verdict.error}): "
                                "the launch would fail at once.", fix))
    findings.append(finding(
        "env/sd-scripts-not-asked", "warning", 4,
        f"could not ask the installed sd-scripts ({verdict.error}), so config.toml was checked against lorakit's table "
        f"of sd-scripts {SD_SCRIPTS_COMMIT[:8]} instead and the plan's step counts were not checked against its dataset code.",
        fix))
    return findings


def _launch_arguments(verdict: TrainerVerdict, checkout: SdScriptsCheckout) -> list[Finding]:
    known = {a.dest for a in verdict.arguments}
    return [finding("env/unknown-argument", "error", 4,
                    f"lorakit's launch command passes --{name}, which {who(checkout)} at {checkout.path} does not have.",
                    _checkout_fix(checkout), key=name)
            for name in LAUNCH_ARGUMENTS if verdict.asked and name not in known]


def _checkout_fix(checkout: SdScriptsCheckout) -> str:
    return (f"use the sd-scripts lorakit follows: git -C {shlex.quote(checkout.path)} checkout {SD_SCRIPTS_COMMIT} "
            "(or pass --sd-scripts PATH to such a checkout)")


def _problem_finding(problem: ArgProblem, verdict: TrainerVerdict, checkout: SdScriptsCheckout, config: Path) -> Finding:
    by = checked_by(verdict, checkout)
    if problem.kind == "unknown":
        return finding("env/unknown-argument", "error", 4,
                       f"config.toml sets {problem.key}, which {who(checkout) if verdict.asked else by} does not know: "
                       "sd-scripts would ignore the setting without a word.",
                       f"remove {problem.key} from {config} (or re-plan without it), or {_checkout_fix(checkout)}",
                       key=problem.key)
    return finding("env/argument-value", "error", 4,
                   f"config.toml's {problem.key}: {problem.detail}; sd-scripts takes config-file values as they are, "
                   f"unconverted and unchecked (checked against {by}).",
                   f"re-plan with --set {problem.key}=VALUE of the right kind, or edit {config}", key=problem.key)


def _count_findings(verdict: TrainerVerdict, checkout: SdScriptsCheckout, plan: Plan) -> list[Finding]:
    if verdict.count_stage == "import":
        return [finding("env/counts-unchecked", "warning", 4,
                        f"sd-scripts' dataset code did not load ({verdict.count_error}), so the plan's image and step "
                        "counts were not checked against it.",
                        f"check that {checkout.path} holds sd-scripts' library/ folder")]
    if verdict.count_stage is not None:
        return [finding("env/sd-scripts-refuses", "error", 4,
                        f"{who(checkout)}'s own code refuses the plan while {STAGES.get(verdict.count_stage, verdict.count_stage)}: "
                        f"{verdict.count_error}",
                        "fix what the message names (`lorakit dataset check DATASET` re-reads the images), "
                        "re-plan if the plan is older than its files, then run `lorakit doctor PLAN` again")]
    if verdict.counts is None:
        return []
    mine = plan.step_math.model_dump()
    theirs = verdict.counts.model_dump()
    differ = [f"{name} {theirs[name]} (plan.json: {mine[name]})" for name in COMPARED if theirs[name] != mine[name]]
    if not differ:
        return []
    return [finding("env/step-math-mismatch", "error", 4,
                    f"{who(checkout)}'s own dataset code counts this plan differently: {', '.join(differ)}. The plan's "
                    "saves, samples and learning-rate schedule were counted from plan.json's numbers.",
                    f"re-plan with this sd-scripts (lorakit plan ... --force), or {_checkout_fix(checkout)}")]
