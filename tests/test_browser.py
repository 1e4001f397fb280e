"""The studio in real JupyterLab, driven through headless Chromium.

JupyterLab starts on a loopback port with a notebook that calls ``imgkit.studio()`` against
the in-process sandbox; the test types a prompt, picks a tier and a size, uploads two reference
images through the upload widget (together ~12.6 MB, over Jupyter's default 10 MiB websocket
message limit, which the launcher raises as ``make lab`` does: on a default server this upload
silently never arrives), clicks Generate and waits for the images in the preview and
"0 running · 1 completed" in History. Screenshots of the form before and after go to
``tests/artifacts/``. A browser that cannot start fails the test; it is never skipped.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image, ImageDraw

from .browser_util import ARTIFACTS, chromium, jupyterlab, write_notebook

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.browser

CELL = """\
import imgkit
from imgkit.sandbox import SandboxConfig

imgkit.configure(sandbox_config=SandboxConfig(time_scale=0.05))
{call}
"""


def _studio_call() -> str:
    import imgkit

    # `imgkit.studio` is the documented entry point; the package re-exports it from
    # imgkit.widgets, which is used directly until that line is in imgkit/__init__.py.
    return "imgkit.studio()" if hasattr(imgkit, "studio") else "import imgkit.widgets\nimgkit.widgets.studio()"


def _large_png(path: Path) -> Path:
    """A real PNG over Jupyter's default 10 MiB message limit (noise does not compress)."""
    side = 2048
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(path, compress_level=1)
    assert path.stat().st_size > 11 * 1024 * 1024
    return path


def _reference_png(path: Path) -> Path:
    image = Image.new("RGB", (320, 240), "#1e88e5")
    draw = ImageDraw.Draw(image)
    for i in range(0, 320, 20):
        draw.line([(i, 0), (320 - i, 240)], fill="#ffca28", width=3)
    draw.rectangle([100, 80, 220, 160], fill="#43a047")
    image.save(path)
    return path


