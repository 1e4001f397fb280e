"""Configuration, the task table and the uploaded files of one sandbox app.

A task's status is never stored: it is a pure function of the wall clock, the task's creation
time and its drawn duration (see `Task.snapshot`). That keeps the fake free of background
timers, lets a test reason about what a poll will see, and lets any number of clients poll
without changing what the others see.

All randomness comes from `random.Random(config.seed)`. It is split at start-up into one
stream per concern (task ids and durations, create faults, poll faults, download faults,
uploads), so that, for example, a burst of polls cannot change the id or duration of the next
task, and turning a fault on does not reshuffle the ids of the tasks that follow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FAULT_NAMES",
    "OPENAI_MODELS",
    "TASK_ERROR_MESSAGES",
    "FaultConfig",
    "SandboxConfig",
    "SandboxState",
    "Snapshot",
    "Task",
    "Upload",
]

#: The models the OpenAI side can serve (``SandboxConfig.openai_models`` picks among them).
OPENAI_MODELS: tuple[str, ...] = ("gpt-image-1", "gpt-image-1.5", "gpt-image-2")

_DEFAULT_LATENCY: dict[str, tuple[float, float]] = {
    "low": (3.0, 0.25),
    "medium": (6.0, 0.25),
    "high": (12.0, 0.25),
}
QUALITY_MULTIPLIER: dict[str, float] = {"low": 0.26, "medium": 1.0, "high": 3.91}
NON_SQUARE_MULTIPLIER = 1.47
UPLOAD_TTL = 72 * 3600.0
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# Rendered PNGs are a few hundred KiB; re-rendering is deterministic, so evicting is safe.
_RENDER_CACHE_SIZE = 128

# The documented task-level business codes [spec §3] with messages in the service's style:
# a short title, a newline, then advice.
TASK_ERROR_MESSAGES: dict[str, str] = {
    "content_policy_violation": (
        "Content policy violation.\nYour request was blocked by safety filters. Please modify "
        "the prompt or input images (no real faces, celebrities, trademarks, NSFW or violence) "
        "and try again."
    ),
    "invalid_parameters": (
        "Invalid parameters.\nA parameter is out of range or unsupported (prompt too long, "
        "image size or ratio out of range, file too big or of an unsupported type)."
    ),
    "image_processing_error": (
        "Image processing error.\nAn input image could not be downloaded or decoded. Use a "
        "JPEG, PNG or WEBP image, or upload it through the file API."
    ),
    "image_dimension_mismatch": (
        "Image dimension mismatch.\nThe input image does not match the requested aspect ratio."
    ),
    "request_cancelled": "Request cancelled.\nThe task was cancelled or interrupted.",
    "generation_failed_no_content": (
        "Generation failed.\nThe model produced no content. Change the prompt and try again."
    ),
    "service_error": (
        "Service error.\nThe upstream service failed and the request is being rerouted. "
        "Retry after 30-60 seconds."
    ),
    "generation_timeout": (
        "Generation timeout.\nThe task ran past the allowed time. Please retry later."
    ),
    "resource_exhausted": (
        "Resource exhausted.\nUpstream capacity is exhausted. Please wait 1-5 minutes."
    ),
    "quota_exceeded": (
        "Quota exceeded.\nA rate, concurrency or balance limit was reached. Slow down "
        "(1-2 s between requests) or top up your account."
    ),
    "service_unavailable": (
        "Service unavailable.\nAn internal authentication or connection problem occurred. "
        "Please retry in a few minutes."
    ),
    "resource_not_found": (
        "Resource not found.\nThe task id is invalid or has expired; expired tasks cannot be "
        "queried."
    ),
    "unknown_error": "Unknown error.\nAn unclassified error occurred. Retry, then contact support.",
}


#: The fault settings that are not probabilities.
_NOT_PROBABILITIES = frozenset({"hang_seconds", "result_fail_first"})


def _probability(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Probabilities of injected faults; all 0.0 (off) by default.

    The create faults are mutually exclusive: one uniform draw per create request is compared
    against their cumulative sum in field order, so their probabilities add up. The same holds
    within the poll faults and within the download faults.

    Attributes:
        create_500: create answers 500 `internal_error`; no task is created.
        create_503: create answers 503 `service_unavailable`; no task is created.
        create_429: create answers 429 `rate_limit_exceeded` without Retry-After.
        create_429_retry_after: create answers 429 with `Retry-After: 1`.
        create_accept_then_500: the task IS created and charged, then 500 is returned, so the
            client cannot know whether it exists.
        create_accept_then_hang: the task IS created and charged, then the response is held
            for `hang_seconds` (or until the client disconnects), so the client times out.
        poll_500: a task poll answers 500 `internal_error`.
        poll_429: a task poll answers 429 `rate_limit_exceeded`.
        task_fail: a created task ends `failed` with a code drawn from the documented task
            error codes.
        download_500: a result-file GET answers 500.
        download_corrupt: a result-file GET answers 200 with truncated or garbage bytes.
        download_403: a result-file GET answers 403 `AccessDenied` (a signed link refused).
        download_404: a result-file GET answers 404 `NoSuchKey` (the file not there yet).
        download_410: a result-file GET answers 410 `Gone`.
        upload_500: a file-API upload answers 500 and stores nothing.
        hang_seconds: how long `create_accept_then_hang` holds the response.
        result_fail_first: each result link answers 404 to its first this many GETs, then
            serves the image (a CDN that has not got the file yet): a count, not a probability.
    """

    create_500: float = 0.0
    create_503: float = 0.0
    create_429: float = 0.0
    create_429_retry_after: float = 0.0
    create_accept_then_500: float = 0.0
    create_accept_then_hang: float = 0.0
    poll_500: float = 0.0
    poll_429: float = 0.0
    task_fail: float = 0.0
    download_500: float = 0.0
    download_corrupt: float = 0.0
    upload_500: float = 0.0
    hang_seconds: float = 30.0
    # Appended after the fields above: the cumulative order of the download faults is
    # download_500, download_corrupt, then these.
    download_403: float = 0.0
    download_404: float = 0.0
    download_410: float = 0.0
    result_fail_first: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name not in _NOT_PROBABILITIES:
                _probability(f.name, getattr(self, f.name))
        if not (isinstance(self.hang_seconds, int | float) and self.hang_seconds >= 0):
            raise ValueError(f"hang_seconds must be >= 0, got {self.hang_seconds!r}")
        count = self.result_fail_first
        if isinstance(count, bool) or not isinstance(count, int | float) or count < 0 or count != int(count):
            raise ValueError(f"result_fail_first must be a whole number >= 0, got {count!r}")
        object.__setattr__(self, "result_fail_first", int(count))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Build from JSON-like data, rejecting unknown names (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault names: {', '.join(unknown)}")
        for key, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number, got {value!r}")
        values: dict[str, Any] = {k: float(v) for k, v in data.items()}
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


FAULT_NAMES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(FaultConfig) if f.name not in _NOT_PROBABILITIES
)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """How a sandbox app behaves. Every default matches the real service where one is known.

    Attributes:
        seed: seeds the app's `random.Random`; the same seed and the same request sequence
            give the same task ids, durations and faults.
        latency: per quality tier, (median seconds, lognormal sigma) of a task's duration.
        time_scale: multiplies every drawn duration (tests use 0.005-0.02). A `[[seconds:x]]`
            prompt directive is a wall duration and is not scaled.
        url_ttl: seconds a result URL stays valid after the task completed (service: 24 h).
        credits: the account's starting balance reported by /v1/credits (``user``); each
            created task reserves `usage.credits_reserved` from it, a task that ends failed
            gives it back, and a task that does not fit gets 402.
        key_credits: the API key's own limit (``token``), None for the account's starting
            balance; ignored with ``key_unlimited``.
        key_unlimited: the key has no limit of its own (``unlimited_credits: true``): only
            the account's balance limits it.
        state_path: a JSON file that keeps the account's balance (and the key's use) across
            restarts: read at start-up when it exists, written on every change. None keeps
            them in memory only.
        credits_per_image: credits for one medium-quality square image; multiplied by the
            quality multiplier (low 0.26, medium 1.0, high 3.91), 1.47 for non-square, and n.
        api_key: None accepts any non-empty Bearer token; otherwise the token must match.
        error_style: "string" is today's envelope (string `code`); "legacy" is the pre-March
            2026 one (integer `code` equal to the HTTP status, `param`, `fallback_suggestion`,
            types such as `insufficient_quota_error`).
        faults: fault probabilities at start-up; `POST /_sandbox/faults` replaces them.
        max_files: file-API quota (files alive at once).
        max_upload_bytes: largest accepted upload.
        openai_models: the models the OpenAI side serves (of :data:`OPENAI_MODELS`:
            gpt-image-1, gpt-image-1.5, gpt-image-2); others answer 404 ``model_not_found``
            like a key without access. The default plays an older account (gpt-image-1
            only); imgkit's in-process sandbox and ``imgkit sandbox`` serve all three.
        stream_done: end an Images stream with ``data: [DONE]`` (no OpenAI source says the
            real stream does; a client must accept both).
        batch_seconds: how long an OpenAI Batch takes to finish, scaled by ``time_scale``.
    """

    seed: int = 0
    latency: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(_DEFAULT_LATENCY))
    time_scale: float = 1.0
    url_ttl: float = 86400.0
    credits: float = 1000.0
    credits_per_image: float = 2.4192
    api_key: str | None = None
    error_style: Literal["string", "legacy"] = "string"
    faults: FaultConfig = field(default_factory=FaultConfig)
    max_files: int = 2000
    max_upload_bytes: int = 100 * 1024 * 1024
    openai_models: tuple[str, ...] = ("gpt-image-1",)
    stream_done: bool = False
    batch_seconds: float = 60.0
    key_credits: float | None = None
    key_unlimited: bool = False
    state_path: str | None = None

    def __post_init__(self) -> None:
        missing = sorted(set(_DEFAULT_LATENCY) - set(self.latency))
        if missing:
            raise ValueError(f"latency needs an entry for every tier; missing {missing}")
        for tier, (median, sigma) in self.latency.items():
            if median <= 0 or sigma < 0:
                raise ValueError(f"latency[{tier!r}] needs median > 0 and sigma >= 0")
        if self.time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        if self.url_ttl < 0:
            raise ValueError("url_ttl must be >= 0")
        if self.error_style not in ("string", "legacy"):
            raise ValueError("error_style must be 'string' or 'legacy'")
        if self.api_key == "":
            raise ValueError("api_key must be None or a non-empty string")
        unknown = sorted(set(self.openai_models) - set(OPENAI_MODELS))
        if unknown:
            raise ValueError(f"openai_models: the sandbox cannot serve {unknown}")
        if self.batch_seconds < 0:
            raise ValueError("batch_seconds must be >= 0")
        if self.key_credits is not None and self.key_credits < 0:
            raise ValueError("key_credits must be None or >= 0")

    def credits_for(self, quality: str, width: int, height: int, n: int, *, model: str = "gpt-image-1") -> float:
        """What `usage.credits_reserved` reports for one request: gpt-image-2 and its beta
        from their shipped price sheets (the token sheet's estimate, the beta's tier), other
        models by the gpt-image-1 formula."""
        if model in _SHEET_OF:
            from imgkit.pricing import estimate

            quality = "auto" if model == "gpt-image-2-beta" else quality
            est = estimate(model=model, quality=quality, size=f"{width}x{height}", n=n, sheet=_SHEET_OF[model])
            return est.credits
        size_mult = 1.0 if width == height else NON_SQUARE_MULTIPLIER
        return round(self.credits_per_image * QUALITY_MULTIPLIER[quality] * size_mult * n, 5)


