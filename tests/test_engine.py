"""The engine on its own: fake providers that implement the Provider protocol in memory, a fake
clock and sleep injected into the Engine, a real ledger and store in a temporary directory. No
sockets, so the poll schedule, retries, deadlines, failover and slots are checked exactly."""

from __future__ import annotations

import asyncio
import io
import itertools
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from PIL import Image

from imgkit.engine import (
    Engine,
    PollPolicy,
    Slot,
    next_poll_delay,
    retry_read,
    retry_submit,
    retry_submit_sync,
)
from imgkit.errors import APIError, DownloadError, RequestError
from imgkit.ledger import Ledger
from imgkit.providers.base import Balance, Provider, TaskSnapshot
from imgkit.providers.router import BreakerPolicy, Endpoint, Router, RunPlan
from imgkit.request import Completed, Failed, ImageRequest, Pending, Processing, ReferenceImage, RunRecord
from imgkit.store import Store

SHEET = "evolink-table-2026-11"
START = 1_800_000_000.0


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 80, 20)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()


class FakeClock:
    """Wall-clock seconds that move only when the engine sleeps."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeProvider:
    """An asynchronous task service in memory, on the fake clock.

    A task takes ``duration`` seconds; until then it reads as pending (``progress=False``) or
    as processing with linear progress. Errors queued in ``submit_errors`` / ``status_errors``
    are raised, one per call, before the service answers normally.
    """

    synchronous = False

    def __init__(
        self,
        name: str,
        clock: FakeClock,
        *,
        duration: float = 10.0,
        estimated: float | None = 10.0,
        progress: bool = True,
        submit_errors: Sequence[Exception] = (),
        status_errors: Sequence[Exception] = (),
        fail_code: str | None = None,
        results: int = 1,
    ) -> None:
        self.name = name
        self.clock = clock
        self.duration = duration
        self.estimated = estimated
        self.progress = progress
        self.submit_errors = list(submit_errors)
        self.status_errors = list(status_errors)
        self.fail_code = fail_code
        self.results = results
        self.submits = 0
        self.polls: list[float] = []
        self.downloads: list[str] = []
        self.on_download: Callable[[], None] | None = None
        self.started: dict[str, float] = {}

    async def submit(self, request: ImageRequest, image_urls: Sequence[str]) -> TaskSnapshot:
        self.submits += 1
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        task_id = f"{self.name}-task-{self.submits}"
        self.started[task_id] = self.clock()
        return TaskSnapshot(task_id, Pending(), estimated_time=self.estimated, credits_reserved=1.5)

    def _state(self, task_id: str) -> TaskSnapshot:
        elapsed = self.clock() - self.started[task_id]
        if elapsed < self.duration:
            status = Processing(int(100 * elapsed / self.duration)) if self.progress else Pending()
            return TaskSnapshot(task_id, status)
        if self.fail_code is not None:
            return TaskSnapshot(task_id, Failed(self.fail_code, "it broke"), credits_charged=0.0)
        urls = tuple(f"https://files.test/{task_id}/{i}.png" for i in range(self.results))
        return TaskSnapshot(task_id, Completed(urls), credits_charged=1.5)

    async def status(self, task_id: str) -> TaskSnapshot:
        self.polls.append(self.clock())
        if self.status_errors:
            raise self.status_errors.pop(0)
        if task_id not in self.started:
            raise APIError(404, "task_not_found", "no such task")
        return self._state(task_id)

    async def download(self, url: str, max_bytes: int) -> bytes:
        self.downloads.append(url)
        if self.on_download is not None:
            self.on_download()
        return PNG

    async def upload(self, image: ReferenceImage) -> str:
        return "https://files.test/reference.png"

    async def balance(self) -> Balance | None:
        return None

    async def aclose(self) -> None:
        pass


class SyncProvider(FakeProvider):
    """A synchronous API (OpenAI's shape): the answer to the create is the result."""

    synchronous = True

    async def submit(self, request: ImageRequest, image_urls: Sequence[str]) -> TaskSnapshot:
        self.submits += 1
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        task_id = f"{self.name}-task-{self.submits}"
        self.started[task_id] = self.clock() - self.duration
        return self._state(task_id)


class RecordingEngine(Engine):
    """Keeps every ledger write the engine makes, with its durability."""

    saves: list[tuple[str, bool, bool]]

    async def _save(self, record: RunRecord, *, durable: bool) -> None:
        self.saves.append((record.status, record.task_id is not None, durable))
        await super()._save(record, durable=durable)

    def provider_for(self, record: RunRecord) -> Provider | None:
        raise AssertionError("a run carries its provider; only resume() looks it up by name")


POLICY = PollPolicy(min_interval=0.5, max_interval=10.0, jitter=0.0, deadline=120.0, default_estimate=10.0)


def _engine(
    tmp_path: Path, clock: FakeClock, *providers: FakeProvider, sheets: Sequence[str | None] = (), **kwargs: object
) -> RecordingEngine:
    router = Router(
        [Endpoint.of(p, sheet=sheets[i] if i < len(sheets) else SHEET) for i, p in enumerate(providers)],
        policy=BreakerPolicy(failure_threshold=5),
        clock=clock,
    )
    settings: dict[str, object] = {"poll": POLICY, "seed": 3, "clock": clock, "sleep": clock.sleep}
    settings.update(kwargs)
    engine = RecordingEngine(router, Ledger(tmp_path / "ledger.sqlite3"), Store(tmp_path), **settings)  # type: ignore[arg-type]
    engine.saves = []
    return engine


async def _run(engine: Engine, prompt: str = "a fox", **kwargs: object) -> tuple[RunPlan, RunRecord]:
    plan = engine.router.plan(ImageRequest.build(prompt, quality="low"))
    record = await engine.run(plan, engine.new_record(plan), **kwargs)  # type: ignore[arg-type]
    return plan, record


# --- the poll schedule ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_first_poll_near_the_estimate_then_progress_predicts_the_end(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider("a", clock, duration=10.0, estimated=10.0)
    engine = _engine(tmp_path, clock, provider)
    _, record = await _run(engine)
    assert record.status == "completed" and record.files
    submitted = record.submitted_at
    assert submitted == START
    offsets = [t - submitted for t in provider.polls]
    assert offsets[0] == pytest.approx(9.0)  # lead 0.9 of the estimated 10 s
    assert offsets[-1] >= 10.0 and offsets[-1] - 10.0 <= POLICY.min_interval * POLICY.backoff + 1e-9
    assert len(provider.polls) <= 5
    assert all(POLICY.min_interval <= s <= POLICY.max_interval for s in clock.sleeps[1:])
    assert record.latency_s == pytest.approx(offsets[-1])


@pytest.mark.anyio
async def test_a_late_task_is_polled_with_backoff_capped_at_max_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider("a", clock, duration=60.0, estimated=10.0, progress=False)
    engine = _engine(tmp_path, clock, provider)
    _, record = await _run(engine)
    assert record.status == "completed"
    gaps = clock.sleeps
    assert gaps[:2] == pytest.approx([9.0, 0.9])  # 0.9 of the estimate, then of what is left
    # Once past the expected end: min_interval, then x1.5 each time, up to max_interval.
    backoff = gaps[gaps.index(POLICY.min_interval):]
    assert backoff[:4] == pytest.approx([0.5, 0.75, 1.125, 1.6875])
    assert all(b >= a for a, b in itertools.pairwise(backoff))
    assert backoff[-1] == max(gaps) == POLICY.max_interval
    assert 0 <= provider.polls[-1] - START - 60.0 <= POLICY.max_interval


@pytest.mark.anyio
async def test_no_estimate_falls_back_to_the_default(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider("a", clock, duration=1.0, estimated=None)
    engine = _engine(tmp_path, clock, provider, poll=PollPolicy(jitter=0.0, default_estimate=4.0))
    _, record = await _run(engine)
    assert record.status == "completed"
    assert clock.sleeps[0] == pytest.approx(3.6)


@pytest.mark.anyio
async def test_poll_task_yields_snapshots_until_a_terminal_one(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider("a", clock, duration=10.0)
    engine = _engine(tmp_path, clock, provider)
    snapshot = await provider.submit(ImageRequest.build("a fox"), ())
    seen = [s.status async for s in engine.poll_task(provider, snapshot.task_id, submitted=clock(), estimated=10.0)]
    assert isinstance(seen[-1], Completed) and not any(s.terminal for s in seen[:-1])
    assert all(isinstance(s, Processing) for s in seen[:-1])
    assert [s.progress for s in seen] == sorted(s.progress for s in seen)


# --- deadlines -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_deadline_makes_the_run_unknown_and_resume_asks_again(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider("a", clock, duration=500.0)
    engine = _engine(tmp_path, clock, provider)
    _, record = await _run(engine)
    assert record.status == "unknown" and "no result after" in (record.notes or "")
    assert record.task_id is not None and not provider.downloads
    assert provider.polls[-1] - START <= POLICY.deadline + POLICY.max_interval
    assert not engine.slots.locked()
    # Long past the deadline, resume() still asks once, and finishes the run.
    clock.now += 1000
    polls = len(provider.polls)
    resumed = await Engine(engine.router, engine.ledger, engine.store, poll=POLICY, clock=clock,
                           sleep=clock.sleep).resume(record)
    assert resumed.status == "completed" and len(provider.polls) == polls + 1


@pytest.mark.anyio
async def test_a_vanished_task_fails_and_lost_contact_is_unknown(tmp_path: Path) -> None:
    clock = FakeClock()
    gone = FakeProvider("a", clock, status_errors=[APIError(404, "task_not_found", "gone")])
    _, record = await _run(_engine(tmp_path / "1", clock, gone))
    assert (record.status, record.error_code) == ("failed", "resource_not_found")
    lost = FakeProvider("a", clock, status_errors=[RequestError("reset", sent=True)] * 10)
    _, record = await _run(_engine(tmp_path / "2", clock, lost))
    assert record.status == "unknown" and "lost contact while polling" in (record.notes or "")
    assert len(lost.polls) == 4  # the attempts stamina's testing mode allows (conftest)


# --- retries -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_reads_are_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider(
        "a", clock, status_errors=[RequestError("reset", sent=True), APIError(503, "service_unavailable", "busy")]
    )
    _, record = await _run(_engine(tmp_path, clock, provider))
    assert record.status == "completed"
    assert provider.polls[0] == provider.polls[1] == provider.polls[2]  # retried without a new poll delay


@pytest.mark.anyio
async def test_a_create_that_surely_created_nothing_is_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider(
        "a", clock, submit_errors=[RequestError("refused", sent=False), APIError(429, "rate_limit_exceeded", "slow")]
    )
    _, record = await _run(_engine(tmp_path, clock, provider))
    assert (record.status, record.attempts, provider.submits) == ("completed", 3, 3)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error", [RequestError("reset after sending", sent=True), APIError(500, "internal_error", "oops")]
)
async def test_an_unknown_outcome_is_never_resent(tmp_path: Path, error: Exception) -> None:
    clock = FakeClock()
    first, second = FakeProvider("a", clock, submit_errors=[error]), FakeProvider("b", clock)
    engine = _engine(tmp_path, clock, first, second)
    _, record = await _run(engine)
    assert (record.status, record.provider, record.providers_tried) == ("unknown", "a", ())
    assert "not resent" in (record.notes or "")
    assert (first.submits, second.submits) == (1, 0)
    assert engine.router.breaker("a").stats()["last_error"] == "unknown_outcome"


# --- failover between two providers ----------------------------------------------------------


@pytest.mark.anyio
async def test_failover_on_a_refused_create(tmp_path: Path) -> None:
    clock = FakeClock()
    busy = [APIError(503, "service_unavailable", "busy")] * 10
    first, second = FakeProvider("a", clock, submit_errors=busy), FakeProvider("b", clock)
    engine = _engine(tmp_path, clock, first, second, sheets=[SHEET, None], failover_attempts=2)
    plan, record = await _run(engine)
    assert plan.chosen is not None and plan.chosen.name == "a" and plan.estimate is not None
    assert (record.status, record.provider) == ("completed", "b")
    (tried,) = record.providers_tried
    assert (tried["provider"], tried["reason"]) == ("a", "http_503")
    assert (first.submits, second.submits) == (2, 1)  # failover_attempts on all but the last
    assert (record.est_credits, record.price_sheet) == (None, None)  # re-priced on b's (missing) sheet
    assert first.polls == [] and second.downloads


@pytest.mark.anyio
async def test_failover_after_an_accepted_task_failed_for_an_outage(tmp_path: Path) -> None:
    clock = FakeClock()
    first = FakeProvider("a", clock, duration=2.0, fail_code="service_unavailable")
    second = FakeProvider("b", clock, duration=2.0)
    _, record = await _run(_engine(tmp_path, clock, first, second))
    assert (record.status, record.provider, record.task_id) == ("completed", "b", "b-task-1")
    (tried,) = record.providers_tried
    assert (tried["reason"], tried["task_id"]) == ("service_unavailable", "a-task-1")


@pytest.mark.anyio
async def test_no_failover_for_the_users_own_failure(tmp_path: Path) -> None:
    clock = FakeClock()
    first = FakeProvider("a", clock, duration=2.0, fail_code="content_policy_violation")
    second = FakeProvider("b", clock)
    engine = _engine(tmp_path, clock, first, second)
    _, record = await _run(engine)
    assert (record.status, record.provider, record.error_code) == ("failed", "a", "content_policy_violation")
    assert second.submits == 0
    assert engine.router.breaker("a").stats()["error_rate"] == 0  # the provider answered


@pytest.mark.anyio
async def test_a_synchronous_provider_fails_over_on_a_5xx_and_needs_no_polls(tmp_path: Path) -> None:
    clock = FakeClock()
    first = SyncProvider("a", clock, submit_errors=[APIError(500, "internal_error", "oops")] * 10)
    second = SyncProvider("b", clock)
    _, record = await _run(_engine(tmp_path, clock, first, second))
    assert (record.status, record.provider) == ("completed", "b")
    assert record.providers_tried[0]["reason"] == "http_500"
    assert first.polls == second.polls == [] and clock.sleeps == []


# --- slots, ledger writes -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_slot_handed_in_is_given_back_before_the_downloads(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider("a", clock, results=2)
    engine = _engine(tmp_path, clock, provider, concurrency=1)
    limit = asyncio.Semaphore(1)
    held: list[bool] = []
    async with Slot(limit) as slot:
        provider.on_download = lambda: held.append(slot.held or limit.locked())
        _, record = await _run(engine, slot=slot)
    assert record.status == "completed" and held == [False, False]
    assert not limit.locked() and not engine.slots.locked()  # the engine's own limit was not used


@pytest.mark.anyio
async def test_a_synchronous_answer_gives_the_slot_back_before_it_is_written_down(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = SyncProvider("a", clock)
    engine = _engine(tmp_path, clock, provider)
    limit = asyncio.Semaphore(1)
    held_while_kept: list[bool] = []
    keep = engine._keep_task_id

    async def watched_keep(run_id: str, task_id: str, name: str) -> None:
        held_while_kept.append(limit.locked())
        await keep(run_id, task_id, name)

    engine._keep_task_id = watched_keep  # type: ignore[method-assign]
    async with Slot(limit) as slot:
        _, record = await _run(engine, slot=slot)
    assert record.status == "completed" and record.task_id == "a-task-1"
    assert held_while_kept == [False]  # the service had answered: the next run could be sent


@pytest.mark.anyio
async def test_the_engines_own_slot_is_free_during_downloads(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider("a", clock)
    engine = _engine(tmp_path, clock, provider, concurrency=1)
    locked_in_poll: list[bool] = []
    locked_in_download: list[bool] = []
    status = provider.status

    async def watched_status(task_id: str) -> TaskSnapshot:
        locked_in_poll.append(engine.slots.locked())
        return await status(task_id)

    provider.status = watched_status  # type: ignore[method-assign]
    provider.on_download = lambda: locked_in_download.append(engine.slots.locked())
    _, record = await _run(engine)
    assert record.status == "completed"
    assert all(locked_in_poll) and locked_in_download == [False]
    assert not engine.slots.locked()


@pytest.mark.anyio
async def test_a_slot_is_given_back_once_by_its_owner() -> None:
    limit = asyncio.Semaphore(1)
    async with Slot(limit) as slot:
        assert slot.held and limit.locked()
        slot.release()
        slot.release()
        assert not slot.held and not limit.locked()
        async with Slot(limit):  # the place is free again, and not given back twice
            assert limit.locked()
    assert not limit.locked()
    async with Slot(limit), Slot(asyncio.Semaphore(1)):
        pass
    assert not limit.locked()


@pytest.mark.anyio
async def test_every_write_goes_through_save_and_the_task_id_is_durable(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider("a", clock)
    engine = _engine(tmp_path, clock, provider)
    _, record = await _run(engine)
    saves = engine.saves
    assert saves[0] == ("created", False, False)
    assert ("submitting", False, True) in saves  # on disk before the create is sent
    first_with_id = next(s for s in saves if s[1])
    assert first_with_id == ("pending", True, True)
    assert saves[-1] == ("completed", True, True)
    assert ("processing", True, False) in saves  # progress may wait for the next group
    assert engine.ledger.get(record.run_id) == record
    assert ("downloading", True, False) in saves  # the task id was on disk already


@pytest.mark.anyio
async def test_a_synchronous_providers_task_id_is_durable_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = _engine(tmp_path, clock, SyncProvider("a", clock))
    _, record = await _run(engine)
    assert record.status == "completed"
    assert [s for s in engine.saves if s[1]] == [("downloading", True, True), ("completed", True, True)]


# --- the pure pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "estimated", "progress", "late", "expected"),
    [
        (0.0, 10.0, 0, 0, 9.0),  # first poll near the estimate
        (0.0, None, 0, 0, 3.6),  # no hint: the default estimate (4 s here)
        (0.0, 0.0, 0, 0, 3.6),  # a zero hint is no hint
        (0.0, 100.0, 0, 0, 10.0),  # capped at max_interval
        (9.0, 10.0, 0, 0, 0.9),
        (9.0, 10.0, 50, 0, 8.1),  # progress says 9 s more
        (9.0, 10.0, 90, 0, 0.9),  # progress says 1 s more
        (8.0, 10.0, 3, 0, 1.8),  # progress under 5 % says nothing yet
        (10.0, 10.0, 0, 0, 0.5),  # late: min_interval ...
        (11.0, 10.0, 0, 1, 0.75),  # ... times backoff per late poll ...
        (20.0, 10.0, 0, 9, 10.0),  # ... up to max_interval
        (10.0, 10.0, 100, 0, 0.5),
    ],
)
def test_next_poll_delay(elapsed: float, estimated: float | None, progress: int, late: int, expected: float) -> None:
    policy = PollPolicy(min_interval=0.5, max_interval=10.0, jitter=0.0, default_estimate=4.0)
    delay = next_poll_delay(
        policy, elapsed=elapsed, estimated=estimated, progress=progress, late_polls=late, rng=random.Random(1)
    )
    assert delay == pytest.approx(expected)


def test_next_poll_delay_jitter_stays_within_its_spread_and_above_min_interval() -> None:
    policy = PollPolicy(min_interval=0.5, max_interval=4.0, jitter=0.1)
    rng = random.Random(7)
    delays = [next_poll_delay(policy, elapsed=0.0, estimated=2.0, progress=0, late_polls=0, rng=rng) for _ in range(200)]
    assert all(1.8 * 0.9 - 1e-9 <= d <= 1.8 * 1.1 + 1e-9 for d in delays)
    assert len(set(delays)) > 1
    late = [next_poll_delay(policy, elapsed=5.0, estimated=2.0, progress=0, late_polls=0, rng=rng) for _ in range(50)]
    assert min(late) >= policy.min_interval


def test_next_poll_delay_without_a_floor_can_be_zero() -> None:
    policy = PollPolicy(min_interval=0.0, max_interval=0.0, jitter=0.0)
    assert next_poll_delay(policy, elapsed=0.0, estimated=5.0, progress=0, late_polls=3, rng=random.Random()) == 0.0


@pytest.mark.parametrize(
    ("exc", "read", "submit", "submit_sync"),
    [
        (RequestError("refused", sent=False), True, True, True),
        (RequestError("reset", sent=True), True, False, False),
        (APIError(429, "rate_limit_exceeded", "slow"), True, True, True),
        (APIError(429, "rate_limit_exceeded", "slow", retry_after=7.0), 7.0, 7.0, 7.0),
        (APIError(429, "insufficient_quota", "no money"), True, False, False),
        (APIError(503, "service_unavailable", "busy"), True, True, True),
        (APIError(500, "internal_error", "oops"), True, False, True),
        (APIError(502, "bad_gateway", "oops", retry_after=2.0), 2.0, False, 2.0),
        (APIError(400, "invalid_request", "bad"), False, False, False),
        (APIError(404, "task_not_found", "gone"), False, False, False),
        (DownloadError("truncated", retryable=True), True, False, False),
        (DownloadError("too big"), False, False, False),
        (ValueError("not ours"), False, False, False),
    ],
)
def test_retry_predicates(exc: Exception, read: bool | float, submit: bool | float, submit_sync: bool | float) -> None:
    assert retry_read(exc) == read
    assert retry_submit(exc) == submit
    assert retry_submit_sync(exc) == submit_sync

