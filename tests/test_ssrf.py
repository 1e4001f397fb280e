"""The guard on URLs imgkit fetches itself: a reference URL that points at (or redirects to) a
loopback, private, link-local or otherwise non-global address is refused before any
connection is made, unless private URLs are allowed.

No traffic leaves loopback: refused URLs are checked against a transport that records every
request (and refuses to forward any), hostnames are resolved by a stub, and the one real
server listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgkit.errors import DownloadError
from imgkit.providers._http import MAX_REDIRECTS, UrlGuard, address_rule, fetch_capped
from imgkit.providers.openai import OpenAIProvider
from imgkit.request import ImageRequest, ReferenceImage

pytestmark = pytest.mark.anyio

#: A global address the tests pretend a test server has; the rewriting transport below sends
#: its requests to the loopback server instead, so nothing ever goes to it.
PUBLIC = "93.184.216.34"

FORBIDDEN = [
    ("http://127.0.0.1/ref.png", "loopback"),
    ("http://10.0.0.1/ref.png", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]:6379/ref.png", "loopback"),
]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _reference(url: str) -> ReferenceImage:
    return ImageRequest.build("edit", images=[url]).images[0]


class _Recorder:
    """A transport that records every request and answers with an image."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(str(request.url))
        return httpx.Response(200, content=_png(), headers={"content-type": "image/png"})


@pytest.mark.parametrize(("url", "rule"), FORBIDDEN)
async def test_private_reference_urls_are_refused_before_any_request(url: str, rule: str) -> None:
    recorder = _Recorder()
    provider = OpenAIProvider("sk-test-0000", base_url="https://api.example/v1",
                              transport=httpx.MockTransport(recorder))
    with pytest.raises(DownloadError, match="could not fetch reference image") as info:
        await provider.upload(_reference(url))
    message = str(info.value)
    assert f"a {rule} address" in message and "allow_private_urls=True" in message
    assert url in message and f"{httpx.URL(url).host} is a {rule} address" in message
    assert recorder.seen == []
    await provider.aclose()


@pytest.mark.parametrize(("url", "rule"), FORBIDDEN)
async def test_allow_private_urls_lets_them_through(url: str, rule: str) -> None:
    recorder = _Recorder()
    provider = OpenAIProvider("sk-test-0000", base_url="https://api.example/v1",
                              transport=httpx.MockTransport(recorder), allow_private_urls=True)
    assert await provider.upload(_reference(url)) == url
    assert recorder.seen == [url]
    await provider.aclose()


async def test_a_provider_on_loopback_allows_private_urls_by_default() -> None:
    # A local sandbox serves its own reference files from loopback.
    recorder = _Recorder()
    provider = OpenAIProvider("sk-test-0000", base_url="http://127.0.0.1:9/openai/v1",
                              transport=httpx.MockTransport(recorder))
    assert await provider.upload(_reference("http://127.0.0.1:9/files/ref.png")) == "http://127.0.0.1:9/files/ref.png"
    await provider.aclose()


async def test_hostnames_are_checked_after_resolution() -> None:
    looked_up: list[tuple[str, int]] = []
    answers = {"metadata.internal": ["169.254.169.254"], "mixed.example": [PUBLIC, "10.1.2.3"],
               "cdn.example": [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]}

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append((host, port))
        return answers[host]

    guard = UrlGuard(resolve=resolve)
    recorder = _Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        with pytest.raises(DownloadError, match=r"metadata\.internal is a link-local address \(169\.254\.169\.254\)"):
            await fetch_capped(client, "http://metadata.internal/latest", 1000, guard=guard)
        with pytest.raises(DownloadError, match=r"mixed\.example is a private address \(10\.1\.2\.3\)"):
            await fetch_capped(client, "https://mixed.example/ref.png", 1000, guard=guard)
        assert recorder.seen == []
        assert await fetch_capped(client, "https://cdn.example/ref.png", 10_000, guard=guard) == _png()
    assert looked_up == [("metadata.internal", 80), ("mixed.example", 443), ("cdn.example", 443)]
    assert recorder.seen == ["https://cdn.example/ref.png"]


