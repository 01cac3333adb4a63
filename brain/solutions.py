"""The catalogue of problems and fixes, loaded from data (brain/data/solutions.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from brain.nlu.normalize import fold

DEFAULT_PATH = Path(__file__).parent / "data" / "solutions.toml"


class CatalogError(ValueError):
    pass


@dataclass(frozen=True)
class Problem:
    category: str
    key: str
    label: str
    keywords: tuple[str, ...]
    steps: tuple[str, ...]


class Catalog:
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self._by_key = {p.key: p for p in problems}

    @classmethod
    def load(cls, path: Path = DEFAULT_PATH) -> Catalog:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            problems = [
                Problem(
                    category=p["category"],
                    key=p["key"],
                    label=p["label"],
                    keywords=tuple(fold(k) for k in p.get("keywords", ())),
                    steps=tuple(p["steps"]),
                )
                for p in data["problem"]
            ]
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as e:
            raise CatalogError(f"{path}: {e}") from e
        for p in problems:
            if p.category not in ("internet", "mobile") or not p.steps:
                raise CatalogError(f"{path}: problem {p.key!r} needs a category and steps")
        return cls(problems)

    def get(self, key: str) -> Problem | None:
        return self._by_key.get(key)

    def default(self, category: str) -> Problem | None:
        return next((p for p in self.problems if p.category == category), None)

    def match(self, category: str | None, text: str) -> Problem | None:
        """The problem of `category` whose keywords best match `text`, or None."""
        folded = f" {fold(text)} "
        best, score = None, 0
        for p in self.problems:
            if category is not None and p.category != category:
                continue
            hits = sum(
                len(k) for k in p.keywords if f" {k} " in folded or (" " in k and k in folded)
            )
            if hits > score:
                best, score = p, hits
        return best
