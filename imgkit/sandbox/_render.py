"""Placeholder images for the sandbox: visibly fake, deterministic, and cheap to make.

The picture itself (gradient, shapes, the word SANDBOX) is drawn at the tier's working
resolution so the tiers look different at a glance: low is drawn at 1/8 size and blown up
with NEAREST (blocky), medium at 1/2 size with BILINEAR (soft), high at full size with a
fine line pattern on top. The caption (prompt, tier, size, index) is then drawn crisp at full
size on every tier, because a placeholder whose label cannot be read is useless in a grid.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import textwrap
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFont

__all__ = ["RenderSpec", "render_image", "render_png"]

# Working-resolution divisor and upscaling filter per quality tier.
_TIER_SCALE: dict[str, tuple[int, Image.Resampling]] = {
    "low": (8, Image.Resampling.NEAREST),
    "medium": (2, Image.Resampling.BILINEAR),
    "high": (1, Image.Resampling.NEAREST),
}
_MAX_PROMPT_LINES = 6
_MAX_PROMPT_CHARS = 400


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """Everything that decides the pixels of one placeholder.

    Attributes:
        prompt: the prompt with sandbox directives already removed.
        quality: "low", "medium" or "high".
        width: output width in pixels.
        height: output height in pixels.
        index: 0-based position of this image in the task's results.
        n: number of images in the task.
        refs: number of reference images (0 for text-to-image).
        model: model name, shown in the caption.
        background: "transparent" gives the image a real alpha channel: the backdrop is
            clear and only the subject (a disc with the word SANDBOX) and the caption stay.
        mask: an edit mask (PNG): where its alpha is below 255 the image is drawn as edited
            (colours inverted, cross-hatched, labelled EDITED), so a test can see the mask
            was respected.
    """

    prompt: str
    quality: str
    width: int
    height: int
    index: int = 0
    n: int = 1
    refs: int = 0
    model: str = "gpt-image-1"
    background: str = "opaque"
    mask: bytes | None = None


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow embeds a small Aileron font; load_default(size=...) needs no font files on disk.
    return ImageFont.load_default(size=size)


def _palette(prompt: str) -> tuple[tuple[int, int, int], tuple[int, int, int], bytes]:
    """Two gradient colours and spare hash bytes, all derived from the prompt."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    hue = digest[0] / 255.0
    # A second hue 90-200 degrees away keeps the two ends distinct but not garish.
    hue2 = (hue + 0.25 + digest[1] / 255.0 * 0.3) % 1.0

    def rgb(h: float, lightness: float, saturation: float) -> tuple[int, int, int]:
        r, g, b = colorsys.hls_to_rgb(h, lightness, saturation)
        return round(r * 255), round(g * 255), round(b * 255)

    return rgb(hue, 0.55, 0.65), rgb(hue2, 0.35, 0.6), digest[2:]


def _gradient(
    size: tuple[int, int], a: tuple[int, int, int], b: tuple[int, int, int]
) -> Image.Image:
    """A diagonal gradient from colour a (top left) to colour b (bottom right)."""
    w, h = size
    ramp = Image.linear_gradient("L")  # 256x256, black at the top, white at the bottom
    vertical = ramp.resize((w, h), Image.Resampling.BILINEAR)
    horizontal = ramp.rotate(90).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    horizontal = horizontal.resize((w, h), Image.Resampling.BILINEAR)
    mask = ImageChops.add(vertical, horizontal, scale=2.0)
    return Image.composite(Image.new("RGB", size, b), Image.new("RGB", size, a), mask)


def _picture(spec: RenderSpec, size: tuple[int, int]) -> Image.Image:
    """Gradient, a few hash-placed circles and the word SANDBOX, at the given size."""
    w, h = size
    a, b, spare = _palette(spec.prompt)
    img = _gradient(size, a, b)
    draw = ImageDraw.Draw(img, "RGBA")
    unit = min(w, h)
    for i in range(4):
        cx = spare[3 * i] / 255.0 * w
        cy = spare[3 * i + 1] / 255.0 * h
        r = (0.08 + spare[3 * i + 2] / 255.0 * 0.18) * unit
        shade = 255 if i % 2 else 0
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(shade, shade, shade, 60))
    font = _font(max(8, round(unit * 0.16)))
    draw.text((w / 2, h * 0.36), "SANDBOX", font=font, anchor="mm", fill=(255, 255, 255, 215))
    return img


def _fine_detail(img: Image.Image) -> None:
    """Thin diagonal hatching: detail only the full-resolution tier can carry."""
    w, h = img.size
    draw = ImageDraw.Draw(img, "RGBA")
    step = 6
    for x in range(-h, w, step):
        draw.line((x, 0, x + h, h), fill=(255, 255, 255, 38), width=1)


