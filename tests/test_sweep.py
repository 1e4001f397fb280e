"""Sweeps and budgets against the loopback sandbox: the plan's estimate, confirmation,
budget refusal (also under concurrency) and the concurrency bound."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import imgkit
from imgkit.request import JobEvent

from .conftest import FAST_POLL, TEST_KEY, sandbox_tasks


def test_plan_estimate_is_the_sum_of_the_runs(session: imgkit.Session) -> None:
    out = imgkit.sweep(["a fox", "a lighthouse"], quality=["low", "medium", "high"], size=["1:1", "3:2"],
                       n=2, confirm=True, progress=False)
    assert out.plan.n_runs == 12 and out.plan.n_images == 24
    assert len(out.completed) == 12
    df = out.runs()
    assert len(df) == 12
    assert out.plan.credits == pytest.approx(df["est_credits"].sum(), abs=1e-4)
    assert out.plan.credits == pytest.approx(
        sum(imgkit.estimate(quality=q, size=s, n=2).credits for q in ("low", "medium", "high") for s in ("1:1", "3:2")) * 2,
        abs=1e-4,
    )
    assert all(out.sweep_id in tags for tags in df["tags"])
    assert set(df["quality"]) == {"low", "medium", "high"}


def test_sweep_states_its_cost_before_sending(session: imgkit.Session, capsys: pytest.CaptureFixture[str]) -> None:
    imgkit.sweep("a fox", quality="low", progress=False)
    out = capsys.readouterr().out  # information, on stdout (issue 11 item 8), not stderr
    assert "sweep: 1 runs, 1 images, estimated 0.62899 credits" in out


def test_sweep_above_threshold_refuses_without_confirmation(session: imgkit.Session, sandbox_url: str) -> None:
    before = len(sandbox_tasks(sandbox_url))
    with pytest.raises(imgkit.ConfirmationRequired, match=r"above the sweep threshold of 50 credits.*confirm=True"):
        imgkit.sweep(["a", "b", "c"], quality="high", size="3:2", n=2, progress=False)
    assert len(sandbox_tasks(sandbox_url)) == before
    assert len(imgkit.runs()) == 0
    out = imgkit.sweep(["a", "b", "c"], quality="high", size="3:2", n=2, progress=False, confirm=True)
    assert len(out.completed) == 3


def test_invalid_sweep_fails_before_any_request(session: imgkit.Session, sandbox_url: str) -> None:
    before = len(sandbox_tasks(sandbox_url))
    with pytest.raises(imgkit.ValidationError, match="quality"):
        imgkit.sweep(["a", "b"], quality=["low", "ultra"], progress=False)
    assert len(sandbox_tasks(sandbox_url)) == before


def test_budget_refuses_runs_that_would_exceed_it(session: imgkit.Session, sandbox_url: str) -> None:
    imgkit.budget(credits=5.5, per="day")
    imgkit.generate("first", quality="medium")  # 2.4192
    assert session.remaining_budget() == pytest.approx(5.5 - 2.4192)
    imgkit.generate("second", quality="medium")
    before = len(sandbox_tasks(sandbox_url))
    with pytest.raises(imgkit.BudgetExceeded, match=r"budget of 5.5 credits per day: 4.8384 credits already committed"):
        imgkit.generate("third", quality="medium")
    assert len(sandbox_tasks(sandbox_url)) == before
    assert len(imgkit.runs()) == 2
    imgkit.generate("cheap", quality="low")  # 0.62899 still fits
    imgkit.budget(None)
    imgkit.generate("no limit now", quality="high")


def test_failed_before_submission_costs_nothing_against_budget(session: imgkit.Session) -> None:
    imgkit.budget(credits=3)
    with pytest.raises(imgkit.TaskFailed):
        imgkit.generate("rejected [[http:402]]", quality="medium")
    imgkit.generate("still fits", quality="medium")


def test_budget_cannot_be_raced(sandbox_url: str, data_dir: Path) -> None:
    # 50 concurrent runs of 1 credit each against a budget that allows 10: exactly 10 are sent.
    imgkit.register_price_sheet({"name": "one-credit", "date": "2026-11-24", "source": "test", "base_credits": 1.0,
                                 "credits_per_usd": 100})
    s = imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL,
                         price_sheet="one-credit", concurrency=50, budget=imgkit.config.Budget(10))
    before = len(sandbox_tasks(sandbox_url))

    async def main() -> list[object]:
        return await asyncio.gather(*(imgkit.agenerate(f"race {i}") for i in range(50)), return_exceptions=True)

    outcomes = asyncio.run(main())
    sent = [o for o in outcomes if isinstance(o, imgkit.results.GenerationResult)]
    refused = [o for o in outcomes if isinstance(o, imgkit.BudgetExceeded)]
    assert (len(sent), len(refused)) == (10, 40)
    assert len(sandbox_tasks(sandbox_url)) - before == 10
    assert s.remaining_budget() == 0


def test_sweep_budget_refusals_are_listed_not_sent(session: imgkit.Session) -> None:
    imgkit.budget(credits=3)
    out = imgkit.sweep(["a", "b", "c"], quality="medium", progress=False, confirm=True)
    assert len(out.completed) == 1 and len(out.refused) == 2
    assert "nothing was sent" in out.refused[0][1]


def test_concurrency_bound_is_respected(session: imgkit.Session, sandbox_url: str) -> None:
    start = len(sandbox_tasks(sandbox_url))
    imgkit.sweep([f"p{i} [[seconds:0.3]]" for i in range(9)], quality="low", concurrency=3, progress=False)
    tasks = sandbox_tasks(sandbox_url)[start:]
    assert len(tasks) == 9
    events = sorted([(t["created"], 1) for t in tasks] + [(t["finishes_at"], -1) for t in tasks])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 3
    assert peak >= 2  # it did run concurrently


def test_per_minute_limit_spaces_submissions(session: imgkit.Session, sandbox_url: str) -> None:
    start = len(sandbox_tasks(sandbox_url))
    # 240 images a minute = one every 0.25 s after the first burst allowance.
    imgkit.sweep([f"r{i}" for i in range(4)], quality="low", per_minute=240, progress=False)
    created = sorted(t["created"] for t in sandbox_tasks(sandbox_url)[start:])
    assert created[-1] - created[0] >= 0.5


def test_a_sweep_slot_is_given_back_before_the_downloads(session: imgkit.Session) -> None:
    # concurrency=1: the next run is sent as soon as the service is done with the first one,
    # while the first one's results are still downloading and being stored.
    events: list[JobEvent] = []
    out = session.sweep(["a fox", "a lighthouse"], quality="low", concurrency=1, confirm=True, progress=False,
                        on_event=events.append)
    assert len(out.completed) == 2
    steps = [(e.run_id, e.status) for e in events]
    first = next(run_id for run_id, status in steps if status == "submitting")
    second = next(run_id for run_id, status in steps if status == "submitting" and run_id != first)
    assert steps.index((first, "downloading")) < steps.index((second, "submitting"))
    assert steps.index((second, "submitting")) < steps.index((first, "completed"))
