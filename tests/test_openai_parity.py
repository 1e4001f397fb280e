"""The OpenAI provider at parity with the official client: every field of today's models
goes out, a mask is the multipart ``mask``, usage is priced on the model's own sheet, files
keep their format and alpha (thumbnails on a checkerboard), and ``previews`` streams partial
images into ``on_event``."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import imgkit
from imgkit.pricing import get_sheet, sheet_for
from imgkit.providers.base import Preview
from imgkit.providers.openai import ImageStream, OpenAIProvider
from imgkit.request import ImageRequest, JobEvent
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox
from imgkit.store import CHECKER_COLOURS, Store

from .conftest import FAST_POLL, TEST_KEY

MODELS = ("gpt-image-1", "gpt-image-2")


def _png(size: tuple[int, int], mode: str = "RGB", clear_left: bool = False) -> bytes:
    img = Image.new(mode, size, (20, 160, 90, 255)[: len(mode)])
    if clear_left:
        img.paste(Image.new("RGBA", (size[0] // 2, size[1]), (0, 0, 0, 0)), (0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(SandboxConfig(seed=3, time_scale=0.01, openai_models=MODELS))


@pytest.fixture(scope="module")
def url(app: Any) -> Iterator[str]:
    with running_sandbox(app=app) as base:
        yield base


def _configure(url: str, data_dir: Path) -> imgkit.Session:
    return imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=[
        {"name": "openai", "kind": "openai", "api_key": TEST_KEY, "base_url": f"{url}/openai/v1",
         "models": list(MODELS)},
    ])


@pytest.fixture
def session(url: str, data_dir: Path) -> imgkit.Session:
    return _configure(url, data_dir)


def _task(app: Any, n: int = 1) -> Any:
    return app.state.sandbox.tasks()[-n]


# --- every field goes out ------------------------------------------------------------------


def _recording(seen: list[httpx.Request], body: dict[str, Any]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


ONE = {"created": 1, "data": [{"b64_json": base64.b64encode(_png((8, 8))).decode()}],
       "usage": {"input_tokens": 10, "output_tokens": 7024}}


def test_generations_send_openai_fields_and_price_on_the_models_sheet() -> None:
    seen: list[httpx.Request] = []
    provider = OpenAIProvider(TEST_KEY, transport=_recording(seen, ONE))
    request = ImageRequest.build("a fox", model="gpt-image-2", size="16:9", quality="high", background="opaque",
                                 output_format="webp", output_compression=80, moderation="low")
    snapshot = asyncio.run(provider.submit(request))
    assert json.loads(seen[0].content) == request.openai_fields()
    assert json.loads(seen[0].content)["size"] == "1360x768"
    usage = ONE["usage"]
    g2 = sheet_for("gpt-image-2", "openai-tokens-2026-11")
    assert g2.name != "openai-tokens-2026-11"
    assert snapshot.credits_charged == round(g2.cost(usage).credits, 5)  # type: ignore[union-attr]
    # Before, gpt-image-2's tokens were priced at gpt-image-1's rates.
    assert snapshot.credits_charged != round(get_sheet("openai-tokens-2026-11").cost(usage).credits, 5)  # type: ignore[union-attr]


def test_edits_send_the_mask_as_a_multipart_file() -> None:
    seen: list[httpx.Request] = []
    provider = OpenAIProvider(TEST_KEY, transport=_recording(seen, ONE))
    ref, mask = _png((64, 48)), _png((64, 48), "RGBA", clear_left=True)
    request = ImageRequest.build("aurora", model="gpt-image-2", size="auto", images=[ref], mask=mask,
                                 input_fidelity="high", quality="low")
    asyncio.run(provider.submit(request, ["ref"], mask_url="mask"))
    body = seen[0].content
    assert b'name="mask"; filename="mask.png"' in body and mask in body
    assert b'name="input_fidelity"\r\n\r\nhigh' in body and b'name="size"\r\n\r\nauto' in body
    assert seen[0].url.path.endswith("/images/edits")


def test_gpt_image_2_webp_transparent_keeps_format_and_alpha(session: imgkit.Session, app: Any) -> None:
    res = imgkit.generate("a fox", model="gpt-image-2", size="2048x1152", quality="low", background="transparent",
                          output_format="webp", output_compression=80, moderation="low")
    assert res.status == "completed" and res.record.provider == "openai"
    task = _task(app)
    assert (task.size, task.background, task.model) == ("2048x1152", "transparent", "gpt-image-2")
    (path,) = res.paths
    assert path.suffix == ".webp"
    with Image.open(path) as img:
        assert img.format == "WEBP" and img.mode == "RGBA" and img.size == (2048, 1152)
        assert img.getchannel("A").getpixel((0, 0)) == 0
    with Image.open(res.thumbnails[0]) as thumb:
        corner = thumb.convert("RGB").getpixel((0, 0))
    assert corner in CHECKER_COLOURS or min(corner) > 180  # the checkerboard, not black
    assert res.record.credits_charged is not None
    assert res.record.price_sheet == sheet_for("gpt-image-2", "openai-tokens-2026-11").name


def test_a_masked_edit_reaches_the_sandbox_as_a_mask(session: imgkit.Session, app: Any) -> None:
    ref, mask = _png((64, 48)), _png((64, 48), "RGBA", clear_left=True)
    res = imgkit.generate("aurora", model="gpt-image-2", size="1:1", quality="low", images=[ref], mask=mask,
                          input_fidelity="high")
    assert res.status == "completed"
    assert _task(app).mask == mask


def test_transparent_thumbnails_are_drawn_on_a_checkerboard(tmp_path: Path) -> None:
    clear = Image.new("RGBA", (640, 640), (0, 0, 0, 0))
    buf = io.BytesIO()
    clear.save(buf, format="PNG")
    stored = Store(tmp_path).save(buf.getvalue())
    with Image.open(tmp_path / stored.path) as kept:
        assert kept.mode == "RGBA"  # the file keeps its alpha
    with Image.open(tmp_path / stored.thumb) as thumb:
        rgb = thumb.convert("RGB")
        cell = 256 // 32
        light, dark = rgb.getpixel((cell // 2, cell // 2)), rgb.getpixel((cell + cell // 2, cell // 2))
    assert all(abs(a - b) <= 6 for a, b in zip(light, CHECKER_COLOURS[0], strict=True))
    assert all(abs(a - b) <= 6 for a, b in zip(dark, CHECKER_COLOURS[1], strict=True))


# --- live previews -------------------------------------------------------------------------


def _frame(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


USAGE = {"input_tokens": 5, "input_tokens_details": {"text_tokens": 5, "image_tokens": 0}, "output_tokens": 300,
         "total_tokens": 305}


@pytest.mark.parametrize("done", [True, False])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_image_stream_reads_partials_then_completed(done: bool, newline: str) -> None:
    text = _frame({"type": "image_generation.partial_image", "b64_json": _b64(b"p0"), "partial_image_index": 0})
    text += _frame({"type": "image_generation.partial_image", "b64_json": _b64(b"p1"), "partial_image_index": 1})
    text += _frame({"type": "image_generation.completed", "b64_json": _b64(b"final"), "size": "1024x1024",
                    "output_format": "png", "created_at": 7, "usage": USAGE})
    if done:
        text += "data: [DONE]\n\n"
    stream = ImageStream()
    previews = [p for line in text.replace("\n", newline).split(newline) if (p := stream.feed(line))]
    assert previews == [(0, b"p0"), (1, b"p1")]
    parsed = stream.result()
    assert (parsed.images, parsed.usage, stream.done) == ([b"final"], USAGE, done)
    assert parsed.meta["size"] == "1024x1024" and parsed.meta["created"] == 7


def test_image_stream_sums_usage_and_raises_on_errors_and_early_ends() -> None:
    stream = ImageStream()
    for _ in range(2):
        for line in _frame({"type": "image_edit.completed", "b64_json": _b64(b"x"), "usage": USAGE}).split("\n"):
            stream.feed(line)
    assert stream.result().usage["output_tokens"] == 600
    assert stream.result().usage["input_tokens_details"]["text_tokens"] == 10
    with pytest.raises(imgkit.RequestError) as early:
        ImageStream().result()
    assert early.value.sent
    broken = ImageStream()
    broken.feed('data: {"error": {"message": "Your request was rejected", "code": "moderation_blocked"}}')
    with pytest.raises(imgkit.APIError) as info:
        broken.feed("")
    assert info.value.code == "content_policy_violation"


@pytest.mark.parametrize("stream_done", [False, True])
def test_previews_reach_on_event_and_the_final_image_is_kept(stream_done: bool, data_dir: Path) -> None:
    config = SandboxConfig(seed=9, time_scale=0.01, openai_models=MODELS, stream_done=stream_done)
    app = create_app(config)
    with running_sandbox(app=app) as url:
        _configure(url, data_dir)
        events: list[JobEvent] = []
        res = imgkit.generate("a red fox", model="gpt-image-2", size="1:1", quality="low", previews=2, n=2,
                              on_event=events.append)
    assert res.status == "completed" and len(res.paths) == 2
    previews = [e for e in events if e.preview is not None]
    assert len(previews) == 4  # two partial images for each of two images
    assert all(e.status == "processing" and 0 < e.progress < 100 for e in previews)
    for event in previews:
        with Image.open(io.BytesIO(event.preview or b"")) as img:
            assert img.size == (1024, 1024)
    assert events[-1].status == "completed" and events[-1].preview is None
    # Charged from the usage the stream reported: two images' output with their partials.
    sheet = sheet_for("gpt-image-2", "openai-tokens-2026-11")
    assert res.record.credits_charged is not None
    assert res.record.credits_charged > res.record.est_credits  # type: ignore[operator]
    per_image = sheet.tokens_per_image("low", "1024x1024")  # type: ignore[union-attr]
    assert res.record.credits_charged > round(sheet.cost({"output_tokens": 2 * per_image}).credits, 5)


def test_previews_are_refused_on_the_gateway(data_dir: Path, url: str) -> None:
    imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
    with pytest.raises(imgkit.ValidationError, match="previews"):
        imgkit.generate("a fox", model="gpt-image-2", previews=1, quality="low")


def test_on_preview_gets_each_partial_from_the_provider(url: str) -> None:
    provider = OpenAIProvider(TEST_KEY, base_url=f"{url}/openai/v1")
    seen: list[Preview] = []

    async def go() -> Any:
        try:
            return await provider.submit(ImageRequest.build("a fox", model="gpt-image-2", quality="low", previews=3),
                                         on_preview=seen.append)
        finally:
            await provider.aclose()

    snapshot = asyncio.run(go())
    assert [(p.index, p.of) for p in seen] == [(0, 3), (1, 3), (2, 3)]
    assert snapshot.raw["partial_images"] == 3
