"""Findings of the gates: a stable code, a level, a message and a fix."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Level = Literal["error", "warning", "info"]
LEVEL_ORDER = {"error": 0, "warning": 1, "info": 2}
EXAMPLES = 5  # paths shown per finding; the message gives the full count


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    level: Level
    gate: int
    message: str
    fix: str | None = None
    key: str | None = None
    paths: list[str] = []


def finding(code: str, level: Level, gate: int, message: str, fix: str | None = None, *,
            key: str | None = None, paths: list[str] | None = None) -> Finding:
    return Finding(code=code, level=level, gate=gate, message=message, fix=fix, key=key,
                   paths=[str(p) for p in (paths or [])[:EXAMPLES]])


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (LEVEL_ORDER[f.level], f.gate, f.code))


def has_errors(findings: list[Finding]) -> bool:
    return any(f.level == "error" for f in findings)
