"""The README keeps its promises: two set-up commands, CI runs the README's test command, docs are current."""

from __future__ import annotations

import re
import sys
from pathlib import Path

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


# --- citations of docs/: "docs/NAME.md §N", maybe a list ("docs/sd-scripts.md §5, §8") or a range ---------

NUMBER = r"\d+(?:\.\d+)*"
CITATION = re.compile(rf"docs/([\w-]+\.md)\s+(§{NUMBER}(?:–{NUMBER})?(?:, §{NUMBER}(?:–{NUMBER})?)*)")
CITING = ["lorakit/**/*.py", "presets/**/*.toml", "templates/*", "tests/**/*.py", "tests/golden/**/*", "docs/*.md", "README.md"]


def sections(page: Path) -> dict[str, str]:
    """Section number → title of a docs page: its numbered headings ("## 5. Step arithmetic", "### 1.2 LoRA
    modules"), and "N.K" for item K of a numbered list directly in section N."""
    found: dict[str, str] = {}
    current = None
    for line in page.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#{2,4} (\d+(?:\.\d+)*)\.? (.+)", line)
        if heading:
            current = heading.group(1)
            found[current] = heading.group(2).strip()
            continue
        item = re.match(r"(\d+)\. ", line)
        if item and current is not None and "." not in current:
            found.setdefault(f"{current}.{item.group(1)}", "")
    return found


def citations() -> list[tuple[str, str, str]]:
    """(where, page, section) of every citation of docs/ in the code, presets, templates, tests and docs."""
    out = []
    for pattern in CITING:
        for path in sorted(REPO.glob(pattern)):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for found in CITATION.finditer(text):
                line = text.count("\n", 0, found.start()) + 1
                for ref in re.findall(rf"§({NUMBER})(?:–({NUMBER}))?", found.group(2)):
                    for number in filter(None, ref):
                        out.append((f"{path.relative_to(REPO)}:{line}", found.group(1), number))
    return out


def test_every_docs_citation_names_an_existing_page_and_section():
    cited = citations()
    assert any(page == "recommendations.md" for _, page, _ in cited), "the presets cite docs/recommendations.md"
    pages = {}
    broken = []
    for where, page, number in cited:
        path = REPO / "docs" / page
        if page not in pages:
            pages[page] = sections(path) if path.is_file() else None
        if pages[page] is None:
            broken.append(f"{where}: docs/{page} does not exist")
        elif number not in pages[page]:
            broken.append(f"{where}: docs/{page} has no section §{number}")
    assert not broken, "\n".join(broken)


def test_recommendation_citations_name_the_section_they_point_at():
    """`docs/recommendations.md §2 Epochs · Character Quick 5`: the title must be that section's, so a
    renumbered page cannot leave presets citing the wrong table."""
    titles = sections(REPO / "docs" / "recommendations.md")
    wrong = []
    for path in sorted(REPO.glob("presets/**/*.toml")):
        for number, title in re.findall(r"docs/recommendations\.md §(\d+) ([^·\"]+?) ·", path.read_text(encoding="utf-8")):
            if titles.get(number) != title:
                wrong.append(f"{path.name}: §{number} is '{titles.get(number)}', not '{title}'")
    assert not wrong, "\n".join(wrong)


def test_code_presets_and_templates_cite_the_docs_not_outside_fact_sheets():
    old = re.compile(r"seed 00\d|facts §|-facts\.md|\bseed row\b", re.I)
    patterns = ("lorakit/**/*.py", "presets/**/*.toml", "templates/*", "README.md")
    stale = [f"{path.relative_to(REPO)}: {m.group(0)}" for pattern in patterns
             for path in sorted(REPO.glob(pattern)) for m in old.finditer(path.read_text(encoding="utf-8"))]
    assert not stale, "\n".join(stale)
