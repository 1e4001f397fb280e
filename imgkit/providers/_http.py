"""HTTP pieces every provider shares: the capped, streamed download of a result or reference
image, with httpx's errors translated to imgkit's."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx

from imgkit.errors import APIError, DownloadError, RequestError

__all__ = ["fetch_capped", "host_of"]


def host_of(url: str) -> str:
    """The host of ``url``, to name it in an error (never the whole URL: it may be signed)."""
    try:
        return httpx.URL(url).host or url[:40]
    except Exception:  # only used to describe an error
        return url[:40]


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
        RequestError: no answer (``sent`` says whether the request may have gone out).
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
    except httpx.ConnectError:
        raise RequestError(f"could not connect to {host_of(url)}", sent=False) from None
    except httpx.UnsupportedProtocol:
        raise DownloadError(f"refusing to follow a redirect to a non-http URL from {url[:80]!r}") from None
    except httpx.TooManyRedirects:
        raise DownloadError(f"{url[:80]!r} redirects too many times") from None
    except httpx.InvalidURL:
        raise DownloadError(f"invalid URL: {url[:80]!r}") from None
    except httpx.DecodingError:
        raise DownloadError(f"the answer from {host_of(url)} could not be decoded", retryable=True) from None
    except httpx.HTTPError as exc:
        raise RequestError(f"{type(exc).__name__} downloading from {host_of(url)}", sent=True) from None
    return b"".join(chunks)
