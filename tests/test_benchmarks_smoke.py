"""The benchmark harness runs end to end at tiny sizes and prints every scenario.

Only the harness is checked here, never a timing or a target: those are measured by
``python -m benchmarks`` (``make bench``), as medians over repeats against baselines from the
same run, and would be noise in a test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import _cli
from benchmarks._core import Row, format_table, list_schedule, verdict

SCENARIO_NUMBERS = {"1", "2", "3", "4", "5", "6", "7"}
# Rows whose values must be strictly positive (times, rates, sizes, ratios of them).
POSITIVE_UNITS = {"x", "s", "ms", "KB", "gen/s", "runs/s"}


def test_list_schedule_is_the_makespan_of_a_perfect_scheduler() -> None:
    assert list_schedule([3, 1, 1, 1], 2) == 3
    assert list_schedule([1, 1, 1, 1], 2) == 2
    assert list_schedule([5], 32) == 5
    assert list_schedule([], 4) == 0


@pytest.mark.parametrize(
    ("values", "target", "expected"),
    [
        ([1.0, 1.05, 1.2], ("<=", 1.10), "met (5% margin)"),
        ([1.2], ("<=", 1.10), "MISSED (by 9%)"),
        ([0.9], (">=", 0.8), "met (12% margin)"),
        ([], ("<=", 1.0), "not measured"),
        ([3.0], None, ""),
    ],
)
def test_verdict_uses_the_median(values: list[float], target: tuple[str, float] | None, expected: str) -> None:
    row = Row("1 x", "m", values, target=target)  # type: ignore[arg-type]
    assert verdict(row) == expected


def test_harness_runs_every_scenario_at_smoke_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rows.json"
    code = _cli.main(["--smoke", "--json", str(out), "--no-write-readme"])
    result = json.loads(out.read_text())
    assert code == 0, result["errors"]
    rows = result["rows"]
    assert {row["scenario"].split(" ", 1)[0] for row in rows} == SCENARIO_NUMBERS
    for row in rows:
        assert row["measure"] != "not measured", row
        assert len(row["values"]) == 1, row  # one repeat at smoke size
        assert all(math.isfinite(v) for v in row["values"]), row
        if row["unit"] in POSITIVE_UNITS:
            assert row["median"] > 0, row
        if row["unit"] == "%":
            assert row["median"] > -1, row  # a lag cannot precede completion (clock granularity aside)
    printed = capsys.readouterr().out
    table = format_table([Row(r["scenario"], r["measure"], r["values"], r["unit"]) for r in rows])
    assert table.splitlines()[0] in printed
    for number in SCENARIO_NUMBERS:
        assert f"| {number} " in printed
    assert "nproc" in printed


def test_readme_block_is_replaced_in_place(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nintro\n")
    _cli.write_readme("| a |\n|---|\n| 1 |", "today; `nproc` 2", readme)
    _cli.write_readme("| b |\n|---|\n| 2 |", "tomorrow; `nproc` 2", readme)
    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n")
    assert text.count("results:start") == 1 and "| 2 |" in text and "| 1 |" not in text
    assert "tomorrow" in text
