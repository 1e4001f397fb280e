"""The async core: submit, poll, download, with bounded concurrency, declared retries,
fallback across providers and events. It sees the
:class:`~imgkit.providers.base.Provider` protocol (through a
:class:`~imgkit.providers.router.Router`), never a concrete provider.

A run's life, and what the ledger holds at each step::

    created -> submitting -> pending -> processing -> downloading -> completed
                   |             \\__________________________________/
                   |                   failed (code)  |  unknown (reason)
                   +-> failed (nothing was created)   +-> unknown (may have been created)

The task id is committed to the ledger before anything else happens after the submit, so
:meth:`Engine.resume` can finish the run from another process. Polls and downloads go to the
provider that accepted the run (the record's ``provider``), in ``resume()`` too.

With several providers, a run goes to the cheapest one that can take it; when that one fails
in a way that proves nothing of the run is still alive there (a refused connection, a 503,
a task that ended with an outage code, ...) the run goes to the next, and
``providers_tried`` keeps who was tried and why. The rules are in
:mod:`imgkit.providers.router`; an outcome that may hide an accepted task is never resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgkit.errors import (
    APIError,
    DownloadError,
    ImgkitError,
    RequestError,
    TaskFailed,
    UnknownOutcome,
)
from imgkit.ledger import Ledger
from imgkit.pricing import Estimate
from imgkit.providers.base import Provider, TaskSnapshot
from imgkit.providers.router import (
    OUTAGE_TASK_CODES,
    QUOTA_CODES,
    Candidate,
    Router,
    Ticket,
    failover_reason,
    is_unknown_outcome,
    outage_on_read,
    single,
)
from imgkit.request import Completed, Failed, ImageRequest, JobEvent, Pending, RunRecord
from imgkit.store import DEFAULT_MAX_BYTES, Store, StoredImage

if TYPE_CHECKING:
    import stamina

__all__ = [
    "Engine",
    "EventHandler",
    "PollPolicy",
    "RetryPolicy",
    "hold_slot",
    "next_poll_delay",
    "release_slots",
    "retry_read",
    "retry_submit",
    "retry_submit_sync",
]

log = logging.getLogger("imgkit")

EventHandler = Callable[[JobEvent], object]
#: Result URLs expire after 24 h; past that, resume() does not try to download them.
RESULT_URL_TTL = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """When to ask the service about a task.

    The first poll comes shortly before the task's ``estimated_time``; later polls aim at
    the remaining time that the task's progress implies; once the expected end has passed,
    intervals grow by ``backoff`` up to ``max_interval``. Every delay gets +-``jitter``.

    Attributes:
        min_interval: never poll more often than this (seconds).
        max_interval: never wait longer than this between polls.
        lead: fraction of the remaining time to wait before the next poll.
        backoff: growth of the interval once the task is late.
        jitter: relative random spread of every delay.
        deadline: seconds after submission before the run is given up as unknown
            (``resume()`` can still finish it).
        default_estimate: the assumed duration when the service gives no hint.
    """

    # 0.1: the last poll lands within ~0.1 s of the end (2 s tasks: lag 5 % instead of 7-10 %,
    # 2.75 polls instead of 2.25; benchmarks/README.md, scenario 2).
    min_interval: float = 0.1
    max_interval: float = 10.0
    lead: float = 0.9
    backoff: float = 1.5
    jitter: float = 0.1
    deadline: float = 1800.0
    default_estimate: float = 10.0


def next_poll_delay(
    policy: PollPolicy,
    *,
    elapsed: float,
    estimated: float | None,
    progress: int,
    late_polls: int,
    rng: random.Random,
) -> float:
    """Seconds to wait before the next status request (pure).

    Args:
        elapsed: seconds since the task was submitted.
        estimated: the service's ``estimated_time`` hint, if any.
        progress: the last progress seen, 0-100.
        late_polls: polls already made after the expected end.
        rng: the source of jitter.
    """
    expected = estimated if estimated and estimated > 0 else policy.default_estimate
    # Progress, once it says something, predicts the end better than the first estimate.
    remaining = elapsed * (100 - progress) / progress if 5 <= progress < 100 and elapsed > 0 else expected - elapsed
    if remaining > policy.min_interval:
        delay = remaining * policy.lead
    else:
        delay = policy.min_interval * policy.backoff**late_polls
    delay = min(max(delay, policy.min_interval), policy.max_interval)
    spread = 1 + policy.jitter * (2 * rng.random() - 1)
    return max(policy.min_interval, delay * spread) if policy.min_interval > 0 else delay * spread


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry transient failures (stamina's parameters).

    Attributes:
        attempts: tries per request, the first included.
        timeout: total seconds for one request and its retries.
        wait_initial, wait_max, wait_jitter: the exponential backoff, in seconds.
    """

    attempts: int = 6
    timeout: float = 180.0
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 1.0


