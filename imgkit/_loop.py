"""The loop bridge: one private event-loop thread for all of imgkit's I/O.

A kernel's loop is already running, so sync code never calls ``asyncio.run`` and never patches
that loop: it hands the coroutine to this thread and waits (``LOOP.run(coro)``), which works
from plain scripts, from inside a kernel, and where a user applied nest_asyncio. Async code
awaits the same thread (``await LOOP.run_async(coro)``), so all runs of a process share one
HTTP connection pool, one concurrency limit and one ledger writer. Widgets that must not block
schedule on the kernel's loop when :func:`running_loop` finds one and fall back to
``LOOP.submit(coro)``.

Each public verb is written once, as a coroutine function: its own steps (validating,
planning, asking the user) run on the caller's thread, and its I/O goes through
``LOOP.run_async``. The sync form drives that same coroutine with ``LOOP.drive(coro)``: the
caller's steps still run on the caller's thread (where a notebook shows output and reads
input), and each ``run_async`` blocks on the private loop instead of awaiting it.

Example:
    >>> from imgkit._loop import LOOP, running_loop
    >>> LOOP.run(asyncio.sleep(0, "done"))
    'done'
    >>> async def verb():
    ...     return await LOOP.run_async(asyncio.sleep(0, "done"))
    >>> LOOP.drive(verb())
    'done'
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["LOOP", "call_on", "running_loop"]

T = TypeVar("T")
E = TypeVar("E")


class _Handoff:
    """What a coroutine driven by :meth:`_LoopThread.drive` awaits: work for the private loop."""

    __slots__ = ("coro",)

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro

    def __await__(self) -> Generator[_Handoff, Any, Any]:
        return (yield self)


# How many sync calls are driving a verb on this thread (a sync verb may call another).
_driving = threading.local()


def _driven() -> bool:
    return getattr(_driving, "depth", 0) > 0


class _LoopThread:
    """One daemon thread running an event loop for all of imgkit's I/O."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    ready.set()
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name="imgkit-loop", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the private loop; the caller keeps the future (never blocks)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait for it (blocking the caller)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("imgkit's sync functions cannot be called from its own loop; await the a* form")
        future = self.submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            # Ctrl-C / the notebook's stop button: cancel the work, keep what the ledger has.
            future.cancel()
            raise

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the private loop from any other loop (or, under :meth:`drive`,
        block on it)."""
        if self.in_loop_thread():
            return await coro
        if _driven():
            result: T = await _Handoff(coro)
            return result
        return await asyncio.wrap_future(self.submit(coro))

    def drive(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run an async verb from sync code and wait: its own steps on this thread, each
        :meth:`run_async` on the private loop. This is how every sync verb wraps its async
        form, so the two cannot drift apart."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("imgkit's sync functions cannot be called from its own loop; await the a* form")
        _driving.depth = getattr(_driving, "depth", 0) + 1
        try:
            value: Any = None
            error: BaseException | None = None
            while True:
                try:
                    step = coro.send(value) if error is None else coro.throw(error)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                value, error = None, None
                if not isinstance(step, _Handoff):
                    coro.close()
                    raise RuntimeError("a driven coroutine may only await imgkit's loop (LOOP.run_async)")
                try:
                    value = self.run(step.coro)
                except BaseException as exc:  # KeyboardInterrupt too: the verb's finally blocks run
                    error = exc
        finally:
            _driving.depth -= 1


#: The private loop thread (started on first use).
LOOP = _LoopThread()


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The caller's running event loop, or None outside one (or while a sync call blocks it,
    since then it could not run a callback before the call returns)."""
    if _driven():
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_on(
    loop: asyncio.AbstractEventLoop | None, handler: Callable[[E], object] | None
) -> Callable[[E], object] | None:
    """Deliver events to ``handler`` on ``loop`` (the caller's), or directly when None."""
    if handler is None or loop is None:
        return handler

    def deliver(event: E) -> None:
        if loop.is_closed():
            return
        loop.call_soon_threadsafe(handler, event)

    return deliver
