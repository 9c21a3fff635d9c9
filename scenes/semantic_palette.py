"""The ADE20K palette: class names, indices and the exact colours the segmentation ControlNet knows.

Class ids in greybox follow ADE20K's own 1-based numbering (objectInfo150): 0 is background or
"other", 1 is wall, ..., 150 is flag; palette row ``i`` (0-based) is class id ``i + 1``.
A class is named in a template by any of a palette entry's comma-separated names ("painting" or
"picture"), or by its 0-based palette index as an integer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

_PALETTE_FILE = Path(__file__).with_name("data") / "ade20k_palette.json"


@dataclass(frozen=True)
class SemanticClass:
    index: int  # 0-based palette index (row in ade20k_palette.json)
    names: tuple[str, ...]
    rgb: tuple[int, int, int]

    @property
    def class_id(self) -> int:
        """The 1-based id written to the class pass (0 is background)."""
        return self.index + 1

    @property
    def name(self) -> str:
        return self.names[0]


class UnknownClassError(ValueError):
    """A class name that is not in the palette, or that several entries share."""


@lru_cache(maxsize=1)
def palette() -> tuple[SemanticClass, ...]:
    rows = json.loads(_PALETTE_FILE.read_text())
    return tuple(
        SemanticClass(
            index=row["index"],
            names=tuple(n.strip() for n in row["name"].split(",")),
            rgb=tuple(row["rgb"]),
        )
        for row in rows
    )


@lru_cache(maxsize=1)
def _names_to_indices() -> dict[str, tuple[int, ...]]:
    table: dict[str, list[int]] = {}
    for entry in palette():
        for name in entry.names:
            table.setdefault(name.lower(), []).append(entry.index)
    return {name: tuple(indices) for name, indices in table.items()}


def resolve_class(value: str | int) -> SemanticClass:
    """Resolve a template's class reference (a name or a 0-based index) to a palette entry.

    Raises UnknownClassError with the candidates when the name is unknown or ambiguous.
    """
    entries = palette()
    if isinstance(value, bool):
        raise UnknownClassError(f"expected a class name or palette index, got {value!r}")
    if isinstance(value, int):
        if 0 <= value < len(entries):
            return entries[value]
        raise UnknownClassError(f"palette index {value} is out of range (0..{len(entries) - 1})")
    key = value.strip().lower()
    indices = _names_to_indices().get(key)
    if not indices:
        close = sorted(n for n in _names_to_indices() if key and (key in n or n in key))[:6]
        hint = f"; did you mean one of: {', '.join(close)}" if close else ""
        raise UnknownClassError(f"unknown semantic class {value!r}{hint} (names from ADE20K's 150 classes, or a palette index)")
    if len(indices) > 1:
        candidates = "; ".join(
            f"{i} ({', '.join(entries[i].names)})" for i in indices
        )
        raise UnknownClassError(
            f"semantic class {value!r} is ambiguous: it names palette entries {candidates}; "
            "use another of the entry's names or its index"
        )
    return entries[indices[0]]


@lru_cache(maxsize=1)
def class_id_colours() -> np.ndarray:
    """(151, 3) uint8: row ``class_id`` is that class's colour; row 0 (background) is filled by the caller's choice."""
    table = np.zeros((len(palette()) + 1, 3), dtype=np.uint8)
    for entry in palette():
        table[entry.class_id] = entry.rgb
    return table
