"""How reports write numbers and tables: one format for a value, an interval or a range, a p-value, a table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rlaux.compare import significance


def image(path: Path, out_dir: Path, alt: str) -> str:
    """A Markdown image of ``path``, relative to the report's folder ``out_dir``."""
    return f"![{alt}]({path.relative_to(out_dir).as_posix()})"


def fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def interval(point: float, low: float, high: float, digits: int = 3, ranged: bool = False) -> str:
    if ranged:
        return f"{fmt(point, digits)} (range {fmt(low, digits)} to {fmt(high, digits)})"
    return f"{fmt(point, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def spread(point: float, low: float, high: float, lowest: float, highest: float, runs: int) -> str:
    """``point [low, high]`` (a 95% CI) from enough runs, else ``point (range lowest to highest)``."""
    if significance.enough_runs(runs):
        return interval(point, low, high)
    return f"{fmt(point)} (range {fmt(lowest)} to {fmt(highest)})"


def p_value(p: float, exact: bool) -> str:
    text = f"{p:.3g}" if p >= 0.001 else f"{p:.1e}"
    return text if exact else f"{text} (Monte Carlo)"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)



__all__ = ["image", "fmt", "interval", "p_value", "spread", "table"]
