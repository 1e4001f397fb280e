"""The async core: submit, poll, download, with bounded concurrency, declared retries,
fallback across providers and events. It sees the
:class:`~imgkit.providers.base.Provider` protocol (through a
:class:`~imgkit.providers.router.Router`), never a concrete provider.

A run's life, and what the ledger holds at each step::

    created -> submitting -> pending -> processing -> downloading -> completed
                   |             \\__________________________________/
                   |                   failed (code)  |  unknown (reason)
                   +-> failed (nothing was created)   +-> unknown (may have been created)

The task id is appended to the task journal (:mod:`imgkit.journal`, fsync'd) the moment the
service returns it, then committed to the ledger before anything else happens, so
:meth:`Engine.resume` can finish the run from another process, even when that ledger write
failed (:meth:`Engine.restore_journal` puts the id back first). Every ledger write goes
through :meth:`Engine._save`; ``durable`` marks the rows that must be on disk before the run
goes on (the row before the first create, the task id, terminal states).

A run follows its :class:`~imgkit.providers.router.RunPlan`, made once by the router: the
session priced and budgeted that plan, the engine sends it. The provider that accepted the
run travels with it through submit, polling and download; only ``resume()`` looks it up, once,
by the name the ledger recorded. Polling is an async iterator of task snapshots
(:meth:`Engine.poll_task`), timed by :func:`next_poll_delay` on an injected clock and sleep.

Concurrency limits belong to whoever acquires them: a :class:`Slot` is acquired and released by
its owner (the engine's own limit, or a sweep's); a run handed a slot gives it back early, as
soon as the service is done with its task, because downloading and storing the results is
local work that must not keep the next run from being sent (benchmarks/README.md, scenarios 1
and 3).

With several providers, a run goes to the cheapest one that can take it; when that one fails
in a way that proves nothing of the run is still alive there (a refused connection, a 503,
a task that ended with an outage code, ...) the run goes to the next, and
``providers_tried`` keeps who was tried and why. The rules are in
:mod:`imgkit.providers.router`; an outcome that may hide an accepted task is never resent.

A file that cannot be written (the ledger, an image: a full disk, a read-only or locked
ledger) ends the run, not the caller: the run is returned ``failed`` (nothing was sent) or
``unknown`` (its task exists; the journal keeps its id) with ``error_code="storage_error"``
and a message naming the run, the file and what to do; :func:`raise_for_record` raises it
as a :class:`~imgkit.errors.StorageError`. So a sweep or a resume returns every run's outcome.

A request with a mask has it uploaded like a reference image and passed to the provider as
``mask_url``; one with ``previews`` hands the provider an ``on_preview`` callback whose
partial images become ``processing`` events carrying the image (:attr:`JobEvent.preview`).
:meth:`Engine.run_batch` sends many runs as batches (one, or as many as the limits need; each run
keeps its ``batch_id``, task ids ``<batch id>/<run id>``);
:meth:`Engine.resume` looks at such a run once per call instead of polling it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import random
import sqlite3
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from imgkit.costs import NOT_DOWNLOADED_CODES
from imgkit.errors import (
    APIError,
    ConfigError,
    DownloadError,
    ImgkitError,
    RequestError,
    StorageError,
    TaskFailed,
    UnknownOutcome,
    storage_error,
)
from imgkit.journal import Journal
from imgkit.ledger import LedgerBackend
from imgkit.providers.base import (
    BatchProvider,
    Preview,
    PreviewHandler,
    Provider,
    TaskSnapshot,
    batch_task_id,
    is_batch_task,
)
from imgkit.providers.router import (
    QUOTA_CODES,
    Candidate,
    Failover,
    Outcome,
    Router,
    RunPlan,
    Served,
    is_unknown_outcome,
    outage_on_read,
    run_outcome,
    single,
    submit_outcome,
)
from imgkit.request import Completed, Failed, ImageRequest, JobEvent, Pending, RunRecord, successor
from imgkit.store import DEFAULT_MAX_BYTES, Store, StoredImage

if TYPE_CHECKING:
    import stamina

    from imgkit.providers._http import RetryNotice

__all__ = [
    "Engine",
    "EventHandler",
    "PollPolicy",
    "RetryPolicy",
    "Slot",
    "next_poll_delay",
    "result_url_deadline",
    "retry_read",
    "retry_submit",
    "retry_submit_sync",
]

log = logging.getLogger("imgkit")


#: errno values of an OSError that is about a file, not the network (ENOSPC, EDQUOT, EROFS,
#: EFBIG, EACCES, EPERM, EIO).
_STORAGE_ERRNOS = frozenset({28, 122, 30, 27, 13, 1, 5})


def _is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a foreign error about a file imgkit keeps (SQLite's, or an OSError
    naming a file or with a disk errno), which the run turns into a StorageError."""
    if isinstance(exc, sqlite3.Error | StorageError):
        return True
    return isinstance(exc, OSError) and (exc.filename is not None or exc.errno in _STORAGE_ERRNOS)


def _log_failed_write(run_id: str, done: concurrent.futures.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("run %s: a progress row could not be written to the ledger: %s", run_id, done.exception())

P = ParamSpec("P")
T = TypeVar("T")

EventHandler = Callable[[JobEvent], object]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]
#: Result URLs expire after 24 h; past that, resume() does not try to download them.
RESULT_URL_TTL = 24 * 3600.0
#: What a result link answers while it cannot be fetched (not there yet, refused, gone):
#: retried within the link's lifetime, "expired" after it.
GONE_STATUSES = frozenset({403, 404, 410})


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