def _wrap(
    prompt: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_px: float
) -> list[str]:
    text = " ".join(prompt.split()) or "(empty prompt)"
    if len(text) > _MAX_PROMPT_CHARS:
        text = text[: _MAX_PROMPT_CHARS - 1] + "…"
    # Estimate characters per line from an average glyph, then let textwrap break words.
    avg = max(1.0, font.getlength("abcdefghijklmnopqrstuvwxyz ") / 27)
    lines = textwrap.wrap(text, width=max(8, int(max_px / avg)))
    if len(lines) > _MAX_PROMPT_LINES:
        lines = lines[:_MAX_PROMPT_LINES]
        lines[-1] = lines[-1][: max(0, len(lines[-1]) - 1)] + "…"
    return lines


def _caption(img: Image.Image, spec: RenderSpec) -> None:
    """Prompt, tier, size, model and k/n, crisp at full resolution on a dark band."""
    w, h = img.size
    unit = min(w, h)
    pad = round(unit * 0.04)
    body = _font(max(10, round(unit * 0.032)))
    small = _font(max(9, round(unit * 0.026)))
    lines = _wrap(spec.prompt, body, w - 2 * pad)
    line_h = round(unit * 0.032 * 1.3)
    meta = f"{spec.quality} · {spec.width}x{spec.height} · {spec.model}"
    band_top = h - pad - line_h * (len(lines) + 2) - pad
    draw = ImageDraw.Draw(img, "RGBA")
    draw.rectangle((0, band_top, w, h), fill=(0, 0, 0, 150))
    y = band_top + pad
    for line in lines:
        draw.text((pad, y), line, font=body, fill=(255, 255, 255, 255))
        y += line_h
    draw.text((pad, y + line_h * 0.3), meta, font=small, fill=(230, 230, 230, 255))
    draw.text(
        (w - pad, y + line_h * 0.3),
        f"{spec.index + 1}/{spec.n}",
        font=small,
        anchor="ra",
        fill=(230, 230, 230, 255),
    )
    if spec.refs:
        label = f"image-to-image ({spec.refs} ref{'s' if spec.refs != 1 else ''})"
        draw.rectangle((0, 0, w, pad + line_h), fill=(0, 0, 0, 150))
        draw.text((pad, pad / 2), label, font=small, fill=(255, 255, 255, 255))


def render_image(spec: RenderSpec) -> Image.Image:
    """The placeholder as a PIL image of exactly spec.width x spec.height pixels."""
    divisor, resample = _TIER_SCALE.get(spec.quality, _TIER_SCALE["high"])
    full = (spec.width, spec.height)
    work = (max(1, spec.width // divisor), max(1, spec.height // divisor))
    img = _picture(spec, work)
    if work != full:
        img = img.resize(full, resample)
    if spec.quality == "high":
        _fine_detail(img)
    _caption(img, spec)
    return img


def _edited(img: Image.Image, mask_png: bytes) -> Image.Image:
    """The image with the mask's see-through region drawn differently."""
    with Image.open(io.BytesIO(mask_png)) as raw:
        mask = raw.convert("RGBA").getchannel("A").resize(img.size, Image.Resampling.NEAREST)
    region = mask.point(lambda a: 255 if a < 255 else 0)
    changed = ImageChops.invert(img.convert("RGB"))
    draw = ImageDraw.Draw(changed, "RGBA")
    w, h = img.size
    for x in range(-h, w, 24):
        draw.line((x, 0, x + h, h), fill=(255, 0, 255, 140), width=3)
    box = region.getbbox()
    if box is not None:
        unit = max(8, min(box[2] - box[0], box[3] - box[1]))
        draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), "EDITED", font=_font(max(8, unit // 6)),
                  anchor="mm", fill=(255, 255, 255, 255))
    return Image.composite(changed, img.convert("RGB"), region)


def _transparent(img: Image.Image, spec: RenderSpec) -> Image.Image:
    """The image over a clear backdrop: a solid disc (the subject) and the caption band."""
    w, h = img.size
    alpha = Image.new("L", img.size, 0)
    draw = ImageDraw.Draw(alpha)
    unit = min(w, h)
    r = unit * 0.3
    draw.ellipse((w / 2 - r, h * 0.4 - r, w / 2 + r, h * 0.4 + r), fill=255)
    band = round(unit * 0.032 * 1.3) * 4 + round(unit * 0.04) * 2
    draw.rectangle((0, h - band, w, h), fill=255)
    out = img.convert("RGBA")
    out.putalpha(alpha)
    return out


def render_png(spec: RenderSpec) -> bytes:
    """The placeholder encoded as PNG; compress_level=1 trades a bigger file for speed."""
    img = render_image(spec)
    if spec.mask is not None:
        img = _edited(img, spec.mask)
    if spec.background == "transparent":
        img = _transparent(img, spec)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
