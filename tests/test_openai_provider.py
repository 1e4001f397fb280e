"""The OpenAI Images API: the sandbox's fake checked with the official ``openai`` package as the
client (generations, edits with files, errors parsed into the SDK's types), and imgkit's
OpenAI-direct provider against it (base64 results, cost from the returned token usage)."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

import imgkit
from imgkit.errors import APIError, DownloadError
from imgkit.providers.openai import OpenAIProvider, parse_error, parse_images_response
from imgkit.request import Completed, ImageRequest, RunRecord
from imgkit.sandbox import SandboxConfig, running_sandbox

openai = pytest.importorskip("openai", reason="the openai extra (dev dependency) is needed for this test")

SDK_KEY = "sk-openai-sandbox-0123456789"


def _png(size: tuple[int, int] = (32, 24), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (20, 160, 90)).save(buf, format=fmt)
    return buf.getvalue()


def _decoded(b64: str | None) -> Image.Image:
    assert b64
    with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
        img.load()
        return img.copy()


@pytest.fixture(scope="module")
def openai_url() -> Iterator[str]:
    """A sandbox that requires one key, so a wrong key is a 401."""
    with running_sandbox(SandboxConfig(seed=11, time_scale=0.005, api_key=SDK_KEY)) as url:
        yield url


@pytest.fixture
def sdk(openai_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=SDK_KEY, base_url=f"{openai_url}/openai/v1", max_retries=0) as client:
        yield client


# -- the official client against the sandbox ---------------------------------------------


@pytest.mark.parametrize(
    ("size", "quality", "n", "tokens"),
    [("1024x1024", "low", 1, 272), ("1536x1024", "medium", 2, 1568), ("1024x1536", "high", 1, 6240)],
)
def test_sdk_generate(sdk: openai.OpenAI, size: str, quality: str, n: int, tokens: int) -> None:
    response = sdk.images.generate(model="gpt-image-1", prompt="a red fox in snow", size=size, quality=quality, n=n)
    assert isinstance(response, openai.types.ImagesResponse)
    assert response.data is not None and len(response.data) == n
    width, height = (int(v) for v in size.split("x"))
    for item in response.data:
        assert item.url is None  # GPT image models only return base64
        assert _decoded(item.b64_json).size == (width, height)
    assert (response.size, response.quality, response.output_format, response.background) == (
        size, quality, "png", "opaque",
    )
    usage = response.usage
    assert usage is not None
    assert usage.output_tokens == tokens * n
    assert usage.output_tokens_details is not None and usage.output_tokens_details.image_tokens == tokens * n
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.image_tokens == 0 and usage.input_tokens_details.text_tokens > 0


def test_sdk_generate_defaults_and_formats(sdk: openai.OpenAI) -> None:
    response = sdk.images.generate(model="gpt-image-1", prompt="a lighthouse", output_format="jpeg",
                                   output_compression=70)
    assert (response.size, response.quality, response.output_format) == ("1024x1024", "medium", "jpeg")
    assert response.data is not None
    assert base64.b64decode(response.data[0].b64_json or "").startswith(b"\xff\xd8\xff")  # JPEG


def test_sdk_edit_with_files(sdk: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "sketch.png"
    path.write_bytes(_png())
    with path.open("rb") as fh:
        response = sdk.images.edit(
            model="gpt-image-1",
            image=[fh, ("ref.jpg", _png(fmt="JPEG"), "image/jpeg"), ("ref.webp", _png(fmt="WEBP"), "image/webp")],
            prompt="make it a watercolor",
            size="1536x1024",
            quality="low",
            n=2,
            input_fidelity="high",
        )
    assert response.data is not None and len(response.data) == 2
    assert _decoded(response.data[1].b64_json).size == (1536, 1024)
    assert response.usage is not None
    assert response.usage.input_tokens_details.image_tokens > 0
    assert response.usage.output_tokens == 400 * 2
    # One file is sent as `image`, not `image[]`; both are accepted.
    single = sdk.images.edit(model="gpt-image-1", image=("one.png", _png(), "image/png"), prompt="again",
                             quality="low")
    assert single.data is not None and len(single.data) == 1


@pytest.mark.parametrize(
    ("prompt", "kwargs", "error", "code"),
    [
        ("p", {"quality": "ultra"}, "BadRequestError", "invalid_value"),
        ("p", {"n": 11}, "BadRequestError", "integer_above_max_value"),
        ("p [[http:400]]", {}, "BadRequestError", "invalid_value"),
        ("p [[fail:content_policy_violation]]", {}, "BadRequestError", "moderation_blocked"),
        ("p [[http:402]]", {}, "RateLimitError", "insufficient_quota"),
        ("p [[http:429]]", {}, "RateLimitError", "rate_limit_exceeded"),
        ("p [[http:403]]", {}, "NotFoundError", "model_not_found"),
        ("p [[fail:service_unavailable]]", {}, "InternalServerError", None),
        ("p [[http:500]]", {}, "InternalServerError", None),
    ],
)
def test_sdk_parses_errors(sdk: openai.OpenAI, prompt: str, kwargs: dict, error: str, code: str | None) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        sdk.images.generate(model="gpt-image-1", prompt=prompt, **kwargs)
    assert type(info.value).__name__ == error
    assert info.value.code == code
    assert isinstance(info.value.body, dict) and info.value.body["message"]


def test_sdk_authentication_error_does_not_echo_the_key(openai_url: str) -> None:
    with openai.OpenAI(api_key="sk-wrong-KEY-ABCDEFGH", base_url=f"{openai_url}/openai/v1", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            bad.images.generate(model="gpt-image-1", prompt="p")
        with pytest.raises(openai.AuthenticationError):
            bad.images.edit(model="gpt-image-1", image=("a.png", _png(), "image/png"), prompt="p")
    assert info.value.code == "invalid_api_key"
    assert "ABCDEFGH" not in str(info.value)


def test_sdk_edit_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.images.edit(model="gpt-image-1", image=("a.gif", b"GIF89a" + b"\0" * 20, "image/gif"), prompt="p")
    assert info.value.code == "invalid_image_format"
    with pytest.raises(openai.NotFoundError):
        sdk.images.edit(model="gpt-image-2", image=("a.png", _png(), "image/png"), prompt="p")


def test_wire_rejects_what_the_api_rejects(openai_url: str) -> None:
    headers = {"Authorization": f"Bearer {SDK_KEY}"}
    with httpx.Client(base_url=f"{openai_url}/openai/v1", headers=headers, timeout=10) as c:
        cases = [
            ({"model": "gpt-image-1", "prompt": "p", "foo": 1}, "unknown_parameter", "foo"),
            ({"model": "gpt-image-1"}, "missing_required_parameter", "prompt"),
            ({"model": "gpt-image-1", "prompt": "p", "response_format": "url"}, "unknown_parameter", "response_format"),
            ({"model": "gpt-image-1", "prompt": "p", "output_compression": 50}, "invalid_value", "output_compression"),
            ({"model": "gpt-image-1", "prompt": "p", "background": "transparent", "output_format": "jpeg"},
             "invalid_value", "background"),
            ({"model": "gpt-image-1", "prompt": "x" * 32001}, "string_above_max_length", "prompt"),
            ({"prompt": "p"}, "invalid_value", "model"),
        ]
        for body, code, param in cases:
            r = c.post("/images/generations", json=body)
            assert r.status_code == 400, body
            assert (r.json()["error"]["code"], r.json()["error"]["param"]) == (code, param)
        r = c.post("/images/edits", json={"model": "gpt-image-1", "prompt": "p"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_content_type"
        r = c.post("/images/edits", data={"model": "gpt-image-1", "prompt": "p"}, files={"mask": ("m.png", _png())})
        assert r.status_code == 400 and r.json()["error"]["param"] == "image"
        r = c.post("/images/generations", json={"model": "gpt-image-1", "prompt": "p"}, headers={"Authorization": ""})
        assert r.status_code == 401


# -- imgkit's OpenAI-direct provider --------------------------------------------------------


def _error(status: int, code: str | None, message: str = "m", type_: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "moderation_blocked", "content_policy_violation"),
        (401, "invalid_api_key", "unauthorized"),
        (401, None, "unauthorized"),
        (404, None, "model_not_found"),
        (404, "model_not_found", "model_not_found"),
        (429, "insufficient_quota", "insufficient_quota"),
        (429, None, "rate_limit_exceeded"),
        (400, None, "invalid_request"),
        (400, "invalid_value", "invalid_value"),
        (500, None, "internal_error"),
        (503, None, "service_unavailable"),
    ],
)
def test_parse_error_codes(status: int, code: str | None, expected: str) -> None:
    err = parse_error(status, _error(status, code, "Your request was rejected."))
    assert (err.status, err.code) == (status, expected)
    assert "Your request was rejected." in err.message
    if code and code != expected:
        assert err.message.startswith(f"{code}: ")  # OpenAI's own code is kept


def test_parse_error_tolerates_other_bodies_and_reads_retry_after_ms() -> None:
    err = parse_error(502, b"<html>Bad gateway</html>")
    assert (err.code, err.message) == ("internal_error", "<html>Bad gateway</html>")
    err = parse_error(429, _error(429, "rate_limit_exceeded"), [("retry-after-ms", "1500")])
    assert err.retry_after == 1.5


def test_parse_images_response() -> None:
    png = _png()
    body = {"created": 1, "data": [{"b64_json": base64.b64encode(png).decode()}, {"url": "https://cdn/x.png"}],
            "usage": {"output_tokens": 272}, "size": "1024x1024"}
    parsed = parse_images_response(body)
    assert parsed.images == [png] and parsed.urls == ["https://cdn/x.png"]
    assert parsed.usage == {"output_tokens": 272} and "data" not in parsed.meta
    with pytest.raises(APIError, match="not valid base64"):
        parse_images_response({"data": [{"b64_json": "***"}]})
    with pytest.raises(APIError, match="not an images response"):
        parse_images_response(["nope"])


@pytest.mark.anyio
async def test_provider_over_a_mock_transport() -> None:
    png = _png((16, 16))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "refs.example":
            if request.url.path == "/missing.png":
                return httpx.Response(404, text="no")
            return httpx.Response(200, content=png, headers={"content-type": "image/png"})
        assert request.headers["authorization"] == "Bearer sk-mock-key-0123"
        usage = {"input_tokens": 20, "input_tokens_details": {"text_tokens": 4, "image_tokens": 16},
                 "output_tokens": 1056, "total_tokens": 1076}
        data = [{"b64_json": base64.b64encode(png).decode()}]
        return httpx.Response(200, json={"created": 1700000000, "data": data, "usage": usage})

    # refs.example is a name only the mock transport knows: no DNS lookup is made for it.
    provider = OpenAIProvider("sk-mock-key-0123", base_url="https://api.example/v1",
                              transport=httpx.MockTransport(handler), allow_private_urls=True)
    snapshot = await provider.submit(ImageRequest.build("a fox", quality="medium"))
    assert isinstance(snapshot.status, Completed)
    (url,) = snapshot.status.results
    assert url.startswith("openai://openai-1700000000-") and snapshot.task_id in url
    assert seen[-1].url.path == "/v1/images/generations"
    assert json_body(seen[-1]) == {"model": "gpt-image-1", "prompt": "a fox", "n": 1, "size": "1024x1024",
                                   "quality": "medium"}
    # Usage priced at $5/M text, $10/M image input, $40/M output, in credits at 72/USD.
    assert snapshot.credits_charged == pytest.approx((4 * 5 + 16 * 10 + 1056 * 40) / 1e6 * 72, abs=1e-5)
    assert "data" not in snapshot.raw
    assert await provider.download(url, 10_000_000) == png
    with pytest.raises(DownloadError, match="cap"):
        await provider.download(url, 10)
    assert (await provider.status(snapshot.task_id)).status == snapshot.status

    # Edits: local references and a URL reference, fetched by imgkit and sent as files.
    request = ImageRequest.build("edit", quality="low", images=[png, "https://refs.example/ref.png"])
    assert await provider.upload(request.images[1]) == "https://refs.example/ref.png"
    assert (await provider.upload(request.images[0])).startswith("reference-0.png sha256:")
    await provider.submit(request)
    edit = seen[-1]
    assert edit.url.path == "/v1/images/edits"
    assert edit.headers["content-type"].startswith("multipart/form-data")
    content = edit.read()
    assert content.count(b'name="image[]"') == 2 and content.count(png) == 2
    assert b'name="quality"\r\n\r\nlow' in content
    assert "authorization" not in {k.lower() for k in seen[-2].headers} or seen[-2].url.host != "refs.example"
    with pytest.raises(DownloadError, match="could not fetch reference image"):
        await provider.upload(ImageRequest.build("e", images=["https://refs.example/missing.png"]).images[0])

    await provider.aclose()
    with pytest.raises(APIError) as info:
        await provider.download(url, 10_000_000)
    assert (info.value.status, info.value.code) == (410, "result_expired")
    with pytest.raises(APIError, match="cannot be fetched again"):
        await provider.status(snapshot.task_id)


def json_body(request: httpx.Request) -> dict:
    return json.loads(request.content)


def test_openai_results_cannot_be_resumed_by_another_process(data_dir: Path, openai_url: str) -> None:
    session = imgkit.configure(data_dir=data_dir, providers=[
        {"name": "openai", "kind": "openai", "api_key": SDK_KEY, "base_url": f"{openai_url}/openai/v1"},
    ])
    record = RunRecord(run_id="run-openai-1", provider="openai", model="gpt-image-1", prompt="p", size="1024x1024",
                       quality="low", n=1, task_id="openai-1-abc", status="downloading", submitted_at=time.time(),
                       completed_at=time.time(), result_urls=("openai://openai-1-abc/0.png",))
    session.ledger.save(record)
    (res,) = imgkit.resume()
    assert (res.status, res.record.error_code) == ("failed", "result_expired")
    assert "cannot be downloaded again" in res.record.error_message


def test_openai_provider_end_to_end_with_a_url_reference(data_dir: Path, openai_url: str) -> None:
    # A URL the provider can fetch: a file served by the same sandbox's file host.
    upload = httpx.post(f"{openai_url}/api/v1/files/upload/stream", files={"file": ("ref.png", _png())},
                        headers={"Authorization": f"Bearer {SDK_KEY}"}).json()
    url = upload["data"]["file_url"]
    imgkit.configure(data_dir=data_dir, poll=imgkit.engine.PollPolicy(min_interval=0.01), providers=[
        {"name": "openai", "kind": "openai", "api_key": SDK_KEY, "base_url": f"{openai_url}/openai/v1"},
    ])
    res = imgkit.generate("make it a watercolor", images=[url], quality="low", size="2:3")
    assert res.status == "completed" and res.images[0].size == (1024, 1536)
    assert res.record.reference_images == (url,)
    bad = imgkit.generate("p", images=[f"{openai_url}/files/uploads/file_0/none.png"], raise_on_error=False)
    assert (bad.status, bad.record.error_code) == ("failed", "image_processing_error")
    assert bad.record.providers_tried == ()
