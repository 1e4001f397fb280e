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
