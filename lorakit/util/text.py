"""Values as people read them, shared by the printed views, the run verdicts and the model card."""

from __future__ import annotations

from typing import Any


def show(value: Any) -> str:
    """A value as a line of text: lists joined by spaces, floats without trailing zeros."""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}"


def loss_text(value: float | None) -> str:
    if value is None:
        return "–"
    return "nan" if value != value else f"{value:.4f}"


def gib_text(value: float | None) -> str:
    return f"{value:.1f} GiB" if value is not None else "–"


def hours_text(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"
