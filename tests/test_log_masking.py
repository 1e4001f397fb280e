"""Credentials never displayed: while a session is active its key is masked in httpx's and
httpcore's log records (httpcore logs every response header at DEBUG, and a hostile server can
echo the key in one), and a base URL's ``user:password@`` appears in no error or log line."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import imgkit
from imgkit.providers._http import shown_url

from .conftest import FAST_POLL, TEST_KEY


class EchoServer:
    """A hostile HTTP server on loopback: answers every request 500, echoing the request's
    Authorization header back in a response header."""

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        echo = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
            if name.strip().lower() == b"authorization":
                echo = value.strip()
        if length:
            await reader.readexactly(length)
        body = b'{"error": {"code": "internal_error", "message": "echo"}}'
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                     b"X-Echo-Authorization: " + echo + b"\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    def __enter__(self) -> EchoServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


def test_the_key_never_appears_in_httpcore_debug_records(
    echo: EchoServer, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{echo.port}"
    imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
    with caplog.at_level(logging.DEBUG):
        res = imgkit.generate("a fox", quality="low", raise_on_error=False)
    assert res.status in ("failed", "unknown")
    texts = [r.getMessage() for r in caplog.records]
    assert any("x-echo-authorization" in t.lower() for t in texts), "httpcore logged no response header"
    assert not [t for t in texts if TEST_KEY in t]
    assert TEST_KEY not in caplog.text
    imgkit.get_session().close()

    # Without an active session nothing is masked: the same server does echo the key.
    caplog.clear()
    with caplog.at_level(logging.DEBUG), httpx.Client() as client:
        client.get(url, headers={"Authorization": f"Bearer {TEST_KEY}"})
    assert TEST_KEY in caplog.text


def test_userinfo_in_the_base_url_is_never_shown(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A closed port: every attempt fails to connect, and every message names the URL's host.
    secret = "pa55-w0rd-userinfo"
    url = f"http://someone:{secret}@127.0.0.1:9"
    with caplog.at_level(logging.DEBUG):
        imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        session = imgkit.get_session()
        shown = [str(session.describe()), session.providers().to_string(), repr(session)]
        res = imgkit.generate("a fox", quality="low", raise_on_error=False)
    assert res.status == "failed"
    texts = [*shown, res.record.error_message or "", res.record.notes or "", caplog.text]
    assert not [t for t in texts if secret in t]


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:pw@example.com:8080/a?b=1", "http://example.com:8080/a?b=1"),
    ("https://example.com/x", "https://example.com/x"),
    ("ftp://user:pw@example.com/x", "ftp://example.com/x"),
])
def test_shown_url_drops_userinfo(url: str, shown: str) -> None:
    assert shown_url(url) == shown
