"""The cost rules in their three forms (a record, a DataFrame, the ledger's SQL) agree run by
run, and the budget, the plots and the report count the same credits on a ledger with unknown
runs."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from imgkit import costs, plots
from imgkit.ledger import Ledger
from imgkit.reports import report
from imgkit.request import RunRecord, RunStatus

from .test_plots import sample_runs


def _variants() -> list[RunRecord]:
    """Every status with and without a task id, a reservation, a charge and an estimate."""
    records = []
    flags = itertools.product((True, False), repeat=4)
    for status, (task, reserved, charged, estimated) in itertools.product(RunStatus, list(flags)):
        run_id = f"{status.value}-{'t' if task else '_'}{'r' if reserved else '_'}{'c' if charged else '_'}" \
                 f"{'e' if estimated else '_'}"
        records.append(
            RunRecord(
                run_id=run_id, provider="sandbox", model="gpt-image-1", prompt=run_id, size="1024x1024",
                quality="low", n=1, status=status, task_id=f"task-{run_id}" if task else None,
                credits_reserved=1.5 if reserved else None, credits_charged=2.25 if charged else None,
                est_credits=0.625 if estimated else None, est_usd=0.625 / 72 if estimated else None,
                est_cny=0.625 / 72 * 7.1 if estimated else None, price_sheet="evolink-table-2026-11",
                created_at=1_790_000_000.0 + len(records),
            )
        )
    return records


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[RunRecord], Path]:
    path = tmp_path_factory.mktemp("costs") / "ledger.sqlite3"
    records = _variants()
    ledger = Ledger(path)
    ledger.save_many(records)
    ledger.close()
    return records, path


@pytest.mark.parametrize("status", list(RunStatus))
def test_record_frame_and_sql_agree_for_each_status(
    variants: tuple[list[RunRecord], Path], status: RunStatus
) -> None:
    records, path = variants
    mine = {r.run_id: r for r in records if r.status == status}
    by_record = {rid: costs.cost_of(r) for rid, r in mine.items()}

    ledger = Ledger(path)
    try:
        df = ledger.to_dataframe()
    finally:
        ledger.close()
    df = df[df["status"] == status.value].set_index("run_id")
    by_frame = costs.cost_frame(df)

    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            f"SELECT run_id, {costs.sql_basis()}, {costs.sql_spent()}, {costs.sql_may_have_cost()}, "
            f"{costs.sql_budget()} FROM runs WHERE status = ?",
            (status.value,),
        ).fetchall()
    finally:
        conn.close()
    by_sql = {rid: (basis, spent, maybe, budget) for rid, basis, spent, maybe, budget in rows}

    assert set(by_sql) == set(by_record) == set(by_frame.index) and len(by_record) == 16
    for rid, cost in by_record.items():
        assert by_sql[rid] == pytest.approx((cost.basis, cost.spent, cost.may_have_cost, cost.budget)), rid
        frame_row = by_frame.loc[rid]
        assert (frame_row["cost_basis"], frame_row["spent_credits"], frame_row["may_have_cost_credits"]) == (
            pytest.approx((cost.basis, cost.spent, cost.may_have_cost))
        ), rid


@pytest.mark.parametrize(
    ("status", "task", "reserved", "charged", "estimated", "basis", "spent", "maybe"),
    [
        ("completed", True, True, True, True, "charged", 2.25, 0.0),
        ("completed", True, True, False, True, "reserved", 1.5, 0.0),
        ("completed", True, False, False, True, "estimate", 0.625, 0.0),
        ("pending", True, False, False, True, "estimate", 0.625, 0.0),
        ("created", False, False, False, True, "estimate", 0.625, 0.0),  # admitted, not sent yet
        ("failed", False, False, False, True, "no task", 0.0, 0.0),
        ("failed", True, True, False, True, "failed", 0.0, 0.0),
        ("failed", True, True, True, True, "charged", 2.25, 0.0),
        ("unknown", False, False, False, True, "may have cost", 0.0, 0.625),
        ("unknown", True, True, False, True, "may have cost", 0.0, 0.625),
        ("unknown", True, True, False, False, "may have cost", 0.0, 1.5),  # no price: what was reserved
        ("unknown", True, True, True, True, "charged", 2.25, 0.0),
    ],
)
def test_the_rules_of_the_table(
    variants: tuple[list[RunRecord], Path], status: str, task: bool, reserved: bool, charged: bool,
    estimated: bool, basis: str, spent: float, maybe: float,
) -> None:
    run_id = f"{status}-{'t' if task else '_'}{'r' if reserved else '_'}{'c' if charged else '_'}" \
             f"{'e' if estimated else '_'}"
    record = next(r for r in variants[0] if r.run_id == run_id)
    cost = costs.cost_of(record)
    assert (cost.basis, cost.spent, cost.may_have_cost, cost.budget) == (basis, spent, maybe, spent + maybe)


def test_every_rule_is_stated_in_reports(tmp_path: Path) -> None:
    assert len(costs.RULES_TEXT) == len(costs.RULES) + 1
    assert costs.BASES == plots.COST_BASES
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        notes = report(ledger.to_dataframe()).notes
    finally:
        ledger.close()
    for sentence in costs.RULES_TEXT:
        assert sentence in notes


def _unknown_ledger(path: Path) -> pd.DataFrame:
    """The plots' sample runs plus unknown runs: one with only an estimate, one with a
    reservation, one the service charged after all."""
    extra = [
        r.replace(run_id=f"u{i}", status="unknown", task_id=task, credits_reserved=reserved, credits_charged=charged)
        for i, (r, task, reserved, charged) in enumerate(
            [
                (sample_runs()[0], None, None, None),
                (sample_runs()[2], "task-u1", 9.0, None),
                (sample_runs()[1], "task-u2", 3.0, 2.75),
            ]
        )
    ]
    ledger = Ledger(path)
    try:
        ledger.save_many([*sample_runs(), *extra])
        return ledger.to_dataframe()
    finally:
        ledger.close()


def test_budget_plots_and_report_agree_on_unknown_runs(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    df = _unknown_ledger(path)
    ledger = Ledger(path)
    try:
        budget = ledger.spent_credits()
        records = ledger.records()
    finally:
        ledger.close()

    by_records = sum(costs.cost_of(r).budget for r in records)
    with_costs = plots.with_costs(df)
    by_plots = float(with_costs["spent_credits"].sum() + with_costs["may_have_cost_credits"].sum())
    rep = report(df, group_by=("day", "status"))
    t = rep.totals
    by_report = t.charged_credits + t.may_have_cost_credits
    assert budget == pytest.approx(by_records) == pytest.approx(by_plots) == pytest.approx(by_report)

    # The exposure of unknown runs: r6 and u0 at their estimate, u1 at its estimate (not its
    # reservation); u2 was charged, so it is counted as charged, not as "may have cost".
    unsure = {r.run_id: r.est_credits for r in records if r.run_id in ("r6", "u0", "u1")}
    assert t.may_have_cost_credits == pytest.approx(sum(unsure.values()))
    assert t.may_have_cost_runs == 3
    # ... and it has its own column in every grouped table, adding up to the total.
    for table in rep.groups.values():
        assert table["may_have_cost_credits"].sum() == pytest.approx(t.may_have_cost_credits)
        # (each line rounded once to the cent's hundredth: within half of that per line)
        assert table["may_have_cost_usd"].sum() == pytest.approx(t.may_have_cost_usd, abs=5e-5 * len(table))
    status = rep.groups["status"].set_index("status")
    assert status.loc["unknown", "charged_credits"] == pytest.approx(2.75)
    assert status.loc["unknown", "may_have_cost_credits"] == pytest.approx(sum(unsure.values()))
    assert status.loc["completed", "may_have_cost_credits"] == 0
    assert "may have cost" in rep.to_markdown()


def test_runs_alike_in_status_and_the_rules_tests_have_one_rule(tmp_path: Path) -> None:
    """What grouped sums rely on: the rule of a run follows from its status and the rules'
    tests (imgkit.costs.RULE_TESTS) alone, for every status, error code and empty column."""
    records = [
        r.replace(run_id=f"{r.run_id}-{code}", error_code=code,
                  task_id=r.task_id and f"{r.task_id}-{code}")
        for r in _variants()
        for code in (None, "download_failed", "result_expired", "content_policy_violation")
    ]
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.save_many(records)
    ledger.close()
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    try:
        rows = conn.execute(f"SELECT run_id, status, {', '.join(costs.RULE_TESTS)} FROM runs").fetchall()
    finally:
        conn.close()
    by_id = {r.run_id: r for r in records}
    seen = set()
    for run_id, status, *tests in rows:
        rule = costs.rule_for(status, tests)
        assert rule.basis == costs.cost_of(by_id[run_id]).basis, run_id
        seen.add(rule.basis)
    assert len(rows) == len(records) and seen == set(costs.BASES)
