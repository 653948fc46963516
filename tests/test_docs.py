"""The README keeps its promises: two set-up commands, CI runs the README's test command, docs are current."""

from __future__ import annotations

import re
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "docs"))
from generate_cli_docs import render  # noqa: E402


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_has_exactly_two_setup_commands():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "lorakit plan examples/" in commands[0] and "pip install" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    assert quick_start_commands()[1] in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_cli_reference_is_current():
    assert (REPO / "docs" / "cli.md").read_text(encoding="utf-8") == render(), \
        "docs/cli.md is stale: run `python docs/generate_cli_docs.py`"
