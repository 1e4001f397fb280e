"""The OpenAI Images API: the sandbox's fake checked with the official ``openai`` package as the
client (generations, edits with files, errors parsed into the SDK's types), and imgkit's
OpenAI-direct provider against it (base64 results, cost from the returned token usage)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

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


def test_sdk_edit_with_files(sdk: openai.OpenAI, tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "sketch.png"  # type: ignore[operator]
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
