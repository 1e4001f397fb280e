"""A small asyncio TCP proxy on 127.0.0.1 that resets or stalls connections by probability.

The sandbox speaks HTTP through uvicorn and cannot reset a TCP connection or go silent in the
middle of one; this proxy sits between the real client and the sandbox and does both, so the
client's own transport code meets real ``ECONNRESET`` and real read timeouts (no mocks).

A fault is drawn at the start of each HTTP request (a chunk from the client that begins with a
method token), so keep-alive connections get faults too. Four kinds, drawn with one uniform
number against the cumulative probabilities:

- ``reset_before``: the request is dropped and the client's socket is reset (RST); the
  upstream never sees it.
- ``reset_after``: the request reaches the upstream, which answers; the client's socket is
  reset instead of relaying the answer (a create may have made a task the client never hears
  of).
- ``stall_before`` / ``stall_after``: the same, but the connection goes silent for
  ``stall_seconds`` (longer than the client's timeout) and is then closed.

``stats`` counts every injected fault by ``(kind, request kind)`` and every request seen, so a
test can report how many faults it injected and prove that invalid input sent nothing.

Example:
    with FaultProxy(sandbox_url, reset=0.03, stall=0.03, stall_seconds=3.0) as proxy:
        imgkit.configure(api_key=KEY, base_url=proxy.url, timeout=2.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "counting_proxy", "request_kind"]

_METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"PATCH ", b"OPTIONS ")


def request_kind(head: bytes) -> str:
    """``create``, ``poll``, ``download``, ``upload``, ``sandbox`` or ``other`` from a request's
    first bytes."""
    line = head.split(b"\r\n", 1)[0]
    if line.startswith(b"POST /v1/images/generations"):
        return "create"
    if line.startswith(b"GET /v1/tasks/"):
        return "poll"
    if line.startswith(b"GET /files/"):
        return "download"
    if b"/api/v1/files/" in line:
        return "upload"
    if b" /_sandbox/" in line:
        return "sandbox"
    return "other"


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forward 127.0.0.1:<port> to ``upstream``, injecting resets and stalls.

    Args:
        upstream: the base URL to forward to (``http://127.0.0.1:8808``).
        reset: probability that a request's connection is reset (half before, half after the
            upstream saw the request).
        stall: probability that a request's connection goes silent for ``stall_seconds``
            (half before, half after the upstream saw it).
        stall_seconds: how long a stall lasts; make it longer than the client's timeout.
        seed: seeds the fault draws.
        kinds: only requests of these kinds get faults (None: all but ``sandbox``).
    """

    def __init__(
        self,
        upstream: str,
        *,
        reset: float = 0.0,
        stall: float = 0.0,
        stall_seconds: float = 3.0,
        seed: int = 0,
        kinds: frozenset[str] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.reset = reset
        self.stall = stall
        self.stall_seconds = stall_seconds
        self.kinds = kinds
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.stats: Counter[tuple[str, str]] = Counter()
        self.requests: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._closing: asyncio.Event | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_faults(self, *, reset: float | None = None, stall: float | None = None) -> None:
        with self._lock:
            if reset is not None:
                self.reset = reset
            if stall is not None:
                self.stall = stall

    @property
    def injected(self) -> int:
        with self._lock:
            return sum(self.stats.values())

    def requests_of(self, *kinds: str) -> int:
        with self._lock:
            return sum(self.requests[k] for k in kinds) if kinds else sum(self.requests.values())

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # surfaced to the caller below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="faultproxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)

    async def _start(self) -> None:
        self._closing = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._closing is not None and self._server is not None
        self._closing.set()
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()

    # --- the proxy ---------------------------------------------------------------------

    def _draw(self, kind: str) -> str | None:
        with self._lock:
            self.requests[kind] += 1
            if kind == "sandbox" or (self.kinds is not None and kind not in self.kinds):
                return None
            r = self._rng.random()
            half = self._rng.random() < 0.5
            if r < self.reset:
                fault = "reset_before" if half else "reset_after"
            elif r < self.reset + self.stall:
                fault = "stall_before" if half else "stall_after"
            else:
                return None
            self.stats[(fault, kind)] += 1
            return fault

    async def _sleep_or_close(self, seconds: float) -> None:
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._relay(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only _stop() cancels these; returning keeps asyncio's server callback quiet.
            return
        finally:
            self._conns.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            _rst(writer)
            return
        # What the upstream->client pump must do with the next answer it sees.
        pending: dict[str, str | None] = {"fault": None}
        done = asyncio.Event()

        async def client_to_upstream() -> None:
            try:
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    fault = None
                    if chunk.startswith(_METHODS):
                        fault = self._draw(request_kind(chunk))
                    if fault == "reset_before":
                        _rst(writer)
                        break
                    if fault == "stall_before":
                        await self._sleep_or_close(self.stall_seconds)
                        _rst(writer)
                        break
                    if fault in ("reset_after", "stall_after"):
                        pending["fault"] = fault
                    up_writer.write(chunk)
                    await up_writer.drain()
            except OSError:
                pass
            finally:
                done.set()

        async def upstream_to_client() -> None:
            try:
                while True:
                    chunk = await up_reader.read(65536)
                    if not chunk:
                        break
                    fault = pending["fault"]
                    if fault == "reset_after":
                        _rst(writer)
                        break
                    if fault == "stall_after":
                        await self._sleep_or_close(self.stall_seconds)
                        _rst(writer)
                        break
                    writer.write(chunk)
                    await writer.drain()
            except OSError:
                pass
            finally:
                done.set()

        pumps = [asyncio.ensure_future(client_to_upstream()), asyncio.ensure_future(upstream_to_client())]
        try:
            await done.wait()
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()
            if not writer.transport.is_closing():
                writer.close()


@contextlib.contextmanager
def counting_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A proxy that injects nothing and only counts requests (to prove none were sent)."""
    with FaultProxy(upstream) as proxy:
        yield proxy
