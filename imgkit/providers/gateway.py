"""The gateway's async task protocol: create, query, download, upload, credits.

The parsing is pure (:func:`parse_task`, :func:`parse_upload`); the methods that await the
network are a few lines each. The same class serves the live gateway and the sandbox: only
the transport differs (``httpx.ASGITransport`` in-process, or a loopback URL).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from imgkit.errors import APIError, RequestError
from imgkit.providers._http import DOWNLOAD_DEADLINE, fetch_capped, request_error, same_origin
from imgkit.providers.base import Balance, PreviewHandler, TaskSnapshot
from imgkit.request import (
    Completed,
    Failed,
    ImageRequest,
    Pending,
    Processing,
    ReferenceImage,
    Secret,
    TaskStatus,
)

__all__ = ["GatewayProvider", "parse_balance", "parse_task", "parse_upload"]

log = logging.getLogger("imgkit")

LIVE_API_URL = "https://api.evolink.ai"
LIVE_FILES_URL = "https://files-api.evolink.ai"
TASK_PREFIX = "task-unified-"


def _number(value: Any) -> float | None:
    """A finite float, or None (JSON may carry NaN, Infinity or a 400-digit integer)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (fields may hold anything)."""
    return value if isinstance(value, dict) else {}


def _progress(value: Any) -> int:
    number = _number(value)
    return 0 if number is None else max(0, min(100, int(number)))


def parse_task(body: Any) -> TaskSnapshot:
    """Read a task object (create response, query response or callback body).

    Tolerant: unknown fields are ignored, ``cancelled`` becomes a failure with code
    ``request_cancelled``, an unknown status is read as still processing.

    Raises:
        APIError: the body is not a task object (no id).
    """
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise APIError(200, "invalid_response", "the service returned something that is not a task")
    status_text = str(body.get("status", "")).lower()
    progress = _progress(body.get("progress"))
    status: TaskStatus
    if status_text == "completed":
        results = body.get("results") or []
        if isinstance(results, str):  # one URL where a list was due: not a list of characters
            results = [results]
        urls = tuple(u for u in results if isinstance(u, str)) if isinstance(results, list) else ()
        status = Completed(results=urls)
    elif status_text in ("failed", "cancelled", "canceled"):
        err = _object(body.get("error"))
        default = "request_cancelled" if status_text != "failed" else "unknown_error"
        code = str(err.get("code") or default)
        status = Failed(code=code, message=str(err.get("message") or status_text), progress=progress)
    elif status_text == "pending":
        status = Pending(progress=progress)
    else:
        if status_text != "processing":
            log.warning("task %s has an unknown status %r; reading it as processing", body["id"], status_text)
        status = Processing(progress=progress)
    info = _object(body.get("task_info"))
    usage = _object(body.get("usage"))
    charged = None
    for key in ("credits_charged", "credits_used", "credits_consumed"):
        if key in usage:
            charged = _number(usage[key])
            break
    return TaskSnapshot(
        task_id=body["id"],
        status=status,
        estimated_time=_number(info.get("estimated_time")),
        credits_reserved=_number(usage.get("credits_reserved")),
        credits_charged=charged,
        raw=body,
    )


def parse_balance(body: Any) -> Balance | None:
    """The spendable balance from a ``GET /v1/credits`` body (pure), or None when it names no
    figure.

    The body carries the key's (``token``) and the account's (``user``) remaining credits.
    A limited key can spend the smaller of the two; an unlimited key (``unlimited_credits``)
    the account's, whatever its own ``remaining_credits`` says.

    Example:
        >>> parse_balance({"data": {"token": {"remaining_credits": 99416.4429, "unlimited_credits": False},
        ...                         "user": {"remaining_credits": 1095.3996}}}).remaining_credits
        1095.3996
    """
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None
    token = _object(data.get("token"))
    user = _object(data.get("user"))
    key_unlimited = token.get("unlimited_credits") is True
    key = None if key_unlimited else _number(token.get("remaining_credits"))
    account = _number(user.get("remaining_credits"))
    binding: tuple[float, dict[str, Any], str] | None = None
    if key is not None and (account is None or key < account):
        binding = (key, token, "key")
    elif account is not None:
        binding = (account, user, "account")
    if binding is not None:
        remaining, source, name = binding
        return Balance(remaining, _number(source.get("used_credits")), key_remaining=key, account_remaining=account,
                       binding=name, key_unlimited=key_unlimited)
    if key_unlimited:
        return Balance(remaining_credits=math.inf, unlimited=True, key_unlimited=True)
    return None


def parse_upload(body: Any) -> str:
    """The URL to pass in ``image_urls`` from a file-API upload response."""
    if isinstance(body, dict) and body.get("success") is not False:
        data = body.get("data")
        if isinstance(data, dict):
            url = data.get("file_url") or data.get("download_url")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return url
    raise APIError.from_parts(200, _json_bytes(body))


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body).encode()


class GatewayProvider:
    """A client for the gateway's image task API.

    Args:
        api_key: the Bearer token; kept private, never shown in reprs or errors.
        base_url: the task API host.
        files_url: the file API host (the sandbox serves both on one host).
        transport: an httpx transport (``httpx.ASGITransport`` for the in-process sandbox,
            ``httpx.MockTransport`` in unit tests); None for the network.
        timeout: per-request timeout, seconds.
        name: the provider's name in the ledger.
        download_deadline: seconds one result download may take in all (``timeout`` is per
            read, which a server dripping bytes never trips).
    """

    def __init__(
        self,
        api_key: str | Secret,
        *,
        base_url: str = LIVE_API_URL,
        files_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        name: str = "gateway",
        max_connections: int = 64,
        download_deadline: float = DOWNLOAD_DEADLINE,
    ) -> None:
        self.name = name
        self._deadline = download_deadline
        self.base_url = base_url.rstrip("/")
        self.files_url = (files_url or (LIVE_FILES_URL if base_url == LIVE_API_URL else base_url)).rstrip("/")
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=limits,
            headers={"User-Agent": "imgkit"},
        )
        # Kept masked; revealed only into the header of requests to the service's own hosts
        # (result downloads from other hosts never carry it). httpx masks it in reprs.
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)

    def __repr__(self) -> str:
        return f"<GatewayProvider {self.name} {self.base_url}>"

    def _headers(self) -> dict[str, str]:
        # Callers pass this straight into the request, never into a local variable: a
        # traceback printed with its locals (IPython's verbose mode) must not show the key.
        return {"Authorization": f"Bearer {self._key.reveal()}"}

    def _own_origin(self, url: str) -> bool:
        """Whether ``url`` is on the service's own scheme, host and port (the only places the
        key may go)."""
        return same_origin(url, (self.base_url, self.files_url))

    def _scrub(self, content: bytes) -> bytes:
        """The body with the key masked, in case the service echoes the token it was sent."""
        key = self._key.reveal().encode()
        return content.replace(key, b"****") if key else content

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, method: str, url: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, url, headers=self._headers() if auth else None, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # Transport errors, and an answer whose body cannot be decoded (DecodingError).
            raise request_error(exc, url) from None
        if response.status_code >= 400:
            raise APIError.from_parts(response.status_code, self._scrub(response.content), response.headers.items())
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return json.loads(self._scrub(response.content))
        except ValueError:
            raise APIError(
                response.status_code, "invalid_response", "the service returned a body that is not JSON"
            ) from None

    async def submit(
        self,
        request: ImageRequest,
        image_urls: Sequence[str] = (),
        *,
        mask_url: str | None = None,
        on_preview: PreviewHandler | None = None,
    ) -> TaskSnapshot:
        """Create a task with the request's whole body (:meth:`ImageRequest.payload`); a mask
        goes as ``mask_url``, the URL :meth:`upload` returned for it. The task API does not
        stream, so ``on_preview`` is never called (the router sends no ``previews`` here)."""
        if request.mask is not None and mask_url is None:
            mask_url = await self.upload(request.mask)
        response = await self._send(
            "POST", f"{self.base_url}/v1/images/generations", json=request.payload(image_urls, mask_url)
        )
        try:
            body = self._json(response)
            if isinstance(body, dict) and isinstance(body.get("error"), dict) and "id" not in body:
                raise APIError.from_parts(
                    response.status_code, self._scrub(response.content), response.headers.items()
                )
            return parse_task(body)
        except APIError as exc:
            if exc.code != "invalid_response":
                raise
            # The service said yes (2xx) in words we cannot read: a task may exist and be
            # charged. Reported as "may have reached the service", so it is never resent.
            raise RequestError(
                f"HTTP {response.status_code} with an answer that is not a task ({exc.message})", sent=True
            ) from None

    async def status(self, task_id: str) -> TaskSnapshot:
        # Quoted: an id from the service must not steer the request to another endpoint.
        response = await self._send("GET", f"{self.base_url}/v1/tasks/{quote(task_id, safe='')}")
        return parse_task(self._json(response))

    async def download(self, url: str, max_bytes: int) -> bytes:
        # Results are public URLs; the key is only sent to the service's own origin (and httpx
        # drops it when a redirect leaves that origin).
        headers = self._headers() if self._own_origin(url) else None
        return await fetch_capped(self._client, url, max_bytes, headers=headers, scrub=self._scrub,
                                  deadline=self._deadline)

    async def upload(self, image: ReferenceImage) -> str:
        if image.url is not None:
            return image.url
        files = {"file": (image.name or "reference.png", image.read(), image.mime)}
        response = await self._send(
            "POST", f"{self.files_url}/api/v1/files/upload/stream", files=files, data={"upload_path": "imgkit"}
        )
        return parse_upload(self._json(response))

    async def balance(self) -> Balance | None:
        response = await self._send("GET", f"{self.base_url}/v1/credits")
        return parse_balance(self._json(response))
