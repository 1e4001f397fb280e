"""The async core: submit, poll, download, with bounded concurrency, declared retries and
events. It sees a :class:`~imgkit.providers.base.Provider`, never a concrete one.

A run's life, and what the ledger holds at each step::

    created -> submitting -> pending -> processing -> downloading -> completed
                   |             \\__________________________________/
                   |                   failed (code)  |  unknown (reason)
                   +-> failed (nothing was created)   +-> unknown (may have been created)

The task id is committed to the ledger before anything else happens after the submit, so
:meth:`Engine.resume` can finish the run from another process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
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
from imgkit.request import Completed, Failed, ImageRequest, JobEvent, Pending, RunRecord
from imgkit.store import DEFAULT_MAX_BYTES, Store, StoredImage

if TYPE_CHECKING:
    import stamina

__all__ = [
    "Engine",
    "EventHandler",
    "PollPolicy",
    "RetryPolicy",
    "next_poll_delay",
    "retry_read",
    "retry_submit",
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

    min_interval: float = 0.2
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
    if 5 <= progress < 100 and elapsed > 0:
        remaining = elapsed * (100 - progress) / progress
    else:
        remaining = expected - elapsed
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
    if isinstance(exc, APIError):
        if exc.status == 429 or exc.status >= 500:
            return exc.retry_after if exc.retry_after is not None else True
    return False


def retry_submit(exc: Exception) -> bool | float:
    """Retry predicate for creating a task: only when no task can have been created
    (the connection was never made, 429, 503)."""
    if isinstance(exc, RequestError):
        return not exc.sent
    if isinstance(exc, APIError) and exc.status in (429, 503):
        return exc.retry_after if exc.retry_after is not None else True
    return False


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


class Engine:
    """Runs requests through one provider, recording every step in the ledger.

    Args:
        provider: where tasks go.
        ledger: where runs are recorded.
        store: where images are kept.
        concurrency: the most tasks in flight at once.
        poll: the polling policy.
        retry: the retry policy.
        max_download_bytes: the cap on one result's size.
    """

    def __init__(
        self,
        provider: Provider,
        ledger: Ledger,
        store: Store,
        *,
        concurrency: int = 8,
        poll: PollPolicy | None = None,
        retry: RetryPolicy | None = None,
        max_download_bytes: int = DEFAULT_MAX_BYTES,
        seed: int | None = None,
    ) -> None:
        self.provider = provider
        self.ledger = ledger
        self.store = store
        self.concurrency = concurrency
        self.poll = poll or PollPolicy()
        self.retry = retry or RetryPolicy()
        self.max_download_bytes = max_download_bytes
        self._rng = random.Random(seed)
        self._slots: asyncio.Semaphore | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        return self._slots

    # --- helpers -----------------------------------------------------------------------

    def _retrying(self, predicate: Callable[[Exception], bool | float]) -> stamina.BoundAsyncRetryingCaller:
        import stamina  # imported here: it pulls in tenacity, too slow for `import imgkit`

        r = self.retry
        return stamina.AsyncRetryingCaller(
            attempts=r.attempts,
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
    ) -> RunRecord:
        """A ``created`` record for ``request`` (not yet saved)."""
        return RunRecord(
            run_id=run_id or new_run_id(),
            provider=self.provider.name,
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
        async with slots or self.slots:
            record = await self._submit(request, record, on_event)
            if record.terminal:
                return record
            return await self._follow(record, on_event)

    async def resume(self, record: RunRecord, *, on_event: EventHandler | None = None) -> RunRecord:
        """Finish a run recorded by an earlier process: poll its task, download its results.

        Runs that never got a task id cannot be found again (the gateway has no task list);
        they are marked unknown with that reason.
        """
        if record.task_id is None:
            note = "the process stopped before the service returned a task id; it may have been created"
            return self._save(record.replace(status="unknown", notes=note), on_event)
        async with self.slots:
            if record.result_urls and record.status in ("downloading", "failed", "unknown"):
                return await self._download(record, record.result_urls, on_event)
            return await self._follow(record, on_event)

    # --- steps -------------------------------------------------------------------------

    async def _submit(
        self, request: ImageRequest, record: RunRecord, on_event: EventHandler | None
    ) -> RunRecord:
        try:
            urls = [await self._retrying(retry_read)(self.provider.upload, ref) for ref in request.images]
        except ImgkitError as exc:
            code = exc.code if isinstance(exc, APIError) else "upload_failed"
            return self._save(
                record.replace(status="failed", error_code=code, error_message=f"uploading a reference image: {exc}"),
                on_event,
            )
        if urls:
            record = record.replace(reference_images=tuple(urls))
        record = self._save(record.replace(status="submitting"), on_event)
        attempts = 0

        async def create() -> TaskSnapshot:
            nonlocal attempts
            attempts += 1
            return await self.provider.submit(request, urls)

        try:
            snapshot = await self._retrying(retry_submit)(create)
        except RequestError as exc:
            if exc.sent:
                note = f"the request may have reached the service ({exc}); not resent to avoid paying twice"
                return self._save(
                    record.replace(status="unknown", attempts=attempts, notes=note, error_code="unknown_outcome",
                                   error_message=str(exc)),
                    on_event,
                    note,
                )
            return self._save(
                record.replace(status="failed", attempts=attempts, error_code="connection_error", error_message=str(exc)),
                on_event,
            )
        except APIError as exc:
            if exc.status >= 500 and exc.status != 503:
                note = f"HTTP {exc.status} after sending: a task may have been created; not resent"
                return self._save(
                    record.replace(status="unknown", attempts=attempts, notes=note, error_code=exc.code,
                                   error_message=exc.message),
                    on_event,
                    note,
                )
            return self._save(
                record.replace(status="failed", attempts=attempts, error_code=exc.code, error_message=exc.message),
                on_event,
            )
        now = time.time()
        record = record.replace(
            task_id=snapshot.task_id,
            status="pending",
            attempts=attempts,
            submitted_at=now,
            credits_reserved=snapshot.credits_reserved,
            estimated_s=snapshot.estimated_time,
        )
        # Committed before anything else: a crash from here on can be resumed.
        record = self._save(record, on_event)
        if isinstance(snapshot.status, Completed | Failed):
            return await self._finish(record, snapshot, on_event)
        return record

    async def _follow(self, record: RunRecord, on_event: EventHandler | None) -> RunRecord:
        assert record.task_id is not None
        submitted = record.submitted_at or time.time()
        estimated = record.estimated_s
        progress, late = record.progress, 0
        poller = self._retrying(retry_read)
        while True:
            elapsed = time.time() - submitted
            if elapsed > self.poll.deadline:
                note = f"no result after {elapsed:.0f} s; imgkit.resume() checks again"
                return self._save(record.replace(status="unknown", notes=note), on_event, note)
            delay = next_poll_delay(
                self.poll, elapsed=elapsed, estimated=estimated, progress=progress, late_polls=late, rng=self._rng
            )
            if elapsed + delay >= (estimated or self.poll.default_estimate):
                late += 1
            await asyncio.sleep(delay)
            try:
                snapshot = await poller(self.provider.status, record.task_id)
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
        return await self._download(record, urls, on_event)

    async def _download(self, record: RunRecord, urls: Iterable[str], on_event: EventHandler | None) -> RunRecord:
        urls = tuple(urls)
        if record.completed_at and time.time() - record.completed_at > RESULT_URL_TTL:
            return self._save(
                record.replace(status="failed", error_code="result_expired",
                               error_message="the result URLs expired (24 h) before they were downloaded"),
                on_event,
            )
        async def fetch(url: str) -> StoredImage:
            data = await self.provider.download(url, self.max_download_bytes)
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
