"""The studio in Notebook 7, driven through headless Chromium: its anywidget parts (drop
zone, gallery, shortcuts, kernel-served thumbnails) load there as in JupyterLab."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from .browser_util import ARTIFACTS, chromium, jupyterlab, write_notebook
from .test_browser import _DROP, CELL, _file, _reference_png

pytestmark = pytest.mark.browser


@pytest.mark.timeout(240)
def test_the_studio_works_in_notebook_7(tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    first = _reference_png(tmp_path / "sketch.png")
    second = tmp_path / "palette.jpg"
    Image.new("RGB", (200, 120), "#8e24aa").save(second, format="JPEG")
    with jupyterlab(tmp_path, app="notebook") as server:
        write_notebook(server.root / "studio.ipynb", CELL.format(call="imgkit.studio()"))
        with chromium(tmp_path / "chromium-profile", width=1280, height=800) as browser:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.set_default_timeout(30_000)
            try:
                page.goto(server.page_url("studio.ipynb"), wait_until="domcontentloaded", timeout=60_000)
                editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
                editor.wait_for(state="visible", timeout=60_000)
                studio = page.locator(".imgkit-studio")
                for _ in range(6):  # an execute request sent before the kernel is up can be lost
                    # Under load Notebook 7 may ask which kernel to start: the notebook's own.
                    choose = page.locator(".jp-Dialog .jp-mod-accept", has_text="Select")
                    if choose.count():
                        choose.click()
                    try:
                        editor.click(timeout=5_000)
                    except PlaywrightTimeout:
                        continue  # the dialog came up meanwhile
                    page.keyboard.press("Shift+Enter")
                    try:
                        studio.wait_for(state="visible", timeout=10_000)
                        break
                    except PlaywrightTimeout:
                        continue
                expect(studio).to_be_visible()
                files = [_file(first), _file(second, kind="image/jpeg")]
                assert page.evaluate(_DROP, [".imgkit-dropzone", files, "drop"]) is True
                expect(page.locator(".imgkit-ref-chip")).to_have_count(2)
                expect(page.locator(".imgkit-upload")).to_have_text("Add images (2)")
                prompt = page.locator(".imgkit-prompt textarea")
                prompt.fill("A heron in reeds, ink")
                prompt.press("Control+Enter")
                tile = page.locator("img.imgkit-preview-image").first
                tile.wait_for(state="visible", timeout=60_000)
                page.wait_for_function("() => document.querySelector('img.imgkit-preview-image').naturalWidth > 0")
                expect(page.locator(".imgkit-counter")).to_have_text("0 running · 1 completed")
                expect(page.locator("img.imgkit-card-thumb")).to_have_count(1)
                page.wait_for_function("() => document.querySelector('img.imgkit-card-thumb').naturalWidth > 0")
                page.locator(".imgkit-full-size").first.click()
                expect(page.locator(".imgkit-lightbox")).to_be_visible()
                page.keyboard.press("Escape")
                expect(page.locator(".imgkit-lightbox")).to_have_count(0)
                studio.evaluate("el => el.scrollIntoView()")
                page.screenshot(path=str(ARTIFACTS / "notebook7-1280.png"))
                expect(page.locator(".imgkit-log")).to_have_text("")
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "notebook7-failure.png"), full_page=True)
                print("browser console errors:", *console, sep="\n  ")
                print("server log tail:\n", server.log_tail())
                raise
