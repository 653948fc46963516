"""What a plan published from: its LoRA file (with its header) and its latest sample images.

The LoRA comes from `<plan>/run.json` (written by launch: `state`, `outputs` = [{path, bytes,
metadata}]) when there is one, else from where the plan predicts sd-scripts writes the final file
(plan.json `saves`, kind "final", in `output_dir`). Samples are sd-scripts' own file names
(`{output_name}_{e%06d|%06d}_{i:02d}_{%Y%m%d%H%M%S}[_{seed}].png` in `output_dir/sample`), matched
with their prompt line in the plan's prompt file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import UserError
from lorakit.plan.build import Plan
from lorakit.util.reading import read_json
from lorakit.util.safetensors_file import SafetensorsHeader, read_header

RUN_RECORD = "run.json"
# What torch.save writes for sd-scripts' .ckpt/.pt saves: a zip archive (torch 1.6+) or, before, a pickle.
TORCH_SAVE_STARTS = (b"PK\x03\x04", b"\x80")


@dataclass(frozen=True)
class LoraFile:
    path: Path
    header: SafetensorsHeader | None  # None for .ckpt/.pt saves, which carry no metadata

    @property
    def metadata(self) -> dict[str, str]:
        return self.header.metadata if self.header else {}


@dataclass(frozen=True)
class Sample:
    path: Path
    prompt: str
    index: int  # the prompt's position in the prompt file


def output_dir(plan: Plan) -> Path:
    return Path(plan.value_set["output_dir"])


def final_save(plan: Plan) -> str | None:
    return next((s.file for s in plan.saves if s.kind == "final"), None)


def find_lora(plan: Plan, explicit: Path | None = None) -> LoraFile:
    """The LoRA to publish: `explicit`, else the run's final file (run.json), else the predicted final file."""
    path = explicit.expanduser().resolve() if explicit else _final_lora(plan)
    if not path.is_file():
        raise UserError(f"'{path}' is not a file.", fix="pass --file with one of the LoRA files in the plan's output folder")
    suffix = path.suffix.lower()
    if suffix in (".ckpt", ".pt"):
        return LoraFile(_torch_save(path), None)
    if suffix != ".safetensors":
        raise UserError(f"'{path}' is not a LoRA file: lorakit pushes the .safetensors files sd-scripts saves "
                        "(or its .ckpt/.pt saves).",
                        fix="pass --file with a LoRA .safetensors file from the plan's output folder")
    try:
        header = read_header(path)
    except ValueError as exc:
        raise UserError(f"'{path}' is not a LoRA file sd-scripts saved: it is not a complete safetensors file ({exc}).",
                        fix="train again, or pass --file with another checkpoint") from None
    if not header.is_lora:
        raise UserError(f"'{path}' holds no LoRA weights (no lora_* tensors).", fix="pass --file with a LoRA file")
    return LoraFile(path, header)


def _torch_save(path: Path) -> Path:
    """`path` if it starts as torch.save's files do (its tensors cannot be read without torch)."""
    try:
        with open(path, "rb") as f:
            start = f.read(4)
    except OSError as exc:
        raise UserError(f"cannot read '{path}': {exc.strerror}.") from None
    if not start.startswith(TORCH_SAVE_STARTS):
        raise UserError(f"'{path}' is not a LoRA file: it does not start as a torch save (.{path.suffix[1:]}) does.",
                        fix="pass --file with a LoRA .safetensors file from the plan's output folder")
    return path


def _final_lora(plan: Plan) -> Path:
    plan_dir = Path(plan.plan_dir)
    final = final_save(plan)
    predicted = output_dir(plan) / final if final else None
    record = plan_dir / RUN_RECORD
    if record.is_file():
        state, outputs = _read_run(record)
        match = next((p for p in outputs if final and p.name == final), None)
        if match is not None:
            return match if match.is_absolute() else plan_dir / match
        saved = ", ".join(p.name for p in outputs) or "none"
        raise UserError(f"the run recorded in {record} ended '{state}' without the final LoRA {final} "
                        f"(files it saved: {saved}).",
                        fix="pass --file with one of the files it saved, or train again with `lorakit launch`")
    if predicted is None or not predicted.is_file():
        raise UserError(f"there is no trained LoRA for this plan yet ({predicted or 'the plan saves no final file'} "
                        "does not exist).", fix=f"train it with `lorakit launch {plan_dir}`, or pass --file")
    return predicted


def _read_run(record: Path) -> tuple[str, list[Path]]:
    try:
        data = read_json(record)
        outputs = [Path(o["path"]) for o in data.get("outputs") or [] if isinstance(o, dict) and o.get("path")]
        return str(data.get("state", "unknown")), outputs
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise UserError(f"cannot read {record}: {exc}".splitlines()[0], fix="pass --file with the LoRA to push") from None


@dataclass(frozen=True)
class SampleRound:
    when: str  # sd-scripts' file-name stamp: "000200" (after step 200) or "e000003" (after epoch 3)
    samples: list[Sample]

    @property
    def label(self) -> str:
        return f"epoch {int(self.when[1:])}" if self.when.startswith("e") else f"step {int(self.when)}"


def sample_rounds(plan: Plan) -> list[SampleRound]:
    """Every sampling round in `output_dir/sample`, oldest first, each with one image per prompt (the newest)."""
    folder = output_dir(plan) / "sample"
    if not folder.is_dir():
        return []
    name = re.escape(plan.value_set["output_name"] or "")
    pattern = re.compile(rf"^{name}_?(?P<when>e?\d{{6}})_(?P<index>\d{{2}})_(?P<stamp>\d{{14}})(?:_\d+)?\.png$")
    rounds: dict[str, dict[int, tuple[str, Path]]] = {}
    for path in folder.iterdir():
        match = pattern.match(path.name)
        if match:
            images = rounds.setdefault(match["when"], {})
            index = int(match["index"])
            if index not in images or images[index][0] < match["stamp"]:
                images[index] = (match["stamp"], path)
    prompts = _prompts(plan)
    # by time, then by step or epoch: rounds made within the same second share a time stamp
    ordered = sorted(rounds.items(), key=lambda item: (max(stamp for stamp, _ in item[1].values()),
                                                       int(item[0].lstrip("e"))))
    return [SampleRound(when, [Sample(path, prompts[i] if i < len(prompts) else "", i)
                               for i, (_, path) in sorted(images.items())]) for when, images in ordered]


def latest_samples(plan: Plan) -> list[Sample]:
    """The images of the last sampling round, one per prompt, in prompt order."""
    rounds = sample_rounds(plan)
    return rounds[-1].samples if rounds else []


def _prompts(plan: Plan) -> list[str]:
    """sd-scripts' reading of a .txt prompt file: non-empty lines not starting with '#', text before ' --'."""
    prompt_file = plan.value_set["sample_prompts"]
    if not prompt_file or not str(prompt_file).endswith(".txt"):
        return []
    try:
        lines = Path(prompt_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [line.strip().split(" --")[0].strip() for line in lines if line.strip() and not line.startswith("#")]
