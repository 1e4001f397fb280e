"""Images the service made but imgkit could not keep are charged: a run whose results cannot
be downloaded ends ``failed`` with ``download_failed`` (or ``result_expired`` once its links'
lifetime is over), counts what the service reserved in the budget, the plots and the report,
says that the images were made and billed, and is retried: within the links' lifetime by the
download itself (403/404/410 with backoff) and later by ``resume()``, without a second task.

The real client against the sandbox on a loopback port; the sandbox's fault injection makes
result links fail for a while (``result_fail_first``) or until told otherwise
(``download_403/404/410``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

import imgkit
from imgkit import costs, plots
from imgkit.engine import RESULT_URL_TTL, result_url_deadline
from imgkit.ledger import Ledger
from imgkit.request import RunRecord
from imgkit.sandbox import SandboxConfig, running_sandbox

from .conftest import FAST_POLL, SANDBOX_ADMIN, TEST_KEY, sandbox_tasks


def _faults(url: str, **faults: float) -> None:
    answer = httpx.post(f"{url}/_sandbox/faults", json=faults, headers=SANDBOX_ADMIN, timeout=30)
    assert answer.status_code == 200, answer.text


@pytest.fixture
def own_sandbox() -> object:
    """A sandbox of this test's own (its faults must not reach other tests)."""
    with running_sandbox(SandboxConfig(seed=13, time_scale=0.01)) as url:
        yield url


def test_a_result_link_that_fails_at_first_is_retried_within_its_lifetime(own_sandbox: str, data_dir: Path) -> None:
    imgkit.configure(api_key=TEST_KEY, base_url=own_sandbox, data_dir=data_dir, poll=FAST_POLL)
    _faults(own_sandbox, result_fail_first=2)  # each link: 404, 404, then the image
    res = imgkit.generate("a fox", quality="low", n=2)
    assert res.status == "completed"
    assert len(res.paths) == 2 and all(p.is_file() for p in res.paths)


@pytest.mark.parametrize("fault", ["download_403", "download_404", "download_410"])
def test_a_download_that_keeps_failing_is_charged_and_resume_recovers_it(
    own_sandbox: str, data_dir: Path, fault: str
) -> None:
    session = imgkit.configure(api_key=TEST_KEY, base_url=own_sandbox, data_dir=data_dir, poll=FAST_POLL)
    imgkit.budget(credits=100, per="day")
    _faults(own_sandbox, **{fault: 1.0})
    with pytest.raises(imgkit.DownloadError) as info:
        imgkit.generate("a lighthouse", quality="low", n=2)
    message = str(info.value)
    assert "the service made and billed 2 images; they could not be downloaded" in message
    assert "imgkit.resume() tries again" in message
    assert "task " in message and "failed:" not in message  # not worded as a task that failed

    (record,) = session.ledger.records()
    assert (record.status, record.error_code) == ("failed", "download_failed")
    reserved = record.credits_reserved
    assert reserved is not None and reserved > 0
    # Counted at what the service reserved, by every form of the cost rules.
    assert costs.cost_of(record).basis == "not downloaded"
    assert costs.cost_of(record).spent == pytest.approx(reserved)
    assert session.remaining_budget() == pytest.approx(100 - reserved)
    df = plots.with_costs(imgkit.runs())
    assert df["charged_credits"].sum() == pytest.approx(reserved)
    assert df["charged_usd"].sum() > 0
    totals = imgkit.report().totals
    # Charged in full, all of it what the service held (reserved) for the run.
    assert totals.charged_credits == pytest.approx(reserved) == pytest.approx(totals.reserved_credits)
    assert totals.reserved_runs == 1

    tasks_before = len(sandbox_tasks(own_sandbox))
    _faults(own_sandbox)  # the links work again
    (resumed,) = imgkit.resume()
    assert resumed.status == "completed" and len(resumed.paths) == 2
    assert resumed.record.task_id == record.task_id
    assert len(sandbox_tasks(own_sandbox)) == tasks_before  # no second create
    assert costs.cost_of(resumed.record).basis == "reserved"
    assert session.remaining_budget() == pytest.approx(100 - reserved)  # charged once


def test_a_link_past_its_lifetime_is_result_expired_and_still_charged(data_dir: Path) -> None:
    with running_sandbox(SandboxConfig(seed=2, time_scale=0.01, url_ttl=0.0)) as url:
        session = imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        res = imgkit.generate("too late", quality="low", raise_on_error=False)
        assert (res.status, res.record.error_code) == ("failed", "result_expired")
        assert res.record.error_message.startswith("the service made and billed 1 image; they could not be downloaded")
        assert "resume()" not in res.record.error_message  # nothing left to retry
        assert session.ledger.spent_credits() == pytest.approx(res.record.credits_reserved)
        # resume() leaves it: its links are gone.
        assert imgkit.resume() == []


def test_result_url_deadline() -> None:
    assert result_url_deadline(None, ["https://cdn.example/a.png"]) is None
    assert result_url_deadline(1000.0, ["https://cdn.example/a.png"]) == 1000.0 + RESULT_URL_TTL
    urls = ["https://cdn.example/a.png?expires=5000&sig=x", "https://cdn.example/b.png?Expires=4000"]
    assert result_url_deadline(1000.0, urls) == 4000.0
    assert result_url_deadline(None, ["https://cdn.example/a.png?expires=soon"]) is None


def _record(run_id: str, **fields: object) -> RunRecord:
    base: dict[str, object] = {
        "provider": "sandbox", "model": "gpt-image-1", "prompt": run_id, "size": "1024x1024", "quality": "low",
        "n": 1, "task_id": f"task-unified-1-{run_id}", "est_credits": 0.625, "est_usd": 0.625 / 72,
        "est_cny": 0.625 / 72 * 7.1, "price_sheet": "evolink-table-2026-11", "created_at": 1_790_000_000.0,
    }
    base.update(fields)
    return RunRecord(run_id=run_id, **base)  # type: ignore[arg-type]


def test_the_not_downloaded_rule_agrees_in_record_frame_and_sql(tmp_path: Path) -> None:
    records = [
        _record("expired-r", status="failed", error_code="result_expired", credits_reserved=1.5),
        _record("dl-r", status="failed", error_code="download_failed", credits_reserved=1.5),
        _record("dl-e", status="failed", error_code="download_failed"),
        _record("dl-c", status="failed", error_code="download_failed", credits_reserved=1.5, credits_charged=2.0),
        _record("task-failed", status="failed", error_code="content_policy_violation", credits_reserved=1.5),
        _record("no-task", status="failed", error_code="download_failed", task_id=None, credits_reserved=1.5),
    ]
    want = {"expired-r": ("not downloaded", 1.5), "dl-r": ("not downloaded", 1.5), "dl-e": ("not downloaded", 0.625),
            "dl-c": ("charged", 2.0), "task-failed": ("failed", 0.0), "no-task": ("no task", 0.0)}
    by_record = {r.run_id: (costs.cost_of(r).basis, costs.cost_of(r).spent) for r in records}
    assert by_record == want
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    ledger.save_many(records)
    frame = costs.cost_frame(ledger.to_dataframe().set_index("run_id"))
    ledger.close()
    by_frame = {rid: (str(row.cost_basis), float(row.spent_credits)) for rid, row in frame.iterrows()}
    assert by_frame == want
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT run_id, {costs.sql_basis()}, {costs.sql_spent()} FROM runs").fetchall()
    assert {rid: (basis, spent) for rid, basis, spent in rows} == want
    assert any("download_failed or result_expired" in line for line in costs.RULES_TEXT)
