"""Write a benchmark's rows as `docs/benchmarks/<name>.csv` and a markdown page `<name>.md`."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


@dataclass(frozen=True)
class Pages:
    """Where a report writes: its pages and CSVs (`docs`) and its figures (`img`); the docs site's by default."""

    docs: Path = field(default_factory=lambda: DOCS)
    img: Path = field(default_factory=lambda: IMG)


def _cell(value: object, digits: int) -> str:
    """A table cell: floats to `digits` places, a missing value (NaN, e.g. an interval of one run) as "–"."""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def present_mean(values: list[float | None]) -> float:
    """Mean of the values that are present (`None` skipped); NaN when none are, so a table shows "–"."""
    present = [float(v) for v in values if v is not None]
    return math.fsum(present) / len(present) if present else float("nan")


def runs_finished(done: int, total: int) -> str:
    """A page's word on its run set: "all 12 runs finished" or "7 of 12 runs finished"."""
    return f"all {total} runs finished" if done == total else f"{done} of {total} runs finished"


def verdict(ratio: float, best: float, target: float | None) -> str:
    """A ratio against its target: "met" (median ≤ target), "within noise" (only the best round or the low end
    of the spread, `best`, meets it) or "missed"; "" without a target."""
    if target is None:
        return ""
    return "met" if ratio <= target else "within noise" if best <= target else "missed"


def write_report(name: str, title: str, description: str, rows: list[dict], headers: dict[str, str],
                 *, digits: int = 3, footer: str = "", docs: Path | None = None) -> Path:  # fmt: skip
    """CSV of `rows` (all keys) and a markdown page: title, description, a table of `headers`' columns.

    `headers` maps row keys to column titles, in table order; `docs` is the folder (default `DOCS`).
    Returns the markdown path.
    """
    docs = DOCS if docs is None else docs
    docs.mkdir(parents=True, exist_ok=True)
    with open(docs / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    lines = [f"# {title}", "", description, "", "| " + " | ".join(headers.values()) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
    lines += ["| " + " | ".join(_cell(row[key], digits) for key in headers) + " |" for row in rows]
    lines += ["", footer] if footer else []
    page = docs / f"{name}.md"
    page.write_text("\n".join(lines) + "\n")
    print(page.read_text())
    return page