def retry_read(exc: Exception) -> bool | float:
    """Retry predicate for polls, downloads and uploads: network errors, 429 and 5xx.

    Returns the ``Retry-After`` delay when the service sent one.
    """
    if isinstance(exc, RequestError):
        return True
    if isinstance(exc, DownloadError):
        return exc.retryable
    if isinstance(exc, APIError) and (exc.status == 429 or exc.status >= 500):
        return exc.retry_after if exc.retry_after is not None else True
    return False


def retry_submit(exc: Exception) -> bool | float:
    """Retry predicate for creating a task: only when no task can have been created
    (the connection was never made, 429, 503). A 429 that means the account's quota or
    balance is used up (``insufficient_quota``, OpenAI's billing error) is not retried."""
    if isinstance(exc, RequestError):
        return not exc.sent
    if isinstance(exc, APIError) and exc.status in (429, 503) and exc.code not in QUOTA_CODES:
        return exc.retry_after if exc.retry_after is not None else True
    return False


def retry_submit_sync(exc: Exception) -> bool | float:
    """Retry predicate for a synchronous provider's request: as :func:`retry_submit`, and any
    5xx, since its answer is the request's final outcome (nothing was left running)."""
    if isinstance(exc, APIError) and exc.status >= 500:
        return exc.retry_after if exc.retry_after is not None else True
    return retry_submit(exc)


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def _tried(name: str, reason: str, detail: str = "", task_id: str | None = None) -> dict[str, str]:
    entry = {"provider": name, "reason": reason}
    if detail:
        entry["detail"] = detail[:300]
    if task_id:
        entry["task_id"] = task_id
    return entry


class _Hold:
    """One acquired slot of a semaphore, given back at most once."""

    __slots__ = ("_held", "_slots")

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()


_HELD: contextvars.ContextVar[tuple[_Hold, ...]] = contextvars.ContextVar("imgkit_held_slots", default=())


@contextlib.asynccontextmanager
async def hold_slot(slots: asyncio.Semaphore) -> AsyncIterator[None]:
    """Hold one of ``slots`` (the concurrency limit) while a run is at the service.

    The run gives it back with :func:`release_slots` as soon as the service has finished its
    task: downloading and storing the results is local work that must not keep the next run
    from being sent (benchmarks/README.md, scenarios 1 and 3). Nested holds (a sweep's and
    the engine's own) are all given back.
    """
    await slots.acquire()
    hold = _Hold(slots)
    token = _HELD.set((*_HELD.get(), hold))
    try:
        yield
    finally:
        _HELD.reset(token)
        hold.release()


def release_slots() -> None:
    """Give back the slots the current run holds (see :func:`hold_slot`); idempotent."""
    for hold in _HELD.get():
        hold.release()


