"""Resolved values that remember where they came from, so a plan can explain itself.

A source is `preset:NAME`, `set` (the user's --set), `import:NAME` (a value a config the user brought
sets itself, e.g. a Kohya GUI file: the user's own, like --set), `auto:REASON` (lorakit chose it) or
`default` (lorakit's own default). A key that is not set falls back to sd-scripts' argparse default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

from lorakit.config.family import DEFAULT_FAMILY
from lorakit.config.schema import any_family, registry, spec_for

USER_SOURCE = "set"
IMPORT_SOURCE = "import:"  # prefix of the source of a value an imported config sets itself


# The values a plan summary always shows; --explain shows all of them.
HEADLINE_KEYS = (
    "pretrained_model_name_or_path", "resolution", "train_batch_size", "max_train_epochs", "max_train_steps",
    "network_dim", "network_alpha", "optimizer_type", "learning_rate", "unet_lr", "text_encoder_lr", "lr_scheduler",
    "mixed_precision", "gradient_checkpointing", "cache_latents", "cache_text_encoder_outputs",
    "network_train_unet_only", "sample_every_n_steps",
)


class Earlier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any
    source: str


class ResolvedValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any
    source: str
    note: str = ""
    replaced: list[Earlier] = []


class Values:
    """An ordered mapping key → ResolvedValue with schema defaults behind it."""

    def __init__(self, items: dict[str, ResolvedValue] | None = None):
        self._items: dict[str, ResolvedValue] = dict(items or {})

    @property
    def family(self) -> str:
        """The model family (set first, by the base preset); it decides which keys exist."""
        item = self._items.get("family")
        return item.value if item is not None and item.value is not None else DEFAULT_FAMILY

    def set(self, key: str, value: Any, source: str, note: str = "") -> None:
        spec_for(key, self.family)  # unknown keys are a bug in lorakit or a problem already reported upstream
        previous = self._items.get(key)
        replaced = []
        if previous is not None:
            replaced = [*previous.replaced, Earlier(value=previous.value, source=previous.source)]
        self._items[key] = ResolvedValue(value=value, source=source, note=note, replaced=replaced)

    def restate(self, key: str, value: Any, note: str) -> None:
        """The same choice in another form (a path made absolute): source and history stay as they are."""
        item = self._items[key]
        self._items[key] = item.model_copy(update={"value": value, "note": note})

    def get(self, key: str) -> Any:
        """The value, or sd-scripts' default where the key is not set or unset (`--set KEY=none`, `unset = true`)."""
        item = self._items.get(key)
        if item is not None and item.value is not None:
            return item.value
        spec = registry(self.family).get(key)
        if spec is None:
            any_family()[key]  # a key no family has is a bug in lorakit: fail loudly
            return None  # another family's key: this family's script does not have it, as if unset
        return spec.default

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def source(self, key: str) -> str:
        item = self._items.get(key)
        return item.source if item is not None else "sd-scripts default"

    def entry(self, key: str) -> ResolvedValue | None:
        return self._items.get(key)

    def is_set(self, key: str) -> bool:
        return key in self._items and self._items[key].value is not None

    def user_set(self, key: str) -> bool:
        """True when the user fixed this key (--set, or a config they brought sets it); lorakit never changes those."""
        item = self._items.get(key)
        return item is not None and (item.source == USER_SOURCE or item.source.startswith(IMPORT_SOURCE))

    def yours(self, key: str) -> str:
        """How to name where the user fixed `key`, for messages: 'your --set' or 'your imported NAME'."""
        source = self.source(key)
        return "your --set" if source == USER_SOURCE else f"your imported {source.removeprefix(IMPORT_SOURCE)}"

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self) -> Iterator[tuple[str, ResolvedValue]]:
        return iter(self._items.items())

    def to_json(self) -> dict[str, dict]:
        return {key: item.model_dump(exclude_defaults=True) for key, item in self._items.items()}

    @classmethod
    def from_json(cls, data: dict[str, dict]) -> Values:
        return cls({key: ResolvedValue.model_validate(item) for key, item in data.items()})
