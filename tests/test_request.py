"""Validation of every request field, both size forms, model profiles and the messages."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from imgkit import ValidationError
from imgkit.request import MODELS, ImageRequest, normalize_size, sniff_image_format


def _png(size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1:1", "1024x1024"),
        ("2:3", "1024x1536"),
        ("3:2", "1536x1024"),
        ("1024x1024", "1024x1024"),
        ("1024X1536", "1024x1536"),
        (" 1536 x 1024 ", "1536x1024"),
        ("1536×1024", "1536x1024"),
    ],
)
def test_sizes_normalise_to_pixel_form(given: str, expected: str) -> None:
    assert normalize_size(given) == expected
    assert ImageRequest.build("p", size=given).size == expected


@pytest.mark.parametrize("bad", ["4:3", "512x512", "auto", "", "1024", 1024, None])
def test_bad_size_names_field_and_choices(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        ImageRequest.build("p", size=bad)
    err = info.value
    assert err.field == "size"
    assert "1:1 (1024x1024)" in str(err) and "3:2 (1536x1024)" in str(err)
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("quality", ["low", "medium", "high", "HIGH", " Low "])
def test_quality_tiers(quality: str) -> None:
    req = ImageRequest.build("p", quality=quality)
    assert req.quality == quality.strip().lower()
    assert req.payload()["quality"] == req.quality


@pytest.mark.parametrize("bad", ["auto", "standard", "", None, 1])
def test_bad_quality(bad: object) -> None:
    with pytest.raises(ValidationError, match=r"quality=.*low \| medium \| high"):
        ImageRequest.build("p", quality=bad)


def test_quality_is_always_sent_explicitly() -> None:
    body = ImageRequest.build("p").payload()
    assert body == {"model": "gpt-image-1", "prompt": "p", "size": "1024x1024", "quality": "medium", "n": 1}


@pytest.mark.parametrize("n", [1, 5, 10])
def test_n_in_range(n: int) -> None:
    assert ImageRequest.build("p", n=n).n == n


@pytest.mark.parametrize("bad", [0, 11, -1, 2.0, "2", True, None])
def test_n_out_of_range(bad: object) -> None:
    with pytest.raises(ValidationError, match=r"^n=.*an integer from 1 to 10 for gpt-image-1"):
        ImageRequest.build("p", n=bad)


@pytest.mark.parametrize("bad", ["", "   ", None, 42])
def test_prompt_required(bad: object) -> None:
    with pytest.raises(ValidationError, match=r"^prompt=.*non-empty text"):
        ImageRequest.build(bad)


def test_prompt_limit_is_per_model() -> None:
    ImageRequest.build("x" * 2000)
    with pytest.raises(ValidationError, match=r"at most 2000 characters for gpt-image-1 \(it has 2001\)"):
        ImageRequest.build("x" * 2001)
    assert len(ImageRequest.build("x" * 20000, model="gpt-image-2").prompt) == 20000


def test_unknown_model() -> None:
    with pytest.raises(ValidationError, match=r"model='dall-e-3'.*gpt-image-1, gpt-image-1\.5, gpt-image-2"):
        ImageRequest.build("p", model="dall-e-3")


def test_model_profiles() -> None:
    assert MODELS["gpt-image-1"].api_default_quality == "high"
    assert MODELS["gpt-image-1.5"].max_n == 1
    with pytest.raises(ValidationError, match=r"n=2 is not allowed: 1 for gpt-image-1\.5"):
        ImageRequest.build("p", model="gpt-image-1.5", n=2)
    assert ImageRequest.build("p", model="gpt-image-2", size="16:9").size == "16:9"
    assert ImageRequest.build("p", model="gpt-image-2", size="2048x1152").size == "2048x1152"
    for bad in ("2000x1000", "4000x1000", "100x100"):
        with pytest.raises(ValidationError, match="multiple of 16"):
            ImageRequest.build("p", model="gpt-image-2", size=bad)


def test_reference_images_every_kind(tmp_path: Path) -> None:
    path = tmp_path / "ref.png"
    path.write_bytes(_png())
    pil = Image.new("RGB", (4, 4))
    req = ImageRequest.build("edit", images=["https://example.com/a.png", path, _png(), pil])
    kinds = [(r.url is not None, r.path is not None, r.data is not None) for r in req.images]
    assert kinds == [(True, False, False), (False, True, False), (False, False, True), (False, False, True)]
    assert [r.format for r in req.images] == [None, "png", "png", "png"]
    assert req.mode == "image-to-image"
    assert req.payload(["https://u/1"])["image_urls"] == ["https://u/1"]


def test_format_is_judged_by_content_not_extension(tmp_path: Path) -> None:
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"GIF89a" + b"\0" * 20)
    with pytest.raises(ValidationError, match=r"images\[0\]=.*JPEG/PNG/WEBP image by its content \(its content is gif\)"):
        ImageRequest.build("p", images=[fake])
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(ValidationError, match="its content is not an image"):
        ImageRequest.build("p", images=[text])
    real_jpeg = tmp_path / "really-a-jpeg.bin"
    Image.new("RGB", (4, 4)).save(real_jpeg, format="JPEG")
    assert ImageRequest.build("p", images=[real_jpeg]).images[0].format == "jpeg"


def test_reference_image_limits(tmp_path: Path) -> None:
    png = _png()
    ImageRequest.build("p", images=[png] * 16)
    with pytest.raises(ValidationError, match="at most 16 reference images"):
        ImageRequest.build("p", images=[png] * 17)
    big = tmp_path / "big.png"
    with big.open("wb") as fh:
        fh.write(png)
        fh.truncate(50 * 1024 * 1024 + 1)
    with pytest.raises(ValidationError, match=r"images\[0\]=.*at most 50 MB per image"):
        ImageRequest.build("p", images=[big])
    with pytest.raises(ValidationError, match="existing image file"):
        ImageRequest.build("p", images=[tmp_path / "missing.png"])
    with pytest.raises(ValidationError, match="http"):
        ImageRequest.build("p", images=["ftp://example.com/a.png"])
    with pytest.raises(ValidationError, match=r"images\[0\]"):
        ImageRequest.build("p", images=[3.14])


def test_sniff() -> None:
    assert sniff_image_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_image_format(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff_image_format(b"<html>") is None
