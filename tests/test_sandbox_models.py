"""The sandbox speaks today's models (issue 15, part 7): gpt-image-2 and its beta on the
gateway (the pixel table, tiers, transparent alpha, masks, documented errors) and, through the
official ``openai`` package, gpt-image-2 on the OpenAI side: custom sizes, output formats,
masks, streaming (partial and completed events with usage) and the Batch API (file upload,
batch create, retrieve, output file)."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

openai = pytest.importorskip("openai", reason="the openai extra (dev dependency) is needed for this test")

KEY = "sk-sandbox-models-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
NEW_MODELS = ("gpt-image-1", "gpt-image-1.5", "gpt-image-2")
DATA_TABLE = json.loads(
    (__import__("importlib.resources").resources.files("imgkit") / "data" / "sizes" / "gpt-image-2-2026-12.json")
    .read_text("utf-8")
)


def _png(size: tuple[int, int] = (64, 48), mode: str = "RGB", alpha_box: tuple[int, int, int, int] | None = None) -> bytes:
    img = Image.new(mode, size, (20, 160, 90, 255)[: len(mode)] if mode != "RGB" else (20, 160, 90))
    if alpha_box is not None:
        clear = Image.new("RGBA", (alpha_box[2] - alpha_box[0], alpha_box[3] - alpha_box[1]), (0, 0, 0, 0))
        img.paste(clear, alpha_box[:2])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        copy = img.copy()
        copy.format = img.format  # the copy keeps the encoded format for the assertions
        return copy


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    config = SandboxConfig(seed=5, time_scale=0.005, api_key=KEY, openai_models=NEW_MODELS, batch_seconds=20)
    with running_sandbox(config) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        yield c


@pytest.fixture
def sdk(url: str) -> Iterator[Any]:
    with openai.OpenAI(api_key=KEY, base_url=f"{url}/openai/v1", max_retries=0, timeout=60) as c:
        yield c


def _task_row(client: httpx.Client, task_id: str) -> dict[str, Any]:
    return next(t for t in client.get("/_sandbox/tasks").json()["tasks"] if t["id"] == task_id)


def _result(client: httpx.Client, body: dict[str, Any]) -> list[Image.Image]:
    r = client.post("/v1/images/generations", json=body)
    assert r.status_code == 200, r.text
    task_id = r.json()["id"]
    for _ in range(400):
        task = client.get(f"/v1/tasks/{task_id}").json()
        if task["status"] in ("completed", "failed"):
            break
        time.sleep(0.02)
    assert task["status"] == "completed", task
    return [_image(client.get(u).content) for u in task["results"]]


# --- gateway: sizes, tiers and the beta ------------------------------------------------------


@pytest.mark.parametrize("tier", ["1K", "2K", "4K"])
def test_the_sandbox_table_matches_the_shipped_one(tier: str) -> None:
    from imgkit.sandbox._wire import gpt2_ratio_pixels

    for ratio, pixels in DATA_TABLE["tiers"][tier].items():
        assert "x".join(map(str, gpt2_ratio_pixels(ratio, tier))) == pixels
        a, _, b = ratio.partition(":")
        w, _, h = pixels.partition("x")
        assert gpt2_ratio_pixels(f"{b}:{a}", tier) == (int(h), int(w))


@pytest.mark.parametrize(
    ("model", "extra", "size"),
    [
        ("gpt-image-2", {"size": "9:16", "resolution": "2k"}, "1536x2736"),
        ("gpt-image-2", {"size": "21:9", "resolution": "4K"}, "3840x1632"),
        ("gpt-image-2", {"size": "auto", "resolution": "4K"}, "1024x1024"),
        ("gpt-image-2", {"size": "2048×1152"}, "2048x1152"),
        ("gpt-image-2-beta", {"size": "3:2"}, "1248x832"),
        ("gpt-image-2-beta", {}, "1024x1024"),
    ],
)
def test_gateway_sizes_come_from_the_pixel_table(
    client: httpx.Client, model: str, extra: dict[str, str], size: str
) -> None:
    task = client.post("/v1/images/generations", json={"model": model, "prompt": "p", **extra}).json()
    assert _task_row(client, task["id"])["size"] == size


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "gpt-image-2-beta", "prompt": "p", "size": "2048x1152"}, "size"),
        ({"model": "gpt-image-2-beta", "prompt": "p", "size": "1:1", "resolution": "2K"}, "resolution"),
        ({"model": "gpt-image-2-beta", "prompt": "p", "quality": "high"}, "quality"),
        ({"model": "gpt-image-2-beta", "prompt": "p", "n": 2}, "n"),
        ({"model": "gpt-image-2-beta", "prompt": "p", "background": "transparent"}, "background"),
        ({"model": "gpt-image-2-beta", "prompt": "p" * 2001}, "prompt"),
        ({"model": "gpt-image-2", "prompt": "p", "size": "1:1", "resolution": "8K"}, "resolution"),
        ({"model": "gpt-image-2", "prompt": "p", "background": "auto"}, "background"),
        ({"model": "gpt-image-2", "prompt": "p", "quality": "auto"}, "quality"),
        ({"model": "gpt-image-2", "prompt": "p", "size": "1024x1040", "resolution": "1K"}, "resolution"),
    ],
)
def test_gateway_documented_errors(client: httpx.Client, body: dict[str, Any], field: str) -> None:
    r = client.post("/v1/images/generations", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith(field + ":")


def test_gateway_reserves_credits_by_model(client: httpx.Client) -> None:
    beta = client.post("/v1/images/generations", json={"model": "gpt-image-2-beta", "prompt": "p"}).json()
    assert beta["usage"]["credits_reserved"] == 1.02
    g2 = client.post("/v1/images/generations", json={"model": "gpt-image-2", "prompt": "p", "quality": "high"}).json()
    assert g2["usage"]["credits_reserved"] == pytest.approx(7024 * 1.836 / 1000, abs=1e-5)


def test_gateway_transparent_background_has_real_alpha(client: httpx.Client) -> None:
    (img,) = _result(client, {"model": "gpt-image-2", "prompt": "a fox", "background": "transparent",
                              "quality": "low", "size": "1:1"})
    assert img.mode == "RGBA"
    alpha = img.getchannel("A")
    assert alpha.getpixel((0, 0)) == 0  # the corner is see-through
    assert alpha.getpixel((img.width // 2, int(img.height * 0.4))) == 255  # the subject is not


def _upload(client: httpx.Client, data: bytes, name: str) -> str:
    r = client.post("/api/v1/files/upload/stream", files={"file": (name, data)})
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["file_url"])


def test_gateway_mask_is_drawn_visibly(client: httpx.Client) -> None:
    ref = _upload(client, _png((64, 48)), "ref.png")
    mask = _upload(client, _png((64, 48), "RGBA", alpha_box=(0, 0, 32, 48)), "mask.png")
    body = {"model": "gpt-image-2", "prompt": "edit", "quality": "low", "size": "1:1", "image_urls": [ref]}
    (plain,) = _result(client, body)
    (edited,) = _result(client, {**body, "mask_url": mask})
    plain_rgb, edited_rgb = plain.convert("RGB"), edited.convert("RGB")
    # The left half (alpha 0 in the mask) is drawn differently; the right half is kept.
    assert plain_rgb.getpixel((100, 100)) != edited_rgb.getpixel((100, 100))
    assert plain_rgb.getpixel((1000, 100)) == edited_rgb.getpixel((1000, 100))


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (_png((64, 48), "RGB"), "mask image missing alpha channel"),
        (_png((32, 48), "RGBA"), "mask size does not match image size"),
    ],
)
def test_gateway_mask_errors_use_the_documented_texts(client: httpx.Client, mask: bytes, message: str) -> None:
    ref = _upload(client, _png((64, 48)), "ref.png")
    url = _upload(client, mask, "mask.png")
    r = client.post("/v1/images/generations", json={"model": "gpt-image-2", "prompt": "p", "image_urls": [ref],
                                                     "mask_url": url})
    assert r.status_code == 400
    assert message in r.json()["error"]["message"]


# --- OpenAI side through the official client -------------------------------------------------


def test_default_sandbox_still_serves_gpt_image_1_only() -> None:
    app = create_app(SandboxConfig(time_scale=0.005))
    assert app.state.sandbox.config.openai_models == ("gpt-image-1",)
    with pytest.raises(ValueError, match="cannot serve"):
        SandboxConfig(openai_models=("gpt-image-3",))


@pytest.mark.parametrize(
    ("size", "fmt", "background"),
    [("2048x1152", "webp", "transparent"), ("auto", "png", "transparent"), ("1536x1024", "jpeg", "opaque")],
)
def test_sdk_gpt_image_2_sizes_formats_and_alpha(sdk: Any, size: str, fmt: str, background: str) -> None:
    kwargs = {"output_compression": 80} if fmt != "png" else {}
    res = sdk.images.generate(model="gpt-image-2", prompt="a fox", size=size, quality="low",
                              output_format=fmt, background=background, moderation="low", **kwargs)
    img = _image(base64.b64decode(res.data[0].b64_json))
    assert img.format == fmt.upper()
    expected = (1024, 1024) if size == "auto" else tuple(map(int, size.split("x")))
    assert img.size == expected
    assert (img.mode == "RGBA") == (background == "transparent")
    if background == "transparent":
        assert img.getchannel("A").getpixel((0, 0)) == 0
    assert res.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("size", "message"),
    [("1000x1000", "divisible by 16"), ("3856x2048", "at most 3840"), ("1024x512", "655,360"),
     ("2560x768", "1:3 and 3:1")],
)
def test_sdk_gpt_image_2_size_errors(sdk: Any, size: str, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.images.generate(model="gpt-image-2", prompt="p", size=size)
    assert info.value.body["param"] == "size"
    assert message in info.value.body["message"]


def test_sdk_gpt_image_2_usage_follows_the_documented_tokens(sdk: Any) -> None:
    res = sdk.images.generate(model="gpt-image-2", prompt="p", size="1024x1024", quality="high", n=2)
    assert res.usage.output_tokens == 7024 * 2


def test_sdk_edit_with_mask_is_drawn_visibly(sdk: Any) -> None:
    image = _png((64, 48))
    plain = sdk.images.edit(model="gpt-image-2", image=("a.png", image, "image/png"), prompt="p", quality="low",
                            size="1536x1024", input_fidelity="high")
    masked = sdk.images.edit(model="gpt-image-2", image=("a.png", image, "image/png"), prompt="p", quality="low",
                             size="1536x1024", mask=("m.png", _png((64, 48), "RGBA", (0, 0, 32, 48)), "image/png"))
    a = _image(base64.b64decode(plain.data[0].b64_json)).convert("RGB")
    b = _image(base64.b64decode(masked.data[0].b64_json)).convert("RGB")
    assert a.getpixel((100, 100)) != b.getpixel((100, 100))
    assert a.getpixel((1400, 100)) == b.getpixel((1400, 100))


@pytest.mark.parametrize(
    ("mask", "message"),
    [(_png((64, 48), "RGB"), "alpha channel"), (_png((32, 32), "RGBA"), "differs from the image's 64x48")],
)
def test_sdk_edit_mask_errors(sdk: Any, mask: bytes, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.images.edit(model="gpt-image-2", image=("a.png", _png((64, 48)), "image/png"), prompt="p",
                        mask=("m.png", mask, "image/png"))
    assert info.value.body["param"] == "mask"
    assert message in info.value.body["message"]


# --- streaming -------------------------------------------------------------------------------


@pytest.mark.parametrize("partials", [0, 2, 3])
def test_sdk_streams_generations(sdk: Any, partials: int) -> None:
    stream = sdk.images.generate(model="gpt-image-2", prompt="a fox", size="1024x1024", quality="high",
                                 stream=True, partial_images=partials)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds == ["image_generation.partial_image"] * partials + ["image_generation.completed"]
    assert [e.partial_image_index for e in events[:-1]] == list(range(partials))
    done = events[-1]
    assert done.usage.output_tokens == 7024 + 100 * partials
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    assert (done.size, done.quality, done.output_format) == ("1024x1024", "high", "png")
    final = _image(base64.b64decode(done.b64_json))
    assert final.size == (1024, 1024)
    for event in events[:-1]:
        assert _image(base64.b64decode(event.b64_json)).size == (1024, 1024)
        assert event.b64_json != done.b64_json  # partials are rougher than the final image


def test_sdk_streams_edits_one_completed_event_per_image(sdk: Any) -> None:
    stream = sdk.images.edit(model="gpt-image-2", image=("a.png", _png(), "image/png"), prompt="p", quality="low",
                             n=2, stream=True, partial_images=1, output_format="webp", background="transparent")
    events = list(stream)
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"] * 2
    completed = [e for e in events if e.type == "image_edit.completed"]
    assert [e.usage.output_tokens for e in completed] == [200 + 100] * 2  # size auto: 1024x1024, low
    for e in completed:
        img = _image(base64.b64decode(e.b64_json))
        assert img.format == "WEBP" and img.mode == "RGBA"
        assert e.usage.input_tokens_details.image_tokens > 0


@pytest.mark.parametrize("done", [False, True])
def test_raw_stream_frames_with_and_without_done(done: bool) -> None:
    config = SandboxConfig(time_scale=0.005, openai_models=NEW_MODELS, stream_done=done)
    with running_sandbox(config) as base, httpx.Client(base_url=base, headers=AUTH, timeout=30) as c:
        r = c.post("/openai/v1/images/generations", json={"model": "gpt-image-2", "prompt": "p", "quality": "low",
                                                          "stream": True, "partial_images": 1})
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in r.text.split("\n\n") if f.strip()]
    assert frames[0].startswith("event: image_generation.partial_image\ndata: {")
    assert frames[1].startswith("event: image_generation.completed\ndata: {")
    assert (frames[-1] == "data: [DONE]") == done
    usage = json.loads(frames[1].split("data: ", 1)[1])["usage"]
    assert "output_tokens_details" not in usage


# --- batches ---------------------------------------------------------------------------------


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(line) for line in lines) + "\n").encode()


def test_sdk_runs_an_image_batch(sdk: Any) -> None:
    lines = [
        {"custom_id": f"run-{i}", "method": "POST", "url": "/v1/images/generations",
         "body": {"model": "gpt-image-2", "prompt": f"fox {i}", "size": "1024x1024", "quality": q}}
        for i, q in enumerate(["low", "high"])
    ]
    lines.append({"custom_id": "bad", "method": "POST", "url": "/v1/images/generations",
                  "body": {"model": "gpt-image-2", "prompt": "p", "size": "1000x1000"}})
    upload = sdk.files.create(file=("batch.jsonl", _jsonl(lines)), purpose="batch")
    assert upload.purpose == "batch" and upload.bytes > 0
    assert sdk.files.retrieve(upload.id).filename == "batch.jsonl"
    batch = sdk.batches.create(input_file_id=upload.id, endpoint="/v1/images/generations", completion_window="24h",
                               metadata={"sweep": "s1"})
    assert batch.status == "in_progress" and batch.request_counts.total == 3
    for _ in range(300):
        batch = sdk.batches.retrieve(batch.id)
        if batch.status == "completed":
            break
        time.sleep(0.02)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
    assert batch.metadata == {"sweep": "s1"}
    output = [json.loads(line) for line in sdk.files.content(batch.output_file_id).text.splitlines()]
    assert [row["custom_id"] for row in output] == ["run-0", "run-1"]
    for row, tokens in zip(output, (200, 7024), strict=True):
        body = row["response"]["body"]
        assert row["response"]["status_code"] == 200 and row["error"] is None
        assert body["usage"]["output_tokens"] == tokens
        assert _image(base64.b64decode(body["data"][0]["b64_json"])).size == (1024, 1024)
    errors = [json.loads(line) for line in sdk.files.content(batch.error_file_id).text.splitlines()]
    assert errors[0]["custom_id"] == "bad"
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["param"] == "size"
    assert any(b.id == batch.id for b in sdk.batches.list())


def test_batch_refusals(sdk: Any) -> None:
    upload = sdk.files.create(file=("x.jsonl", b'{"custom_id": "a"}\n'), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        sdk.batches.create(input_file_id=upload.id, endpoint="/v1/images/generations", completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        sdk.batches.create(input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        sdk.batches.retrieve("batch_missing")
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve("file-missing")


def test_batch_cancel(sdk: Any) -> None:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/images/generations",
            "body": {"model": "gpt-image-1", "prompt": "p", "quality": "low"}}
    upload = sdk.files.create(file=("b.jsonl", _jsonl([line])), purpose="batch")
    config_slow = sdk.batches.create(input_file_id=upload.id, endpoint="/v1/images/generations",
                                     completion_window="24h")
    cancelled = sdk.batches.cancel(config_slow.id)
    assert cancelled.status == "cancelled"
    assert sdk.batches.retrieve(config_slow.id).output_file_id is None