#: The shipped price sheets the gateway's newer models reserve credits by.
_SHEET_OF = {
    "gpt-image-2": "evolink-gpt-image-2-tokens-2026-12",
    "gpt-image-2-beta": "evolink-gpt-image-2-beta-2026-12",
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a poll sees at one instant."""

    status: Literal["pending", "processing", "completed", "failed"]
    progress: int

    @property
    def terminal(self) -> bool:
        return self.status in ("completed", "failed")


@dataclass(frozen=True, slots=True)
class Task:
    """One created generation task. Immutable: its future is fixed when it is created.

    Attributes:
        id: `task-unified-<unix seconds>-<8 chars>`.
        created: creation time, unix seconds (float).
        model: the model name from the request.
        prompt: the prompt with sandbox directives removed (what gets rendered).
        raw_prompt: the prompt as sent.
        width: output width in pixels.
        height: output height in pixels.
        quality: "low", "medium" or "high".
        n: number of images.
        image_urls: the reference image URLs (empty for text-to-image).
        duration: seconds from creation to the terminal status.
        error_code: the task error code if the task is going to fail, else None.
        credits_reserved: what the create response reported under usage.
        fault: "accept_then_500" / "accept_then_hang" when the create response lied, else None.
        background: "opaque" or "transparent" (drawn with a real alpha channel).
        mask: the edit mask's PNG bytes: its pixels with alpha below 255 are drawn as edited.
    """

    id: str
    created: float
    model: str
    prompt: str
    raw_prompt: str
    width: int
    height: int
    quality: str
    n: int
    image_urls: tuple[str, ...]
    duration: float
    error_code: str | None
    credits_reserved: float
    fault: str | None = None
    background: str = "opaque"
    mask: bytes | None = field(default=None, repr=False)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def finishes_at(self) -> float:
        return self.created + self.duration

    @property
    def estimated_time(self) -> int:
        return max(1, math.ceil(self.duration))

    def snapshot(self, now: float) -> Snapshot:
        """Pending for the first 10 % of the duration, then processing, then terminal."""
        elapsed = now - self.created
        if elapsed >= self.duration:
            # The service's failed example reports progress 0.
            return Snapshot("failed", 0) if self.error_code else Snapshot("completed", 100)
        if elapsed < 0.1 * self.duration:
            return Snapshot("pending", 0)
        return Snapshot("processing", min(99, max(1, int(100 * elapsed / self.duration))))


@dataclass(frozen=True, slots=True)
class Upload:
    """One file stored through the file API."""

    file_id: str
    file_name: str
    original_name: str
    data: bytes
    mime_type: str
    upload_path: str
    uploaded: float
    expires: float


class SandboxState:
    """The mutable side of one app: tasks, uploads, spent credits, current faults.

    Handlers run on the server's event loop while tests may read from another thread, so
    every mutation and every multi-item read takes `_lock`.
    """

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._faults = config.faults
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._result_gets: dict[tuple[str, int], int] = {}
        self._account = _Account.load(config)
        self._tasks: dict[str, Task] = {}
        self._uploads: dict[str, Upload] = {}
        self._renders: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        master = random.Random(config.seed)
        # Fixed order: adding a stream later must append, or every seed's output changes.
        self._task_rng = random.Random(master.getrandbits(64))
        self._create_fault_rng = random.Random(master.getrandbits(64))
        self._poll_fault_rng = random.Random(master.getrandbits(64))
        self._download_fault_rng = random.Random(master.getrandbits(64))
        self._upload_rng = random.Random(master.getrandbits(64))

    # -- faults ---------------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    @faults.setter
    def faults(self, value: FaultConfig) -> None:
        with self._lock:
            self._faults = value
            self._result_gets.clear()  # result_fail_first counts from when it is set

    # -- credits --------------------------------------------------------------------------

    @property
    def credits_used(self) -> float:
        """Credits the key has used: reserved by its tasks, less what failed tasks gave back."""
        with self._lock, self._account.synced() as account:
            account.settle(self.clock())
            return account.key_used

    @property
    def credits_remaining(self) -> float:
        """What the key may still spend: the smaller of its own limit and the account's balance."""
        with self._lock, self._account.synced() as account:
            account.settle(self.clock())
            return round(account.available(), 5)

    def balance(self) -> dict[str, Any]:
        """The ``data`` of ``GET /v1/credits``: the key's and the account's figures."""
        with self._lock, self._account.synced() as account:
            account.settle(self.clock())
            limit = account.key_limit
            token: dict[str, Any] = {
                "remaining_credits": None if limit is None else round(limit - account.key_used, 5),
                "unlimited_credits": account.key_limit is None,
                "used_credits": round(account.key_used, 5),
            }
            if account.key_limit is None:
                # An unlimited key's own figure limits nothing; 0 makes a client that reads it
                # as the balance visibly wrong.
                token["remaining_credits"] = 0.0
            user = {"remaining_credits": round(account.remaining, 5), "used_credits": round(account.used, 5)}
            return {"token": token, "user": user}

    # -- tasks ----------------------------------------------------------------------------

    def tasks(self) -> list[Task]:
        """Every task ever created, oldest first."""
        with self._lock:
            return list(self._tasks.values())

    def get_task(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def draw_create_fault(self) -> tuple[str | None, str | None]:
        """(HTTP-level create fault or None, task error code or None) for one create request.

        Always three draws, whatever the probabilities, so the stream stays aligned with the
        sequence of create requests.
        """
        with self._lock:
            faults = self.faults
            r_http = self._create_fault_rng.random()
            r_fail = self._create_fault_rng.random()
            code = self._create_fault_rng.choice(sorted(TASK_ERROR_MESSAGES))
        names = (
            "create_500",
            "create_503",
            "create_429",
            "create_429_retry_after",
            "create_accept_then_500",
            "create_accept_then_hang",
        )
        return _pick(faults, names, r_http), (code if r_fail < faults.task_fail else None)

    def draw_poll_fault(self) -> str | None:
        with self._lock:
            r = self._poll_fault_rng.random()
            return _pick(self.faults, ("poll_500", "poll_429"), r)

    def draw_download_fault(self) -> tuple[str | None, random.Random]:
        """The fault to apply and a generator for its garbage, drawn under the lock."""
        with self._lock:
            r = self._download_fault_rng.random()
            sub = random.Random(self._download_fault_rng.getrandbits(64))
            names = ("download_500", "download_corrupt", "download_403", "download_404", "download_410")
            return _pick(self.faults, names, r), sub

    def result_not_there_yet(self, task_id: str, index: int) -> bool:
        """Count one GET of a result link; True while it is among the link's first
        ``faults.result_fail_first`` GETs (counted from when the fault was set)."""
        with self._lock:
            key = (task_id, index)
            seen = self._result_gets.get(key, 0) + 1
            self._result_gets[key] = seen
            return seen <= self.faults.result_fail_first

    def draw_upload_fault(self) -> str | None:
        with self._lock:
            r = self._upload_rng.random()
            return _pick(self.faults, ("upload_500",), r)

    def create_task(
        self,
        *,
        model: str,
        prompt: str,
        raw_prompt: str,
        width: int,
        height: int,
        quality: str,
        n: int,
        image_urls: tuple[str, ...],
        error_code: str | None,
        seconds: float | None,
        fault: str | None,
        background: str = "opaque",
        mask: bytes | None = None,
    ) -> Task | None:
        """Create and charge a task; None when the balance cannot cover it."""
        cost = self.config.credits_for(quality, width, height, n, model=model)
        with self._lock, self._account.synced() as account:
            now = self.clock()
            account.settle(now)
            if cost > account.available() + 1e-9:
                return None
            while True:
                suffix = "".join(self._task_rng.choices(_ID_ALPHABET, k=8))
                task_id = f"task-unified-{int(now)}-{suffix}"
                if task_id not in self._tasks:
                    break
            median, sigma = self.config.latency[quality]
            drawn = self._task_rng.lognormvariate(math.log(median), sigma)
            duration = seconds if seconds is not None else drawn * self.config.time_scale
            task = Task(
                id=task_id,
                created=now,
                model=model,
                prompt=prompt,
                raw_prompt=raw_prompt,
                width=width,
                height=height,
                quality=quality,
                n=n,
                image_urls=image_urls,
                duration=duration,
                error_code=error_code,
                credits_reserved=cost,
                fault=fault,
                background=background,
                mask=mask,
            )
            self._tasks[task_id] = task
            # A task that is going to fail gives its reservation back when it does.
            account.reserve(cost, refund_at=task.finishes_at if error_code else None, task_id=task_id)
            return task

    # -- rendered results -----------------------------------------------------------------

    def cached_render(self, key: tuple[str, int]) -> bytes | None:
        with self._lock:
            data = self._renders.get(key)
            if data is not None:
                self._renders.move_to_end(key)
            return data

    def store_render(self, key: tuple[str, int], data: bytes) -> None:
        with self._lock:
            self._renders[key] = data
            self._renders.move_to_end(key)
            while len(self._renders) > _RENDER_CACHE_SIZE:
                self._renders.popitem(last=False)

    # -- uploads --------------------------------------------------------------------------

    def new_file_id(self) -> str:
        with self._lock:
            return f"file_{self._upload_rng.getrandbits(96):024x}"

    def add_upload(self, upload: Upload) -> bool:
        """Store an upload; False when the file quota is used up."""
        with self._lock:
            if self._active_uploads_locked(upload.uploaded) >= self.config.max_files:
                return False
            self._uploads[upload.file_id] = upload
            return True

    def get_upload(self, file_id: str) -> Upload | None:
        now = self.clock()
        with self._lock:
            upload = self._uploads.get(file_id)
        if upload is None or upload.expires <= now:
            return None
        return upload

    def delete_upload(self, file_id: str) -> bool:
        with self._lock:
            return self._uploads.pop(file_id, None) is not None

    def uploads(self) -> list[Upload]:
        now = self.clock()
        with self._lock:
            return [u for u in self._uploads.values() if u.expires > now]

    def used_files(self) -> int:
        with self._lock:
            return self._active_uploads_locked(self.clock())

    def _active_uploads_locked(self, now: float) -> int:
        return sum(1 for u in self._uploads.values() if u.expires > now)


class _Account:
    """The account's balance and the key's use, kept in ``config.state_path`` when set.

    A created task reserves its credits at once; one that ends failed gives them back at the
    moment it fails (:meth:`settle` applies the refunds that are due). The file holds the
    figures and the refunds still due, so a restart keeps both, and several processes sharing
    one file (two kernels on one data directory) see one account: every use goes through
    :meth:`synced`, which reads the file under a lock they all take. Callers also hold the
    state's own lock.
    """

    __slots__ = ("key_limit", "key_used", "path", "pending", "remaining", "used")

    def __init__(self, config: SandboxConfig) -> None:
        self.path = config.state_path
        self.remaining = float(config.credits)
        self.used = 0.0
        self.key_used = 0.0
        limit = config.credits if config.key_credits is None else config.key_credits
        self.key_limit: float | None = None if config.key_unlimited else float(limit)
        self.pending: list[tuple[float, float, str]] = []  # (refund at, credits, task id)

    @classmethod
    def load(cls, config: SandboxConfig) -> _Account:
        account = cls(config)
        account._read()
        return account

    @contextlib.contextmanager
    def synced(self) -> Iterator[_Account]:
        """The account as the state file holds it now; written back when the block changed it
        (and ended without an error), under a lock every process sharing the file takes."""
        if self.path is None:
            yield self
            return
        with _file_lock(self.path + ".lock"):
            self._read()
            before = self._state()
            yield self
            if self._state() != before:
                self._write()

    def available(self) -> float:
        if self.key_limit is None:
            return self.remaining
        return min(self.remaining, self.key_limit - self.key_used)

    def reserve(self, credits: float, *, refund_at: float | None, task_id: str) -> None:
        self.remaining -= credits
        self.used += credits
        self.key_used += credits
        if refund_at is not None:
            self.pending.append((refund_at, credits, task_id))

    def settle(self, now: float) -> None:
        for item in [item for item in self.pending if item[0] <= now]:
            _, credits, _ = item
            self.remaining += credits
            self.used -= credits
            self.key_used -= credits
            self.pending.remove(item)

    def _state(self) -> dict[str, Any]:
        return {
            "account": {"remaining_credits": round(self.remaining, 5), "used_credits": round(self.used, 5)},
            "key": {"used_credits": round(self.key_used, 5)},
            "refunds_due": [list(item) for item in self.pending],
        }

    def _read(self) -> None:
        if self.path is None:
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                saved = json.load(f)
            remaining = float(saved["account"]["remaining_credits"])
            used = float(saved["account"]["used_credits"])
            key_used = float(saved["key"]["used_credits"])
            pending = [(float(at), float(c), str(t)) for at, c, t in saved.get("refunds_due", [])]
        except FileNotFoundError:
            return  # a new account: the configured starting figures
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"state_path {self.path}: not a sandbox state file ({exc})") from None
        self.remaining, self.used, self.key_used, self.pending = remaining, used, key_used, pending

    def _write(self) -> None:
        assert self.path is not None
        # Written whole to a temporary file and renamed over the old one: a crash never
        # leaves half a file.
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".sandbox-state-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._state(), f)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created with its folder), held for the block;
    without ``fcntl`` (Windows) no lock: one process per state file there."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _pick(faults: FaultConfig, names: tuple[str, ...], r: float) -> str | None:
    """The first fault whose cumulative probability exceeds the draw r, if any."""
    total = 0.0
    for name in names:
        total += getattr(faults, name)
        if r < total:
            return name
    return None
