"""The exceptions imgkit raises, in one tree.

::

    ImgkitError
    ├── ValidationError (also ValueError)   bad input, raised before any request is sent
    ├── ConfigError                          no usable key, a bad setting, a missing extra
    ├── BudgetExceeded                       a run the configured budget does not allow
    ├── ConfirmationRequired                 a sweep above the sweep threshold, not confirmed
    ├── RequestError                         network failure or timeout (retryable)
    ├── APIError                             an HTTP error from the service, with its parsed body
    ├── TaskFailed                           the task ended ``failed`` with a business code
    ├── UnknownOutcome                       a submit whose result cannot be known (not resent)
    ├── DownloadError                        a result that could not be fetched or is no image
    └── StorageError                         the ledger, an image or the journal could not be written

Foreign errors (httpx, Pillow, sqlite3) are translated at the boundary with ``raise ... from``.
No message ever contains an API key: messages are built from parsed fields, never from a
request's headers, and text that comes from a service (which may quote back the token it was
sent) has key-shaped tokens masked by :func:`redact`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "APIError",
    "BudgetExceeded",
    "ConfigError",
    "ConfirmationRequired",
    "DownloadError",
    "ImgkitError",
    "RequestError",
    "StorageError",
    "TaskFailed",
    "UnknownOutcome",
    "ValidationError",
]


# Key-shaped tokens a service may quote back ("Incorrect API key provided: sk-proj-..."),
# whichever provider built the error. Providers also mask their own key exactly.
_KEY_TOKEN = re.compile(r"\bsk-[A-Za-z0-9][A-Za-z0-9_\-]{5,}")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")


def redact(text: str) -> str:
    """``text`` with API-key-shaped tokens (``sk-...``, ``Bearer ...``) masked."""
    return _BEARER.sub(r"\1 ****", _KEY_TOKEN.sub("sk-****", text))


class ImgkitError(Exception):
    """Root of every error imgkit raises."""


class ValidationError(ImgkitError, ValueError):
    """A request field has a value the service does not allow.

    Attributes:
        field: the name of the field, as the user typed it (``"quality"``, ``"images[3]"``).
        value: the rejected value (shortened for display).
        allowed: a human description of what is allowed.
        hint: what was wrong with the value, when that helps (``"it has 61.2 MB"``).
    """

    def __init__(self, field: str, value: object, allowed: str, *, hint: str = "") -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.hint = hint
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        message = f"{field}={shown} is not allowed: {allowed}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class ConfigError(ImgkitError):
    """A setting is missing or wrong (no key for the live service, an unknown price sheet)."""


class BudgetExceeded(ImgkitError):
    """The configured budget does not allow this run; nothing was sent."""


class ConfirmationRequired(ImgkitError):
    """A sweep is estimated above the session's ``sweep_threshold`` and nobody confirmed it;
    nothing was sent. Pass ``confirm=True``, or raise ``sweep_threshold``.

    Attributes:
        credits: the sweep's estimated credits.
        threshold: the threshold it is above.
    """

    def __init__(self, message: str, *, credits: float | None = None, threshold: float | None = None) -> None:
        super().__init__(message)
        self.credits = credits
        self.threshold = threshold


class RequestError(ImgkitError):
    """The request did not get an HTTP answer: connection failure or timeout.

    Attributes:
        sent: False when the request surely never reached the service (the connection was
            never made), True when it may have (a timeout or reset after sending).
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        self.sent = sent
        super().__init__(message)


