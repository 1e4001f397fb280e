"""The gateway's wire format, written from the spec alone: request validation, prompt
directives, error envelopes and task objects. Pure functions; no I/O.

This deliberately shares nothing with imgkit's client-side validation (imgkit.request): if
both were built on one table, a misreading of the spec would pass every test.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from ._state import TASK_ERROR_MESSAGES, Snapshot, Task

__all__ = [
    "DIRECTIVE_HTTP_STATUSES",
    "MODELS",
    "Directives",
    "ErrorKind",
    "GenerationRequest",
    "InvalidRequest",
    "error_body",
    "parse_generation",
    "result_url",
    "task_body",
]

MODELS: tuple[str, ...] = ("gpt-image-1", "gpt-image-1.5", "gpt-image-2", "gpt-image-2-beta")
_QUALITIES = ("low", "medium", "high")
_PIXEL_SIZES: dict[str, tuple[int, int]] = {
    "1024x1024": (1024, 1024),
    "1024x1536": (1024, 1536),
    "1536x1024": (1536, 1024),
}
_RATIO_SIZES: dict[str, str] = {"1:1": "1024x1024", "2:3": "1024x1536", "3:2": "1536x1024"}
_GPT2_RATIOS = (
    *("1:1", "1:2", "2:1", "1:3", "3:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4"),
    *("9:16", "16:9", "9:21", "21:9"),
)
# The ratio x resolution table of the gpt-image-2 page (addendum A.2), landscape and square
# cells as (W, H); a portrait ratio swaps them. Typed in here again rather than read from
# imgkit's data file: the sandbox shares nothing with the client.
_GPT2_TABLE: dict[str, dict[str, tuple[int, int]]] = {
    "1K": {"1:1": (1024, 1024), "2:1": (1456, 720), "3:1": (1776, 592), "3:2": (1248, 832),
           "4:3": (1184, 880), "5:4": (1152, 912), "16:9": (1360, 768), "21:9": (1568, 672)},
    "2K": {"1:1": (2048, 2048), "2:1": (2896, 1456), "3:1": (3552, 1184), "3:2": (2512, 1680),
           "4:3": (2368, 1776), "5:4": (2288, 1824), "16:9": (2736, 1536), "21:9": (3136, 1344)},
    "4K": {"1:1": (2880, 2880), "2:1": (3840, 1920), "3:1": (3840, 1280), "3:2": (3520, 2352),
           "4:3": (3312, 2480), "5:4": (3216, 2576), "16:9": (3840, 2160), "21:9": (3840, 1632)},
}  # fmt: skip
_PROMPT_LIMIT = {"gpt-image-1": 2000, "gpt-image-1.5": 2000, "gpt-image-2": 32000, "gpt-image-2-beta": 2000}
_DEFAULT_QUALITY = {
    "gpt-image-1": "high", "gpt-image-1.5": "high", "gpt-image-2": "medium", "gpt-image-2-beta": "medium",
}
_MAX_REFS = 16
DIRECTIVE_HTTP_STATUSES = (400, 401, 402, 403, 429, 500, 502, 503)
_DIRECTIVE_RE = re.compile(
    r"\[\[\s*(fail|http|accept_then_500|accept_then_hang|seconds)\s*(?::([^\]]*))?\]\]"
)


class InvalidRequest(Exception):
    """A request the service would refuse with 400; `field` is named in the message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Directives:
    """Sandbox-only instructions embedded in a prompt as `[[name:arg]]`."""

    fail: str | None = None
    http: int | None = None
    accept_then_500: bool = False
    accept_then_hang: bool = False
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A validated `POST /v1/images/generations` body."""

    model: str
    prompt: str
    raw_prompt: str
    width: int
    height: int
    quality: str
    n: int
    image_urls: tuple[str, ...]
    directives: Directives
    background: str = "opaque"
    mask_url: str | None = None


# -- prompt directives --------------------------------------------------------------------


def _parse_directives(prompt: str) -> tuple[str, Directives]:
    values: dict[str, Any] = {}
    for match in _DIRECTIVE_RE.finditer(prompt):
        name, arg = match.group(1), (match.group(2) or "").strip()
        if name == "fail":
            if arg not in TASK_ERROR_MESSAGES:
                raise InvalidRequest(
                    "prompt",
                    f"[[fail:{arg}]] needs a task error code, one of "
                    + ", ".join(sorted(TASK_ERROR_MESSAGES)),
                )
            values["fail"] = arg
        elif name == "http":
            if not arg.isdigit() or int(arg) not in DIRECTIVE_HTTP_STATUSES:
                allowed = ", ".join(map(str, DIRECTIVE_HTTP_STATUSES))
                raise InvalidRequest("prompt", f"[[http:{arg}]] needs one of {allowed}")
            values["http"] = int(arg)
        elif name == "seconds":
            try:
                seconds = float(arg)
            except ValueError:
                seconds = math.nan
            if not (math.isfinite(seconds) and 0 <= seconds <= 86400):
                raise InvalidRequest("prompt", f"[[seconds:{arg}]] needs a number of seconds")
            values["seconds"] = seconds
        else:
            if arg:
                raise InvalidRequest("prompt", f"[[{name}]] takes no argument")
            values[name] = True
    if values.get("accept_then_500") and values.get("accept_then_hang"):
        raise InvalidRequest("prompt", "[[accept_then_500]] and [[accept_then_hang]] conflict")
    stripped = _DIRECTIVE_RE.sub(" ", prompt)
    stripped = re.sub(r"[ \t]{2,}", " ", stripped).strip()
    return stripped, Directives(**values)


# -- field validation ---------------------------------------------------------------------


def _http_url(value: object, field: str, *, https_only: bool = False) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(field, "must be a URL string")
    parts = urlsplit(value)
    schemes = ("https",) if https_only else ("http", "https")
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise InvalidRequest(field, f"must be an {'https' if https_only else 'http(s)'} URL")
    return value


def _callback_url(value: object) -> None:
    url = _http_url(value, "callback_url", https_only=True)
    if len(url) > 2048:
        raise InvalidRequest("callback_url", "must be at most 2048 characters")
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        raise InvalidRequest("callback_url", "must not point at a private or loopback address")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified:
        raise InvalidRequest("callback_url", "must not point at a private or loopback address")


def gpt2_ratio_pixels(ratio: str, resolution: str) -> tuple[int, int]:
    """The pixels of a gpt-image-2 ratio at a resolution tier (the page's table)."""
    table = _GPT2_TABLE[resolution]
    if ratio in table:
        return table[ratio]
    a, _, b = ratio.partition(":")
    w, h = table[f"{b}:{a}"]
    return h, w


def _gpt2_size(size: object, resolution: object, *, beta: bool = False) -> tuple[int, int]:
    tiers = ("1K",) if beta else tuple(_GPT2_TABLE)
    if isinstance(resolution, str) and resolution.upper() in _GPT2_TABLE:
        resolution = resolution.upper()  # the page: case-insensitive
    if resolution is not None and resolution not in tiers:
        if beta:
            raise InvalidRequest("resolution", "gpt-image-2-beta supports 1K only; use gpt-image-2 for 2K and 4K")
        raise InvalidRequest("resolution", "must be one of 1K, 2K, 4K")
    res = str(resolution or "1K")
    if size is None or size == "auto":
        # `auto` lets the model choose; the sandbox chooses square at the tier (1K: the
        # resolution is ignored for auto, as documented).
        return gpt2_ratio_pixels("1:1", "1K")
    if not isinstance(size, str):
        raise InvalidRequest("size", "must be a string")
    if size in _GPT2_RATIOS:
        return gpt2_ratio_pixels(size, res)
    if beta:
        raise InvalidRequest("size", "must be auto or a ratio (" + ", ".join(_GPT2_RATIOS) + "); WxH is not supported")
    match = re.fullmatch(r"(\d{1,5})[x×](\d{1,5})", size)
    if not match:
        raise InvalidRequest(
            "size", "must be auto, a ratio (" + ", ".join(_GPT2_RATIOS) + ") or WxH"
        )
    if resolution is not None:
        raise InvalidRequest("resolution", "applies only to ratio sizes, not WxH")
    w, h = int(match.group(1)), int(match.group(2))
    if w % 16 or h % 16:
        raise InvalidRequest("size", "width and height must be multiples of 16")
    if not (16 <= w <= 3840 and 16 <= h <= 3840):
        raise InvalidRequest("size", "each edge must be between 16 and 3840 pixels")
    if not 655_360 <= w * h <= 8_294_400:
        raise InvalidRequest("size", "total pixels must be between 655,360 and 8,294,400")
    if max(w, h) > 3 * min(w, h):
        raise InvalidRequest("size", "aspect ratio must be at most 3:1")
    return w, h


def _gpt1_size(size: object) -> tuple[int, int]:
    if size is None:
        return _PIXEL_SIZES["1024x1024"]
    if isinstance(size, str):
        size = _RATIO_SIZES.get(size, size)
        if size in _PIXEL_SIZES:
            return _PIXEL_SIZES[str(size)]
    allowed = ", ".join([*_RATIO_SIZES, *_PIXEL_SIZES])
    raise InvalidRequest("size", f"must be one of {allowed}")


def parse_generation(body: object) -> GenerationRequest:
    """Validate a create body the way the service does; raise InvalidRequest naming the field.

    Unknown fields are ignored, as JSON APIs of this kind do.
    """
    if not isinstance(body, Mapping):
        raise InvalidRequest("body", "must be a JSON object")
    model = body.get("model")
    if model is None:
        raise InvalidRequest("model", "is required")
    if model not in MODELS:
        raise InvalidRequest("model", f"must be one of {', '.join(MODELS)}; got {model!r}")

    raw_prompt = body.get("prompt")
    if not isinstance(raw_prompt, str):
        raise InvalidRequest("prompt", "is required and must be a string")
    if not raw_prompt.strip():
        raise InvalidRequest("prompt", "must not be empty")
    limit = _PROMPT_LIMIT[model]
    if len(raw_prompt) > limit:
        raise InvalidRequest(
            "prompt", f"must be at most {limit} characters for {model}; got {len(raw_prompt)}"
        )
    prompt, directives = _parse_directives(raw_prompt)

    background = "opaque"
    mask_url = None
    if model == "gpt-image-2":
        width, height = _gpt2_size(body.get("size"), body.get("resolution"))
        given = body.get("background")
        if given is not None and given not in ("opaque", "transparent"):
            raise InvalidRequest("background", "must be opaque or transparent")
        background = str(given or "opaque")
        if body.get("mask_url") is not None:
            mask_url = _http_url(body["mask_url"], "mask_url")
    elif model == "gpt-image-2-beta":
        width, height = _gpt2_size(body.get("size"), body.get("resolution"), beta=True)
        # The beta page defines none of these fields (addendum A.3); refusing them says so.
        for absent in ("quality", "n", "background", "mask_url"):
            if body.get(absent) is not None:
                raise InvalidRequest(absent, "is not supported by gpt-image-2-beta")
    else:
        width, height = _gpt1_size(body.get("size"))

    quality = body.get("quality", _DEFAULT_QUALITY[model])
    if quality not in _QUALITIES:
        raise InvalidRequest("quality", f"must be one of {', '.join(_QUALITIES)}; got {quality!r}")

    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int):
        raise InvalidRequest("n", "must be an integer")
    if model == "gpt-image-1.5" and n != 1:
        raise InvalidRequest("n", "must be 1 for gpt-image-1.5")
    if not 1 <= n <= 10:
        raise InvalidRequest("n", f"must be between 1 and 10; got {n}")

    image_urls: tuple[str, ...] = ()
    if body.get("image_urls") is not None:
        urls = body["image_urls"]
        if not isinstance(urls, list) or not 1 <= len(urls) <= _MAX_REFS:
            raise InvalidRequest("image_urls", f"must be a list of 1 to {_MAX_REFS} URLs")
        image_urls = tuple(_http_url(u, f"image_urls[{i}]") for i, u in enumerate(urls))

    if body.get("callback_url") is not None:
        _callback_url(body["callback_url"])

    return GenerationRequest(
        model=str(model),
        prompt=prompt,
        raw_prompt=raw_prompt,
        width=width,
        height=height,
        quality=str(quality),
        n=n,
        image_urls=image_urls,
        directives=directives,
        background=background,
        mask_url=mask_url if image_urls else None,  # ignored without references, as documented
    )


