"""Every download and reference fetch ends at a total deadline, and once past a short grace
period at a minimum transfer rate: httpx's own timeout is per read, which a server dripping
a byte now and then never trips.

The servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from imgkit.errors import DownloadError, RequestError
from imgkit.providers._http import fetch_capped
from imgkit.providers.gateway import GatewayProvider
from imgkit.providers.openai import OpenAIProvider
from imgkit.request import ImageRequest

pytestmark = pytest.mark.anyio


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (30, 30, 200)).save(buf, format="PNG")
    return buf.getvalue()


class _Server:
    """``/drip`` promises a megabyte and sends one byte every 20 ms until the client leaves;
    any other path answers with a small image at once."""

    def __init__(self) -> None:
        self.url = ""
        self.dripping = 0
        self.left = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        if not path.startswith("/drip"):
            body = _png()
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
            writer.close()
            return
        self.dripping += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n")
        try:
            while True:
                writer.write(b"\x89")
                await writer.drain()
                await asyncio.sleep(0.02)
        except (ConnectionError, OSError):
            self.left.set()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    state = _Server()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    async with listener:
        yield state


async def test_a_dripping_download_is_cut_off_at_the_deadline(server: _Server) -> None:
    # The per-read timeout (5 s) never trips: a byte arrives every 20 ms.
    async with httpx.AsyncClient(timeout=5.0) as client:
        with pytest.raises(RequestError, match=r"did not finish within 0\.5 s") as info:
            await fetch_capped(client, f"{server.url}/drip", 10_000_000, deadline=0.5, min_rate=0)
        assert info.value.sent is True
        assert await fetch_capped(client, f"{server.url}/ok.png", 10_000, deadline=5) == _png()
    # The connection was closed, so the server stops sending.
    await asyncio.wait_for(server.left.wait(), 10)


async def test_a_download_slower_than_the_minimum_rate_is_cut_off(server: _Server) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        with pytest.raises(RequestError, match="slower than 1000 bytes/s"):
            await fetch_capped(client, f"{server.url}/drip", 10_000_000, deadline=60, min_rate=1000, rate_grace=0.2)


async def test_gateway_result_download_has_a_deadline(server: _Server) -> None:
    provider = GatewayProvider("sk-test-0000", base_url=server.url, timeout=5.0, download_deadline=0.5)
    with pytest.raises(RequestError, match="did not finish within"):
        await provider.download(f"{server.url}/drip", 10_000_000)
    assert await provider.download(f"{server.url}/ok.png", 10_000) == _png()
    await provider.aclose()


async def test_openai_downloads_and_reference_fetches_have_a_deadline(server: _Server) -> None:
    provider = OpenAIProvider("sk-test-0000", base_url=f"{server.url}/v1", timeout=5.0, download_deadline=0.5)
    with pytest.raises(RequestError, match="did not finish within"):
        await provider.download(f"{server.url}/drip", 10_000_000)
    reference = ImageRequest.build("edit", images=[f"{server.url}/drip/ref.png"]).images[0]
    with pytest.raises(DownloadError, match=r"could not fetch reference image .*did not finish within") as info:
        await provider.upload(reference)
    assert info.value.retryable is True
    assert server.dripping == 2
    await provider.aclose()
