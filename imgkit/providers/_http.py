"""HTTP pieces every provider shares: the one map from httpx's errors to imgkit's, the check
that keeps a key on its own origin, the guard that keeps imgkit's own fetches off private
networks, and the capped, streamed download of a result or reference image.

**Where imgkit may fetch from.** A reference given as a URL is fetched by imgkit itself for a
provider that needs the bytes. A :class:`UrlGuard` checks every hop of such a fetch, after DNS
resolution and before any connection: an address that is loopback, private, link-local,
multicast, reserved or otherwise not global is refused (a redirect is followed by hand and
checked the same way, at most :data:`MAX_REDIRECTS` times), unless the user allowed private
URLs. Result downloads come from the provider's own service and are not guarded.

**How long a fetch may take.** httpx's timeout is per read, so a server that drips a byte
now and then never trips it. :func:`fetch_capped` therefore bounds the whole attempt (DNS,
redirects and body) by a total ``deadline`` and, after a short grace period, a minimum
average transfer rate.

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

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import httpx

from imgkit.errors import APIError, DownloadError, RequestError

__all__ = [
    "DOWNLOAD_DEADLINE",
    "MAX_REDIRECTS",
    "MIN_TRANSFER_RATE",
    "NOT_SENT",
    "UrlGuard",
    "address_rule",
    "fetch_capped",
    "host_of",
    "is_loopback_url",
    "request_error",
    "same_origin",
]

#: The most redirects one fetch follows.
MAX_REDIRECTS = 5
#: Seconds one download or reference fetch may take in all (connect, redirects and body).
DOWNLOAD_DEADLINE = 120.0
#: Bytes per second a download must average once :data:`RATE_GRACE` seconds have passed.
MIN_TRANSFER_RATE = 8 * 1024.0
#: Seconds before the minimum rate applies (a slow start is not a drip).
RATE_GRACE = 10.0

#: Resolves ``(host, port)`` to the addresses a connection would use.
Resolver = Callable[[str, int], Awaitable[list[str]]]

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


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def address_rule(address: str) -> str | None:
    """The rule that forbids fetching from ``address`` (``"loopback"``, ``"private"``, ...),
    or None for a global address (pure). An IPv4 address mapped into IPv6 is judged as IPv4."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    rules = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-global", not ip.is_global),
    )
    return next((rule for rule, hit in rules if hit), None)


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is a loopback address or ``localhost`` (no DNS lookup)."""
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, ValueError, TypeError):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class UrlGuard:
    """Where a fetch imgkit makes on its own may go.

    Attributes:
        allow_private: True to skip the check (a loopback sandbox, a test server, or a user
            who opted in with ``allow_private_urls=True``).
        resolve: the DNS lookup (injected in tests; the system resolver otherwise).
    """

    allow_private: bool = False
    resolve: Resolver = field(default=_system_resolve)

    async def check(self, url: httpx.URL, shown: str) -> None:
        """Refuse ``url`` unless every address its host resolves to is global.

        Args:
            url: the URL about to be requested (the first one or a redirect's target).
            shown: how to name it in an error.

        Raises:
            DownloadError: the host is (or resolves to) a forbidden address.
            RequestError: the host could not be resolved (nothing was sent).
        """
        if self.allow_private:
            return
        host = url.host
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = await self.resolve(host, url.port or (443 if url.scheme == "https" else 80))
            except OSError as exc:
                raise RequestError(f"could not resolve {host} ({exc}); nothing was sent", sent=False) from None
        for address in addresses:
            rule = address_rule(address)
            if rule is not None:
                raise DownloadError(
                    f"refusing to fetch {shown[:120]}: {host} is a {rule} address ({address}); "
                    "pass allow_private_urls=True to allow private URLs"
                )


async def fetch_capped(
    client: httpx.AsyncClient,
    url: str,
    max_bytes: int,
    *,
    headers: Mapping[str, str] | None = None,
    scrub: Callable[[bytes], bytes] = lambda content: content,
    guard: UrlGuard | None = None,
    deadline: float = DOWNLOAD_DEADLINE,
    min_rate: float = MIN_TRANSFER_RATE,
    rate_grace: float = RATE_GRACE,
) -> bytes:
    """GET ``url`` streamed, refusing more than ``max_bytes``; up to :data:`MAX_REDIRECTS`
    http(s) redirects are followed (httpx drops credentials when a redirect leaves the origin).

    Args:
        client: the provider's client.
        url: an http(s) URL.
        max_bytes: the cap, checked against Content-Length first and while streaming.
        headers: headers for this request (the key, for the provider's own origin only).
        scrub: applied to an error body before it is kept (masks a key the server echoes).
        guard: checks the URL and every redirect's target before connecting (None: no check,
            for the provider's own results).
        deadline: seconds the whole attempt may take, redirects and body included.
        min_rate: bytes per second the body must average once ``rate_grace`` seconds passed.
        rate_grace: seconds before ``min_rate`` applies.

    Raises:
        APIError: the server answered 4xx/5xx.
        DownloadError: a non-http URL or redirect, a private address refused by ``guard``, too
            large, undecodable, too many redirects.
        RequestError: no answer, or none within ``deadline`` or at ``min_rate`` (``sent`` as
            in the module's table).
    """
    if not url.lower().startswith(("http://", "https://")):
        raise DownloadError(f"refusing to download from a non-http URL: {url[:80]!r}")
    try:
        async with asyncio.timeout(deadline):
            return await _fetch(client, url, max_bytes, headers, scrub, guard, (min_rate, rate_grace))
    except TimeoutError:
        raise RequestError(
            f"the download from {host_of(url)} did not finish within {deadline:g} s", sent=True
        ) from None


async def _fetch(
    client: httpx.AsyncClient,
    url: str,
    max_bytes: int,
    headers: Mapping[str, str] | None,
    scrub: Callable[[bytes], bytes],
    guard: UrlGuard | None,
    rate: tuple[float, float],
) -> bytes:
    started = time.monotonic()
    try:
        request = client.build_request("GET", url, headers=headers)
        for _ in range(MAX_REDIRECTS + 1):
            if guard is not None:
                await guard.check(request.url, str(request.url))
            # Redirects are followed here, one checked hop at a time; httpx builds each next
            # request (dropping the key when it leaves the origin).
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                if response.next_request is not None:
                    request = response.next_request
                    continue
                return await _body(response, url, max_bytes, scrub, started, rate)
            finally:
                await response.aclose()
        raise DownloadError(f"{url[:80]!r} redirects too many times")
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


async def _body(
    response: httpx.Response,
    url: str,
    max_bytes: int,
    scrub: Callable[[bytes], bytes],
    started: float,
    rate: tuple[float, float],
) -> bytes:
    min_rate, grace = rate
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
        elapsed = time.monotonic() - started
        if min_rate > 0 and elapsed > grace and total < min_rate * elapsed:
            raise RequestError(
                f"the download from {host_of(url)} is slower than {min_rate:g} bytes/s", sent=True
            )
    return b"".join(chunks)
