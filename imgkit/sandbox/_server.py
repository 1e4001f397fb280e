"""Serving the sandbox over real HTTP: in a background thread for tests, or blocking for the CLI."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from ._app import create_app
from ._state import SandboxConfig, SandboxState

__all__ = ["running_sandbox", "serve"]

_log = logging.getLogger("imgkit.sandbox")
_STARTUP_TIMEOUT = 10.0


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so port 0 gives us the real port at once."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _uvicorn_config(app: Starlette, **kwargs: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",  # the app has no start-up work
        ws="none",  # no websockets: nothing to import, nothing to warn
        timeout_graceful_shutdown=2,
        **kwargs,  # type: ignore[arg-type]
    )


@contextlib.contextmanager
def running_sandbox(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    app: Starlette | None = None,
) -> Iterator[str]:
    """Serve a sandbox on a loopback port in a background thread; yield its base URL.

    Args:
        config: behaviour of a new app (ignored when app is given).
        host: interface to bind; keep loopback unless you mean to expose it.
        port: 0 picks a free port.
        app: an existing app from `create_app`, to inspect its `app.state.sandbox` in tests.

    Example:
        with running_sandbox(SandboxConfig(time_scale=0.01)) as base_url:
            httpx.get(f"{base_url}/_sandbox/health").json()["status"]  # 'ok'
    """
    app = app if app is not None else create_app(config)
    state: SandboxState = app.state.sandbox
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    # uvicorn's default log config would reconfigure the host process's logging.
    server = uvicorn.Server(_uvicorn_config(app, log_config=None, access_log=False))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="imgkit-sandbox", daemon=True
    )
    try:
        thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the sandbox server stopped during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start in time")
            time.sleep(0.005)
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        base_url = f"http://{url_host}:{bound_port}"
        _log.info("sandbox serving on %s", base_url)
        yield base_url
    finally:
        # Release responses held by accept_then_hang so shutdown is not stuck behind them.
        state.closing.set()
        server.should_exit = True
        thread.join(timeout=_STARTUP_TIMEOUT)
        if thread.is_alive():  # pragma: no cover - only if uvicorn ignores should_exit
            server.force_exit = True
            thread.join(timeout=_STARTUP_TIMEOUT)
        sock.close()


def serve(host: str = "127.0.0.1", port: int = 8808, config: SandboxConfig | None = None) -> None:
    """Serve a sandbox until interrupted (Ctrl+C); for `imgkit sandbox --port N`.

    Args:
        host: interface to bind.
        port: TCP port.
        config: behaviour; defaults to `SandboxConfig()`.
    """
    app = create_app(config)
    server = uvicorn.Server(_uvicorn_config(app, host=host, port=port))
    try:
        server.run()
    finally:
        app.state.sandbox.closing.set()