def _run_first_cell(page: Page) -> Locator:
    """Run the notebook's cell once its kernel is idle; return the studio's locator."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.locator(".jp-Notebook .jp-Cell .cm-content").first.wait_for(state="visible", timeout=60_000)
    # An execute request sent before the kernel's websocket is up can be lost: wait for it.
    page.get_by_text(re.compile(r"\|\s*Idle")).first.wait_for(timeout=60_000)
    studio = page.locator(".imgkit-studio")
    for _ in range(3):
        page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
        page.keyboard.press("Shift+Enter")
        try:
            studio.wait_for(state="visible", timeout=45_000)
            return studio
        except PlaywrightTimeout:
            prompt = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.inner_text()
            if "[ ]" not in prompt:
                raise  # it ran, and no studio appeared
    raise AssertionError("the notebook's cell never ran")


@pytest.mark.timeout(180)
def test_studio_generates_in_jupyterlab(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    reference = _reference_png(tmp_path / "reference.png")
    # One upload of ~12.6 MB: it arrives only because the launcher raised the server's
    # websocket_max_message_size, as `make lab` does.
    large = _large_png(tmp_path / "large-noise.png")
    timings: dict[str, float] = {}
    started = time.monotonic()
    with jupyterlab(tmp_path) as lab:
        write_notebook(lab.root / "studio.ipynb", CELL.format(call=_studio_call()))
        timings["lab_ready_s"] = time.monotonic() - started
        with chromium(tmp_path / "chromium-profile") as browser:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.set_default_timeout(30_000)
            try:
                page.goto(lab.page_url("studio.ipynb"), wait_until="domcontentloaded", timeout=60_000)
                studio = _run_first_cell(page)
                timings["studio_shown_s"] = time.monotonic() - started
                expect(page.locator(".imgkit-banner")).to_contain_text("SANDBOX")
                expect(page.locator(".imgkit-banner")).to_contain_text("balance 1000 credits")
                expect(page.locator(".imgkit-counter")).to_have_text("0 running · 0 completed")

                prompt = page.locator(".imgkit-prompt textarea")
                expect(prompt).to_have_attribute("placeholder", "A beautiful colorful sunset over the ocean")
                prompt.fill("A lighthouse on a cliff at dawn, watercolor")
                page.locator(".imgkit-quality button", has_text="high").click()
                page.locator(".imgkit-size button", has_text="Landscape 3:2 · 1536×1024").click()  # visible choices
                with page.expect_file_chooser() as chooser:
                    page.locator(".imgkit-upload").click()
                chooser.value.set_files([str(reference), str(large)])
                expect(page.locator(".imgkit-ref-chip")).to_have_count(2, timeout=30_000)
                expect(page.locator(".imgkit-ref-chip").nth(0)).to_contain_text("reference.png")
                expect(page.locator(".imgkit-ref-chip").nth(1)).to_contain_text("large-noise.png")
                expect(page.locator(".imgkit-ref-chip").nth(1)).to_contain_text("12.")
                expect(page.locator(".imgkit-mode")).to_contain_text("image-to-image (2 reference images)")
                expect(page.locator(".imgkit-ref-message")).to_have_text("")
                # high x non-square x 1 on the default sheet
                expect(page.locator(".imgkit-price")).to_contain_text("13.90484 credits")
                expect(page.locator(".imgkit-price")).to_contain_text("base × quality × size × n")
                expect(page.locator(".imgkit-price-warning")).to_have_text("")
                generate = page.locator(".imgkit-generate")
                expect(generate).to_be_enabled()
                studio.scroll_into_view_if_needed()
                studio.screenshot(path=str(ARTIFACTS / "studio-before.png"))

                clicked = time.monotonic()
                generate.click()
                page.locator(".imgkit-preview-image").first.wait_for(state="visible", timeout=60_000)
                timings["click_to_first_image_s"] = time.monotonic() - clicked
                expect(page.locator(".imgkit-counter")).to_have_text("0 running · 1 completed", timeout=30_000)
                expect(page.locator(".imgkit-card")).to_have_count(1)
                card = page.locator(".imgkit-card").first
                expect(card).to_contain_text("A lighthouse on a cliff at dawn")
                expect(card).to_contain_text("high · Landscape 3:2 · 1536×1024 · n=1 · image-to-image")
                timings["reference_upload_bytes"] = reference.stat().st_size + large.stat().st_size
                expect(card).to_contain_text("13.90484 credits")
                expect(card).to_contain_text("completed")
                expect(card.locator("img.imgkit-card-thumb")).to_be_visible()
                expect(page.locator(".imgkit-preview-header")).to_contain_text("latency")
                expect(page.locator(".imgkit-log")).to_have_text("")
                # the thumbnail really rendered (decoded, not a broken image)
                width = page.locator(".imgkit-preview-image").first.evaluate("img => img.naturalWidth")
                assert width > 0
                studio.screenshot(path=str(ARTIFACTS / "studio-after.png"))

                page.locator(".imgkit-full-size").first.click()
                full = page.locator("img.imgkit-full-image")
                full.wait_for(state="visible")
                assert full.evaluate("img => img.naturalWidth") == 1536
                page.screenshot(path=str(ARTIFACTS / "studio-full-size.png"), full_page=True)
                page.keyboard.press("Escape")  # the lightbox covers the window until closed
                expect(page.locator(".imgkit-lightbox")).to_have_count(0)

                # A slow second run: its card shows a progress bar, and the kernel stays free.
                prompt.fill("A second, slower run [[seconds:3]]")
                page.wait_for_timeout(4_500)  # past the double-click guard (tested on its own)
                generate.click()
                expect(page.locator(".imgkit-counter")).to_have_text("1 running · 1 completed")
                expect(page.locator(".imgkit-card").first.locator(".imgkit-card-progress")).to_be_visible()
                cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
                cell.locator(".cm-content").click()
                page.keyboard.type("21 * 2")
                page.keyboard.press("Shift+Enter")
                expect(cell.locator(".jp-OutputArea-output")).to_have_text("42", timeout=5_000)
                expect(page.locator(".imgkit-counter")).to_have_text("1 running · 1 completed")
                studio.screenshot(path=str(ARTIFACTS / "studio-running.png"))
                expect(page.locator(".imgkit-counter")).to_have_text("0 running · 2 completed", timeout=30_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "studio-failure.png"), full_page=True)
                print("browser console errors:", *console, sep="\n  ")
                print("jupyterlab log tail:\n", lab.log_tail())
                raise
    timings["total_s"] = time.monotonic() - started
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps(timings, indent=2))


_DROP = """([selector, files, kind]) => {
    const transfer = new DataTransfer();
    for (const f of files) {
        const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], f.name, { type: f.type }));
    }
    const target = document.querySelector(selector);
    const event = kind === "paste"
        ? new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true })
        : new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true });
    target.dispatchEvent(event);
    return event.defaultPrevented;
}"""


def _file(path: Path, name: str | None = None, kind: str = "image/png") -> dict[str, str]:
    import base64

    return {"name": name if name is not None else path.name, "type": kind, "data": base64.b64encode(path.read_bytes()).decode()}


def _screenshots(page: Page, name: str) -> None:
    """The page at 1600, 1280x800 and 800 px wide, in tests/artifacts/."""
    for width, height in ((1600, 1000), (1280, 800), (800, 1000)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(400)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"))


@pytest.mark.timeout(240)
def test_drop_paste_gallery_lightbox_and_downloads(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    first = _reference_png(tmp_path / "sketch.png")
    second = tmp_path / "palette.jpg"
    Image.new("RGB", (200, 120), "#8e24aa").save(second, format="JPEG")
    pasted = tmp_path / "clip.png"
    Image.new("RGB", (90, 90), "#fdd835").save(pasted)
    with jupyterlab(tmp_path) as lab:
        write_notebook(lab.root / "studio.ipynb", CELL.format(call=_studio_call()))
        with chromium(tmp_path / "chromium-profile", width=1280, height=800) as browser:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.set_default_timeout(30_000)
            try:
                page.goto(lab.page_url("studio.ipynb"), wait_until="domcontentloaded", timeout=60_000)
                _run_first_cell(page)
                zone = page.locator(".imgkit-dropzone")
                zone.wait_for(state="visible")
                expect(page.locator(".imgkit-upload")).to_have_text("Add images")
                expect(page.locator(".imgkit-upload")).to_have_attribute("title", re.compile("room for 16 more"))

                # Two files dragged from the desktop: a synthetic drop carrying real files.
                files = [_file(first), _file(second, kind="image/jpeg")]
                assert page.evaluate(_DROP, [".imgkit-dropzone", files, "dragover"]) is True
                assert page.evaluate(_DROP, [".imgkit-dropzone", files, "drop"]) is True
                expect(page.locator(".imgkit-ref-chip")).to_have_count(2)
                expect(page.locator(".imgkit-ref-chip").nth(0)).to_contain_text("sketch.png")
                expect(page.locator(".imgkit-ref-chip").nth(1)).to_contain_text("palette.jpg")
                expect(page.locator(".imgkit-ref-chip").nth(1)).to_contain_text("KB")
                expect(page.locator(".imgkit-upload")).to_have_text("Add images (2)")

                # One image pasted from the clipboard (browsers name it image.png).
                zone.click()
                assert page.evaluate(_DROP, [".imgkit-dropzone", [_file(pasted, name="image.png")], "paste"]) is True
                expect(page.locator(".imgkit-ref-chip")).to_have_count(3)
                expect(page.locator(".imgkit-ref-chip").nth(2)).to_contain_text("pasted image 1.png")
                expect(page.locator(".imgkit-upload")).to_have_text("Add images (3)")
                expect(page.locator(".imgkit-mode")).to_contain_text("image-to-image (3 reference images)")
                expect(page.locator("img.imgkit-ref-thumb")).to_have_count(3)
                for i in range(3):
                    assert page.locator("img.imgkit-ref-thumb").nth(i).evaluate("img => img.naturalWidth") > 0
                expect(page.locator(".imgkit-ref-message")).to_have_text("")
                expect(page.locator(".imgkit-dropzone-status")).to_be_hidden()

                # A typed path that does not exist, in plain words.
                field = page.locator(".imgkit-ref-field input")
                field.fill(str(tmp_path / "missing-sketch.png"))
                field.press("Enter")
                expect(page.locator(".imgkit-ref-message")).to_contain_text("File not found: missing-sketch.png")
                _screenshots(page, "studio-references")

                # Two images, then the gallery: lightbox, arrow keys, Esc, downloads.
                page.set_viewport_size({"width": 1280, "height": 800})
                images = page.locator(".imgkit-n input")
                images.fill("2")
                images.press("Enter")
                page.locator(".imgkit-generate").click()
                tiles = page.locator("img.imgkit-preview-image")
                expect(tiles).to_have_count(2, timeout=60_000)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('img.imgkit-preview-image')].every(i => i.naturalWidth > 0)"
                )
                width = tiles.first.evaluate("img => img.getBoundingClientRect().width")
                assert width >= 280, width
                expect(page.locator(".imgkit-gallery-meta")).to_contain_text("credits")
                expect(page.locator(".imgkit-gallery-meta")).to_contain_text("via ")
                tiles.first.scroll_into_view_if_needed()
                _screenshots(page, "studio-gallery")
                page.set_viewport_size({"width": 1280, "height": 800})

                page.locator(".imgkit-full-size").first.click()
                box = page.locator(".imgkit-lightbox")
                expect(box).to_be_visible()
                expect(page.locator(".imgkit-lightbox-caption")).to_contain_text("1 / 2")
                full = page.locator("img.imgkit-full-image")
                page.wait_for_function("() => document.querySelector('img.imgkit-full-image').naturalWidth > 0")
                rect = full.evaluate("img => img.getBoundingClientRect().height")
                assert rect > 600, rect  # the whole window, not the column
                page.screenshot(path=str(ARTIFACTS / "studio-lightbox-1280.png"))
                page.keyboard.press("ArrowRight")
                expect(page.locator(".imgkit-lightbox-caption")).to_contain_text("2 / 2")
                page.keyboard.press("ArrowRight")
                expect(page.locator(".imgkit-lightbox-caption")).to_contain_text("1 / 2")
                page.keyboard.press("ArrowLeft")
                expect(page.locator(".imgkit-lightbox-caption")).to_contain_text("2 / 2")
                page.keyboard.press("Escape")
                expect(box).to_have_count(0)

                files = sorted((tmp_path / "imgkit-home").rglob("*.png"))
                originals = {p.read_bytes() for p in files if "thumb" not in str(p)}
                with page.expect_download() as saved:
                    page.locator(".imgkit-download").nth(1).click()
                download = saved.value
                assert re.fullmatch(r"imgkit-[0-9a-z]{8}-2\.png", download.suggested_filename)
                assert Path(download.path()).read_bytes() in originals
                with page.expect_download() as saved:
                    page.locator(".imgkit-download-all").click()
                import io
                import zipfile

                with zipfile.ZipFile(io.BytesIO(Path(saved.value.path()).read_bytes())) as archive:
                    assert len(archive.namelist()) == 2
                    for name in archive.namelist():
                        assert archive.read(name) in originals
                page.locator(".imgkit-use-reference").first.click()
                expect(page.locator(".imgkit-ref-chip")).to_have_count(4)
                expect(page.locator(".imgkit-log")).to_have_text("")

                # Ctrl+Enter in the prompt generates; a click right after asks before spending.
                cards = page.locator(".imgkit-card")
                expect(cards).to_have_count(1)
                prompt = page.locator(".imgkit-prompt textarea")
                prompt.fill("A red kite over dunes")
                page.wait_for_timeout(4_500)  # past the double-click guard of the first run
                prompt.press("Control+Enter")
                expect(cards).to_have_count(2)
                expect(prompt).to_have_value("A red kite over dunes")  # no newline was typed
                generate = page.locator(".imgkit-generate")
                generate.click()
                expect(page.locator(".imgkit-confirm")).to_contain_text("You started a run")
                expect(generate).to_contain_text("Yes, generate again · ")
                page.wait_for_timeout(500)
                expect(cards).to_have_count(2)  # nothing was spent
                generate.click()
                expect(cards).to_have_count(3)
                expect(generate).to_contain_text("Generate · ", timeout=10_000)
                expect(page.locator(".imgkit-counter")).to_have_text("0 running · 3 completed", timeout=30_000)
                expect(page.locator(".imgkit-log")).to_have_text("")
                # Generate, with its price, above the fold at 1280x800.
                page.locator(".imgkit-studio").evaluate("el => el.scrollIntoView()")
                _screenshots(page, "studio-top")
                page.set_viewport_size({"width": 1280, "height": 800})
                page.wait_for_timeout(300)
                box = generate.bounding_box()
                assert box is not None and box["y"] + box["height"] <= 800, box

                # A long run, cancelled: its time shows while it runs, then the ledger says so.
                page.wait_for_timeout(4_500)  # past the double-click guard
                prompt.fill("A long run to cancel [[seconds:20]]")
                generate.click()
                expect(page.locator(".imgkit-preview-timing")).to_contain_text("elapsed")
                expect(page.locator(".imgkit-preview-timing")).to_contain_text("left", timeout=10_000)
                page.locator(".imgkit-cancel").click()
                expect(page.locator(".imgkit-message")).to_contain_text("Cancelled run", timeout=10_000)
                expect(page.locator(".imgkit-message")).to_contain_text("may still finish it and bill it")
                expect(cards.first).to_contain_text("cancelled")
                expect(page.locator(".imgkit-counter")).to_have_text("0 running · 3 completed · 1 interrupted")
                page.locator(".imgkit-studio").evaluate("el => el.scrollIntoView()")
                page.screenshot(path=str(ARTIFACTS / "studio-cancelled-1280.png"))
                expect(page.locator(".imgkit-log")).to_have_text("")
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "studio-drop-failure.png"), full_page=True)
                print("browser console errors:", *console, sep="\n  ")
                print("jupyterlab log tail:\n", lab.log_tail())
                raise