# -- error envelopes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One row of the spec's error tables, with its pre-2026-03 ("legacy") spelling."""

    status: int
    code: str
    type: str
    legacy_type: str
    message: str
    suggestion: str


ERRORS: dict[str, ErrorKind] = {
    "invalid_request": ErrorKind(
        400,
        "invalid_request",
        "invalid_request_error",
        "invalid_request_error",
        "Invalid request parameters",
        "check the request parameters and try again",
    ),
    "unauthorized": ErrorKind(
        401,
        "unauthorized",
        "authentication_error",
        "authentication_error",
        "Invalid or expired token",
        "check your API key",
    ),
    "insufficient_quota": ErrorKind(
        402,
        "insufficient_quota",
        "insufficient_quota",
        "insufficient_quota_error",
        "Insufficient quota. Please top up your account.",
        "top up your account",
    ),
    "model_access_denied": ErrorKind(
        403,
        "model_access_denied",
        "invalid_request_error",
        "permission_error",
        "Token does not have access to model: {model}",
        "use a token with access to this model",
    ),
    "rate_limit_exceeded": ErrorKind(
        429,
        "rate_limit_exceeded",
        "rate_limit_error",
        "rate_limit_error",
        "Too many requests, please try again later",
        "retry after 1 seconds",
    ),
    "internal_error": ErrorKind(
        500,
        "internal_error",
        "api_error",
        "api_error",
        "Internal server error",
        "retry after 30 seconds",
    ),
    "upstream_error": ErrorKind(
        502,
        "upstream_error",
        "api_error",
        "upstream_error",
        "Upstream service error",
        "retry after 30 seconds",
    ),
    "service_unavailable": ErrorKind(
        503,
        "service_unavailable",
        "api_error",
        "service_unavailable_error",
        "No available channel for the requested model",
        "retry after 60 seconds",
    ),
    # GET /v1/tasks/{id} has its own rows [spec §2b].
    "invalid_task_id": ErrorKind(
        400,
        "invalid_task_id",
        "invalid_request_error",
        "invalid_request_error",
        "Invalid task ID format, must start with 'task-unified-'",
        "check the task id",
    ),
    "task_not_found": ErrorKind(
        404,
        "task_not_found",
        "invalid_request_error",
        "not_found_error",
        "The requested task could not be found",
        "check the task id",
    ),
    "poll_rate_limit_exceeded": ErrorKind(
        429,
        "rate_limit_exceeded",
        "evo_api_error",
        "rate_limit_error",
        "Rate limit exceeded",
        "retry after 1 seconds",
    ),
    "poll_internal_error": ErrorKind(
        500,
        "internal_error",
        "api_error",
        "api_error",
        "Failed to retrieve task status",
        "retry after 5 seconds",
    ),
    "not_found": ErrorKind(
        404,
        "not_found",
        "invalid_request_error",
        "not_found_error",
        "Not found",
        "check the URL",
    ),
    "method_not_allowed": ErrorKind(
        405,
        "method_not_allowed",
        "invalid_request_error",
        "invalid_request_error",
        "Method not allowed",
        "check the HTTP method",
    ),
}
# Which kind a `[[http:<status>]]` directive on create produces.
DIRECTIVE_KIND = {
    400: "invalid_request",
    401: "unauthorized",
    402: "insufficient_quota",
    403: "model_access_denied",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "upstream_error",
    503: "service_unavailable",
}