class APIError(ImgkitError):
    """The service answered with an HTTP error.

    Tolerant of both documented envelopes: ``{"error": {"code": "insufficient_quota", ...}}``
    (string codes, current) and ``{"error": {"code": 402, "param": ..., ...}}`` (integer
    codes, older pages), and of the file API's ``{"success": false, "code": 400, "msg": ...}``.

    Attributes:
        status: the HTTP status code.
        code: the service's error code as a string (``"rate_limit_exceeded"``, ``"402"``).
        message: the service's message.
        type: the service's error type, when given.
        retry_after: seconds from a ``Retry-After`` header, when present.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        type: str = "",
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        self.status = status
        self.code = redact(code)
        self.message = message = redact(message)
        self.type = type
        self.retry_after = retry_after
        self.body = body
        super().__init__(f"HTTP {status} {self.code}: {message}")

    @classmethod
    def from_parts(
        cls, status: int, content: bytes, headers: Iterable[tuple[str, str]] = ()
    ) -> APIError:
        """Build from a status, raw body and headers, whatever the body looks like."""
        retry_after = None
        for name, value in headers:
            if name.lower() == "retry-after":
                retry_after = _parse_retry_after(value)
        # Masked before parsing, so the parsed body kept for debugging holds no key either.
        if b"sk-" in content or b"earer" in content:
            content = redact(content.decode("utf-8", "replace")).encode()
        body: Any
        try:
            body = json.loads(content) if content else None
        except ValueError:
            body = None
        code, message, type_ = str(status), "", ""
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                # OpenAI sends "code": null for many errors; keep the HTTP status then.
                code = code if err.get("code") is None else str(err["code"])
                message = str(err.get("message", ""))
                type_ = str(err.get("type", ""))
            elif isinstance(err, str):
                message = err
            elif body.get("success") is False:
                code = str(body.get("code", code))
                message = str(body.get("msg", body.get("message", "")))
        if not message:
            text = content[:200].decode("utf-8", "replace").strip()
            message = text or "no message"
        return cls(status, code, message, type=type_, retry_after=retry_after, body=body)


def _parse_retry_after(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when.timestamp() - time.time())


class TaskFailed(ImgkitError):
    """The task ended ``failed``; ``code`` is the gateway's business code."""

    def __init__(self, code: str, message: str, *, task_id: str = "", hint: str | None = None) -> None:
        self.code = code
        self.message = message = redact(message)
        self.task_id = task_id
        hint = hint or TASK_ERROR_HINTS.get(code, "")
        # No task id: the service refused the create request itself (a wrong key, a rate limit
        # that outlasted the retries), so no task existed and nothing was charged.
        text = (
            f"task {task_id} failed: {code}: {message}" if task_id
            else f"the service refused the request (no task was created, nothing was charged): {code}: {message}"
        )
        if hint:
            text += f" (hint: {hint})"
        super().__init__(text)


class UnknownOutcome(ImgkitError):
    """A generation request may or may not have created a task; it is not sent again."""


class DownloadError(ImgkitError):
    """A result could not be downloaded, was too large, or is not a valid image.

    Attributes:
        retryable: True when another attempt may succeed (truncated or garbled bytes),
            False when it cannot (over the size cap, a decompression bomb, a bad URL).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


class StorageError(ImgkitError):
    """A file imgkit keeps (the ledger, an image, the task journal) could not be written or
    read: a full disk, a read-only or locked ledger, a folder imgkit may not write. The
    message names the run, the file or folder and what to do; build one with
    :func:`storage_error`.

    Attributes:
        path: the file or folder concerned (None when unknown).
        run_id: the run that was being recorded (None outside a run).
        reason: ``"disk_full"``, ``"read_only"``, ``"locked"``, ``"damaged"``, ``"too_large"``,
            ``"unavailable"`` (a ledger database that cannot be reached) or ``"io"``.
    """

    def __init__(self, message: str, *, path: str | None = None, run_id: str | None = None,
                 reason: str = "io") -> None:
        self.path = path
        self.run_id = run_id
        self.reason = reason
        super().__init__(message)


#: errno values by what they mean to a user (ENOSPC, EDQUOT; EROFS, EACCES, EPERM; EFBIG).
_DISK_FULL_ERRNOS = frozenset({28, 122})
_READ_ONLY_ERRNOS = frozenset({30, 13, 1})
_TOO_LARGE_ERRNOS = frozenset({27})

#: What to do, by reason.
STORAGE_ADVICE: dict[str, str] = {
    "disk_full": "free space on that disk (or point IMGKIT_HOME at a folder on a disk with room), "
                 "then call imgkit.resume() to finish the runs",
    "too_large": "a file size limit (ulimit -f) stopped the write; raise it, or point IMGKIT_HOME at "
                 "another folder, then call imgkit.resume()",
    "read_only": "make the file and its folder writable, or point IMGKIT_HOME at a writable folder, "
                 "then call imgkit.resume()",
    "locked": "another process kept the ledger locked; wait for it to finish (or close it) and call "
              "imgkit.resume()",
    "damaged": "the ledger file is damaged; keep a copy with `imgkit ledger backup PATH` if it still "
               "opens, restore an earlier backup, or point IMGKIT_HOME at a new folder",
    "unavailable": "the ledger's database cannot be reached; check the server, the network and "
                   "IMGKIT_LEDGER, then call imgkit.resume() (the task journal keeps the task ids meanwhile)",
    "io": "check the disk and the folder's permissions (IMGKIT_HOME), then call imgkit.resume()",
}


def storage_reason(exc: BaseException) -> str:
    """What a foreign storage error means (pure): see :attr:`StorageError.reason`.
    Knows ``OSError`` by its errno and SQLite's errors (any driver) by their text."""
    errno = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and errno is not None:
        if errno in _DISK_FULL_ERRNOS:
            return "disk_full"
        if errno in _READ_ONLY_ERRNOS:
            return "read_only"
        if errno in _TOO_LARGE_ERRNOS:
            return "too_large"
        return "io"
    text = str(exc).lower()
    for needle, reason in (
        ("ledger database", "unavailable"),
        ("connect", "unavailable"),
        ("full", "disk_full"),
        ("readonly", "read_only"),
        ("read-only", "read_only"),
        ("locked", "locked"),
        ("busy", "locked"),
        ("malformed", "damaged"),
        ("not a database", "damaged"),
        ("corrupt", "damaged"),
    ):
        if needle in text:
            return reason
    return "io"


