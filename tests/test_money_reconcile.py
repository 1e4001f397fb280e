"""imgkit.reconcile(): the fall in the account's balance between two snapshots against what
the ledger counts as spent. A 100-run sweep against a faulty sandbox (refused creates,
failed tasks, polls and downloads that fail, result links that never answer) reconciles to
zero drift; a run hidden from the ledger, an unknown run or another user of the key does not,
and the drift is named."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import httpx
import pytest

import imgkit
from imgkit.ledger import Ledger
from imgkit.reconciliation import RUN_COLUMNS, TABLE_COLUMNS, reconcile
from imgkit.request import BalanceSnapshot, RunRecord
from imgkit.sandbox import FaultConfig, SandboxConfig, running_sandbox

from .conftest import FAST_POLL, SANDBOX_ADMIN, TEST_KEY

#: Faults that leave no doubt about what was charged: creates refused before a task exists
#: (503, 429: retried), tasks that fail (the sandbox gives their credits back), polls that
#: fail (retried), downloads that fail or answer garbage (retried) and result links that keep
#: refusing (the images were made and billed: download_failed, counted at what was reserved).
FAULTS = FaultConfig(create_503=0.08, create_429=0.05, task_fail=0.1, poll_500=0.05, download_500=0.05,
                     download_corrupt=0.03, download_403=0.2, download_404=0.2, download_410=0.2)


def _sweep(url: str, data_dir: Path, prompts: list[str], **grid: object) -> imgkit.SweepResult:
    imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
    return imgkit.sweep(prompts, confirm=True, progress=False, **grid)  # type: ignore[arg-type]


def test_a_faulty_100_run_sweep_reconciles_with_zero_drift(tmp_path: Path, data_dir: Path) -> None:
    config = SandboxConfig(seed=100, time_scale=0.002, credits=5000.0, faults=FAULTS,
                           state_path=str(tmp_path / "sandbox-state.json"))
    prompts = [f"a lighthouse no. {i}" for i in range(25)]
    with running_sandbox(config) as url:
        out = _sweep(url, data_dir, prompts, quality=["low", "medium"], size=["1:1", "3:2"])
        account = httpx.get(f"{url}/v1/credits", headers=SANDBOX_ADMIN, timeout=30).json()["data"]["user"]
    assert len(out.results) == 100
    records = imgkit.get_session().ledger.records()
    outcomes = Counter((r.status, r.error_code) for r in records)
    # The faults did happen: failed tasks, results made but not kept, and completed runs.
    assert outcomes[("completed", None)] >= 50
    assert outcomes[("failed", "download_failed")] >= 3
    assert sum(n for (status, code), n in outcomes.items() if status == "failed" and code != "download_failed") >= 3
    assert not [r for r in records if r.status == "unknown"]

    rec = imgkit.reconcile()
    assert list(rec.table.columns) == list(TABLE_COLUMNS) and list(rec.runs.columns) == list(RUN_COLUMNS)
    (row,) = rec.table.itertuples(index=False)
    assert row.runs == 100
    assert row.observed > 0
    assert row.expected == pytest.approx(row.observed, abs=1e-9)
    assert row.drift == 0.0 and rec.drift == 0.0 and row.may_have_cost == 0.0
    assert rec.runs.empty
    # The account the sandbox keeps fell by exactly what the ledger counts.
    assert row.end_credits == pytest.approx(account["remaining_credits"])
    assert 5000.0 - account["remaining_credits"] == pytest.approx(row.expected, abs=1e-6)
    assert "drift +0.00000" in str(rec)


def test_a_run_hidden_from_the_ledger_drifts_and_is_named(data_dir: Path) -> None:
    with running_sandbox(SandboxConfig(seed=101, time_scale=0.002, credits=800.0)) as url:
        out = _sweep(url, data_dir, ["a fox", "a kite", "a boat"], quality="low")
    hidden = out.results[1].record
    assert hidden.status == "completed" and hidden.credits_reserved
    session = imgkit.get_session()
    session.close()
    with sqlite3.connect(data_dir / "ledger.sqlite3") as conn:
        conn.execute("DELETE FROM runs WHERE run_id = ?", (hidden.run_id,))
    rec = imgkit.reconcile()
    (row,) = rec.table.itertuples(index=False)
    assert row.runs == 2
    assert row.drift == pytest.approx(hidden.credits_reserved, abs=1e-9) and row.drift > 0
    assert row.unexplained == pytest.approx(hidden.credits_reserved, abs=1e-9)
    (why,) = rec.runs.itertuples(index=False)
    assert why.why.startswith("other use of the key") and "a run missing from this ledger" in why.why
    assert why.credits == pytest.approx(hidden.credits_reserved, abs=1e-9)
    text = str(rec)
    assert f"drift +{hidden.credits_reserved:.5f}" in text and "other use of the key" in text
    assert "other use of the key" in rec.to_markdown()


def test_an_unknown_run_explains_a_drift_up_to_its_estimate(data_dir: Path) -> None:
    with running_sandbox(SandboxConfig(seed=102, time_scale=0.002, credits=800.0)) as url:
        out = _sweep(url, data_dir, ["a fox", "a kite [[accept_then_500]]"], quality="low")
    lost = next(r.record for r in out.results if r.record.status == "unknown")
    rec = imgkit.reconcile()
    (row,) = rec.table.itertuples(index=False)
    # The sandbox made and charged the task; the ledger only says it may have cost.
    assert row.drift == pytest.approx(lost.est_credits, abs=1e-9)
    assert row.may_have_cost == pytest.approx(lost.est_credits, abs=1e-9)
    assert row.unexplained == 0.0
    (why,) = rec.runs.itertuples(index=False)
    assert (why.why, why.run_id) == ("unknown run (may have cost)", lost.run_id)


def test_the_interval_is_bounded_by_snapshots(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        def snap(at: float, credits: float) -> None:
            ledger.add_balance_snapshot(BalanceSnapshot(taken_at=at, provider="evolink", remaining_credits=credits,
                                                        account_remaining=credits, binding="account"))

        def run(run_id: str, at: float, reserved: float) -> RunRecord:
            return RunRecord(run_id=run_id, provider="evolink", model="gpt-image-1", prompt="p", size="1024x1024",
                             quality="low", n=1, status="completed", task_id=f"task-unified-1-{run_id}",
                             credits_reserved=reserved, est_credits=reserved, created_at=at - 0.5, submitted_at=at)

        snap(100.0, 50.0)
        ledger.save(run("a", 150.0, 2.0))
        snap(200.0, 48.0)
        ledger.save(run("b", 250.0, 3.0))
        snap(300.0, 40.0)  # 5 credits went elsewhere
        whole = reconcile(ledger)
        assert (whole.table["observed"][0], whole.table["expected"][0], whole.drift) == (10.0, 5.0, 5.0)
        first = reconcile(ledger, since=100.0, until=200.0)
        assert (first.table["observed"][0], first.table["expected"][0], first.drift) == (2.0, 2.0, 0.0)
        second = reconcile(ledger, since=210.0, until="1970-01-01T00:04:10")  # snapshots 200 and 300
        assert (second.table["observed"][0], second.table["expected"][0], second.drift) == (8.0, 3.0, 5.0)
        assert second.runs["why"].str.startswith("other use of the key").all()
        with pytest.raises(imgkit.ValidationError, match="since"):
            reconcile(ledger, since="1970-01-02", until="1970-01-01")
        with pytest.raises(imgkit.ValidationError, match="until"):
            reconcile(ledger, until="not a time")
    finally:
        ledger.close()


def test_one_snapshot_is_not_enough(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        assert reconcile(ledger).table.empty
        ledger.add_balance_snapshot(BalanceSnapshot(taken_at=1.0, provider="evolink", remaining_credits=5.0))
        rec = reconcile(ledger)
        assert rec.table["note"][0] == "fewer than two balance snapshots in or around the interval"
        assert "fewer than two" in str(rec)
    finally:
        ledger.close()