def error_body(
    style: Literal["string", "legacy"],
    kind: str,
    *,
    message: str | None = None,
    param: str | None = None,
    model: str = "gpt-image-1",
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for an error in the configured envelope style."""
    spec = ERRORS[kind]
    text = message or spec.message.format(model=model)
    if style == "legacy":
        error: dict[str, Any] = {
            "code": spec.status,
            "message": text,
            "type": spec.legacy_type,
            "param": param,
            "fallback_suggestion": spec.suggestion,
        }
    else:
        error = {"code": spec.code, "message": text, "type": spec.type}
        # Only the task endpoint documents `param` in today's format [spec §2b].
        if param is not None and kind == "invalid_task_id":
            error["param"] = param
    return spec.status, {"error": error}


# -- task objects -------------------------------------------------------------------------


def result_url(base_url: str, task: Task, index: int, url_ttl: float) -> str:
    """A result link; `expires` mimics a CDN signature (the server checks its own clock)."""
    expires = int(task.finishes_at + url_ttl)
    return f"{base_url}/files/results/{task.id}/{index}.png?expires={expires}"


def task_body(
    task: Task,
    snap: Snapshot,
    *,
    base_url: str,
    url_ttl: float,
    now: float,
    created_response: bool = False,
) -> dict[str, Any]:
    """The task object of spec §1c (create) and §2a (poll)."""
    task_info: dict[str, Any] = {"can_cancel": not snap.terminal}
    if created_response:
        task_info["estimated_time"] = task.estimated_time
    elif not snap.terminal:
        task_info["estimated_time"] = max(0, math.ceil(task.finishes_at - now))
    body: dict[str, Any] = {
        "created": int(task.created),
        "id": task.id,
        "model": task.model,
        "object": "image.generation.task",
        "progress": snap.progress,
        "status": snap.status,
        "task_info": task_info,
        "type": "image",
        "usage": {
            "billing_rule": "per_call",
            "credits_reserved": task.credits_reserved,
            "user_group": "default",
        },
    }
    if snap.status == "completed":
        body["results"] = [result_url(base_url, task, i, url_ttl) for i in range(task.n)]
    elif snap.status == "failed":
        code = task.error_code or "unknown_error"
        body["error"] = {"code": code, "message": TASK_ERROR_MESSAGES[code], "type": "task_error"}
    return body
