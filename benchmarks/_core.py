"""The harness's shared parts: sizes per profile, result rows, medians, the table."""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["PROFILES", "Profile", "Row", "format_table", "list_schedule", "verdict"]


@dataclass(frozen=True, slots=True)
class Profile:
    """How big each scenario is. ``full`` is the documented run; ``quick`` a few minutes;
    ``smoke`` only proves the harness works (the test suite runs it)."""

    name: str
    repeats: int
    # 1. throughput: prompts x 3 tiers x 3 sizes tasks, this many slots, this ideal makespan.
    sweep_prompts: int
    sweep_concurrency: int
    sweep_ideal_s: float
    sequential_sample: int
    docs_poll_s: float  # the docs' loop sleeps 3 s; the smoke profile shrinks it to stay fast
    gather_poll_s: float
    # 2. polling: tasks of each duration (wall seconds), all in flight at once.
    poll_durations: tuple[float, ...]
    poll_tasks_each: int
    # 3. client overhead: generations through the OpenAI endpoint.
    openai_generations: int
    # 4. ledger at scale.
    ledger_rows: int
    ledger_batch: int
    # 5. import time: interpreter pairs.
    import_pairs: int
    # 6. notebook weight: tiers x sizes shown; memory: images in the small and large sweeps.
    weight_tiers: tuple[str, ...]
    memory_images: tuple[int, int]


PROFILES: dict[str, Profile] = {
    "full": Profile(
        name="full",
        repeats=3,
        sweep_prompts=22,  # 22 x 3 x 3 = 198 tasks: a sweep is a cross product; 200 is not a multiple of 9
        sweep_concurrency=32,
        sweep_ideal_s=60.0,
        sequential_sample=6,
        docs_poll_s=3.0,
        gather_poll_s=1.0,
        poll_durations=(1.0, 2.0, 10.0, 60.0),
        poll_tasks_each=8,
        openai_generations=300,
        ledger_rows=100_000,
        ledger_batch=1_000,
        import_pairs=9,
        weight_tiers=("low", "medium", "high"),
        memory_images=(200, 1000),
    ),
    "quick": Profile(
        name="quick",
        repeats=3,
        sweep_prompts=3,
        sweep_concurrency=8,
        sweep_ideal_s=5.0,
        sequential_sample=3,
        docs_poll_s=3.0,
        gather_poll_s=1.0,
        poll_durations=(1.0, 2.0, 5.0),
        poll_tasks_each=4,
        openai_generations=60,
        ledger_rows=20_000,
        ledger_batch=1_000,
        import_pairs=5,
        weight_tiers=("low", "medium", "high"),
        memory_images=(40, 200),
    ),
    "smoke": Profile(
        name="smoke",
        repeats=1,
        sweep_prompts=1,
        sweep_concurrency=9,
        sweep_ideal_s=0.5,
        sequential_sample=1,
        docs_poll_s=0.1,
        gather_poll_s=0.05,
        poll_durations=(0.5, 1.0),
        poll_tasks_each=2,
        openai_generations=6,
        ledger_rows=2_000,
        ledger_batch=500,
        import_pairs=1,
        weight_tiers=("low",),
        memory_images=(2, 4),
    ),
}

Op = Literal["<=", ">="]


@dataclass(slots=True)
class Row:
    """One line of the table: a measure over repeats, with its target if it has one.

    Attributes:
        scenario: the scenario's number and name, e.g. ``"1 throughput"``.
        measure: what was measured, in words.
        values: one value per repeat.
        unit: printed after the numbers (``"x"``, ``"s"``, ``"KB"``...).
        target: ``("<=", 1.10)`` or ``(">=", 0.8)``; None for baselines and context.
        note: a short remark (how a baseline was extrapolated, why a row is missing...).
    """

    scenario: str
    measure: str
    values: list[float] = field(default_factory=list)
    unit: str = ""
    target: tuple[Op, float] | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    @property
    def low(self) -> float:
        return min(self.values) if self.values else math.nan

    @property
    def high(self) -> float:
        return max(self.values) if self.values else math.nan

    def as_dict(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "measure": self.measure,
            "values": self.values,
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "unit": self.unit,
            "target": list(self.target) if self.target else None,
            "verdict": verdict(self),
            "note": self.note,
        }


def verdict(row: Row) -> str:
    """``met (27 % margin)``, ``MISSED (by 8 %)``, or empty for rows without a target."""
    if row.target is None:
        return ""
    if not row.values:
        return "not measured"
    op, bound = row.target
    value = row.median
    ok = value <= bound if op == "<=" else value >= bound
    if bound == 0:
        return "met" if ok else "MISSED"
    margin = (bound - value) / abs(bound) if op == "<=" else (value - bound) / abs(bound)
    return f"met ({margin:.0%} margin)" if ok else f"MISSED (by {-margin:.0%})"


def _num(value: float) -> str:
    if math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (readable as plain text too)."""
    head = ["scenario", "measure", "median", "min–max", "target", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    last = None
    for row in rows:
        unit = f" {row.unit}" if row.unit and row.unit not in ("x", "%") else row.unit
        spread = f"{_num(row.low)}–{_num(row.high)}" if len(row.values) > 1 else ""
        target = f"{row.target[0]} {_num(row.target[1])}{unit}" if row.target else ""
        measure = row.measure + (f" ({row.note})" if row.note else "")
        scenario = row.scenario if row.scenario != last else ""
        last = row.scenario
        median = f"{_num(row.median)}{unit}" if row.values else "-"
        lines.append(
            "| " + " | ".join([scenario, measure, median, spread, target, verdict(row)]) + " |"
        )
    return "\n".join(lines)


def list_schedule(durations: Iterable[float], slots: int) -> float:
    """Makespan of ``durations`` started in order, each on the first slot to come free
    (list scheduling, no overhead): what a perfect client with ``slots`` tasks in flight
    would take, given the service's generation times."""
    free = [0.0] * slots
    heapq.heapify(free)
    end = 0.0
    for duration in durations:
        start = heapq.heappop(free)
        finish = start + duration
        end = max(end, finish)
        heapq.heappush(free, finish)
    return end
