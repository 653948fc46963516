"""Derive lorakit's argument tables from sd-scripts' real parsers (run when the sd-scripts pin moves).

    python tools/derive_arguments.py --python .trainer/bin/python --sd-scripts vendor/sd-scripts

For each family's training script, the trainer's Python imports the script and walks its real
`setup_parser()` actions (lorakit/machine/trainercheck.py, the same code doctor runs), and the table is
written to lorakit/data/sd-scripts-args/SCRIPT.json: dest, type, action, default, choices, nargs and
the English half of each help. `--check` compares instead of writing and exits 1 on a difference.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lorakit.config.family import SCRIPTS  # noqa: E402
from lorakit.machine.trainer import sd_scripts_commit  # noqa: E402
from lorakit.util.resources import arguments_file  # noqa: E402

CHECKER = REPO / "lorakit" / "machine" / "trainercheck.py"


def derive(python: str, sd_scripts: Path, script: str) -> dict:
    request = json.dumps({"sd_scripts": str(sd_scripts), "script": script, "plans": []})
    done = subprocess.run([python, str(CHECKER)], input=request, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{script}: the checker failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    if result["arguments"] is None:
        raise SystemExit(f"{script}: {result['script']}")
    return {
        "script": script,
        "sd_scripts_commit": sd_scripts_commit(sd_scripts),
        "source": f"walking the real setup_parser() actions of {script} at this commit (tools/derive_arguments.py)",
        "arguments": result["arguments"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="a Python with sd-scripts' requirements")
    parser.add_argument("--sd-scripts", type=Path, required=True, help="the sd-scripts checkout at the pin")
    parser.add_argument("--check", action="store_true", help="compare with the shipped tables instead of writing")
    options = parser.parse_args()
    differ = []
    for script in SCRIPTS:
        table = derive(options.python, options.sd_scripts, script)
        path = arguments_file(script)
        text = json.dumps(table, indent=1, ensure_ascii=False) + "\n"
        if options.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                differ.append(script)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}: {len(table['arguments'])} arguments")
    if differ:
        print(f"differs from sd-scripts at the pin: {', '.join(differ)}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