@pytest.mark.parametrize(
    ("address", "rule"),
    [("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
     ("10.0.0.1", "private"), ("192.168.1.1", "private"), ("172.16.0.1", "private"), ("fc00::1", "private"),
     ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("224.0.0.1", "multicast"),
     ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"), ("240.0.0.1", "reserved"),
     ("100.64.0.1", "non-global"), (PUBLIC, None), ("2606:4700:4700::1111", None)],
)
def test_address_rules(address: str, rule: str | None) -> None:
    assert address_rule(address) == rule


class _Server:
    """A loopback HTTP server: ``/start`` redirects to the target set for it, ``/loop``
    redirects to itself, ``/ok`` and ``/internal`` answer with an image."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.target = ""
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        self.hits.append(path)
        if path in ("/start", "/loop"):
            location = self.target if path == "/start" else "/loop"
            writer.write(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())
        else:
            body = _png()
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()


class _PublicToLoopback(httpx.AsyncBaseTransport):
    """Sends requests for :data:`PUBLIC` to the loopback server, and nothing else anywhere."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent: list[str] = []
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(str(request.url))
        if request.url.host != PUBLIC:
            raise AssertionError(f"a request was about to leave for {request.url}")
        # A copy: the original keeps its URL, which relative redirects are resolved against.
        local = httpx.Request(request.method, request.url.copy_with(host="127.0.0.1", port=self.port),
                              headers=request.headers, stream=request.stream)
        return await self.inner.handle_async_request(local)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    state = _Server()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield state


@pytest.mark.parametrize(
    "target",
    ["http://127.0.0.1:{port}/internal", "http://10.0.0.1/internal", "http://169.254.169.254/latest/meta-data/",
     "http://[::1]:{port}/internal", "http://localhost:{port}/internal"],
)
async def test_a_redirect_to_a_private_address_is_refused(server: _Server, target: str) -> None:
    server.target = target.format(port=server.port)
    transport = _PublicToLoopback(server.port)
    provider = OpenAIProvider("sk-test-0000", base_url="https://api.example/v1", transport=transport)
    if "localhost" in target:
        # The system resolver answers for localhost without any traffic.
        with pytest.raises(DownloadError, match=r"localhost is a loopback address"):
            await provider.upload(_reference(f"http://{PUBLIC}/start"))
    else:
        with pytest.raises(DownloadError, match=r"refusing to fetch .* address"):
            await provider.upload(_reference(f"http://{PUBLIC}/start"))
    assert server.hits == ["/start"]
    assert transport.sent == [f"http://{PUBLIC}/start"]
    await provider.aclose()


async def test_a_redirect_to_an_allowed_address_is_followed(server: _Server) -> None:
    server.target = f"http://{PUBLIC}/ok"
    transport = _PublicToLoopback(server.port)
    provider = OpenAIProvider("sk-test-0000", base_url="https://api.example/v1", transport=transport)
    assert await provider.upload(_reference(f"http://{PUBLIC}/start")) == f"http://{PUBLIC}/start"
    assert server.hits == ["/start", "/ok"]
    await provider.aclose()


async def test_redirects_are_capped(server: _Server) -> None:
    transport = _PublicToLoopback(server.port)
    provider = OpenAIProvider("sk-test-0000", base_url="https://api.example/v1", transport=transport)
    with pytest.raises(DownloadError, match="redirects too many times"):
        await provider.upload(_reference(f"http://{PUBLIC}/loop"))
    assert server.hits == ["/loop"] * (MAX_REDIRECTS + 1)
    await provider.aclose()


async def test_the_in_process_sandbox_fetches_its_own_reference_files() -> None:
    # An ASGI transport opens no socket: "http://sandbox" is never looked up or connected to.
    from imgkit.sandbox import create_app

    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        answer = await client.post("/api/v1/files/upload/stream", files={"file": ("ref.png", _png())},
                                   headers={"Authorization": "Bearer sk-sandbox"})
    url = answer.json()["data"]["file_url"]
    provider = OpenAIProvider("sk-sandbox", base_url="http://sandbox/openai/v1", transport=transport)
    assert await provider.upload(_reference(url)) == url
    await provider.aclose()


def test_provider_config_carries_allow_private_urls() -> None:
    from imgkit.config import ProviderConfig

    entry = {"name": "o", "kind": "openai", "api_key": "sk-test-0000", "base_url": "https://api.example/v1"}
    assert ProviderConfig.from_mapping(entry).allow_private_urls is None
    assert ProviderConfig.from_mapping({**entry, "allow_private_urls": True}).allow_private_urls is True
    assert ProviderConfig.from_mapping({**entry, "allow_private_urls": False}).allow_private_urls is False


def test_the_provider_setting_reaches_the_provider(data_dir: Path, sandbox_url: str) -> None:
    import imgkit

    session = imgkit.configure(data_dir=data_dir, providers=[
        {"name": "openai", "kind": "openai", "api_key": "sk-openai-sandbox-0123456789",
         "base_url": f"{sandbox_url}/openai/v1", "allow_private_urls": False},
    ])
    provider = session.router.get("openai").provider  # type: ignore[union-attr]
    assert provider._guard.allow_private is False
