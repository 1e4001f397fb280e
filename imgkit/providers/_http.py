"""HTTP pieces every provider shares: the one map from httpx's errors to imgkit's, the check
that keeps a key on its own origin, and the capped, streamed download of a result or
reference image.

**Was the request sent?** A failed create may be retried, or sent to the next provider, only
when it surely created nothing (see :mod:`imgkit.providers.router`). The rule is the same
for every provider and every request:

======================================================  ==============================  ========
httpx error                                             meaning                         ``sent``
======================================================  ==============================  ========
``ConnectError``, ``ConnectTimeout``                    no connection was made          False
``PoolTimeout``                                         no connection was free to use   False
``InvalidURL``, ``UnsupportedProtocol``                 refused before any I/O          False
``WriteError``, ``WriteTimeout``                        part of the request went out    True
``ReadError``, ``ReadTimeout``, ``RemoteProtocolError`` the request went out            True
``DecodingError``                                       an answer came back             True
any other ``httpx.HTTPError``                           cannot be told apart            True
======================================================  ==============================  ========

A half-written request counts as sent: the service may have read enough of it (a
``Content-Length`` body cut short is discarded, a chunked one need not be), and treating it
as sent costs at most a run marked ``unknown`` where resending it could pay twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import httpx

from imgkit.errors import APIError, DownloadError, RequestError

__all__ = ["NOT_SENT", "fetch_capped", "host_of", "request_error", "same_origin"]

#: The httpx errors raised before any byte of the request left this process.
NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.InvalidURL,  # not an httpx.HTTPError: raised while the request is built
    httpx.UnsupportedProtocol,
)


def host_of(url: str) -> str:
    """The host of ``url``, to name it in an error (never the whole URL: it may be signed)."""
    try:
        return httpx.URL(url).host or url[:40]
    except Exception:  # only used to describe an error
        return url[:40]


def request_error(exc: Exception, url: str) -> RequestError:
    """The :class:`~imgkit.errors.RequestError` for an httpx error raised by a request to
    ``url``, with ``sent`` set by the module's table (pure)."""
    host = host_of(url)
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return RequestError(f"timed out connecting to {host} ({name}); nothing was sent", sent=False)
    if isinstance(exc, NOT_SENT):
        return RequestError(f"could not connect to {host}: {name}; nothing was sent", sent=False)
    if isinstance(exc, httpx.WriteError | httpx.WriteTimeout):
        return RequestError(f"{name} sending to {host}", sent=True)
    if isinstance(exc, httpx.TimeoutException):
        return RequestError(f"{name} waiting for {host}", sent=True)
    return RequestError(f"{name} talking to {host}", sent=True)


def same_origin(url: str, origins: Iterable[str]) -> bool:
    """Whether ``url`` has the scheme, host and port of one of ``origins`` (the only places a
    provider's key may go). ``https://api.evolink.ai.evil.com`` merely starts like the API
    host, and ``http://127.0.0.1:9001`` like ``http://127.0.0.1:900``: neither matches."""
    try:
        target = httpx.URL(url)
        key = (target.scheme, target.host, target.port)
        return any(key == (own.scheme, own.host, own.port) for own in map(httpx.URL, origins))
    except (httpx.InvalidURL, ValueError, TypeError):
        return False


async def fetch_capped(
    client: httpx.AsyncClient,
    url: str,
    max_bytes: int,
    *,
    headers: Mapping[str, str] | None = None,
    scrub: Callable[[bytes], bytes] = lambda content: content,
) -> bytes:
    """GET ``url`` streamed, refusing more than ``max_bytes``; http(s) redirects are followed
    (httpx drops credentials when a redirect leaves the origin).

    Args:
        client: the provider's client.
        url: an http(s) URL.
        max_bytes: the cap, checked against Content-Length first and while streaming.
        headers: headers for this request (the key, for the provider's own origin only).
        scrub: applied to an error body before it is kept (masks a key the server echoes).

    Raises:
        APIError: the server answered 4xx/5xx.
        DownloadError: a non-http URL or redirect, too large, undecodable, too many redirects.
        RequestError: no answer (``sent`` as in the module's table).
    """
    if not url.lower().startswith(("http://", "https://")):
        raise DownloadError(f"refusing to download from a non-http URL: {url[:80]!r}")
    try:
        async with client.stream("GET", url, headers=headers, follow_redirects=True) as response:
            if response.status_code >= 400:
                await response.aread()
                raise APIError.from_parts(response.status_code, scrub(response.content), response.headers.items())
            if response.status_code >= 300:
                raise DownloadError(f"{url[:80]!r} answered HTTP {response.status_code} without a usable redirect")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(f"{int(declared)} bytes, over the {max_bytes}-byte cap")
            chunks: list[bytes] = []
            total = 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise DownloadError(f"more than the {max_bytes}-byte cap")
                chunks.append(chunk)
    # What is wrong with the URL or its answer, not with the network: no retry will help
    # (but a garbled encoding may come out right the next time).
    except httpx.UnsupportedProtocol:
        raise DownloadError(f"refusing to follow a redirect to a non-http URL from {url[:80]!r}") from None
    except httpx.TooManyRedirects:
        raise DownloadError(f"{url[:80]!r} redirects too many times") from None
    except httpx.InvalidURL:
        raise DownloadError(f"invalid URL: {url[:80]!r}") from None
    except httpx.DecodingError:
        raise DownloadError(f"the answer from {host_of(url)} could not be decoded", retryable=True) from None
    except httpx.HTTPError as exc:
        raise request_error(exc, url) from None
    return b"".join(chunks)
