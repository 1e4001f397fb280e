"""A report over the ledger (sums grouped in SQL) equals the same report over the runs
DataFrame (sums in pandas): totals, every grouped table, price sheets, notes and period, with
each filter; and it reads the runs only when asked for them. On both ledger backends (a SQLite
file, a PostgreSQL database)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

import imgkit
from imgkit.reports import GROUP_BY, report

from .committer import committing
from .pg import Backend
from .test_plots import sample_runs


def _seed(home: Path, backend: Backend) -> pd.DataFrame:
    extra = [
        sample_runs()[0].replace(run_id="u0", status="unknown", task_id=None, credits_reserved=None),
        sample_runs()[2].replace(run_id="u1", status="unknown", task_id="task-u1", credits_charged=2.5),
        sample_runs()[1].replace(run_id="p0", status="pending", task_id="task-p0", credits_reserved=None,
                                 price_sheet=None),
        sample_runs()[4].replace(run_id="x0", task_id="task-x0", price_sheet="my-old-contract", credits_charged=1.0,
                                 tags=("z",)),
    ]
    ledger = backend.open()
    try:
        ledger.save_many([*sample_runs(), *extra])
        return ledger.to_dataframe(data_dir=home)
    finally:
        ledger.close()


FILTERS = [
    {},
    {"since": "2026-11-02", "until": "2026-11-04"},
    {"until": "2026-11-03T08:00:00"},
    {"tags": ["alpha", "gamma"]},
    {"quality": ["medium", "high"]},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "all")
@pytest.mark.parametrize("currency", ["USD", "credits"])
def test_ledger_report_equals_frame_report(
    data_dir: Path, backend: Backend, filters: dict[str, object], currency: str
) -> None:
    df = _seed(data_dir, backend)
    by_frame = report(df, group_by=GROUP_BY, currency=currency, **filters)  # type: ignore[arg-type]
    by_sql = report(group_by=GROUP_BY, currency=currency, **filters)  # type: ignore[arg-type]
    assert by_sql._runs is not by_frame._runs and callable(by_sql._runs)  # nothing loaded yet

    for field in dataclasses.fields(by_frame.totals):
        assert getattr(by_sql.totals, field.name) == pytest.approx(getattr(by_frame.totals, field.name)), field.name
    assert by_sql.totals.runs > 0
    for name in GROUP_BY:
        pd.testing.assert_frame_equal(by_sql.groups[name], by_frame.groups[name], check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(by_sql.line_items, by_frame.line_items, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(by_sql.sheets, by_frame.sheets)
    assert by_sql.notes == by_frame.notes
    assert by_sql.period == by_frame.period
    assert by_sql._repr_html_() == by_frame._repr_html_().replace(
        str(by_frame.generated_at), str(by_sql.generated_at)
    )
    assert callable(by_sql._runs)  # the notebook view needed no row

    # Exports of every row read the runs then, the same runs.
    pd.testing.assert_frame_equal(by_sql.runs, by_frame.runs)
    pd.testing.assert_frame_equal(by_sql.failed, by_frame.failed)


@pytest.mark.usefixtures("data_dir", "backend")
def test_an_empty_ledger_report() -> None:
    rep = imgkit.report(group_by=GROUP_BY)
    assert rep.totals.runs == 0 and rep.period == (None, None)
    assert all(len(table) == 0 for table in rep.groups.values())
    assert "0 runs" in rep.to_markdown() or "no runs" in rep.to_markdown()


def test_the_report_index_holds_what_the_cost_rules_test() -> None:
    """The v6 index keys on the rules' tests as they are now: rules that test something else
    need a migration that rebuilds the index (else reports sort, still right but slower)."""
    from imgkit.costs import RULE_TESTS
    from imgkit.ledger import REPORT_RULE_TESTS

    assert REPORT_RULE_TESTS == RULE_TESTS


def test_a_ledger_report_is_one_pass_over_the_report_index(tmp_path: Path) -> None:
    """No cost rule per run and no sort: SQLite reads the covering index in its order."""
    import sqlite3

    from imgkit.ledger import SQLITE_COSTS, Ledger, cost_sums_query

    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.save_many(sample_runs())
    ledger.close()
    query = cost_sums_query(SQLITE_COSTS, by_tag=False, since=1.7e9, until=None, until_inclusive=True, tags=(),
                            qualities=(), extra_keys=(), models=(), users=(), projects=())
    assert "CASE WHEN status" not in query.sql and "CASE WHEN credits" not in query.sql
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    try:
        plan = " | ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {query.sql}", query.params))
    finally:
        conn.close()
    assert "COVERING INDEX runs_report" in plan and "TEMP B-TREE" not in plan, plan


def _spread_runs(count: int, days: int) -> list[object]:
    """``count`` completed runs over ``days`` days, each charged 1 credit; run ``first`` on
    the first day and ``last`` on the last."""
    base = sample_runs()[0].replace(status="completed", task_id="task-0", credits_charged=1.0, error_code=None)
    start = 1_790_000_000.0
    runs = [base.replace(run_id=f"r{i:06d}", task_id=f"task-{i}", created_at=start + 86400 * days * i / count,
                         quality=("low", "medium", "high")[i % 3]) for i in range(count)]
    runs[0] = runs[0].replace(run_id="first")
    runs[-1] = runs[-1].replace(run_id="last")
    return runs


@pytest.mark.parametrize(
    "options",
    [{}, {"since": 1_790_000_000.0 + 86400 * 3.5}, {"until": 1_790_000_000.0 + 86400 * 6}, {"qualities": ("low",)},
     {"extra_keys": ("project",)}, {"by_tag": True}],
    ids=["all", "since", "until", "quality", "extra-key", "by-tag"],
)
def test_the_days_summed_in_two_halves_at_once_equal_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, object]
) -> None:
    from imgkit import ledger as ledger_module
    from imgkit.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many(_spread_runs(400, 10))  # type: ignore[arg-type]
        monkeypatch.setattr(ledger_module, "_free_cpus", lambda: 2)
        halves = ledger.cost_sums(**options)  # type: ignore[arg-type]
        assert options.get("by_tag") or ledger._middle_day(options.get("since"), options.get("until")) is not None
        monkeypatch.setattr(ledger_module, "_free_cpus", lambda: 1)
        one = ledger.cost_sums(**options)  # type: ignore[arg-type]
    finally:
        ledger.close()
    assert halves == one and one


def test_a_commit_between_the_halves_is_never_half_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each half is read in its own transaction; while another connection keeps moving
    credits between the first day's run and the last day's in one transaction, every sum
    over the ledger stays the same."""
    from imgkit import ledger as ledger_module
    from imgkit.ledger import Ledger

    monkeypatch.setattr(ledger_module, "_free_cpus", lambda: 2)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many(_spread_runs(20_000, 60))  # type: ignore[arg-type]
        charged = Ledger.COST_SUMS.index("charged_credits") + len(Ledger.COST_KEYS)
        expected = sum(row[charged] for row in ledger.cost_sums()) - 2.0 + 100.0
        move = ("UPDATE runs SET credits_charged = CASE run_id WHEN 'first' THEN ? ELSE ? END "
                "WHERE run_id IN ('first', 'last')")
        with committing(ledger.path, move, lambda k: (float(k % 100), float(100 - k % 100))) as commits:
            totals = [sum(row[charged] for row in ledger.cost_sums()) for _ in range(12)]
    finally:
        ledger.close()
    assert commits[0] > 12
    assert totals == [pytest.approx(expected)] * len(totals)


def test_each_half_is_a_range_of_the_report_index(tmp_path: Path) -> None:
    import sqlite3

    from imgkit.ledger import SQLITE_COSTS, Ledger, cost_sums_query

    Ledger(tmp_path / "ledger.sqlite3").close()
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    try:
        for days in ((None, 20_600), (20_600, None)):
            query = cost_sums_query(SQLITE_COSTS, by_tag=False, since=None, until=None, until_inclusive=True,
                                    tags=(), qualities=(), extra_keys=(), models=(), users=(), projects=(), days=days)
            plan = " | ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {query.sql}", query.params))
            assert "SEARCH runs USING COVERING INDEX runs_report" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        conn.close()
