"""One map from httpx's errors to imgkit's, used by every provider: what counts as "the request
may have been sent" (imgkit.providers._http), and the key kept to its own origin."""

from __future__ import annotations

import httpx
import pytest

from imgkit.errors import DownloadError, RequestError
from imgkit.providers._http import fetch_capped, request_error, same_origin
from imgkit.providers.gateway import GatewayProvider
from imgkit.providers.openai import OpenAIProvider
from imgkit.request import ImageRequest

from .conftest import TEST_KEY

URL = "http://service.test/v1/images/generations"

#: The module's table: the httpx error, and whether the request may have been sent.
TABLE = [
    (httpx.ConnectError, False),
    (httpx.ConnectTimeout, False),
    (httpx.PoolTimeout, False),
    (httpx.UnsupportedProtocol, False),
    (httpx.WriteError, True),
    (httpx.WriteTimeout, True),
    (httpx.ReadError, True),
    (httpx.ReadTimeout, True),
    (httpx.RemoteProtocolError, True),
    (httpx.DecodingError, True),
    (httpx.ProxyError, True),
]


def _raising(error: type[Exception]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(("error", "sent"), TABLE)
def test_the_map(error: type[httpx.HTTPError], sent: bool) -> None:
    translated = request_error(error("boom"), URL)
    assert isinstance(translated, RequestError)
    assert translated.sent is sent
    assert "service.test" in str(translated) and "/v1/" not in str(translated)  # the host, never the URL


def test_an_invalid_url_was_not_sent() -> None:
    assert request_error(httpx.InvalidURL("bad"), URL).sent is False


@pytest.mark.anyio
@pytest.mark.parametrize(("error", "sent"), TABLE)
@pytest.mark.parametrize("kind", ["gateway", "openai"])
async def test_every_provider_follows_the_map_on_create(kind: str, error: type[Exception], sent: bool) -> None:
    # Before: the gateway called PoolTimeout and WriteError "sent", the OpenAI provider "not sent".
    transport = _raising(error)
    provider: GatewayProvider | OpenAIProvider
    if kind == "gateway":
        provider = GatewayProvider(TEST_KEY, base_url="http://service.test", transport=transport)
    else:
        provider = OpenAIProvider(TEST_KEY, base_url="http://service.test/v1", transport=transport)
    try:
        with pytest.raises(RequestError) as info:
            await provider.submit(ImageRequest.build("a fox", quality="low"), ())
    finally:
        await provider.aclose()
    assert info.value.sent is sent
    assert TEST_KEY not in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize(("error", "sent"), [row for row in TABLE if row[0] is not httpx.DecodingError])
async def test_downloads_follow_the_map(error: type[Exception], sent: bool) -> None:
    if error is httpx.UnsupportedProtocol:
        expected: type[Exception] = DownloadError  # a redirect to a non-http URL: the URL's fault
    else:
        expected = RequestError
    async with httpx.AsyncClient(transport=_raising(error)) as client:
        with pytest.raises(expected) as info:
            await fetch_capped(client, "http://files.test/result.png", 1024)
    if expected is RequestError:
        assert info.value.sent is sent  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "own"),
    [
        ("http://127.0.0.1:900/v1/x", True),
        ("http://127.0.0.1:900/other", True),
        ("http://127.0.0.1:9001/v1/x", False),
        ("https://127.0.0.1:900/v1/x", False),
        ("http://127.0.0.1/v1/x", False),
        ("http://127.0.0.10:900/v1/x", False),
        ("not a url at all", False),
    ],
)
def test_same_origin(url: str, own: bool) -> None:
    assert same_origin(url, ["http://127.0.0.1:900/v1"]) is own


def test_same_origin_is_not_a_prefix() -> None:
    assert not same_origin("https://api.evolink.ai.evil.com/x", ["https://api.evolink.ai"])
    assert same_origin("https://api.evolink.ai:443/x", ["https://api.evolink.ai"])


@pytest.mark.anyio
async def test_the_openai_provider_keeps_the_key_on_its_own_origin() -> None:
    # base_url http://127.0.0.1:900 is a prefix of http://127.0.0.1:9001: the old check sent the key there.
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[str(request.url)] = request.headers.get("authorization")
        return httpx.Response(200, content=b"x")

    provider = OpenAIProvider(TEST_KEY, base_url="http://127.0.0.1:900", transport=httpx.MockTransport(handler))
    try:
        await provider.download("http://127.0.0.1:9001/result.png", 1024)
        await provider.download("http://127.0.0.1:900/files/result.png", 1024)
    finally:
        await provider.aclose()
    assert seen["http://127.0.0.1:9001/result.png"] is None
    assert seen["http://127.0.0.1:900/files/result.png"] == f"Bearer {TEST_KEY}"
