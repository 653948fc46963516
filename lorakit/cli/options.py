"""What the commands share: option definitions, the PlanRequest they describe, and the JSON printer.

Only click and the family table are imported here (`lorakit --help` imports this module); the core is
imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lorakit.config.family import DEFAULT_FAMILY, FAMILIES

if TYPE_CHECKING:
    from pydantic import BaseModel

    from lorakit.plan.build import PlanRequest

PATH = click.Path(path_type=Path)


def _option(*decls: str, **attrs: Any) -> Callable[..., Callable]:
    """One option, defined once; a command may word its help (or make it required) for its own use."""

    def make(**override: Any) -> Callable:
        return click.option(*decls, **{**attrs, **override})

    return make


# --- the options `plan` and `batch plan` share (and `dataset check`/`prepare`: --preset and --set) -------

dataset = click.argument("dataset", type=PATH)
preset = _option("--preset", "-p", "preset_names", multiple=True,
                 help="A preset to apply (repeatable, applied in order; default sdxl-base).")
overrides = _option("--set", "-s", "overrides", multiple=True, metavar="KEY=VALUE",
                    help="Override one value, typed by its key (repeatable): --set network_dim=32.")
reg = _option("--reg", type=PATH, help="Regularisation images (same folder convention as DATASET).")
token = _option("--token", help="Class tokens for a flat DATASET folder, e.g. 'sks dog'.")
target_gpu = _option("--target-gpu",
                     help="Plan for this catalog GPU instead of the probed one (see `lorakit probe --catalog`).")
out = _option("--out", type=PATH, help="The plan folder to write (default: plans/NAME).")
name = _option("--name", help="The plan's and the LoRA file's name (default: the dataset folder's name).")
force = _option("--force", is_flag=True,
                help="Write even with gate errors, and replace an existing plan (kept in .lorakit-history/).")
sd_scripts = _option("--sd-scripts", "sd_scripts", help="The sd-scripts checkout launch.sh should use.")
python = _option("--python", help="The trainer's Python launch.sh should use.")
presets_dirs = _option("--presets-dir", "presets_dirs", multiple=True, type=PATH,
                       help="A folder of extra presets (*.toml); repeatable. The per-user folder is always read.")
as_json = _option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
family = _option("--family", type=click.Choice(list(FAMILIES)), default=DEFAULT_FAMILY, show_default=True,
                 help="The model family (its base preset picks it when planning: --preset flux1-dev).")

# click's parameter name → PlanRequest's field, for the shared options above
_REQUEST_FIELDS = {
    "dataset": "dataset", "preset_names": "presets", "overrides": "overrides", "reg": "reg", "token": "token",
    "target_gpu": "target_gpu", "out": "out", "name": "name", "force": "force", "presets_dirs": "presets_dirs",
    "sd_scripts": "sd_scripts", "python": "python",
}


def plan_request(params: dict[str, Any], **fields: Any) -> PlanRequest:
    """The PlanRequest the shared options in `params` describe; `fields` sets the rest (e.g. fit)."""
    from lorakit.plan.build import PlanRequest

    request = PlanRequest(dataset=params["dataset"], **fields)
    for key, value in params.items():
        setattr(request, _REQUEST_FIELDS[key], list(value) if isinstance(value, tuple) else value)
    return request


# --- the options `doctor` and `launch` share ------------------------------------------------------------

trainer_options = [
    click.option("--sd-scripts", "sd_scripts", help="The sd-scripts checkout (default: $LORAKIT_SD_SCRIPTS, then vendor/sd-scripts)."),
    click.option("--python", help="The trainer's Python (default: $LORAKIT_PYTHON, then lorakit's own)."),
    click.option("--gpus", help="GPU ids for accelerate's --gpu_ids, e.g. 0 or 0,1 (default: the plan's gpu_ids)."),
    click.option("--cpu", is_flag=True, help="Train on the CPU even if CUDA is there (chosen anyway when it is not)."),
]


def with_trainer_options(function: Callable) -> Callable:
    for option in reversed(trainer_options):
        function = option(function)
    return function


# --- the out-of-memory recovery options `launch` and `batch run` share (lorakit.run.recover) --------------

recover_options = [
    click.option("--no-recover", is_flag=True,
                 help="Do not recover from CUDA out-of-memory (by default lorakit re-plans one notch down and trains on)."),
    click.option("--max-recoveries", type=click.IntRange(min=0), default=2, show_default=True, metavar="N",
                 help="Out-of-memory recoveries per run before lorakit stops with a verdict."),
    click.option("--recover", "recover_mode", type=click.Choice(["recipe", "quality"]), default="recipe", metavar="MODE",
                 help="recipe (default): only changes that keep the recipe (gradient accumulation, checkpointing, caching, "
                      "attention); quality: also lower rank, resolution or precision, with a warning."),
]


def with_recover_options(function: Callable) -> Callable:
    for option in reversed(recover_options):
        function = option(function)
    return function


def recover_settings(no_recover: bool, max_recoveries: int, recover_mode: str) -> Any:
    """The RecoverOptions the three options describe (typed Any: the core is imported only here)."""
    from lorakit.errors import UserError
    from lorakit.run.recover import RecoverOptions

    if no_recover and recover_mode == "quality":
        raise UserError("--no-recover and --recover quality contradict each other.", fix="pick one")
    return RecoverOptions(enabled=not no_recover, max_recoveries=max_recoveries, quality=recover_mode == "quality")


# --- JSON output: every --json prints a model's own dump -----------------------------------------------

def emit_json(model: BaseModel) -> None:
    click.echo(model.model_dump_json(indent=2))


def emit_json_list(models: Sequence[BaseModel]) -> None:
    """A JSON array of models, each dumped as its own type (with its computed fields)."""
    from pydantic import BaseModel, RootModel, SerializeAsAny

    emit_json(RootModel[list[SerializeAsAny[BaseModel]]](list(models)))