_WHAT = {"disk_full": "the disk is full", "read_only": "it is read-only", "locked": "it is locked",
         "damaged": "it is damaged", "too_large": "the file size limit was reached",
         "unavailable": "it cannot be reached", "io": "an I/O error"}


def storage_error(
    exc: BaseException, *, path: str | None, run_id: str | None = None, doing: str = "writing"
) -> StorageError:
    """The :class:`StorageError` for a foreign error ``exc`` (an ``OSError``, a SQLite error)
    raised while ``doing`` ``path`` for run ``run_id`` (pure).

    Example:
        >>> storage_error(OSError(28, "No space left on device"), path="/data/ledger.sqlite3",
        ...               run_id="run-1").reason
        'disk_full'
    """
    reason = storage_reason(exc)
    where = path or getattr(exc, "filename", None) or "a file in the data directory"
    who = f"run {run_id}: " if run_id else ""
    detail = redact(str(exc)) or type(exc).__name__
    message = f"{who}{doing} {where} failed: {_WHAT[reason]} ({detail}); {STORAGE_ADVICE[reason]}"
    return StorageError(message, path=str(where), run_id=run_id, reason=reason)


#: Plain-language advice per documented task error code (spec §3).
TASK_ERROR_HINTS: dict[str, str] = {
    "content_policy_violation": "blocked by safety filters; change the prompt or images",
    "invalid_parameters": "a parameter is out of range; fix the request",
    "image_processing_error": "a reference image is unreachable or unsupported; upload it",
    "image_dimension_mismatch": "a reference image does not match the requested aspect",
    "request_cancelled": "the task was cancelled or interrupted; submit it again",
    "generation_failed_no_content": "the model produced nothing; rephrase and retry",
    "service_error": "upstream failure; retry in 30-60 s",
    "generation_timeout": "the task ran too long; retry later",
    "resource_exhausted": "upstream capacity exhausted; wait 1-5 minutes",
    "quota_exceeded": "rate, concurrency or balance limit; slow down or top up",
    "service_unavailable": "the service is unavailable; retry in a few minutes",
    "resource_not_found": "the task id is invalid or has expired",
    "unknown_error": "unclassified failure; retry, then contact support",
    "insufficient_quota": "the account balance is too low; top up",
    "unauthorized": "the API key was refused: missing, invalid or expired",
    "model_access_denied": "this key has no access to the model",
    "rate_limit_exceeded": "the service kept refusing with 429 (too many requests) after the retries; slow down",
}
