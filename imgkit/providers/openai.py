"""OpenAI's Images API, direct or through any OpenAI-compatible base URL (spec §9).

The API is synchronous: ``POST {base_url}/images/generations`` (JSON) or
``{base_url}/images/edits`` (multipart, one ``image[]`` part per reference) answers with the
images themselves, base64-encoded, and the token ``usage``. So :meth:`OpenAIProvider.submit`
returns a snapshot that is already ``Completed``; its task id is made up here
(``openai-<created>-<random>``, the API has none) and its results are pseudo URLs
``openai://<task id>/<i>.png`` that :meth:`~OpenAIProvider.download` serves from memory. The
ledger therefore never holds megabytes of base64, and the engine's download step (size cap,
Pillow check, content-addressed file) is the same as for the gateway. Those bytes live only
in the process that made the request: the engine stores them at once, and a run resumed by a
later process whose results were never stored ends ``failed`` / ``result_expired``.

Reference images are sent as files, so the provider needs their bytes: local ones (paths,
bytes, PIL images) are read directly; URL references are **fetched by imgkit first** (capped
at 50 MB and a total deadline, refused when they point at a private, loopback or link-local
address unless ``allow_private_urls``, and a JPEG/PNG/WEBP by their bytes; a failure to fetch one ends the run
``failed`` / ``image_processing_error``, the gateway's code for an unreachable image).

Every field of the request goes out (:meth:`~imgkit.request.ImageRequest.openai_fields`:
``background``, ``output_format``, ``output_compression``, ``moderation``, ``input_fidelity``,
``auto`` size and quality, ``WxH`` for gpt-image-2); a mask is the multipart ``mask`` of an
edit. With ``previews`` the request is streamed (``stream=true``, ``partial_images``): the
server-sent events are read by the pure :class:`ImageStream` (partial images go to the
engine's ``on_preview`` as they arrive; each ``*.completed`` event carries one final image and
its ``usage``; a stream may end with ``data: [DONE]`` or simply close).

The cost is the returned ``usage`` priced with the
:class:`~imgkit.pricing.TokenPriceSheet` that prices the request's model for the provider's
sheet (:func:`~imgkit.pricing.sheet_for`; ``credits_charged``, in the sheet's credits). The
usage of a stream is the sum of its completed events' usage (one event per image, each billed
on its own: the addendum's open question 11, read that way), so the output tokens of the
partial images are charged as the service reports them.

Error answers (``{"error": {"message", "type", "param", "code"}}``) become
:class:`~imgkit.errors.APIError` with the gateway's code where one means the same thing
(``moderation_blocked`` -> ``content_policy_violation``, ``invalid_api_key`` ->
``unauthorized``), so reports can group failures across providers; the message keeps
OpenAI's own code. An ``error`` inside a stream is read the same way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from imgkit.errors import APIError, ConfigError, DownloadError, RequestError, ValidationError
from imgkit.pricing import TokenPriceSheet, get_sheet, sheet_for
from imgkit.providers._http import (
    DOWNLOAD_DEADLINE,
    UrlGuard,
    fetch_capped,
    is_loopback_url,
    request_error,
    same_origin,
)
from imgkit.providers.base import (
    Balance,
    Preview,
    PreviewHandler,
    TaskSnapshot,
    is_batch_task,
    split_batch_task,
)
from imgkit.request import (
    Completed,
    Failed,
    ImageRequest,
    Processing,
    ReferenceImage,
    Secret,
    TaskStatus,
    sniff_image_format,
)

__all__ = [
    "LIVE_OPENAI_URL",
    "ImageStream",
    "OpenAIProvider",
    "ParsedImages",
    "batch_lines",
    "parse_batch",
    "parse_batch_file",
    "parse_error",
    "parse_images_response",
    "split_batch",
]

log = logging.getLogger("imgkit")

LIVE_OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_SHEET = "openai-tokens-2026-11"
RESULT_SCHEME = "openai://"
_MB = 1024 * 1024
_MAX_REFERENCE_BYTES = 50 * _MB
_MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
#: The most requests one batch's input file may hold, and its largest size [addendum D, D1].
MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_BYTES = 200 * _MB
_EXT = {"jpeg": "jpg", "png": "png", "webp": "webp"}


def _form_value(value: Any) -> str:
    """A form field as the official client writes it (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

# OpenAI's codes that mean what one of the gateway's codes means.
_SAME_AS_GATEWAY = {
    "moderation_blocked": "content_policy_violation",
    "content_policy_violation": "content_policy_violation",
    "invalid_api_key": "unauthorized",
}


class ParsedImages:
    """The pure reading of an images response.

    Attributes:
        images: decoded image bytes, in order (from ``b64_json``).
        urls: result URLs, for OpenAI-compatible services that answer with ``url`` instead.
        usage: the ``usage`` object, or an empty dict.
        meta: every top-level field but ``data`` (for ``TaskSnapshot.raw``).
    """

    __slots__ = ("images", "meta", "urls", "usage")

    def __init__(self, images: list[bytes], urls: list[str], usage: dict[str, Any], meta: dict[str, Any]) -> None:
        self.images = images
        self.urls = urls
        self.usage = usage
        self.meta = meta


def parse_images_response(body: Any) -> ParsedImages:
    """Read an images response (spec §9c) without I/O.

    Raises:
        APIError: the body is not an images response, or an image is not valid base64.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data", []), list):
        raise APIError(200, "invalid_response", "the service returned something that is not an images response")
    images: list[bytes] = []
    urls: list[str] = []
    for index, item in enumerate(body.get("data") or []):
        if not isinstance(item, dict):
            continue
        b64 = item.get("b64_json")
        if isinstance(b64, str) and b64:
            try:
                images.append(base64.b64decode(b64, validate=True))
            except (binascii.Error, ValueError):
                raise APIError(200, "invalid_response", f"image {index} is not valid base64") from None
        elif isinstance(item.get("url"), str):
            urls.append(item["url"])
    usage: dict[str, Any] = body["usage"] if isinstance(body.get("usage"), dict) else {}
    meta = {k: v for k, v in body.items() if k != "data"}
    return ParsedImages(images, urls, usage, meta)


def _b64_image(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise APIError(200, "invalid_response", f"{what} has no image")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(200, "invalid_response", f"{what} is not valid base64") from None


def _add_usage(total: dict[str, Any], usage: Any) -> None:
    """Add one completed event's token counts to ``total`` (numbers, nested one level)."""
    if not isinstance(usage, dict):
        return
    for key, value in usage.items():
        if isinstance(value, dict):
            inner = total.setdefault(key, {})
            if isinstance(inner, dict):
                for k, v in value.items():
                    if isinstance(v, int) and not isinstance(v, bool):
                        inner[k] = inner.get(k, 0) + v
        elif isinstance(value, int) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


class ImageStream:
    """The pure reading of an Images API event stream (``stream=true``), fed line by line.

    Frames are ``event:``/``data:`` lines ended by a blank line; like the official client,
    only ``data:`` matters and its JSON ``type`` says what it is. ``data: [DONE]`` ends the
    stream, as does the connection closing. A ``data:`` object with an ``error`` raises.

    Attributes:
        partials: the partial images seen so far, in order.
        images: the final images (one per ``*.completed`` event).
        usage: the completed events' usage, summed.
        meta: ``size``, ``quality``, ``background``, ``output_format`` and ``created`` of the
            last completed event.
        done: ``[DONE]`` was read.

    Example:
        >>> stream = ImageStream()
        >>> for line in body.splitlines():
        ...     preview = stream.feed(line)
        >>> stream.result().images
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self.partials: list[bytes] = []
        self.images: list[bytes] = []
        self.usage: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self.done = False

    def feed(self, line: str) -> tuple[int, bytes] | None:
        """Read one line (without its newline); returns ``(index, image)`` when it ends a
        partial-image frame."""
        line = line.rstrip("\r")
        if line:
            if line.startswith("data:"):
                self._data.append(line[5:].removeprefix(" "))
            return None  # event:, id:, retry: and comments carry nothing the reading needs
        return self.flush()

    def flush(self) -> tuple[int, bytes] | None:
        """End the frame being read (a blank line, or the end of the stream)."""
        if not self._data or self.done:
            self._data.clear()
            return None
        data, self._data = "\n".join(self._data), []
        if data.startswith("[DONE]"):
            self.done = True
            return None
        try:
            event = json.loads(data)
        except ValueError:
            raise APIError(200, "invalid_response", "the stream sent an event that is not JSON") from None
        if not isinstance(event, dict):
            raise APIError(200, "invalid_response", "the stream sent an event that is not an object")
        if isinstance(event.get("error"), dict):
            body = json.dumps({"error": event["error"]}).encode()
            raise parse_error(500 if event["error"].get("type") == "server_error" else 400, body)
        kind = str(event.get("type", ""))
        if kind.endswith(".partial_image"):
            image = _b64_image(event.get("b64_json"), "a partial image")
            index = event.get("partial_image_index")
            self.partials.append(image)
            return (index if isinstance(index, int) and not isinstance(index, bool) else len(self.partials) - 1,
                    image)
        if kind.endswith(".completed"):
            self.images.append(_b64_image(event.get("b64_json"), "a completed image"))
            _add_usage(self.usage, event.get("usage"))
            self.meta.update({k: event[k] for k in ("size", "quality", "background", "output_format") if k in event})
            if isinstance(event.get("created_at"), int | float):
                self.meta["created"] = event["created_at"]
            return None
        log.debug("ignoring a stream event of type %r", kind)
        return None

    def result(self) -> ParsedImages:
        """The images and usage, as a non-streamed response would give them.

        Raises:
            RequestError: the stream ended before any image was completed (it was sent and
                may be charged: never resent).
        """
        self.flush()
        if not self.images:
            raise RequestError("the image stream ended before an image was completed", sent=True)
        meta = {**self.meta, "usage": self.usage, "partial_images": len(self.partials)}
        return ParsedImages(list(self.images), [], dict(self.usage), meta)


def batch_lines(items: Iterable[tuple[str, ImageRequest]]) -> bytes:
    """The JSONL input file of a Batch of image generations (pure; addendum D [D4]): one
    ``{"custom_id", "method", "url", "body"}`` line per request, the body being the same JSON
    as the synchronous call.

    Raises:
        ValidationError: a request with reference images (a batch line cannot carry files)
            or previews (a batch does not stream).
    """
    lines = []
    for custom_id, request in items:
        if request.images:
            raise ValidationError("batch", True, "text-to-image requests only",
                                  hint="edits in a batch need images given by URL or file id")
        if request.previews:
            raise ValidationError("previews", request.previews, "0 in a batch (a batch does not stream)")
        line = {"custom_id": custom_id, "method": "POST", "url": "/v1/images/generations",
                "body": request.openai_fields()}
        lines.append(json.dumps(line, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def split_batch(
    items: Sequence[tuple[str, ImageRequest]],
    *,
    max_requests: int = MAX_BATCH_REQUESTS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[list[tuple[str, ImageRequest]]]:
    """``items`` cut, in order, into as few batches as fit one batch's limits: at most
    ``max_requests`` lines and ``max_bytes`` of JSONL each (pure). A line alone over
    ``max_bytes`` (it cannot be under OpenAI's 200 MB: a prompt is at most 32,000 characters)
    goes in a batch of its own, which the service then refuses.

    Raises:
        ValidationError: a request a batch cannot carry (see :func:`batch_lines`).

    Example:
        >>> [len(b) for b in split_batch(items, max_requests=2)]   # five items
        [2, 2, 1]
    """
    groups: list[list[tuple[str, ImageRequest]]] = []
    size = 0
    for item in items:
        line = len(batch_lines([item]))
        if not groups or len(groups[-1]) >= max_requests or size + line > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += line
    return groups


def parse_batch(body: Any) -> tuple[TaskStatus, str | None, str | None, str | None]:
    """Read a batch object: its status (a finished batch is ``Completed`` with no results:
    its runs are read from its files), input, output and error file ids (pure)."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise APIError(200, "invalid_response", "the service returned something that is not a batch")
    status = str(body.get("status", ""))
    out = body.get("output_file_id") if isinstance(body.get("output_file_id"), str) else None
    err = body.get("error_file_id") if isinstance(body.get("error_file_id"), str) else None
    src = body.get("input_file_id") if isinstance(body.get("input_file_id"), str) else None
    counts: dict[str, Any] = body["request_counts"] if isinstance(body.get("request_counts"), dict) else {}
    total = counts.get("total") if isinstance(counts.get("total"), int) else 0
    done = sum(int(v) for k, v in counts.items() if k in ("completed", "failed") and isinstance(v, int))
    progress = min(99, 100 * done // total) if total else 0
    if status in ("completed", "expired", "cancelled"):
        return Completed(), src, out, err
    if status == "failed":
        errors = body.get("errors")
        data = errors.get("data") if isinstance(errors, dict) else None
        first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        return Failed("batch_failed", str(first.get("message") or "the batch failed")), src, out, err
    return Processing(progress), src, out, err


def parse_batch_file(content: bytes) -> dict[str, dict[str, Any]]:
    """The lines of a batch output or error file, by custom_id (pure)."""
    rows: dict[str, dict[str, Any]] = {}
    for raw in content.decode("utf-8", "replace").splitlines():
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("custom_id"), str):
            rows[row["custom_id"]] = row
    return rows


def parse_error(status: int, content: bytes, headers: Iterable[tuple[str, str]] = ()) -> APIError:
    """An OpenAI error answer as an APIError, with a code the rest of imgkit understands.

    OpenAI sends ``code: null`` for many errors (server errors, some 400s); the code is then
    taken from the status. ``retry-after-ms`` is honoured as well as ``retry-after``.
    """
    headers = list(headers)
    base = APIError.from_parts(status, content, headers)
    err = base.body.get("error") if isinstance(base.body, dict) else None
    raw_code = err.get("code") if isinstance(err, dict) else None
    type_ = str(err.get("type") or "") if isinstance(err, dict) else base.type
    if isinstance(raw_code, str) and raw_code:
        code = _SAME_AS_GATEWAY.get(raw_code, raw_code)
    elif status == 401:
        code = "unauthorized"
    elif status == 404:
        code = "model_not_found"
    elif status == 429:
        code = "rate_limit_exceeded"
    elif status == 503:
        code = "service_unavailable"
    elif status >= 500:
        code = "internal_error"
    else:
        code = "invalid_request"
    message = base.message
    if isinstance(raw_code, str) and raw_code and code != raw_code:
        message = f"{raw_code}: {message}"
    retry_after = base.retry_after
    for name, value in headers:
        if name.lower() == "retry-after-ms":
            with contextlib.suppress(ValueError):
                retry_after = max(0.0, float(value) / 1000)
    return APIError(status, code, message, type=type_, retry_after=retry_after, body=base.body)


class OpenAIProvider:
    """A client for OpenAI's Images API or an OpenAI-compatible service.

    Args:
        api_key: the Bearer token (``$OPENAI_API_KEY``); kept masked.
        base_url: the API root including ``/v1`` (the sandbox's is ``{url}/openai/v1``).
        transport: an httpx transport (``httpx.ASGITransport`` for the in-process sandbox).
        timeout: seconds to wait for an answer; generation happens inside the request, so this
            must cover a high-quality image (a minute or two).
        name: the provider's name in the ledger.
        price_sheet: the token price sheet that prices the returned usage.
        cache_bytes: the most result bytes kept in memory for :meth:`download`.
        allow_private_urls: let a URL reference point at a loopback, private, link-local or
            otherwise non-global address (refused by default, after DNS resolution and on
            every redirect, so a shared studio cannot be used to reach internal services).
            None: allowed only when ``base_url`` itself is on loopback (a local sandbox) or
            ``transport`` is an ``httpx.ASGITransport`` (the in-process sandbox).
        download_deadline: seconds one result download or reference fetch may take in all.
        batch_max_requests, batch_max_bytes: one batch's limits (OpenAI's: 50,000 lines and
            200 MB); a larger batch sweep is split into several batches.

    Example:
        >>> provider = OpenAIProvider(os.environ["OPENAI_API_KEY"])
        >>> snapshot = await provider.submit(ImageRequest.build("a fox", quality="low"))
    """

    kind = "openai"
    #: The answer to a request is the request's outcome: an HTTP error means nothing is still
    #: running and nothing will be delivered later (see imgkit.providers.router).
    synchronous = True

    def __init__(
        self,
        api_key: str | Secret,
        *,
        base_url: str = LIVE_OPENAI_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 300.0,
        name: str = "openai",
        price_sheet: str | TokenPriceSheet | None = DEFAULT_SHEET,
        cache_bytes: int = 256 * _MB,
        max_connections: int = 16,
        allow_private_urls: bool | None = None,
        download_deadline: float = DOWNLOAD_DEADLINE,
        batch_max_requests: int = MAX_BATCH_REQUESTS,
        batch_max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self.name = name
        self.batch_max_requests = batch_max_requests
        self.batch_max_bytes = batch_max_bytes
        self.base_url = base_url.rstrip("/")
        if allow_private_urls is None:
            # A local sandbox serves its reference files from loopback, and an in-process one
            # (ASGI) opens no socket at all: there is no network to reach.
            allow_private_urls = is_loopback_url(self.base_url) or isinstance(transport, httpx.ASGITransport)
        self._guard = UrlGuard(allow_private=allow_private_urls)
        self._deadline = download_deadline
        sheet = get_sheet(price_sheet) if price_sheet is not None else None
        self.sheet = sheet if isinstance(sheet, TokenPriceSheet) else None
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=limits,
            headers={"User-Agent": "imgkit"},
        )
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self._cache_bytes = cache_bytes
        self._results: OrderedDict[str, bytes] = OrderedDict()
        self._held = 0
        self._tasks: dict[str, tuple[str, ...]] = {}
        self._references: OrderedDict[str, bytes] = OrderedDict()
        self._batches: dict[str, dict[str, dict[str, Any]]] = {}
        self._batch_models: dict[str, str] = {}
        self._batch_locks: dict[str, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"<OpenAIProvider {self.name} {self.base_url}>"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.reveal()}"}

    async def aclose(self) -> None:
        await self._client.aclose()
        self._results.clear()
        self._references.clear()
        self._tasks.clear()
        self._held = 0

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, url, headers=self._headers(), **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise request_error(exc, url) from None
        if response.status_code >= 400:
            raise parse_error(response.status_code, response.content, response.headers.items())
        return response

    # --- the protocol ------------------------------------------------------------------------

    async def submit(
        self,
        request: ImageRequest,
        image_urls: Sequence[str] = (),
        *,
        mask_url: str | None = None,
        on_preview: PreviewHandler | None = None,
    ) -> TaskSnapshot:
        """Generate (or edit, with reference images and an optional mask) and return a
        ``Completed`` snapshot; a request with ``previews`` is streamed, each partial image
        going to ``on_preview`` as it arrives. ``mask_url`` is not needed: the mask is sent
        as a file."""
        fields = request.openai_fields()
        kwargs: dict[str, Any]
        if request.images:
            files = []
            for index, ref in enumerate(request.images):
                data = await self._reference_bytes(ref)
                fmt = sniff_image_format(data[:16]) or "png"
                files.append(("image[]", (ref.name or f"reference-{index}.{fmt}", data, _MIME.get(fmt, "image/png"))))
            if request.mask is not None:
                files.append(("mask", ("mask.png", await self._reference_bytes(request.mask), "image/png")))
            url = f"{self.base_url}/images/edits"
            kwargs = {"data": {k: _form_value(v) for k, v in fields.items()}, "files": files}
        else:
            url = f"{self.base_url}/images/generations"
            kwargs = {"json": fields}
        if fields.get("stream"):
            parsed = await self._stream(url, kwargs, int(fields.get("partial_images", 0)), on_preview)
        else:
            response = await self._send("POST", url, **kwargs)
            try:
                body = response.json()
            except ValueError:
                not_json = "the service returned a body that is not JSON"
                raise APIError(response.status_code, "invalid_response", not_json) from None
            parsed = parse_images_response(body)
        return self._snapshot(parsed, request.model)

    async def _stream(
        self, url: str, kwargs: dict[str, Any], partials: int, on_preview: PreviewHandler | None
    ) -> ParsedImages:
        """Send a streamed request and read its events (:class:`ImageStream`)."""
        stream = ImageStream()
        try:
            async with self._client.stream("POST", url, headers=self._headers(), **kwargs) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise parse_error(response.status_code, response.content, response.headers.items())
                async for line in response.aiter_lines():
                    got = stream.feed(line)
                    if got is not None and on_preview is not None:
                        on_preview(Preview(index=got[0], image=got[1], of=partials))
                    if stream.done:
                        break
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise request_error(exc, url) from None
        return stream.result()

    def _cost_sheet(self, model: str) -> TokenPriceSheet | None:
        """The token sheet that prices ``model`` for this provider's sheet, if any."""
        if self.sheet is None:
            return None
        try:
            sheet = sheet_for(model, self.sheet)
        except ConfigError:
            return None
        return sheet if isinstance(sheet, TokenPriceSheet) else None

    def _snapshot(self, parsed: ParsedImages, model: str | None = None, *, batch: bool = False) -> TaskSnapshot:
        created = parsed.meta.get("created")
        stamp = int(created) if isinstance(created, int | float) and not isinstance(created, bool) else int(time.time())
        task_id = f"openai-{stamp}-{uuid.uuid4().hex[:12]}"
        urls = [
            f"{RESULT_SCHEME}{task_id}/{i}.{_EXT.get(sniff_image_format(data[:16]) or '', 'png')}"
            for i, data in enumerate(parsed.images)
        ]
        for url, data in zip(urls, parsed.images, strict=True):
            self._keep(url, data)
        results = (*urls, *parsed.urls)
        self._tasks[task_id] = results
        charged = None
        sheet = self._cost_sheet(model) if model is not None else self.sheet
        if sheet is not None and parsed.usage:
            charged = round(sheet.cost(parsed.usage, batch=batch).credits, 5)
        return TaskSnapshot(
            task_id=task_id,
            status=Completed(results=results),
            credits_charged=charged,
            raw=parsed.meta,
        )

    def _keep(self, url: str, data: bytes) -> None:
        self._results[url] = data
        self._held += len(data)
        while self._held > self._cache_bytes and len(self._results) > 1:
            _, old = self._results.popitem(last=False)
            self._held -= len(old)

    async def status(self, task_id: str) -> TaskSnapshot:
        """A synchronous API has nothing to poll: the answer was the result. A batch run's
        task (``<batch id>/<custom id>``) reads its batch, and once the batch is over, the
        run's line of its output or error file."""
        if is_batch_task(task_id):
            return await self._batch_status(task_id)
        results = self._tasks.get(task_id)
        if results is None:
            raise APIError(
                404,
                "resource_not_found",
                "OpenAI returns images inside the response; they were held only by the process that "
                "made the request and cannot be fetched again",
            )
        return TaskSnapshot(task_id=task_id, status=Completed(results=results))

    # --- batches -----------------------------------------------------------------------------

    def batch_groups(self, items: Sequence[tuple[str, ImageRequest]]) -> list[list[tuple[str, ImageRequest]]]:
        """``items`` as the batches :meth:`submit_batch` takes, each within this provider's
        limits (:func:`split_batch`)."""
        return split_batch(items, max_requests=self.batch_max_requests, max_bytes=self.batch_max_bytes)

    async def submit_batch(self, items: Sequence[tuple[str, ImageRequest]]) -> str:
        """Send ``(custom id, request)`` pairs as one Batch at half price: upload the JSONL
        input file (purpose ``batch``), create the batch (24 h window); returns its id.

        Raises:
            ValidationError: more than one batch's worth of requests (split them with
                :meth:`batch_groups` first), or a request a batch cannot carry (see
                :func:`batch_lines`).
        """
        if len(items) > self.batch_max_requests:
            raise ValidationError("batch", len(items), f"at most {self.batch_max_requests} requests in one batch",
                                  hint="split them with batch_groups()")
        content = batch_lines(items)
        if len(content) > self.batch_max_bytes and len(items) > 1:
            raise ValidationError("batch", f"<{len(content):,} bytes>",
                                  f"at most {self.batch_max_bytes:,} bytes of JSONL in one batch",
                                  hint="split them with batch_groups()")
        response = await self._send(
            "POST", f"{self.base_url}/files", data={"purpose": "batch"},
            files={"file": ("imgkit-batch.jsonl", content, "application/jsonl")},
        )
        file_id = self._body(response).get("id")
        if not isinstance(file_id, str):
            raise APIError(200, "invalid_response", "the file upload returned no file id")
        response = await self._send(
            "POST", f"{self.base_url}/batches",
            json={"input_file_id": file_id, "endpoint": "/v1/images/generations", "completion_window": "24h",
                  "metadata": {"client": "imgkit"}},
        )
        batch_id = self._body(response).get("id")
        if not isinstance(batch_id, str):
            # Created or not, nobody can tell: the runs must not be sent again.
            raise RequestError("the batch was sent but its id could not be read", sent=True)
        log.info("sent %d requests as batch %s", len(items), batch_id)
        return batch_id

    async def _file(self, file_id: str) -> bytes:
        response = await self._send("GET", f"{self.base_url}/files/{quote(file_id, safe='')}/content")
        return response.content

    def _body(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            not_json = "the service returned a body that is not JSON"
            raise APIError(response.status_code, "invalid_response", not_json) from None
        return body if isinstance(body, dict) else {}

    async def _batch_status(self, task_id: str) -> TaskSnapshot:
        batch_id, custom_id = split_batch_task(task_id)
        # The runs of one batch are read together (resume() gathers them): one read of the
        # batch and its files at a time, and the files once.
        lock = self._batch_locks.setdefault(batch_id, asyncio.Lock())
        async with lock:
            return await self._batch_run(batch_id, custom_id, task_id)

    async def _batch_run(self, batch_id: str, custom_id: str, task_id: str) -> TaskSnapshot:
        rows = self._batches.get(batch_id)
        if rows is None:
            response = await self._send("GET", f"{self.base_url}/batches/{quote(batch_id, safe='')}")
            status, src, out, err = parse_batch(self._body(response))
            if not status.terminal or isinstance(status, Failed):
                return TaskSnapshot(task_id=task_id, status=status)
            rows = {}
            for file_id in (err, out):  # an output line wins over an error line
                if file_id is not None:
                    rows.update(parse_batch_file(await self._file(file_id)))
            # The output does not name the model; the input file does (its sheet prices the usage).
            if src is not None:
                for line_id, line in parse_batch_file(await self._file(src)).items():
                    model = line.get("body", {}).get("model") if isinstance(line.get("body"), dict) else None
                    if isinstance(model, str):
                        self._batch_models[f"{batch_id}/{line_id}"] = model
            self._batches[batch_id] = rows
            while len(self._batches) > 8:
                self._batches.pop(next(iter(self._batches)))
        row = rows.get(custom_id)
        if row is None:
            return TaskSnapshot(task_id=task_id, status=Failed(
                "batch_expired", "the batch ended without this request (expired or cancelled)"))
        answer = row.get("response") if isinstance(row.get("response"), dict) else {}
        body = answer.get("body") if isinstance(answer, dict) else None
        code = answer.get("status_code") if isinstance(answer, dict) else None
        if code != 200 or isinstance(row.get("error"), dict):
            error = parse_error(code if isinstance(code, int) and code >= 400 else 500,
                                json.dumps(body if isinstance(body, dict) else {"error": row.get("error")}).encode())
            return TaskSnapshot(task_id=task_id, status=Failed(error.code, error.message))
        snapshot = self._snapshot(parse_images_response(body), self._batch_models.get(task_id), batch=True)
        self._tasks[task_id] = snapshot.status.results  # type: ignore[union-attr]
        return TaskSnapshot(task_id=task_id, status=snapshot.status, credits_charged=snapshot.credits_charged,
                            raw=snapshot.raw)

    async def download(self, url: str, max_bytes: int) -> bytes:
        if url.startswith(RESULT_SCHEME):
            data = self._results.get(url)
            if data is None:
                raise APIError(
                    410,
                    "result_expired",
                    "this OpenAI result was returned inline and is no longer in memory "
                    "(results cannot be downloaded again after the process that made them ends)",
                )
            if len(data) > max_bytes:
                raise DownloadError(f"result is {len(data)} bytes, over the {max_bytes}-byte cap")
            return data
        return await self._fetch(url, max_bytes, auth=same_origin(url, (self.base_url,)))

    async def upload(self, image: ReferenceImage) -> str:
        """References travel inside the edits request; a URL one is fetched now (and kept
        until the request is sent). Returns how the ledger should name the reference."""
        if image.url is None:
            return image.describe()
        if image.url not in self._references:
            self._references[image.url] = await self._fetch_reference(image.url)
            while len(self._references) > 64:
                self._references.popitem(last=False)
        return image.url

    async def balance(self) -> Balance | None:
        return None  # the Images API has no balance endpoint

    # --- helpers -----------------------------------------------------------------------------

    async def _reference_bytes(self, ref: ReferenceImage) -> bytes:
        if ref.url is None:
            return ref.data if ref.data is not None else await asyncio.to_thread(ref.read)
        data = self._references.get(ref.url)
        return data if data is not None else await self._fetch_reference(ref.url)

    async def _fetch_reference(self, url: str) -> bytes:
        """Fetch a URL reference for the edits endpoint, which takes files, not URLs."""
        try:
            data = await fetch_capped(self._client, url, _MAX_REFERENCE_BYTES, guard=self._guard,
                                      deadline=self._deadline)
        except RequestError as exc:
            # Retryable, but never a reason to blame the provider: the URL is the user's.
            raise DownloadError(f"could not fetch reference image {url[:120]}: {exc}", retryable=True) from None
        except (APIError, DownloadError) as exc:
            raise DownloadError(f"could not fetch reference image {url[:120]}: {exc}") from None
        fmt = sniff_image_format(data[:16])
        if fmt not in _MIME:
            raise DownloadError(f"reference image {url[:120]} is {fmt or 'not an image'}, not a JPEG, PNG or WEBP")
        return data

    async def _fetch(self, url: str, max_bytes: int, *, auth: bool) -> bytes:
        return await fetch_capped(self._client, url, max_bytes, headers=self._headers() if auth else None,
                                  deadline=self._deadline)