class Engine:
    """Runs requests through the providers of a router, recording every step in the ledger.

    Args:
        provider: where tasks go: one provider, or a
            :class:`~imgkit.providers.router.Router` over several.
        ledger: where runs are recorded.
        store: where images are kept.
        concurrency: the most tasks in flight at once.
        poll: the polling policy.
        retry: the retry policy.
        max_download_bytes: the cap on one result's size.
        failover_attempts: create attempts on one provider before the next one is tried
            (the last candidate gets ``retry.attempts``).
    """

    def __init__(
        self,
        provider: Provider | Router,
        ledger: Ledger,
        store: Store,
        *,
        concurrency: int = 8,
        poll: PollPolicy | None = None,
        retry: RetryPolicy | None = None,
        max_download_bytes: int = DEFAULT_MAX_BYTES,
        seed: int | None = None,
        failover_attempts: int = 2,
    ) -> None:
        self.router = provider if isinstance(provider, Router) else single(provider)
        self.failover_attempts = failover_attempts
        self.ledger = ledger
        self.store = store
        self.concurrency = concurrency
        self.poll = poll or PollPolicy()
        self.retry = retry or RetryPolicy()
        self.max_download_bytes = max_download_bytes
        self._rng = random.Random(seed)
        self._slots: asyncio.Semaphore | None = None
        self._active: set[str] = set()

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        return self._slots

    @property
    def provider(self) -> Provider:
        """The first configured provider (the only one without routing)."""
        return self.router.primary.provider

    def provider_for(self, record: RunRecord) -> Provider | None:
        """The provider that accepted ``record`` (by name), where polls and downloads go."""
        endpoint = self.router.get(record.provider)
        if endpoint is None and len(self.router.endpoints) == 1:
            endpoint = self.router.primary  # a ledger from before providers had these names
        return endpoint.provider if endpoint is not None else None

    # --- helpers -----------------------------------------------------------------------

    def _retrying(
        self, predicate: Callable[[Exception], bool | float], attempts: int | None = None
    ) -> stamina.BoundAsyncRetryingCaller:
        import stamina  # imported here: it pulls in tenacity, too slow for `import imgkit`

        r = self.retry
        return stamina.AsyncRetryingCaller(
            attempts=attempts or r.attempts,
            timeout=r.timeout,
            wait_initial=r.wait_initial,
            wait_max=r.wait_max,
            wait_jitter=r.wait_jitter,
        ).on(predicate)

    def _save(self, record: RunRecord, on_event: EventHandler | None, message: str = "") -> RunRecord:
        self.ledger.save(record)
        if on_event is not None:
            event = JobEvent(record.run_id, record.status, record.progress, message, record)
            try:
                on_event(event)
            except Exception:  # a broken progress bar must not break the run
                log.exception("event handler failed for run %s", record.run_id)
        return record

    # --- the public surface ------------------------------------------------------------

    def new_record(
        self,
        request: ImageRequest,
        *,
        estimate: Estimate | None,
        tags: Iterable[str] = (),
        run_id: str | None = None,
        provider: str | None = None,
    ) -> RunRecord:
        """A ``created`` record for ``request`` (not yet saved).

        Args:
            provider: the provider the run is expected to go to (its estimate is
                ``estimate``); the first configured one when None.
        """
        return RunRecord(
            run_id=run_id or new_run_id(),
            provider=provider or self.router.primary.name,
            model=request.model,
            prompt=request.prompt,
            size=request.size,
            quality=request.quality,
            n=request.n,
            reference_images=tuple(ref.describe() for ref in request.images),
            mode=request.mode,
            est_credits=estimate.credits if estimate else None,
            est_usd=estimate.usd if estimate else None,
            est_cny=estimate.cny if estimate else None,
            price_sheet=estimate.sheet if estimate else None,
            tags=tuple(tags),
        )

    async def run(
        self,
        request: ImageRequest,
        record: RunRecord,
        *,
        on_event: EventHandler | None = None,
        slots: asyncio.Semaphore | None = None,
    ) -> RunRecord:
        """Take ``record`` (status created) to a terminal status and return it.

        Never raises for the service's failures: they end in the record (``failed`` with a
        code, or ``unknown`` with a reason). Raises only on cancellation.

        Args:
            slots: a semaphore bounding this run instead of the engine's own (a sweep's).
        """
        record = self._save(record, on_event)
        self._active.add(record.run_id)
        try:
            async with hold_slot(slots or self.slots):
                return await self._route(request, record, on_event)
        finally:
            self._active.discard(record.run_id)

    @property
    def in_flight(self) -> frozenset[str]:
        """Run ids this engine is working on now; resume() leaves them alone."""
        return frozenset(self._active)

    async def resume(self, record: RunRecord, *, on_event: EventHandler | None = None) -> RunRecord:
        """Finish a run recorded by an earlier process: poll its task, download its results,
        on the provider that accepted it.

        Runs that never got a task id cannot be found again (the gateway has no task list);
        they are marked unknown with that reason. A run whose provider is not configured in
        this session is left as it is (configure it and resume again).
        """
        if record.task_id is None:
            note = "the process stopped before the service returned a task id; it may have been created"
            return self._save(record.replace(status="unknown", notes=note), on_event)
        if self.provider_for(record) is None:
            log.warning("run %s was accepted by provider %r, which is not configured; left as it is",
                        record.run_id, record.provider)
            return record
        self._active.add(record.run_id)
        try:
            async with self.slots:
                if record.result_urls and record.status in ("downloading", "failed", "unknown"):
                    return await self._download(record, record.result_urls, on_event)
                return await self._follow(record, on_event)
        finally:
            self._active.discard(record.run_id)

    # --- routing -----------------------------------------------------------------------

    async def _route(self, request: ImageRequest, record: RunRecord, on_event: EventHandler | None) -> RunRecord:
        """Send the run to the cheapest provider that takes it, and on to the next while the
        failures prove nothing of the run is alive where it failed."""
        candidates, forced = self.router.plan(request)
        if not candidates:
            why = "; ".join(self.router.refusals(request))
            return self._save(
                record.replace(status="failed", error_code="no_provider",
                               error_message=f"no configured provider serves this request: {why}"),
                on_event,
            )
        tried = list(record.providers_tried)
        references = record.reference_images
        failed: RunRecord | None = None
        failed_entry: dict[str, str] = {}
        message = ""
        for index, cand in enumerate(candidates):
            ticket = self.router.acquire(cand.name, force=forced)
            if ticket is None:
                stats = self.router.breaker(cand.name).stats()
                detail = (f"circuit {stats['state']} after {stats['last_error'] or 'failures'}; "
                          f"probed again in {stats['retry_in_s']:.0f} s")
                tried.append(_tried(cand.name, "circuit_open", detail))
                continue
            later = candidates[index + 1 :]
            last = not later or (not forced and not any(self.router.breaker(c.name).available() for c in later))
            record = self._save(
                self._assign(record, cand, tried, references).replace(status="submitting"), on_event, message
            )
            record, reason = await self._attempt(cand, ticket, request, record, on_event, last=last)
            if reason is None:
                return record
            # Nothing of the run is alive on this provider: it becomes history, the next one
            # starts afresh.
            failed = record
            detail = f"{record.error_code}: {record.error_message}" if record.error_code else ""
            failed_entry = _tried(cand.name, reason, detail, record.task_id)
            tried.append(failed_entry)
            message = f"{cand.name}: {reason}; trying the next provider"
        if failed is None:  # every provider was skipped by its breaker (a race with another run)
            return self._save(
                record.replace(status="failed", error_code="no_provider", providers_tried=tuple(tried),
                               error_message="every provider's circuit is open"),
                on_event,
            )
        # The last provider tried failed too: the run ends on its failure; the others are
        # history. Its own entry is dropped from the history (it is the run's provider).
        history = [t for t in tried if t is not failed_entry]
        summary = ", ".join(f"{t['provider']} ({t['reason']})" for t in tried)
        return self._save(
            failed.replace(providers_tried=tuple(history), notes=f"no provider could serve it: {summary}"),
            on_event,
        )

    @staticmethod
    def _assign(
        record: RunRecord, cand: Candidate, tried: list[dict[str, str]], references: tuple[str, ...]
    ) -> RunRecord:
        est = cand.estimate
        return record.replace(
            provider=cand.name,
            providers_tried=tuple(tried),
            est_credits=est.credits if est else None,
            est_usd=est.usd if est else None,
            est_cny=est.cny if est else None,
            price_sheet=est.sheet if est else None,
            reference_images=references,
            task_id=None,
            progress=0,
            error_code=None,
            error_message=None,
            credits_reserved=None,
            credits_charged=None,
            submitted_at=None,
            completed_at=None,
            estimated_s=None,
            result_urls=(),
            files=(),
            thumbs=(),
            notes=None,
        )

    async def _attempt(
        self,
        cand: Candidate,
        ticket: Ticket,
        request: ImageRequest,
        record: RunRecord,
        on_event: EventHandler | None,
        *,
        last: bool,
    ) -> tuple[RunRecord, str | None]:
        """The run on one provider. Returns the record and, when the next provider may take
        the run, the reason; the breaker hears how the provider did."""
        record, reason = await self._submit(cand, request, record, on_event, last=last)
        if record.task_id is None and record.terminal:  # nothing was accepted
            if reason is not None:
                self.router.failure(ticket, reason)
            elif record.status == "unknown":
                self.router.failure(ticket, "unknown_outcome")
            else:
                self.router.success(ticket)  # the provider answered: the request was refused
            return record, reason
        if not record.terminal:
            record = await self._follow(record, on_event)
        if record.status == "completed":
            self.router.success(ticket, record.latency_s)
        elif record.status == "unknown" or record.error_code in OUTAGE_TASK_CODES:
            self.router.failure(ticket, record.error_code or "unknown_outcome")
            if record.status == "failed":
                # The task is over and failed because of the provider: it cannot deliver or
                # charge anything more, so the next provider may take the run.
                return record, record.error_code
        else:
            self.router.success(ticket)
        return record, None

    # --- steps -------------------------------------------------------------------------

    async def _submit(
        self, cand: Candidate, request: ImageRequest, record: RunRecord, on_event: EventHandler | None, *, last: bool
    ) -> tuple[RunRecord, str | None]:
        """Upload references and create the task on one provider. Returns the record and,
        when it failed without anything being accepted, the reason the next provider may
        take the run (None for the user's own errors and unknown outcomes)."""
        provider = cand.endpoint.provider
        synchronous = cand.endpoint.synchronous
        tries = None if last else min(self.retry.attempts, self.failover_attempts)
        try:
            urls = [await self._retrying(retry_read, tries)(provider.upload, ref) for ref in request.images]
        except DownloadError as exc:
            # The reference itself (a URL imgkit fetched, a file): the user's, not the provider's.
            return self._save(
                record.replace(status="failed", error_code="image_processing_error",
                               error_message=f"reading a reference image: {exc}"),
                on_event,
            ), None
        except ImgkitError as exc:
            code = exc.code if isinstance(exc, APIError) else "upload_failed"
            return self._save(
                record.replace(status="failed", error_code=code, error_message=f"uploading a reference image: {exc}"),
                on_event,
            ), "upload_failed" if outage_on_read(exc) else None
        if urls:
            record = record.replace(reference_images=tuple(urls))
        if urls or record.status != "submitting":  # else _route has just committed this very row
            record = self._save(record.replace(status="submitting"), on_event)
        attempts = record.attempts
        started = time.time()

        async def create() -> TaskSnapshot:
            nonlocal attempts, started
            attempts += 1
            started = time.time()
            return await provider.submit(request, urls)

        try:
            predicate = retry_submit_sync if synchronous else retry_submit
            snapshot = await self._retrying(predicate, tries)(create)
        except (RequestError, APIError) as exc:
            reason = failover_reason(exc, synchronous=synchronous)
            if is_unknown_outcome(exc, synchronous=synchronous):
                if isinstance(exc, RequestError):
                    note = f"the request may have reached the service ({exc}); not resent to avoid paying twice"
                    code, message = "unknown_outcome", str(exc)
                else:
                    note = f"HTTP {exc.status} after sending: a task may have been created; not resent"
                    code, message = exc.code, exc.message
                return self._save(
                    record.replace(status="unknown", attempts=attempts, notes=note, error_code=code,
                                   error_message=message),
                    on_event,
                    note,
                ), None
            if isinstance(exc, RequestError):
                code, message = "connection_error", str(exc)
            else:
                code, message = exc.code, exc.message
            return self._save(
                record.replace(status="failed", attempts=attempts, error_code=code, error_message=message),
                on_event,
            ), reason
        now = time.time()
        record = record.replace(
            task_id=snapshot.task_id,
            status="pending",
            attempts=attempts,
            # When the accepted request was sent: for a synchronous provider the generation
            # happened inside the request, so latency counts from here too.
            submitted_at=started if synchronous else now,
            credits_reserved=snapshot.credits_reserved,
            estimated_s=snapshot.estimated_time,
        )
        if isinstance(snapshot.status, Completed | Failed):
            # Over already (a synchronous provider): _finish commits it, task id included,
            # before anything else happens; one fsync'd commit fewer (benchmarks, scenario 3).
            return await self._finish(record, snapshot, on_event), None
        # Committed before anything else: a crash from here on can be resumed.
        record = self._save(record, on_event)
        return record, None

    async def _follow(self, record: RunRecord, on_event: EventHandler | None) -> RunRecord:
        assert record.task_id is not None
        provider = self.provider_for(record)
        if provider is None:
            note = f"provider {record.provider!r} is not configured; imgkit.resume() checks again once it is"
            return self._save(record.replace(status="unknown", notes=note), on_event, note)
        submitted = record.submitted_at or time.time()
        estimated = record.estimated_s
        progress, late = record.progress, 0
        poller = self._retrying(retry_read)
        polled = False  # ask at least once: resume() may come long after the deadline
        while True:
            elapsed = time.time() - submitted
            if elapsed > self.poll.deadline and polled:
                note = f"no result after {elapsed:.0f} s; imgkit.resume() checks again"
                return self._save(record.replace(status="unknown", notes=note), on_event, note)
            delay = next_poll_delay(
                self.poll, elapsed=elapsed, estimated=estimated, progress=progress, late_polls=late, rng=self._rng
            )
            if elapsed + delay >= (estimated or self.poll.default_estimate):
                late += 1
            await asyncio.sleep(delay)
            polled = True
            try:
                snapshot = await poller(provider.status, record.task_id)
            except APIError as exc:
                if exc.status == 404 or exc.code in ("task_not_found", "resource_not_found"):
                    return self._save(
                        record.replace(status="failed", error_code="resource_not_found", error_message=exc.message),
                        on_event,
                    )
                note = f"lost contact while polling ({exc}); imgkit.resume() checks again"
                return self._save(record.replace(status="unknown", notes=note), on_event, note)
            except ImgkitError as exc:
                note = f"lost contact while polling ({exc}); imgkit.resume() checks again"
                return self._save(record.replace(status="unknown", notes=note), on_event, note)
            if snapshot.estimated_time:
                estimated = snapshot.estimated_time
            if isinstance(snapshot.status, Completed | Failed):
                return await self._finish(record, snapshot, on_event)
            status = "pending" if isinstance(snapshot.status, Pending) else "processing"
            new_progress = snapshot.status.progress
            if status != record.status or new_progress != record.progress:
                record = self._save(record.replace(status=status, progress=new_progress), on_event)
            progress = new_progress

    async def _finish(self, record: RunRecord, snapshot: TaskSnapshot, on_event: EventHandler | None) -> RunRecord:
        now = time.time()
        charged = snapshot.credits_charged if snapshot.credits_charged is not None else record.credits_charged
        reserved = snapshot.credits_reserved if snapshot.credits_reserved is not None else record.credits_reserved
        record = record.replace(credits_charged=charged, credits_reserved=reserved)
        if isinstance(snapshot.status, Failed):
            failure = TaskFailed(snapshot.status.code, snapshot.status.message, task_id=record.task_id or "")
            return self._save(
                record.replace(
                    status="failed",
                    progress=snapshot.status.progress,
                    completed_at=now,
                    error_code=snapshot.status.code,
                    error_message=snapshot.status.message,
                ),
                on_event,
                str(failure),
            )
        assert isinstance(snapshot.status, Completed)
        urls = snapshot.status.results
        record = self._save(
            record.replace(status="downloading", progress=100, completed_at=now, result_urls=urls), on_event
        )
        release_slots()  # the service is done with this run; the next one may be sent
        return await self._download(record, urls, on_event)

    async def _download(self, record: RunRecord, urls: Iterable[str], on_event: EventHandler | None) -> RunRecord:
        urls = tuple(urls)
        if record.completed_at and time.time() - record.completed_at > RESULT_URL_TTL:
            return self._save(
                record.replace(status="failed", error_code="result_expired",
                               error_message="the result URLs expired (24 h) before they were downloaded"),
                on_event,
            )
        provider = self.provider_for(record)
        if provider is None:
            note = f"provider {record.provider!r} is not configured; imgkit.resume() checks again once it is"
            return self._save(record.replace(status="unknown", notes=note), on_event, note)

        async def fetch(url: str) -> StoredImage:
            data = await provider.download(url, self.max_download_bytes)
            return await asyncio.to_thread(self.store.save, data)

        fetch_and_keep = self._retrying(retry_read)
        files, thumbs = list(record.files), list(record.thumbs)
        for index, url in enumerate(urls):
            if index < len(files):
                continue  # kept by an earlier attempt
            try:
                stored = await fetch_and_keep(fetch, url)
            except ImgkitError as exc:
                expired = isinstance(exc, APIError) and exc.status in (403, 404, 410)
                code = "result_expired" if expired else "download_failed"
                return self._save(
                    record.replace(status="failed", files=tuple(files), thumbs=tuple(thumbs), error_code=code,
                                   error_message=f"result {index + 1}/{len(urls)}: {exc}"),
                    on_event,
                )
            files.append(stored.path)
            thumbs.append(stored.thumb)
        if not urls:
            return self._save(
                record.replace(status="failed", error_code="generation_failed_no_content",
                               error_message="the task completed without results"),
                on_event,
            )
        return self._save(
            record.replace(status="completed", files=tuple(files), thumbs=tuple(thumbs), error_code=None,
                           error_message=None),
            on_event,
        )


def raise_for_record(record: RunRecord) -> None:
    """Raise the imgkit error that a failed or unknown record stands for."""
    if record.status == "completed":
        return
    if record.status == "unknown":
        raise UnknownOutcome(f"run {record.run_id}: {record.notes or record.error_message}")
    if record.status == "failed":
        raise TaskFailed(record.error_code or "unknown_error", record.error_message or "", task_id=record.task_id or "")
    raise ImgkitError(f"run {record.run_id} is still {record.status}")
