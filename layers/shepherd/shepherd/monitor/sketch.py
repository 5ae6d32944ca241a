"""KLL sketches in statistics.json's layout: ``sketch.data[h]`` holds the items of level h, each weighing 2**h.

Profiles are sketched with Apache DataSketches' KLL (doubles: float32 would round large integers and ids), whose
retained items carry exactly those weights; the level layout is read back from them. Merging two documents' sketches
is done here on that layout (union per level, then KLL compaction) since DataSketches cannot load it back.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch

# Model Monitor's engine (Deequ) sketches with k = 2048; up to k values a sketch is exact.
K = 2048
# DataSketches' KLL shrinks level capacity by 2/3 per level (fixed in the library).
C = 2.0 / 3.0
_MIN_LEVEL_WIDTH = 8


@dataclass(frozen=True)
class Sketch:
    """A KLL sketch as statistics.json stores it: level h's items each stand for 2**h values."""

    levels: tuple[tuple[float, ...], ...]
    k: int = K
    c: float = C

    @classmethod
    def of(cls, values: np.ndarray, *, k: int = K) -> Sketch:
        """The DataSketches KLL sketch of values, in level layout."""
        sketch = kll_doubles_sketch(k)
        sketch.update(np.ascontiguousarray(values, dtype=np.float64))
        by_level: dict[int, list[float]] = {}
        for item, weight in sketch:
            by_level.setdefault(int(weight).bit_length() - 1, []).append(float(item))
        height = max(by_level, default=-1) + 1
        return cls(tuple(tuple(sorted(by_level.get(h, []))) for h in range(height)), k=k)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Sketch:
        """The sketch of a statistics.json ``kll.sketch`` object."""
        parameters = document.get("parameters") or {}
        levels = tuple(tuple(float(item) for item in level) for level in document.get("data") or [])
        return cls(levels, k=int(parameters.get("k", K)), c=float(parameters.get("c", C)))

    def document(self) -> dict[str, Any]:
        """The ``kll.sketch`` object of statistics.json."""
        return {"parameters": {"c": self.c, "k": self.k}, "data": [list(level) for level in self.levels]}

    @property
    def count(self) -> int:
        """How many values the sketch stands for."""
        return sum(len(level) << h for h, level in enumerate(self.levels))

    def weighted(self) -> tuple[np.ndarray, np.ndarray]:
        """The retained items, sorted, and the weight of each."""
        items = np.array([item for level in self.levels for item in level], dtype=float)
        weights = np.array([1 << h for h, level in enumerate(self.levels) for _ in level], dtype=float)
        order = np.argsort(items, kind="stable")
        return items[order], weights[order]

    def rank(self, points: Sequence[float] | np.ndarray) -> np.ndarray:
        """How many of the sketched values are ≤ each point (estimated from the retained items)."""
        items, weights = self.weighted()
        cumulative = np.concatenate([[0.0], np.cumsum(weights)])
        return cumulative[np.searchsorted(items, np.asarray(points, dtype=float), side="right")]

    def buckets(self, low: float, high: float, count: int = 10) -> list[dict[str, float]]:
        """``count`` equal-width buckets over [low, high] with their estimated counts (the last includes high)."""
        edges = np.linspace(low, high, count + 1)
        items, weights = self.weighted()
        index = np.clip(np.searchsorted(edges, items, side="right") - 1, 0, count - 1) if high > low else None
        counts = np.bincount(index, weights=weights, minlength=count) if index is not None else None
        result = []
        for i in range(count):
            estimated = float(counts[i]) if counts is not None else (float(weights.sum()) if i == 0 else 0.0)
            result.append({"lower_bound": float(edges[i]), "upper_bound": float(edges[i + 1]), "count": estimated})
        return result

    def merge(self, other: Sketch) -> Sketch:
        """The sketch of both sketches' values: levels joined, then compacted to this sketch's capacity."""
        height = max(len(self.levels), len(other.levels))
        levels = [sorted([*_level(self.levels, h), *_level(other.levels, h)]) for h in range(height)]
        # Seeded by the data, so a merge is reproducible; KLL needs only that offsets be unbiased.
        rng = random.Random(self.count * 1_000_003 + other.count)  # noqa: S311 - compaction offsets, not security
        while True:
            over = [h for h, level in enumerate(levels) if len(level) > _capacity(self.k, self.c, len(levels), h)]
            if not over:
                return Sketch(tuple(tuple(level) for level in levels), k=self.k, c=self.c)
            h = over[0]
            level = levels[h]
            kept = [level[0]] if len(level) % 2 else []
            pairs = level[len(kept) :]
            promoted = pairs[rng.randrange(2) :: 2]
            if h + 1 == len(levels):
                levels.append([])
            levels[h] = kept
            levels[h + 1] = sorted([*levels[h + 1], *promoted])


def _level(levels: tuple[tuple[float, ...], ...], h: int) -> tuple[float, ...]:
    return levels[h] if h < len(levels) else ()


def _capacity(k: int, c: float, height: int, h: int) -> int:
    """KLL's capacity of level h in a sketch of ``height`` levels: k·c^depth, at least 8."""
    return max(_MIN_LEVEL_WIDTH, math.ceil(k * c ** (height - 1 - h)))