class Slot:
    """One place under a concurrency limit, owned by the code that acquires it.

    ``async with Slot(limit) as slot:`` waits for a place and gives it back when the block
    ends. The owner may hand ``slot`` to :meth:`Engine.run`, which gives it back early with
    :meth:`release` once the service has finished the run's task (before the downloads);
    releasing twice is harmless.

    Example:
        >>> async with Slot(sweep_limit) as slot:
        ...     record = await engine.run(plan, record, slot=slot)
    """

    __slots__ = ("_held", "_limit")

    def __init__(self, limit: asyncio.Semaphore) -> None:
        self._limit = limit
        self._held = False

    async def __aenter__(self) -> Slot:
        await self._limit.acquire()
        self._held = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        """Give the place back now (at most once)."""
        if self._held:
            self._held = False
            self._limit.release()


class Engine:
    """Runs plans through the providers of a router, recording every step in the ledger.

    Args:
        provider: where tasks go: one provider, or a
            :class:`~imgkit.providers.router.Router` over several.
        ledger: where runs are recorded.
        store: where images are kept.
        concurrency: the most runs at the service at once (unless the caller hands
            :meth:`run` a :class:`Slot` of its own limit).
        poll: the polling policy.
        retry: the retry policy.
        max_download_bytes: the cap on one result's size.
        failover_attempts: create attempts on one provider before the next one is tried
            (the last candidate gets ``retry.attempts``).
        clock: wall-clock seconds (the ledger's times, poll schedules, deadlines).
        sleep: how to wait between polls (injected with the clock in tests).
        journal: where task ids go before the ledger (None: the ledger alone).
    """

    def __init__(
        self,
        provider: Provider | Router,
        ledger: LedgerBackend,
        store: Store,
        *,
        concurrency: int = 8,
        poll: PollPolicy | None = None,
        retry: RetryPolicy | None = None,
        max_download_bytes: int = DEFAULT_MAX_BYTES,
        seed: int | None = None,
        failover_attempts: int = 2,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        journal: Journal | None = None,
    ) -> None:
        self.router = provider if isinstance(provider, Router) else single(provider)
        self.failover_attempts = failover_attempts
        self.ledger = ledger
        self.store = store
        self.concurrency = concurrency
        self.poll = poll or PollPolicy()
        self.retry = retry or RetryPolicy()
        self.max_download_bytes = max_download_bytes
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._slots: asyncio.Semaphore | None = None
        self._active: set[str] = set()
        self.journal = journal
        self._journaled = 0
        # The last record of each run this engine is working on (what a storage error leaves).
        self._latest: dict[str, RunRecord] = {}

    @property
    def slots(self) -> asyncio.Semaphore:
        """The engine's own concurrency limit (for runs not handed a slot)."""
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
    ) -> _Told:
        import stamina  # imported here: it pulls in tenacity, too slow for `import imgkit`

        r = self.retry
        caller = stamina.AsyncRetryingCaller(
            attempts=attempts or r.attempts,
            timeout=r.timeout,
            wait_initial=r.wait_initial,
            wait_max=r.wait_max,
            wait_jitter=r.wait_jitter,
        ).on(predicate)
        return _Told(caller, attempts or r.attempts)

    def _attempts(
        self, predicate: Callable[[Exception], bool | float], attempts: int | None = None
    ) -> AsyncIterable[stamina.Attempt]:
        """The same retries as :meth:`_retrying`, as stamina's ``retry_context``: the caller's
        own ``async for attempt ...: with attempt:`` loop (no wrapper frames around the call)."""
        import stamina

        r = self.retry
        return stamina.retry_context(
            on=predicate,
            attempts=attempts or r.attempts,
            timeout=r.timeout,
            wait_initial=r.wait_initial,
            wait_max=r.wait_max,
            wait_jitter=r.wait_jitter,
        )

    async def _save(self, record: RunRecord, *, durable: bool) -> None:
        """The one place the engine writes the ledger.

        Args:
            durable: the row must be on disk before the run goes on (the row before the
                first create, the task id, terminal states); other rows (progress) may be
                committed later, with the next group.

        The ledger's writer thread commits it either way, so the event loop never waits on a
        disk flush; a durable row is awaited (the loop serves other runs meanwhile).
        """
        if durable:
            try:
                await self.ledger.asave(record)
            except Exception as exc:
                if isinstance(exc, StorageError):
                    raise  # it already says what failed (a database that went away)
                # The ledger raises its backend's errors (sqlite3's), or an imgkit error of its
                # own: either way, this run could not be recorded.
                if not _is_storage_error(exc) and not isinstance(exc, ImgkitError):
                    raise
                raise storage_error(exc, path=_ledger_path(self.ledger), run_id=record.run_id) from exc
            return
        # Queued writes commit in order, so the run's next durable row also waits for this one;
        # a failure here (a full disk) is logged and surfaces again at that durable write.
        self.ledger.save_nowait(record).add_done_callback(functools.partial(_log_failed_write, record.run_id))

    async def _step(
        self, record: RunRecord, on_event: EventHandler | None, message: str = "", *, durable: bool = False
    ) -> RunRecord:
        """Record ``record`` and tell ``on_event``; terminal records are always durable."""
        if record.run_id in self._latest:
            self._latest[record.run_id] = record
        await self._save(record, durable=durable or record.terminal)
        if on_event is not None:
            event = JobEvent(record.run_id, record.status, record.progress, message, record)
            try:
                on_event(event)
            except Exception:  # a broken progress bar must not break the run
                log.exception("event handler failed for run %s", record.run_id)
        return record

    # --- the public surface ------------------------------------------------------------

    def new_record(self, plan: RunPlan, *, tags: Iterable[str] = (), run_id: str | None = None) -> RunRecord:
        """A ``created`` record for ``plan`` (not yet saved), priced at the plan's estimate
        and assigned to the provider the run goes to first."""
        request, est, chosen = plan.request, plan.estimate, plan.chosen
        return RunRecord(
            run_id=run_id or new_run_id(),
            provider=chosen.name if chosen is not None else self.router.primary.name,
            model=request.model,
            prompt=request.prompt,
            size=request.size,
            quality=request.quality,
            n=request.n,
            reference_images=tuple(ref.describe() for ref in request.images),
            mode=request.mode,
            est_credits=est.credits if est else None,
            est_usd=est.usd if est else None,
            est_cny=est.cny if est else None,
            price_sheet=est.sheet if est else None,
            tags=tuple(tags),
            resolution=request.resolution,
            background=request.background,
            output_format=request.output_format,
        )

    async def run(
        self,
        plan: RunPlan,
        record: RunRecord,
        *,
        on_event: EventHandler | None = None,
        slot: Slot | None = None,
    ) -> RunRecord:
        """Take ``record`` (status created) to a terminal status along ``plan`` and return it.

        Never raises for the service's failures: they end in the record (``failed`` with a
        code, or ``unknown`` with a reason), nor for a file that cannot be written (the
        ledger, an image: ``error_code="storage_error"``). Raises only on cancellation.

        Args:
            plan: the router's plan for the run (the one ``record`` was priced from).
            slot: a place the caller holds under its own concurrency limit (a sweep's); the
                run gives it back once the service is done. Without one, the run takes a
                place under the engine's own limit.
        """
        from imgkit.providers._http import retry_listener  # it imports httpx: not at `import imgkit`

        self._active.add(record.run_id)
        self._latest[record.run_id] = record
        try:
            with retry_listener(functools.partial(self._tell_retry, record.run_id, on_event)):
                return await self._run(plan, record, on_event, slot)
        except Exception as exc:
            if not isinstance(exc, StorageError) and not _is_storage_error(exc):
                raise
            return await self._unrecorded(record.run_id, exc, on_event)
        finally:
            self._active.discard(record.run_id)
            self._latest.pop(record.run_id, None)

    async def _run(self, plan: RunPlan, record: RunRecord, on_event: EventHandler | None, slot: Slot | None
                   ) -> RunRecord:
        record = await self._step(record, on_event)
        if slot is not None:
            return await self._route(plan, record, on_event, slot)
        async with Slot(self.slots) as own:
            return await self._route(plan, record, on_event, own)

    def _tell_retry(self, run_id: str, on_event: EventHandler | None, notice: RetryNotice) -> None:
        """A retry of one of the run's requests: a log line and a progress event (the run's
        status unchanged, the notice as its message); nothing is written to the ledger."""
        log.info("run %s: %s", run_id, notice)
        record = self._latest.get(run_id)
        if on_event is None or record is None:
            return
        try:
            on_event(JobEvent(run_id, record.status, record.progress, str(notice), record))
        except Exception:  # a broken progress bar must not break the run
            log.exception("event handler failed for run %s", run_id)

    async def _unrecorded(self, run_id: str, exc: Exception, on_event: EventHandler | None) -> RunRecord:
        """The run's end when a file could not be written: ``failed`` if nothing was sent,
        else ``unknown`` with the task id the journal keeps (resume() finishes it). The row is
        written if the ledger takes it now; the error is logged either way."""
        if isinstance(exc, StorageError):
            error = exc
        elif isinstance(exc, OSError) and exc.filename is not None:
            error = storage_error(exc, path=str(exc.filename), run_id=run_id)
        else:  # an image or thumbnail being written (the store names no file)
            error = storage_error(exc, path=str(self.store.root), run_id=run_id, doing="writing an image into")
        latest = self._latest[run_id]
        if latest.task_id is None and latest.status in ("created", "submitting"):
            record = latest.replace(status="failed", error_code="storage_error", error_message=str(error),
                                    notes="nothing was sent: the run could not be recorded first")
            log.error("%s", error)
        else:
            kept = f"the task journal {self.journal.path} keeps its task id" if self.journal else "note its task id"
            note = f"task {latest.task_id} may still run or be done at the service; {kept}; imgkit.resume() finishes it"
            record = latest.replace(status="unknown", error_code="storage_error", error_message=str(error), notes=note)
            log.error("%s. Task %s (provider %s): %s", error, latest.task_id, latest.provider, note)
        try:
            await self.ledger.asave(record)
        except Exception as again:
            if not _is_storage_error(again) and not isinstance(again, ImgkitError):
                raise
        if on_event is not None:
            with contextlib.suppress(Exception):  # a broken progress bar must not hide the error
                on_event(JobEvent(record.run_id, record.status, record.progress, str(error), record))
        return record

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
        from imgkit.providers._http import retry_listener

        self._latest[record.run_id] = record
        try:
            with retry_listener(functools.partial(self._tell_retry, record.run_id, on_event)):
                return await self._resume_one(record, on_event)
        except Exception as exc:
            if not isinstance(exc, StorageError) and not _is_storage_error(exc):
                raise
            return await self._unrecorded(record.run_id, exc, on_event)
        finally:
            self._latest.pop(record.run_id, None)

    async def _resume_one(self, record: RunRecord, on_event: EventHandler | None) -> RunRecord:
        if record.task_id is None and record.status == "created":
            # The row before the create ("submitting") is written first and durably: a run
            # still "created" was never sent.
            return await self._step(
                record.replace(status="failed", error_code="not_sent",
                               error_message="the process stopped before sending it; nothing was sent or charged"),
                on_event,
            )
        if record.task_id is None:
            note = "the process stopped before the service returned a task id; it may have been created"
            return await self._step(record.replace(status="unknown", notes=note), on_event)
        provider = self.provider_for(record)
        if provider is None:
            log.warning("run %s was accepted by provider %r, which is not configured; left as it is",
                        record.run_id, record.provider)
            return record
        if is_batch_task(record.task_id) and not record.result_urls:
            return await self._collect(provider, record, on_event)
        self._active.add(record.run_id)
        try:
            async with Slot(self.slots) as slot:
                if record.result_urls and record.status in ("downloading", "failed", "unknown"):
                    return await self._download(provider, record, record.result_urls, on_event)
                return await self._follow(provider, record, on_event, slot)
        finally:
            self._active.discard(record.run_id)

    # --- the task journal --------------------------------------------------------------

    #: Task ids appended between two compactions of the journal in a long session.
    COMPACT_EVERY = 256

    async def _keep_task_id(self, run_id: str, task_id: str, provider: str) -> None:
        """Append a task id the service just returned to the journal, before the ledger. If
        that fails, the id goes to the log at ERROR (the ledger write comes next anyway)."""
        if self.journal is None:
            return
        try:
            # Shielded: a cancelled run still finishes writing the line it started.
            await asyncio.shield(asyncio.to_thread(self.journal.append, run_id, task_id, provider))
        except OSError as exc:
            log.error("run %s: task %s (provider %s) could not be written to the task journal %s (%s); "
                      "if the ledger cannot record it either, this log line is where its task id is kept",
                      run_id, task_id, provider, self.journal.path, exc)
            return
        self._journaled += 1
        if self._journaled % self.COMPACT_EVERY == 0:
            # A long session (a kernel open for days) keeps the journal short; entries whose
            # runs are still being recorded stay.
            try:
                await asyncio.to_thread(self.compact_journal)
            except Exception as exc:
                if not _is_storage_error(exc) and not isinstance(exc, ImgkitError):
                    raise
                log.debug("task journal not compacted: %s", exc)

    def _holds(self, task_id: str, record: RunRecord | None) -> bool:
        return record is not None and (
            record.task_id == task_id or any(t.get("task_id") == task_id for t in record.providers_tried)
        )

    def restore_journal(self) -> list[RunRecord]:
        """Put the task ids the ledger missed (its write failed after the create) back from
        the journal, so :meth:`resume` finishes those runs without a second create; then drop
        the entries the ledger holds. Returns the runs restored (now ``pending``).

        Raises:
            StorageError: the ledger could not be read or written.
        """
        journal = self.journal
        if journal is None:
            return []
        restored: list[RunRecord] = []
        try:
            for entry in journal.entries():
                row = self.ledger.get(entry.run_id)
                if row is None:
                    log.error("run %s (task %s on provider %s) is in the task journal %s but not in the ledger "
                              "%s; it cannot be resumed from there", entry.run_id, entry.task_id, entry.provider,
                              journal.path, _ledger_path(self.ledger))
                    continue
                if self._holds(entry.task_id, row):
                    continue
                if row.task_id is not None or row.status not in ("created", "submitting", "unknown"):
                    log.warning("run %s: the task journal names task %s, but the ledger says %s (task %s); "
                                "left as the ledger says", row.run_id, entry.task_id, row.status, row.task_id)
                    continue
                record = row.replace(
                    task_id=entry.task_id, provider=entry.provider, status="pending", submitted_at=entry.time,
                    error_code=None, error_message=None,
                    notes=f"task id restored from the task journal {journal.path}",
                )
                self.ledger.save(record)
                log.info("run %s: task %s restored from the task journal", record.run_id, record.task_id)
                restored.append(record)
            self.compact_journal()
        except Exception as exc:
            if not _is_storage_error(exc) and not isinstance(exc, ImgkitError):
                raise
            raise storage_error(exc, path=_ledger_path(self.ledger), doing="restoring task ids into") from exc
        return restored

    def compact_journal(self) -> int:
        """Drop the journal's entries whose task ids the ledger holds; returns how many are left."""
        if self.journal is None:
            return 0
        return self.journal.compact(
            lambda entries: [e for e in entries if self._holds(e.task_id, self.ledger.get(e.run_id))]
        )

    # --- batches -----------------------------------------------------------------------

    async def run_batch(
        self, candidate: Candidate, records: list[RunRecord], requests: list[ImageRequest], *,
        on_event: EventHandler | None = None,
    ) -> list[RunRecord]:
        """Send ``records`` (status created, priced at the batch rate) as batches on
        ``candidate``'s provider (one, or as many as one batch's limits need:
        :meth:`~imgkit.providers.base.BatchProvider.batch_groups`) and record each run with its
        batch id (``batch_id``, and the task id ``<batch id>/<run id>``). A batch finishes within
        24 h; :meth:`resume` collects it, from this process or a later one. Never raises for
        the service's failures: a batch that could not be sent ends its own runs only.

        Raises:
            ConfigError: the provider cannot run batches.
        """
        provider = candidate.provider
        if not isinstance(provider, BatchProvider):
            raise ConfigError(f"provider {candidate.name!r} cannot run batches (an OpenAI-kind provider can)")
        # Cut before anything is marked: a request no batch can carry fails here, unsent.
        groups = provider.batch_groups([(r.run_id, q) for r, q in zip(records, requests, strict=True)])
        sending = {
            r.run_id: await self._step(
                r.replace(status="submitting", provider=candidate.name, attempts=r.attempts + 1), on_event,
                durable=True,
            )
            for r in records
        }
        done: list[RunRecord] = []
        for index, items in enumerate(groups):
            group = [sending[custom_id] for custom_id, _ in items]
            try:
                batch_id = await self._retrying(retry_submit)(provider.submit_batch, items)
            except (RequestError, APIError) as exc:
                unknown = is_unknown_outcome(exc, synchronous=False)
                status = "unknown" if unknown else "failed"
                code = "unknown_outcome" if isinstance(exc, RequestError) and unknown else (
                    exc.code if isinstance(exc, APIError) else "connection_error")
                note = "the batch may have been created; not resent to avoid paying twice" if unknown else None
                done += [
                    await self._step(r.replace(status=status, error_code=code, error_message=str(exc), notes=note),
                                     on_event, note or "")
                    for r in group
                ]
                continue
            for r in group:  # on disk before the ledger, as a single run's task id is
                await self._keep_task_id(r.run_id, batch_task_id(batch_id, r.run_id), candidate.name)
            now = self._clock()
            part = f", {index + 1} of {len(groups)} batches" if len(groups) > 1 else ""
            note = f"in batch {batch_id}{part} (batch price, done within 24 h); imgkit.resume() collects it"
            done += [
                await self._step(
                    r.replace(task_id=batch_task_id(batch_id, r.run_id), batch_id=batch_id, status="pending",
                              submitted_at=now, notes=note),
                    on_event, note, durable=True,
                )
                for r in group
            ]
        return done

    async def _collect(self, provider: Provider, record: RunRecord, on_event: EventHandler | None) -> RunRecord:
        """Look once at a batch run: still running (left pending, its progress noted), or
        over (its result downloaded and priced, or its failure recorded). A batch takes
        hours, so there is no polling loop: each :meth:`resume` looks again."""
        assert record.task_id is not None
        try:
            snapshot = await self._retrying(retry_read)(provider.status, record.task_id)
        except ImgkitError as exc:
            log.warning("could not read batch run %s (%s); imgkit.resume() tries again", record.run_id, exc)
            return record
        if not snapshot.status.terminal:
            progress = snapshot.status.progress
            if progress != record.progress or record.status != "processing":
                record = await self._step(record.replace(status="processing", progress=progress), on_event)
            return record
        self._active.add(record.run_id)
        try:
            return await self._finish(provider, record, snapshot, on_event, None)
        finally:
            self._active.discard(record.run_id)

    async def poll_task(
        self,
        provider: Provider,
        task_id: str,
        *,
        submitted: float,
        estimated: float | None = None,
        progress: int = 0,
    ) -> AsyncGenerator[TaskSnapshot, None]:
        """Read a task until it ends: yields every snapshot, the last one terminal
        (``Completed`` or ``Failed``).

        The first poll comes near the task's ``estimated_time``, later ones back off (see
        :func:`next_poll_delay`); each read is retried with :func:`retry_read`. Stops without
        a terminal snapshot once :attr:`PollPolicy.deadline` seconds have passed since
        ``submitted`` (after at least one read: a resumed run may be long past it).

        Args:
            provider: the provider that accepted the task.
            task_id: its id there.
            submitted: when it was submitted, on the engine's clock.
            estimated: the service's duration hint, if any.
            progress: the last progress seen, 0-100.

        Raises:
            ImgkitError: a read failed after its retries (``APIError`` 404: the task is gone).

        Example:
            >>> async for snapshot in engine.poll_task(provider, task_id, submitted=t0):
            ...     print(snapshot.status)
        """
        policy = self.poll
        poller = self._retrying(retry_read)
        late = 0
        polled = False
        while True:
            elapsed = self._clock() - submitted
            if elapsed > policy.deadline and polled:
                return
            delay = next_poll_delay(
                policy, elapsed=elapsed, estimated=estimated, progress=progress, late_polls=late, rng=self._rng
            )
            if elapsed + delay >= (estimated or policy.default_estimate):
                late += 1
            await self._sleep(delay)
            polled = True
            snapshot = await poller(provider.status, task_id)
            yield snapshot
            if snapshot.status.terminal:
                return
            if snapshot.estimated_time:
                estimated = snapshot.estimated_time
            progress = snapshot.status.progress

    # --- routing -----------------------------------------------------------------------

    async def _route(
        self, plan: RunPlan, record: RunRecord, on_event: EventHandler | None, slot: Slot
    ) -> RunRecord:
        """Send the run to the plan's candidates in order, on to the next while the failures
        prove nothing of the run is alive where it failed. Each attempt's outcome goes back
        to the router here, once."""
        router = self.router
        candidates = plan.candidates
        if not candidates:
            why = "; ".join(router.refusals(plan.request))
            return await self._step(
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
            ticket = router.acquire(cand.name, force=plan.forced)
            if ticket is None:
                stats = router.breaker(cand.name).stats()
                detail = (f"circuit {stats['state']} after {stats['last_error'] or 'failures'}; "
                          f"probed again in {stats['retry_in_s']:.0f} s")
                tried.append(_tried(cand.name, "circuit_open", detail))
                continue
            later = candidates[index + 1 :]
            last = not later or (not plan.forced and not any(router.breaker(c.name).available() for c in later))
            # Durable: a crash after the create must leave a row that says it may exist.
            record = await self._step(
                self._assign(record, cand, tried, references).replace(status="submitting"),
                on_event, message, durable=True,
            )
            record, outcome = await self._submit(cand, plan.request, record, on_event, slot, last=last)
            if outcome is None:  # a task exists: its end says how the provider did
                if not record.terminal:
                    record = await self._follow(cand.provider, record, on_event, slot)
                outcome = run_outcome(record)
            router.report(ticket, outcome)
            if not isinstance(outcome, Failover):
                return record
            # Nothing of the run is alive on this provider: it becomes history, the next one
            # starts afresh.
            failed = record
            detail = f"{record.error_code}: {record.error_message}" if record.error_code else ""
            failed_entry = _tried(cand.name, outcome.reason, detail, record.task_id)
            tried.append(failed_entry)
            message = f"{cand.name}: {outcome.reason}; trying the next provider"
        if failed is None:  # every provider was skipped by its breaker (a race with another run)
            return await self._step(
                record.replace(status="failed", error_code="no_provider", providers_tried=tuple(tried),
                               error_message="every provider's circuit is open"),
                on_event,
            )
        # The last provider tried failed too: the run ends on its failure; the others are
        # history. Its own entry is dropped from the history (it is the run's provider).
        history = [t for t in tried if t is not failed_entry]
        summary = ", ".join(f"{t['provider']} ({t['reason']})" for t in tried)
        return await self._step(
            failed.replace(providers_tried=tuple(history), notes=f"no provider could serve it: {summary}"),
            on_event,
        )

    @staticmethod
    def _assign(
        record: RunRecord, cand: Candidate, tried: list[dict[str, str]], references: tuple[str, ...]
    ) -> RunRecord:
        """``record`` afresh on ``cand``; the estimate changes only with the provider (the
        plan's first candidate's is in the record already)."""
        if cand.name != record.provider:
            est = cand.estimate
            record = record.replace(
                provider=cand.name,
                est_credits=est.credits if est else None,
                est_usd=est.usd if est else None,
                est_cny=est.cny if est else None,
                price_sheet=est.sheet if est else None,
            )
        return record.replace(
            providers_tried=tuple(tried),
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

    # --- steps -------------------------------------------------------------------------

    async def _submit(
        self,
        cand: Candidate,
        request: ImageRequest,
        record: RunRecord,
        on_event: EventHandler | None,
        slot: Slot,
        *,
        last: bool,
    ) -> tuple[RunRecord, Outcome | None]:
        """Upload references and create the task on one provider. Returns the record and,
        when nothing was accepted, the outcome (None once a task exists)."""
        provider = cand.provider
        synchronous = cand.endpoint.synchronous
        tries = None if last else min(self.retry.attempts, self.failover_attempts)
        mask_url: str | None = None
        try:
            urls = [await self._retrying(retry_read, tries)(provider.upload, ref) for ref in request.images]
            if request.mask is not None:
                # Uploaded like a reference image (the gateway takes its URL as mask_url).
                mask_url = await self._retrying(retry_read, tries)(provider.upload, request.mask)
        except DownloadError as exc:
            # The reference itself (a URL imgkit fetched, a file): the user's, not the provider's.
            return await self._step(
                record.replace(status="failed", error_code="image_processing_error",
                               error_message=f"reading a reference image: {exc}"),
                on_event,
            ), Served()
        except ImgkitError as exc:
            code = exc.code if isinstance(exc, APIError) else "upload_failed"
            return await self._step(
                record.replace(status="failed", error_code=code, error_message=f"uploading a reference image: {exc}"),
                on_event,
            ), Failover("upload_failed") if outage_on_read(exc) else Served()
        if urls:
            record = await self._step(record.replace(reference_images=tuple(urls)), on_event)
        # Passed only when the request needs them: providers of models without masks or
        # previews may keep the protocol's two-argument submit.
        extra: dict[str, Any] = {}
        if mask_url is not None:
            extra["mask_url"] = mask_url
        if request.previews:
            extra["on_preview"] = self._previewer(record, on_event)
        attempts = record.attempts
        started = self._clock()
        snapshot: TaskSnapshot | None = None
        from imgkit.providers._http import retry_attempts

        try:
            with retry_attempts(tries or self.retry.attempts):
                async for attempt in self._attempts(retry_submit_sync if synchronous else retry_submit, tries):
                    with attempt:
                        attempts += 1
                        started = self._clock()
                        snapshot = await provider.submit(request, urls, **extra)
        except (RequestError, APIError) as exc:
            outcome = submit_outcome(exc, synchronous=synchronous)
            if is_unknown_outcome(exc, synchronous=synchronous):
                if isinstance(exc, RequestError):
                    note = f"the request may have reached the service ({exc}); not resent to avoid paying twice"
                    code, message = "unknown_outcome", str(exc)
                else:
                    note = f"HTTP {exc.status} after sending: a task may have been created; not resent"
                    code, message = exc.code, exc.message
                return await self._step(
                    record.replace(status="unknown", attempts=attempts, notes=note, error_code=code,
                                   error_message=message),
                    on_event,
                    note,
                ), outcome
            if isinstance(exc, RequestError):
                code, message = "connection_error", str(exc)
            else:
                code, message = exc.code, exc.message
            return await self._step(
                record.replace(status="failed", attempts=attempts, error_code=code, error_message=message),
                on_event,
            ), outcome
        assert snapshot is not None  # the loop ends only once a create succeeded
        if snapshot.status.terminal:
            # A synchronous provider's answer: the service is done with this run, so the next
            # one may be sent while this one's task id and results are written down.
            slot.release()
        # On disk before anything else can fail: a paid task's id is never lost.
        await self._keep_task_id(record.run_id, snapshot.task_id, cand.name)
        now = self._clock()
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
        if snapshot.status.terminal:
            # Over already (a synchronous provider): _finish commits it, task id included,
            # before anything else happens; one commit fewer (benchmarks, scenario 3).
            return await self._finish(provider, record, snapshot, on_event, slot, new_task=True), None
        # Committed before anything else: a crash from here on can be resumed.
        return await self._step(record, on_event, durable=True), None

    @staticmethod
    def _previewer(record: RunRecord, on_event: EventHandler | None) -> PreviewHandler:
        """What a streaming provider calls with each partial image: a ``processing`` event
        carrying the image (not a ledger row: a preview is not the run's state)."""

        def preview(p: Preview) -> None:
            if on_event is None:
                return
            progress = min(99, 100 * (p.index + 1) // (p.of + 1)) if p.of > 0 else 50
            event = JobEvent(
                record.run_id, "processing", progress, f"preview {p.index + 1} of {p.of}",
                record.replace(status="processing", progress=progress), preview=p.image,
            )
            try:
                on_event(event)
            except Exception:  # a broken gallery must not break the run
                log.exception("event handler failed for run %s", record.run_id)

        return preview

    async def _follow(
        self, provider: Provider, record: RunRecord, on_event: EventHandler | None, slot: Slot
    ) -> RunRecord:
        """Poll the task of ``record`` on ``provider`` to its end, recording its progress."""
        assert record.task_id is not None
        submitted = record.submitted_at or self._clock()
        final: TaskSnapshot | None = None
        snapshots = self.poll_task(
            provider, record.task_id, submitted=submitted, estimated=record.estimated_s, progress=record.progress
        )
        try:
            async with contextlib.aclosing(snapshots):
                async for snapshot in snapshots:
                    if snapshot.status.terminal:
                        final = snapshot
                        continue
                    status = "pending" if isinstance(snapshot.status, Pending) else "processing"
                    progress = snapshot.status.progress
                    if status != record.status or progress != record.progress:
                        record = await self._step(record.replace(status=status, progress=progress), on_event)
        except APIError as exc:
            if exc.status == 404 or exc.code in ("task_not_found", "resource_not_found"):
                return await self._step(
                    record.replace(status="failed", error_code="resource_not_found", error_message=exc.message),
                    on_event,
                )
            note = f"lost contact while polling ({exc}); imgkit.resume() checks again"
            return await self._step(record.replace(status="unknown", notes=note), on_event, note)
        except ImgkitError as exc:
            note = f"lost contact while polling ({exc}); imgkit.resume() checks again"
            return await self._step(record.replace(status="unknown", notes=note), on_event, note)
        if final is None:
            note = f"no result after {self._clock() - submitted:.0f} s; imgkit.resume() checks again"
            return await self._step(record.replace(status="unknown", notes=note), on_event, note)
        return await self._finish(provider, record, final, on_event, slot)

    async def _finish(
        self,
        provider: Provider,
        record: RunRecord,
        snapshot: TaskSnapshot,
        on_event: EventHandler | None,
        slot: Slot | None,
        *,
        new_task: bool = False,
    ) -> RunRecord:
        """Record the task's end; download the results of a completed one.

        Args:
            new_task: the task id is not in the ledger yet (a synchronous provider's answer):
                its first row is durable.
        """
        now = self._clock()
        charged = snapshot.credits_charged if snapshot.credits_charged is not None else record.credits_charged
        reserved = snapshot.credits_reserved if snapshot.credits_reserved is not None else record.credits_reserved
        record = record.replace(credits_charged=charged, credits_reserved=reserved, **_reported(snapshot, record))
        if isinstance(snapshot.status, Failed):
            failure = TaskFailed(snapshot.status.code, snapshot.status.message, task_id=record.task_id or "")
            return await self._step(
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
        record = await self._step(
            record.replace(status="downloading", progress=100, completed_at=now, result_urls=urls),
            on_event,
            durable=new_task,
        )
        if slot is not None:
            slot.release()  # the service is done with this run; the next one may be sent
        return await self._download(provider, record, urls, on_event)

    async def _download(
        self, provider: Provider, record: RunRecord, urls: Iterable[str], on_event: EventHandler | None
    ) -> RunRecord:
        """Fetch and keep the results of a completed task.

        The service made and billed these images, so a run whose results cannot be kept ends
        ``failed`` with ``download_failed`` (retried by :meth:`resume` while the links last)
        or ``result_expired`` (their lifetime is over), and counts what the service reserved
        (:mod:`imgkit.costs`). A link that answers 403/404/410 within its lifetime is retried
        with backoff like a 5xx: a CDN may not have the file yet, or refuse it for a moment.
        """
        urls = tuple(urls)
        if not urls:
            return await self._step(
                record.replace(status="failed", error_code="generation_failed_no_content",
                               error_message="the task completed without results"),
                on_event,
            )
        deadline = result_url_deadline(record.completed_at, urls)
        if deadline is not None and self._clock() >= deadline:
            return await self._not_downloaded(
                record, urls, "result_expired", f"the result links expired at {_utc(deadline)}", on_event
            )

        async def fetch(url: str) -> StoredImage:
            data = await provider.download(url, self.max_download_bytes)
            return await self.store.asave(data)

        def expired(exc: Exception) -> bool:
            # The provider itself says the result is gone for good (OpenAI's inline results
            # of an earlier process), or the links' lifetime is over.
            if not isinstance(exc, APIError):
                return False
            if exc.code == "result_expired":
                return True
            return exc.status in GONE_STATUSES and deadline is not None and self._clock() >= deadline

        def retry_download(exc: Exception) -> bool | float:
            if isinstance(exc, APIError) and (exc.status in GONE_STATUSES or exc.code == "result_expired"):
                return not expired(exc)
            return retry_read(exc)

        fetch_and_keep = self._retrying(retry_download)
        files, thumbs = list(record.files), list(record.thumbs)
        for index, url in enumerate(urls):
            if index < len(files):
                continue  # kept by an earlier attempt
            try:
                stored = await fetch_and_keep(fetch, url)
            except ImgkitError as exc:
                record = record.replace(files=tuple(files), thumbs=tuple(thumbs))
                code = "result_expired" if expired(exc) else "download_failed"
                return await self._not_downloaded(record, urls, code, f"result {index + 1}/{len(urls)}: {exc}",
                                                  on_event, deadline=deadline)
            files.append(stored.path)
            thumbs.append(stored.thumb)
        return await self._step(
            record.replace(status="completed", files=tuple(files), thumbs=tuple(thumbs), error_code=None,
                           error_message=None),
            on_event,
        )

    async def _not_downloaded(
        self,
        record: RunRecord,
        urls: tuple[str, ...],
        code: str,
        reason: str,
        on_event: EventHandler | None,
        *,
        deadline: float | None = None,
    ) -> RunRecord:
        """End ``record`` as made and billed but not (all) kept, saying so."""
        made = len(urls)
        kept = len(record.files)
        images = f"{made} image{'s' if made != 1 else ''}"
        which = "they" if kept == 0 else f"{made - kept} of them"
        message = f"the service made and billed {images}; {which} could not be downloaded: {reason}"
        if code == "download_failed":
            until = f" (until {_utc(deadline)})" if deadline is not None else ""
            message += f"; imgkit.resume() tries again while the links last{until}"
        return await self._step(
            record.replace(status="failed", error_code=code, error_message=message), on_event, message
        )


def result_url_deadline(completed_at: float | None, urls: Iterable[str]) -> float | None:
    """When a task's result links stop working (pure): :data:`RESULT_URL_TTL` after the task
    completed, or earlier when a link states its own expiry (an ``expires`` query parameter in
    Unix seconds, as signed links carry). None when neither is known.

    Example:
        >>> result_url_deadline(1000.0, ["https://cdn.example/0.png?expires=5000"])
        5000.0
    """
    from urllib.parse import parse_qsl, urlsplit

    bounds = [completed_at + RESULT_URL_TTL] if completed_at is not None else []
    for url in urls:
        try:
            query = parse_qsl(urlsplit(url).query)
        except ValueError:
            continue
        for name, value in query:
            if name.lower() == "expires" and value.isdigit():
                bounds.append(float(value))
    return min(bounds) if bounds else None


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _reported(snapshot: TaskSnapshot, record: RunRecord) -> dict[str, Any]:
    """What the service's answer adds to a run's record (pure): the token usage it reported
    (``usage.input_tokens``/``output_tokens``: OpenAI's, or a gateway's when it reports them),
    the partial images a stream sent, and the file format and background it says it made
    when the request left them to it. Only what the answer holds: nothing is guessed."""
    raw = snapshot.raw if isinstance(snapshot.raw, dict) else {}
    usage: dict[str, Any] = raw["usage"] if isinstance(raw.get("usage"), dict) else {}
    counts = {"tokens_in": usage.get("input_tokens"), "tokens_out": usage.get("output_tokens"),
              "partial_images": raw.get("partial_images")}
    found: dict[str, Any] = {name: _count(v) for name, v in counts.items() if _count(v) is not None}
    if record.output_format is None and raw.get("output_format") in ("png", "jpeg", "webp"):
        found["output_format"] = raw["output_format"]
    if record.background is None and raw.get("background") in ("opaque", "transparent"):
        found["background"] = raw["background"]
    return found


def raise_for_record(record: RunRecord) -> None:
    """Raise the imgkit error that a failed or unknown record stands for: a run whose images
    were made and billed but not downloaded raises :class:`~imgkit.errors.DownloadError`
    (its message says so), not :class:`~imgkit.errors.TaskFailed`."""
    if record.status == "completed":
        return
    if record.error_code == "storage_error":
        raise StorageError(record.error_message or f"run {record.run_id} could not be recorded",
                           run_id=record.run_id)
    if record.status == "unknown":
        raise UnknownOutcome(f"run {record.run_id}: {record.notes or record.error_message}")
    if record.status == "failed" and record.error_code in NOT_DOWNLOADED_CODES:
        raise DownloadError(f"run {record.run_id} (task {record.task_id}): {record.error_message}")
    if record.status == "failed":
        raise TaskFailed(record.error_code or "unknown_error", record.error_message or "", task_id=record.task_id or "",
                         hint=_model_hint(record))
    raise ImgkitError(f"run {record.run_id} is still {record.status}")


#: The codes by which a service says it does not serve a model (to this key).
_MODEL_REFUSED = ("model_not_found", "model_access_denied")


def _model_hint(record: RunRecord) -> str | None:
    """For a run the service refused for its model, what to use instead: the successor of a
    retired model (OpenAI retired gpt-image-1 on 2026-10-23), else a word on access."""
    if record.error_code not in _MODEL_REFUSED:
        return None
    later = successor(record.model)
    if later is None:
        return f"{record.model} is not served to this key; check the account's model access or choose another model"
    return (f"{record.model} is retired or not served to this key; use {later}: "
            f"imgkit.configure(model={later!r}) or model={later!r}")


def _ledger_path(ledger: object) -> str | None:
    """Where a ledger lives, to name it in an error (None for one without a file)."""
    path = getattr(ledger, "path", None)
    return None if path is None else str(path)


class _Told:
    """A stamina retrying caller whose retries are told (:func:`retry_attempts`): the notices
    name the attempt out of how many."""

    __slots__ = ("_attempts", "_caller")

    def __init__(self, caller: stamina.BoundAsyncRetryingCaller, attempts: int) -> None:
        self._caller = caller
        self._attempts = attempts

    async def __call__(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        from imgkit.providers._http import retry_attempts

        with retry_attempts(self._attempts):
            return await self._caller(fn, *args, **kwargs)
