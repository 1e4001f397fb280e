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

**Retries are told, not logged.** stamina's own hooks log a bare ``stamina.retry_scheduled``
at WARNING, which Python prints on stderr (a pink box in a notebook) when no logging is set
up. :func:`install_retry_hooks` silences them for imgkit's own requests (a user's own stamina
calls keep them) and adds a hook that turns each retry into a :class:`RetryNotice` ("rate
limited; retrying in 1.3 s (2 of 5)"): handed to the listener of :func:`retry_listener` (the
engine makes it a run's progress event) or, without one, logged at INFO on ``imgkit``.

**Keys in logs.** httpx logs request lines at INFO and httpcore every header exchange at
DEBUG, response headers included; a hostile server can echo the key in one. While a session
is active, :func:`mask_secrets` installs a :class:`logging.Filter` on those loggers that
replaces each registered key (and key-shaped tokens) in their records. Userinfo
(``user:password@``) never appears in imgkit's error text: URLs are named through
:func:`shown_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from imgkit.errors import APIError, DownloadError, RequestError, redact

if TYPE_CHECKING:
    from stamina.instrumentation import RetryDetails, RetryHook

__all__ = [
    "DOWNLOAD_DEADLINE",
    "MAX_REDIRECTS",
    "MIN_TRANSFER_RATE",
    "NOT_SENT",
    "RETRYING",
    "RetryNotice",
    "UrlGuard",
    "address_rule",
    "fetch_capped",
    "host_of",
    "install_retry_hooks",
    "is_loopback_url",
    "mask_secrets",
    "request_error",
    "retry_attempts",
    "retry_listener",
    "retry_reason",
    "same_origin",
    "shown_url",
]

log = logging.getLogger("imgkit")

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


def shown_url(url: str) -> str:
    """``url`` without ``user:password@``, to name it in a message (pure)."""
    try:
        parsed = httpx.URL(url)
    except Exception:  # only used to describe an error
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]
    if not parsed.userinfo:
        return url
    return str(parsed.copy_with(username=None, password=None))


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
        raise DownloadError(f"refusing to download from a non-http URL: {shown_url(url)[:80]!r}")
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
                await guard.check(request.url, shown_url(str(request.url)))
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
        raise DownloadError(f"{shown_url(url)[:80]!r} redirects too many times")
    # What is wrong with the URL or its answer, not with the network: no retry will help
    # (but a garbled encoding may come out right the next time).
    except httpx.UnsupportedProtocol:
        raise DownloadError(f"refusing to follow a redirect to a non-http URL from {shown_url(url)[:80]!r}") from None
    except httpx.TooManyRedirects:
        raise DownloadError(f"{shown_url(url)[:80]!r} redirects too many times") from None
    except httpx.InvalidURL:
        raise DownloadError(f"invalid URL: {shown_url(url)[:80]!r}") from None
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
        raise DownloadError(f"{shown_url(url)[:80]!r} answered HTTP {response.status_code} without a usable redirect")
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


# --- retries, told ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """A retry stamina scheduled for one of imgkit's requests.

    Attributes:
        reason: what went wrong, in words (``"rate limited"``, ``"the service answered HTTP 503"``).
        wait_s: seconds until the next attempt.
        attempt: the number of the next attempt (2 for the first retry).
        attempts: the most attempts this request gets (None when not known).
    """

    reason: str
    wait_s: float
    attempt: int
    attempts: int | None = None

    def __str__(self) -> str:
        of = f"{self.attempt} of {self.attempts}" if self.attempts else f"attempt {self.attempt}"
        return f"{self.reason}{RETRYING}{self.wait_s:.1f} s ({of})"


#: What every retry notice says between its reason and its delay (how a face tells one).
RETRYING = "; retrying in "


#: Called with each retry of the requests made in its context.
RetryListener = Callable[[RetryNotice], object]
_LISTENER: ContextVar[RetryListener | None] = ContextVar("imgkit_retry_listener", default=None)
_ATTEMPTS: ContextVar[int | None] = ContextVar("imgkit_retry_attempts", default=None)
_HOOKS_LOCK = threading.Lock()


def retry_reason(exc: BaseException) -> str:
    """What a retried failure was, in words (pure)."""
    if isinstance(exc, APIError):
        return "rate limited" if exc.status == 429 else f"the service answered HTTP {exc.status}"
    if isinstance(exc, RequestError):
        text = str(exc)
        return "a request timed out" if "timed out" in text or "Timeout" in text else "the connection failed"
    if isinstance(exc, DownloadError):
        return "a download came back garbled"
    return type(exc).__name__


def _in_imgkit() -> bool:
    return _ATTEMPTS.get() is not None or _LISTENER.get() is not None


def _on_retry(details: RetryDetails) -> None:
    """imgkit's stamina hook: a notice to the context's listener, or an INFO log line."""
    if not _in_imgkit():
        return
    notice = RetryNotice(retry_reason(details.caused_by), details.wait_for, details.retry_num + 1, _ATTEMPTS.get())
    listener = _LISTENER.get()
    if listener is None:
        log.info("%s", notice)
        return
    try:
        listener(notice)
    except Exception:  # a broken progress bar must not break the request
        log.exception("retry listener failed")


def _outside_imgkit(hook: RetryHook) -> RetryHook:
    """``hook`` (one of stamina's printing hooks), silent for imgkit's own requests."""

    def quiet(details: RetryDetails) -> Any:
        return None if _in_imgkit() else hook(details)

    quiet.imgkit_wraps = hook  # type: ignore[attr-defined]
    return quiet


def install_retry_hooks() -> None:
    """Make stamina tell imgkit's retries as :class:`RetryNotice` objects instead of logging
    them (once per process; hooks a user installed stay, and still see every retry)."""
    from stamina.instrumentation import get_on_retry_hooks, set_on_retry_hooks

    with _HOOKS_LOCK:
        hooks = get_on_retry_hooks()
        if _on_retry in hooks:
            return
        printers = ("stamina.instrumentation._logging", "stamina.instrumentation._structlog")
        kept = [
            _outside_imgkit(h) if getattr(h, "__module__", "").startswith(printers) else h for h in hooks
        ]
        set_on_retry_hooks([*kept, _on_retry])


@contextlib.contextmanager
def retry_listener(listener: RetryListener | None) -> Iterator[None]:
    """Hand the retries of the requests made inside the block (in this task) to ``listener``."""
    install_retry_hooks()
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


@contextlib.contextmanager
def retry_attempts(attempts: int) -> Iterator[None]:
    """Mark the requests made inside the block as imgkit's, retried up to ``attempts`` times."""
    install_retry_hooks()
    token = _ATTEMPTS.set(attempts)
    try:
        yield
    finally:
        _ATTEMPTS.reset(token)


# --- keys out of logs --------------------------------------------------------------------------

#: The loggers whose records may carry a request's or a response's headers.
HTTP_LOGGERS = ("httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2",
                "httpcore.proxy", "httpcore.socks")


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


class _MaskSecrets(logging.Filter):
    """Replaces registered secrets, key-shaped tokens and URLs' ``user:password@`` in a
    record's text."""

    def __init__(self) -> None:
        super().__init__("imgkit-mask-secrets")
        self.secrets: dict[int, str] = {}
        self.values: tuple[str, ...] = ()
        self._next = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error path
            return True
        masked = _USERINFO.sub(r"\1", redact(text))
        for secret in self.values:
            if secret in masked:
                masked = masked.replace(secret, "****")
        if masked != text:
            record.msg, record.args = masked, None
        return True

    def add(self, secret: str) -> int:
        with self.lock:
            self._next += 1
            self.secrets[self._next] = secret
            self.values = tuple(self.secrets.values())
            return self._next

    def drop(self, handle: int) -> None:
        with self.lock:
            self.secrets.pop(handle, None)
            self.values = tuple(self.secrets.values())


_MASK = _MaskSecrets()


def mask_secrets(secrets: Iterable[str]) -> Callable[[], None]:
    """Keep ``secrets`` out of httpx's and httpcore's log records until the returned function
    is called (a session calls it when it closes). Returns that function.

    Example:
        >>> unmask = mask_secrets([api_key])
        >>> ...  # httpcore's DEBUG lines show "****" wherever the key was
        >>> unmask()
    """
    handles = [_MASK.add(s) for s in secrets if s and len(s) >= 4]
    if not handles:
        return lambda: None
    with _MASK.lock:
        for name in HTTP_LOGGERS:
            logger = logging.getLogger(name)
            if _MASK not in logger.filters:
                logger.addFilter(_MASK)

    def unmask() -> None:
        for handle in handles:
            _MASK.drop(handle)
        with _MASK.lock:
            if not _MASK.secrets:
                for name in HTTP_LOGGERS:
                    logging.getLogger(name).removeFilter(_MASK)

    return unmask
