"""Run by the trainer's Python (not lorakit's): ask the installed sd-scripts about one or more plans.

Standalone on purpose (standard library only at the top; sd-scripts' own modules inside), since the
trainer's environment may not have lorakit. Usage:
`<python> trainercheck.py < request.json`, where the request is
`{"sd_scripts": DIR, "script": "sdxl_train_network.py", "plans": [{"config": FILE, "num_processes": N}, ...]}`.
Prints one JSON object on its last stdout line:

- `script`: whether the training script imported (`missing_module` names what it lacked);
- `arguments`: its real parser's actions (dest, type, action, choices, nargs), the shape of
  lorakit/data/sd-scripts-args.json, so lorakit holds config.toml against them;
- `plans`: per plan, the counts sd-scripts' own config reader, dataset sanitizer, blueprint and dataset
  classes give (docs/sd-scripts.md §2, §3, §5), or the stage that failed and why.

Nothing is trained and no model is loaded; the training script is imported as a module, so its
`if __name__ == "__main__"` block does not run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import sys
import traceback
from typing import Any


def main() -> None:
    request = json.loads(sys.stdin.read())
    real_stdout = sys.stdout
    # sd-scripts prints and logs freely; only the verdict goes to the real stdout
    with contextlib.redirect_stdout(sys.stderr):
        result = check(request)
    real_stdout.write(json.dumps(result) + "\n")


def check(request: dict) -> dict[str, Any]:
    sd_scripts = os.path.abspath(request["sd_scripts"])
    script = request.get("script", "sdxl_train_network.py")
    result: dict[str, Any] = {"python": sys.version.split()[0], "script": {"ok": False}, "arguments": None, "plans": []}
    sys.path.insert(0, sd_scripts)
    os.chdir(sd_scripts)  # sd-scripts reads some files relative to its own folder
    module, failure = import_script(script[:-3] if script.endswith(".py") else script)
    if module is None:
        result["script"] = failure
        return result
    result["script"] = {"ok": True}
    logging.disable(logging.INFO)  # sd-scripts logs every dataset and bucket through Rich: slow, and not the verdict
    build = getattr(module, "setup_parser", None)
    if build is None:
        result["script"] = {"ok": False, "imported": True, "error": f"{script} has no setup_parser()"}
        return result
    try:
        parser = build()
    except BaseException as exc:  # the script imported but cannot build its parser here
        result["script"] = {"ok": False, "imported": True, "error": f"setup_parser() failed: {one_line(exc)}"}
        return result
    result["arguments"] = [describe(action) for action in parser._actions if action.dest != "help"]
    result["plans"] = [count_plan(module, parser, plan) for plan in request.get("plans", [])]
    return result


def import_script(name: str) -> tuple[Any, dict[str, Any]]:
    try:
        return importlib.import_module(name), {}
    except ModuleNotFoundError as exc:
        return None, {"ok": False, "imported": False, "error": one_line(exc),
                      "missing_module": (exc.name or "").split(".")[0] or None}
    except BaseException as exc:  # a broken package may raise anything while importing
        return None, {"ok": False, "imported": False, "error": one_line(exc)}


def describe(action: Any) -> dict[str, Any]:
    kind = action.type
    type_name = None if kind is None else getattr(kind, "__name__", type(kind).__name__)
    choices = list(action.choices) if action.choices is not None else None
    if choices is not None and not all(c is None or isinstance(c, (str, int, float, bool)) for c in choices):
        choices = [str(c) for c in choices]
    nargs = action.nargs if isinstance(action.nargs, (int, str)) or action.nargs is None else str(action.nargs)
    return {"dest": action.dest, "type": type_name, "action": type(action).__name__, "default": plain(action.default),
            "choices": choices, "nargs": nargs, "help_en": english_help(action.help)}


def plain(value: Any) -> Any:
    """A default as JSON can hold it (sd-scripts' defaults are numbers, text, lists or None)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def english_help(text: str | None) -> str:
    """sd-scripts writes each help as "English / 日本語": the part before the last " / ", on one line."""
    first = " ".join((text or "").split())
    english, _, _ = first.rpartition(" / ")
    return english or first


def count_plan(module: Any, parser: Any, plan: dict) -> dict[str, Any]:
    """train_network.py's order: read the config file, verify the arguments, build the datasets, count."""
    stage = "import"
    try:
        from library import config_util, train_util

        # the trainer runs in the plan folder, and config.toml names the plan's files relative to it
        os.chdir(os.path.dirname(os.path.abspath(plan["config"])))

        stage = "config"
        parser.error = refuse  # argparse would print usage and exit 2; the message is the verdict
        # the launch's command line: read_config_from_file parses sys.argv again over the file's values
        sys.argv = [module.__file__, "--config_file", plan["config"]]
        args = parser.parse_args()
        args = train_util.read_config_from_file(args, parser)
        stage = "arguments"
        train_util.verify_training_args(args)
        train_util.prepare_dataset_args(args, True)
        stage = "dataset"
        train, validation = build_datasets(config_util, args)
        stage = "asserts"
        trainer = trainer_class(module)
        if trainer is not None:
            trainer.assert_extra_args(args, train, validation)
        return {"ok": True, "counts": counts(args, train, int(plan.get("num_processes") or 1))}
    except BaseException as exc:  # sd-scripts asserts, raises ValueError, or calls exit() on a bad file
        return {"ok": False, "stage": stage, "error": one_line(exc), "trace": traceback.format_exc()[-2000:]}


def refuse(message: str) -> None:
    raise ValueError(f"the parser refuses the command line: {message}")


def build_datasets(config_util: Any, args: Any) -> tuple[Any, Any]:
    """The datasets as train_network.py builds them from --dataset_config, without reading any model."""
    if args.dataset_config is None:
        raise ValueError("config.toml names no dataset_config")
    user_config = config_util.load_user_config(args.dataset_config)
    _no_info_cache(user_config, args)
    sanitizer = config_util.ConfigSanitizer(True, True, args.masked_loss, True)
    blueprint = config_util.BlueprintGenerator(sanitizer).generate(user_config, args)
    return config_util.generate_dataset_group_by_blueprint(blueprint.dataset_group)


def _no_info_cache(user_config: dict, args: Any) -> None:
    # cache_info would write metadata_cache.json into the image folders; a check must not write there
    # (it only changes where image sizes come from, not what they are)
    if hasattr(args, "cache_info"):
        args.cache_info = False
    for table in [user_config.get("general", {}), *user_config.get("datasets", [])]:
        if "cache_info" in table:
            table["cache_info"] = False
        for subset in table.get("subsets", []) if isinstance(table, dict) else []:
            if "cache_info" in subset:
                subset["cache_info"] = False


def trainer_class(module: Any) -> Any:
    """The script's NetworkTrainer subclass (e.g. SdxlNetworkTrainer), whose assert_extra_args runs before training."""
    from train_network import NetworkTrainer

    found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, NetworkTrainer)
             and v.__module__ == module.__name__]
    return found[0]() if found else NetworkTrainer()


def counts(args: Any, train: Any, num_processes: int) -> dict[str, int]:
    """sd-scripts' step arithmetic (train_network.py `train`): epochs win over steps; accelerate shards the batches."""
    batches = len(train)
    accumulation = args.gradient_accumulation_steps
    max_train_steps = args.max_train_steps
    if args.max_train_epochs is not None:
        max_train_steps = args.max_train_epochs * math.ceil(batches / num_processes / accumulation)
    per_process = math.ceil(batches / num_processes)
    steps_per_epoch = math.ceil(per_process / accumulation)
    return {
        "num_train_images": train.num_train_images,
        "num_reg_images": train.num_reg_images,
        "batches_per_epoch": batches,
        "batches_per_process": per_process,
        "steps_per_epoch": steps_per_epoch,
        "epochs": math.ceil(max_train_steps / steps_per_epoch) if steps_per_epoch else 0,
        "total_steps": max_train_steps,
    }


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


if __name__ == "__main__":
    main()
