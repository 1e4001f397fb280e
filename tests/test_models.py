"""Model profiles as data: gpt-image-2's sizes, resolution tiers and options, the beta's
narrower rules, masks, OpenAI's options, and the successor map (issue 15, part 1)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgkit import ValidationError
from imgkit.request import (
    MODELS,
    PIXEL_TABLE,
    SUCCESSORS,
    ImageRequest,
    normalize_size,
    pixel_size,
    successor,
    tier_for_pixels,
)

G2 = "gpt-image-2"
BETA = "gpt-image-2-beta"

# Addendum A.2, landscape and square cells, copied from the document (not from the data file).
ADDENDUM_TABLE = {
    "1:1": ("1024x1024", "2048x2048", "2880x2880"),
    "2:1": ("1456x720", "2896x1456", "3840x1920"),
    "3:1": ("1776x592", "3552x1184", "3840x1280"),
    "3:2": ("1248x832", "2512x1680", "3520x2352"),
    "4:3": ("1184x880", "2368x1776", "3312x2480"),
    "5:4": ("1152x912", "2288x1824", "3216x2576"),
    "16:9": ("1360x768", "2736x1536", "3840x2160"),
    "21:9": ("1568x672", "3136x1344", "3840x1632"),
}


def _png(size: tuple[int, int] = (64, 64), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (200, 10, 10, 0)[: len(mode)] if mode != "RGB" else (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, format="JPEG")
    return buf.getvalue()


def _swap(pixels: str) -> str:
    w, _, h = pixels.partition("x")
    return f"{h}x{w}"


# --- the pixel table ------------------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "cells"), list(ADDENDUM_TABLE.items()))
def test_pixel_table_matches_the_addendum(ratio: str, cells: tuple[str, str, str]) -> None:
    for tier, pixels in zip(("1K", "2K", "4K"), cells, strict=True):
        assert PIXEL_TABLE[tier][ratio] == pixels
        assert pixel_size(G2, ratio, tier) == pixels
        a, _, b = ratio.partition(":")
        if a != b:
            assert pixel_size(G2, f"{b}:{a}", tier) == _swap(pixels)


def test_pixel_table_covers_all_fifteen_ratios_in_every_tier() -> None:
    ratios = [s for s in MODELS[G2].sizes if s != "auto"]
    assert len(ratios) == 15
    for tier in ("1K", "2K", "4K"):
        assert set(PIXEL_TABLE[tier]) == set(ratios)


@pytest.mark.parametrize("tier", ["1K", "2K", "4K"])
def test_every_table_cell_obeys_the_explicit_size_rules_and_bills_in_its_tier(tier: str) -> None:
    for ratio, pixels in PIXEL_TABLE[tier].items():
        assert normalize_size(pixels, G2) == pixels, ratio
        w, _, h = pixels.partition("x")
        # The 4K cells of the steep ratios are shrunk under the cap and bill by pixels.
        if tier != "4K":
            assert tier_for_pixels(int(w), int(h)) == tier, (ratio, pixels)


@pytest.mark.parametrize(
    ("size", "tier"),
    [
        ("1024x1024", "1K"),
        ("1296x1296", "1K"),  # 1,679,616 px
        ("1312x1296", "2K"),  # 1,700,352 px: just over 1.7 MP
        ("2048x2048", "2K"),
        ("2096x2096", "2K"),  # 4,393,216 px
        ("2112x2096", "4K"),  # 4,426,752 px
        ("3840x2160", "4K"),
    ],
)
def test_tier_for_billing_is_inferred_from_pixels(size: str, tier: str) -> None:
    req = ImageRequest.build("p", model=G2, size=size)
    assert req.tier == tier
    assert req.resolution is None


def test_tier_of_ratio_sizes_and_auto() -> None:
    assert ImageRequest.build("p", model=G2, size="16:9").tier == "1K"  # the documented default
    assert ImageRequest.build("p", model=G2, size="16:9", resolution="4k").tier == "4K"
    assert ImageRequest.build("p", model=G2, size="auto").tier == "2K"  # estimated as 2048x2048
    assert ImageRequest.build("p", model=BETA, size="auto").tier == "1K"


# --- gpt-image-2 sizes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "ok"),
    [
        ("1024x1024", True),
        ("1024x1040", True),
        ("1024x1032", False),  # not a multiple of 16
        ("1000x1024", False),
        ("1024x640", True),  # 655,360 px: the lower bound
        ("1008x640", False),  # 645,120 px
        ("3840x2160", True),  # 8,294,400 px: the upper bound
        ("3856x2144", False),  # edge over 3840
        ("3840x2176", False),  # 8,355,840 px
        ("2160x3840", True),
        ("1536x512", True),  # 3:1 exactly
        ("2400x800", True),
        ("2448x800", False),  # over 3:1
        ("800x2400", True),
        ("800x2416", False),
        ("2048×1152", True),
        (" 2048 X 1152 ", True),
    ],
)
def test_free_size_boundaries(size: str, ok: bool) -> None:
    if ok:
        assert ImageRequest.build("p", model=G2, size=size).size == size.strip().lower().replace(" ", "").replace(
            "×", "x"
        )
    else:
        with pytest.raises(ValidationError) as info:
            ImageRequest.build("p", model=G2, size=size)
        assert info.value.field == "size"
        assert "for gpt-image-2" in str(info.value)
        assert info.value.hint  # which rule it broke


def test_a_small_size_breaks_the_pixel_floor() -> None:
    with pytest.raises(ValidationError, match="655,360-8,294,400 pixels"):
        normalize_size("1280x496", G2)


@pytest.mark.parametrize("size", ["auto", "1:1", "16:9", "9:21", "1:3"])
def test_ratios_and_auto_are_sent_as_they_are(size: str) -> None:
    req = ImageRequest.build("p", model=G2, size=size)
    assert req.size == size
    assert req.payload()["size"] == size


@pytest.mark.parametrize("bad", ["7:3", "auto:1", "", "big"])
def test_unknown_sizes_name_the_models_choices(bad: str) -> None:
    with pytest.raises(ValidationError, match=r"for gpt-image-2: auto, a ratio \(1:1, 1:2"):
        ImageRequest.build("p", model=G2, size=bad)


# --- resolution ------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "wire"), [("1K", "1K"), ("2k", "2K"), (" 4K ", "4K")])
def test_resolution_is_case_insensitive_and_sent(given: str, wire: str) -> None:
    req = ImageRequest.build("p", model=G2, size="3:2", resolution=given)
    assert req.resolution == wire
    assert req.payload()["resolution"] == wire


def test_resolution_is_left_out_when_not_given() -> None:
    assert "resolution" not in ImageRequest.build("p", model=G2, size="3:2").payload()


@pytest.mark.parametrize("bad", ["8K", "1080p", 2, ""])
def test_bad_resolution(bad: object) -> None:
    with pytest.raises(ValidationError, match=r"^resolution=.*1K \| 2K \| 4K for gpt-image-2"):
        ImageRequest.build("p", model=G2, size="1:1", resolution=bad)


@pytest.mark.parametrize("size", ["2048x1152", "auto"])
def test_resolution_only_with_a_ratio(size: str) -> None:
    with pytest.raises(ValidationError, match=r"^resolution=.*a ratio size"):
        ImageRequest.build("p", model=G2, size=size, resolution="2K")


def test_gpt_image_1_has_no_resolution() -> None:
    with pytest.raises(ValidationError, match=r"^resolution=.*gpt-image-1 has no resolution option"):
        ImageRequest.build("p", resolution="1K")


# --- gpt-image-2 other rules -----------------------------------------------------------------


def test_gpt_image_2_prompt_limit_is_32000_code_points() -> None:
    ImageRequest.build("é" * 32000, model=G2)
    with pytest.raises(ValidationError, match="at most 32000 characters for gpt-image-2"):
        ImageRequest.build("é" * 32001, model=G2)


@pytest.mark.parametrize("n", [1, 10])
def test_gpt_image_2_n(n: int) -> None:
    assert ImageRequest.build("p", model=G2, n=n).n == n


def test_gpt_image_2_n_over_ten() -> None:
    with pytest.raises(ValidationError, match="from 1 to 10 for gpt-image-2"):
        ImageRequest.build("p", model=G2, n=11)


def test_gpt_image_2_quality_default_is_medium_and_auto_has_no_price() -> None:
    assert ImageRequest.build("p", model=G2).quality == "medium"
    with pytest.raises(ValidationError, match=r"^quality=.*low \| medium \| high for gpt-image-2"):
        ImageRequest.build("p", model=G2, quality="auto")


@pytest.mark.parametrize("background", ["opaque", "transparent", "Transparent"])
def test_background(background: str) -> None:
    req = ImageRequest.build("p", model=G2, background=background)
    assert req.payload()["background"] == background.lower()
    assert req.unsupported_on("gateway") == []


def test_background_auto_is_openai_only_and_bad_values_are_named() -> None:
    assert ImageRequest.build("p", model=G2, background="auto").unsupported_on("gateway") == ["background"]
    with pytest.raises(ValidationError, match=r"^background='clear'.*opaque \| transparent \| auto for gpt-image-2"):
        ImageRequest.build("p", model=G2, background="clear")


def test_transparent_needs_png_or_webp() -> None:
    ImageRequest.build("p", model=G2, background="transparent", output_format="webp")
    with pytest.raises(ValidationError, match="png or webp"):
        ImageRequest.build("p", model=G2, background="transparent", output_format="jpeg")


def test_reference_image_caps(tmp_path: Path) -> None:
    # 23184 px wide is over the 23170 edge cap; a 1-pixel-high PNG keeps the test small.
    wide = tmp_path / "wide.png"
    Image.new("L", (23184, 1)).save(wide)
    with pytest.raises(ValidationError, match=r"^images\[0\]=.*edges of at most 23170 pixels for gpt-image-2"):
        ImageRequest.build("p", model=G2, images=[wide])
    ImageRequest.build("p", model="gpt-image-1", images=[wide])  # no cap documented there


# --- gpt-image-2-beta ------------------------------------------------------------------------


def test_beta_defaults_and_payload() -> None:
    req = ImageRequest.build("p", model=BETA, size="16:9")
    assert req.quality == "auto"
    assert req.payload() == {"model": BETA, "prompt": "p", "size": "16:9"}
    assert ImageRequest.build("p", model=BETA, size="1:1", resolution="1k").payload()["resolution"] == "1K"


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"size": "2048x1152"}, "size", "for gpt-image-2-beta: auto or a ratio"),
        ({"size": "1:1", "resolution": "2K"}, "resolution", "1K for gpt-image-2-beta"),
        ({"quality": "high"}, "quality", "auto for gpt-image-2-beta"),
        ({"n": 2}, "n", "1 for gpt-image-2-beta"),
        ({"background": "transparent"}, "background", "gpt-image-2-beta has no background option"),
        ({"output_format": "png"}, "output_format", "gpt-image-2-beta has no output_format option"),
        ({"previews": 1}, "previews", "0 (no streaming) for gpt-image-2-beta"),
    ],
)
def test_beta_narrower_rules(kwargs: dict[str, Any], field: str, allowed: str) -> None:
    with pytest.raises(ValidationError) as info:
        ImageRequest.build("p", model=BETA, **kwargs)
    assert info.value.field == field
    assert allowed in str(info.value)


def test_beta_prompt_limit_and_not_on_openai() -> None:
    with pytest.raises(ValidationError, match="at most 2000 characters for gpt-image-2-beta"):
        ImageRequest.build("x" * 2001, model=BETA)
    assert ImageRequest.build("p", model=BETA).unsupported_on("openai") == ["model"]


def test_beta_takes_no_mask() -> None:
    with pytest.raises(ValidationError, match="gpt-image-2-beta takes no mask"):
        ImageRequest.build("p", model=BETA, images=[_png()], mask=_png(mode="RGBA"))


# --- gpt-image-1 and 1.5 keep their rules ----------------------------------------------------


def test_gpt_image_1_unchanged() -> None:
    req = ImageRequest.build("p")
    assert (req.model, req.size, req.quality, req.n) == ("gpt-image-1", "1024x1024", "medium", 1)
    assert req.options() == {}
    assert req.unsupported_on("gateway") == []


def test_gpt_image_1_5_n_is_one_and_quality_explicit() -> None:
    assert ImageRequest.build("p", model="gpt-image-1.5", quality="high").payload()["quality"] == "high"
    with pytest.raises(ValidationError, match=r"1 for gpt-image-1\.5"):
        ImageRequest.build("p", model="gpt-image-1.5", n=2)


# --- masks -----------------------------------------------------------------------------------


def test_mask_as_bytes_path_pil_and_url(tmp_path: Path) -> None:
    mask_png = _png(mode="RGBA")
    path = tmp_path / "m.png"
    path.write_bytes(mask_png)
    for mask in (mask_png, path, str(path), Image.new("RGBA", (64, 64)), "https://example.com/m.png"):
        req = ImageRequest.build("p", model=G2, images=[_png()], mask=mask)
        assert req.mask is not None
        assert req.payload(["https://x/ref.png"], mask_url="https://x/m.png")["mask_url"] == "https://x/m.png"


@pytest.mark.parametrize(
    ("mask", "images", "message"),
    [
        (_png(mode="RGB"), [_png()], "it has no alpha channel"),
        (_png((32, 64), mode="RGBA"), [_png()], "the first reference image's size, 64x64"),
        (_jpeg(), [_png()], "a PNG with an alpha channel"),
        (_png(mode="RGBA"), [], "a mask only with reference images"),
        (b"not an image", [_png()], "a PNG with an alpha channel"),
    ],
)
def test_bad_masks_are_refused_before_any_request(mask: bytes, images: list[bytes], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ImageRequest.build("p", model=G2, images=images, mask=mask)
    assert info.value.field == "mask"
    assert message in str(info.value)


def test_palette_png_with_transparency_counts_as_alpha() -> None:
    img = Image.new("P", (64, 64))
    img.info["transparency"] = 0
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=0)
    assert ImageRequest.build("p", model=G2, images=[_png()], mask=buf.getvalue()).mask is not None


def test_mask_size_checked_against_the_first_reference_only() -> None:
    req = ImageRequest.build("p", model=G2, images=[_png((64, 64)), _png((32, 32))], mask=_png(mode="RGBA"))
    assert req.mask is not None and req.mask.format == "png"


# --- OpenAI options --------------------------------------------------------------------------


def test_openai_fields_carry_every_option() -> None:
    req = ImageRequest.build(
        "p", model=G2, size="16:9", resolution="2K", quality="high", background="transparent",
        output_format="webp", output_compression=80, moderation="low", previews=2,
    )
    assert req.openai_fields() == {
        "model": G2, "prompt": "p", "n": 1, "size": "2736x1536", "quality": "high", "background": "transparent",
        "output_format": "webp", "output_compression": 80, "moderation": "low", "stream": True, "partial_images": 2,
    }
    assert sorted(req.unsupported_on("gateway")) == [
        "moderation", "output_compression", "output_format", "previews",
    ]


def test_openai_size_for_auto_and_edits_fidelity() -> None:
    req = ImageRequest.build("p", model=G2, size="auto", images=[_png()], input_fidelity="HIGH")
    body = req.openai_fields()
    assert body["size"] == "auto" and body["input_fidelity"] == "high"
    assert "stream" not in body


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"output_format": "gif"}, "output_format", "png | jpeg | webp"),
        ({"output_compression": 80}, "output_compression", "output_format jpeg or webp"),
        ({"output_format": "png", "output_compression": 80}, "output_compression", "output_format jpeg or webp"),
        ({"output_format": "jpeg", "output_compression": 101}, "output_compression", "0 to 100"),
        ({"output_format": "jpeg", "output_compression": True}, "output_compression", "0 to 100"),
        ({"moderation": "strict"}, "moderation", "low | auto"),
        ({"moderation": "low", "images": [_png()]}, "moderation", "generations only"),
        ({"input_fidelity": "high"}, "input_fidelity", "edits only"),
        ({"input_fidelity": "max", "images": [_png()]}, "input_fidelity", "high | low"),
        ({"previews": 4}, "previews", "0 to 3"),
        ({"previews": True}, "previews", "0 to 3"),
    ],
)
def test_openai_option_rules(kwargs: dict[str, Any], field: str, allowed: str) -> None:
    with pytest.raises(ValidationError) as info:
        ImageRequest.build("p", model=G2, **kwargs)
    assert info.value.field == field
    assert allowed in str(info.value)


def test_zero_previews_is_no_stream_anywhere() -> None:
    req = ImageRequest.build("p", model=G2, previews=0)
    assert req.unsupported_on("gateway") == []
    assert "stream" not in req.openai_fields()


def test_replace_keeps_and_rechecks_options() -> None:
    req = ImageRequest.build("p", model=G2, size="3:2", resolution="2K", images=[_png()], mask=_png(mode="RGBA"))
    again = req.replace(quality="high")
    assert (again.resolution, again.quality, again.mask) == ("2K", "high", req.mask)
    with pytest.raises(ValidationError, match="resolution"):
        req.replace(size="2048x1152")


# --- successors ------------------------------------------------------------------------------


def test_successor_map_points_at_served_models() -> None:
    for old in SUCCESSORS:
        assert successor(old) in MODELS
    assert successor("gpt-image-1") == "gpt-image-2"
    assert successor("gpt-image-2") is None


def test_unknown_retired_model_names_its_successor() -> None:
    with pytest.raises(ValidationError) as info:
        ImageRequest.build("p", model="dall-e-3")
    assert "use gpt-image-2" in str(info.value)


# --- every option of every profile -----------------------------------------------------------

_OPTION_VALUES = {
    "resolution": ("resolutions", "9K"),
    "background": ("backgrounds", "clear"),
    "output_format": ("output_formats", "gif"),
    "moderation": ("moderations", "strict"),
}


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("option", list(_OPTION_VALUES))
def test_every_option_names_what_the_model_allows(model: str, option: str) -> None:
    attribute, bad = _OPTION_VALUES[option]
    allowed = getattr(MODELS[model], attribute)
    size = "1:1"
    for good in allowed:
        req = ImageRequest.build("p", model=model, size=size, **{option: good})
        assert getattr(req, option) == good
    with pytest.raises(ValidationError) as info:
        ImageRequest.build("p", model=model, size=size, **{option: bad})
    assert info.value.field == option
    text = str(info.value)
    assert (f"for {model}" in text) if allowed else (f"{model} has no {option} option" in text)


@pytest.mark.parametrize("model", list(MODELS))
def test_every_profile_limits_prompt_n_and_references(model: str) -> None:
    profile = MODELS[model]
    ImageRequest.build("p" * profile.prompt_max_chars, model=model)
    with pytest.raises(ValidationError, match=f"at most {profile.prompt_max_chars} characters for {model}"):
        ImageRequest.build("p" * (profile.prompt_max_chars + 1), model=model)
    ImageRequest.build("p", model=model, n=profile.max_n)
    with pytest.raises(ValidationError) as info:
        ImageRequest.build("p", model=model, n=profile.max_n + 1)
    assert info.value.field == "n" and model in str(info.value)
    urls = [f"https://example.com/{i}.png" for i in range(profile.max_images + 1)]
    ImageRequest.build("p", model=model, images=urls[:-1])
    with pytest.raises(ValidationError, match=f"at most {profile.max_images} reference images for {model}"):
        ImageRequest.build("p", model=model, images=urls)
