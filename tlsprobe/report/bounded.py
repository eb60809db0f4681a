"""Bounded accumulators: counters, samples and a time histogram whose memory has a cap.

The report aggregates any number of records; these hold what it keeps of them.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(slots=True)
class Budget:
    """Keys that many counters together may still remember (shared, so that many small
    counters cannot add up to a large table)."""

    left: int


@dataclass(slots=True)
class TopCounter(Generic[K]):
    """A counter of at most ``cap`` distinct keys (and, with a ``budget``, no more than the
    shared budget allows); counts of further keys go to ``other``."""

    cap: int
    budget: Budget | None = None
    counts: Counter[K] = field(default_factory=Counter)
    other: int = 0  # occurrences of keys beyond the cap
    overflowed: bool = False  # some distinct key was not kept

    def add(self, key: K, n: int = 1) -> None:
        if key in self.counts:
            self.counts[key] += n
        elif len(self.counts) < self.cap and (self.budget is None or self.budget.left > 0):
            self.counts[key] = n
            if self.budget is not None:
                self.budget.left -= 1
        else:
            self.other += n
            self.overflowed = True

    def update(self, other: TopCounter[K]) -> None:
        for key, n in other.counts.items():
            self.add(key, n)
        self.other += other.other
        self.overflowed = self.overflowed or other.overflowed

    def distinct(self) -> tuple[int, bool]:
        """Distinct keys seen, and whether that is a lower bound."""
        return len(self.counts), self.overflowed

    def top(self, n: int) -> list[tuple[K, int]]:
        """The ``n`` commonest keys, ties by key text (deterministic)."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:n]

    def __len__(self) -> int:
        return len(self.counts)

    def total(self) -> int:
        return sum(self.counts.values()) + self.other


@dataclass(slots=True)
class Reservoir(Generic[T]):
    """A uniform sample of at most ``cap`` items (algorithm R, fixed seed: reproducible)."""

    cap: int
    items: list[T] = field(default_factory=list)
    seen: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(6))

    def add(self, item: T) -> None:
        self.seen += 1
        if len(self.items) < self.cap:
            self.items.append(item)
            return
        j = self.rng.randrange(self.seen)
        if j < self.cap:
            self.items[j] = item

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(slots=True)
class TimeHistogram:
    """Counts per time bucket for a few series; the bucket width doubles (from one
    second) whenever more than ``max_buckets`` would be needed, so any time span fits."""

    series: tuple[str, ...]
    max_buckets: int = 120
    width: float = 1.0
    buckets: dict[int, list[int]] = field(default_factory=dict)  # floor(ts / width) -> counts

    def add(self, ts: float, name: str) -> None:
        i = self.series.index(name)
        key = int(ts // self.width)
        row = self.buckets.get(key)
        if row is None:
            row = self.buckets[key] = [0] * len(self.series)
        row[i] += 1
        while len(self.buckets) > 1 and (max(self.buckets) - min(self.buckets)) >= self.max_buckets:
            self._coarsen()

    def _coarsen(self) -> None:
        self.width *= 2
        merged: dict[int, list[int]] = {}
        for key, row in self.buckets.items():
            into = merged.setdefault(key // 2, [0] * len(self.series))
            for i, n in enumerate(row):
                into[i] += n
        self.buckets = merged

    def rows(self) -> list[tuple[float, list[int]]]:
        """(bucket start as epoch seconds, counts per series), every bucket in the span."""
        if not self.buckets:
            return []
        lo, hi = min(self.buckets), max(self.buckets)
        empty = [0] * len(self.series)
        return [(k * self.width, self.buckets.get(k, empty)) for k in range(lo, hi + 1)]
