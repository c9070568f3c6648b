"""A figure (one entry of results.json), simple statistics, a stopwatch, and the printed table."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: float | None  # None: information, with no target (results.json says null)
    better: Literal["lower", "higher"]
    note: str = ""  # for the printed table and summary only, not results.json

    @property
    def met(self) -> bool:
        if self.target is None:
            return True
        return self.value <= self.target if self.better == "lower" else self.value >= self.target

    def entry(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "better": self.better,
        }

    def miss(self) -> str:
        """How far from the target, in words, when missed."""
        if self.met or self.target is None:
            return ""
        if self.target:
            side = "over" if self.better == "lower" else "under"
            return f"{abs(self.value / self.target - 1) * 100:.0f}% {side}"
        return f"{self.value:g} {self.unit} instead of {self.target:g}"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def repeat(fn: Callable[[], object], times: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    return [timed(fn) for _ in range(times)]


def table(figures: Sequence[Figure]) -> str:
    rows = [("name", "value", "unit", "target", "better", "met", "note")]
    for f in figures:
        met = "info" if f.target is None else "yes" if f.met else f"NO ({f.miss()})"
        target = "-" if f.target is None else f"{f.target:g}"
        rows.append((f.name, f"{f.value:g}", f.unit, target, f.better, met, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return "\n".join(lines)


def write_results(path: Path, figures: Sequence[Figure]) -> None:
    path.write_text(json.dumps({"benchmarks": [f.entry() for f in figures]}, indent=2) + "\n")
