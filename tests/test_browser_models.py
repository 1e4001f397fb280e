"""The studio's model controls and history tools in real JupyterLab, through headless Chromium.

The notebook's studio runs against the in-process sandbox. The test switches the model to
gpt-image-2 and checks that the form adapts (resolution tier, ratios, custom size,
background), that the price on Generate follows the tier, that the empty preview's frame has
the chosen shape, that 12 images are refused out loud, then generates two runs, stars one,
filters by prompt and by star, and hides one. Screenshots at 1280x800 and 800 px wide go to
``tests/artifacts/``. A browser that cannot start fails the test; it is never skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from imgkit.request import MODELS

from .browser_util import ARTIFACTS, chromium, jupyterlab, write_notebook
from .test_browser import _run_first_cell

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

CELL = """\
import imgkit
from imgkit.sandbox import SandboxConfig

imgkit.configure(sandbox_config=SandboxConfig(time_scale=0.02))
imgkit.studio(confirm_within=0)
"""


def _shots(page: Page, name: str) -> None:
    for width, height in ((1280, 800), (800, 1000)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"))
    page.set_viewport_size({"width": 1280, "height": 800})


def _generate_label(page: Page) -> str:
    return page.locator(".imgkit-generate").inner_text().strip()


@pytest.mark.timeout(240)
def test_model_controls_and_history_tools_in_jupyterlab(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    with jupyterlab(tmp_path) as lab:
        write_notebook(lab.root / "models.ipynb", CELL)
        with chromium(tmp_path / "chromium-profile", width=1280, height=800) as browser:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            try:
                page.goto(lab.page_url("models.ipynb"), wait_until="domcontentloaded", timeout=60_000)
                _run_first_cell(page)
                # The static snapshot output is there, hidden while the live form is on the page.
                expect(page.locator(".imgkit-static")).to_have_count(1)
                expect(page.locator(".imgkit-static")).to_be_hidden()
                expect(page.locator(".imgkit-resolution")).to_be_hidden()  # gpt-image-1 has no tiers
                expect(page.locator(".imgkit-aspect-frame")).to_have_attribute("data-ratio", "1024 / 1024")

                page.locator(".imgkit-model select").select_option("gpt-image-2")
                expect(page.locator(".imgkit-resolution")).to_be_visible()
                expect(page.locator(".imgkit-background")).to_be_visible()
                expect(page.locator(".imgkit-previews")).to_be_hidden()  # the sandbox gateway does not stream
                page.locator(".imgkit-size button", has_text=re.compile(r"^16:9$")).click()
                labels = {}
                for tier in ("1K", "2K", "4K"):
                    page.locator(".imgkit-resolution button", has_text=tier).click()
                    w, h = MODELS["gpt-image-2"].pixel_table[tier]["16:9"].split("x")
                    expect(page.locator(".imgkit-aspect-frame")).to_have_attribute("data-ratio", f"{w} / {h}")
                    page.wait_for_function(
                        "old => document.querySelector('.imgkit-generate').innerText.trim() !== old",
                        arg=labels.get("previous", ""),
                    )
                    labels[tier] = labels["previous"] = _generate_label(page)
                    assert labels[tier].startswith("Generate · ") and labels[tier].endswith(" credits")
                assert len({labels["1K"], labels["2K"], labels["4K"]}) == 3, labels  # the price follows the tier
                page.locator(".imgkit-background button", has_text="transparent").click()
                expect(page.locator(".imgkit-show-code")).to_contain_text("background='transparent'")

                # Custom WxH: a field appears, the tier steps aside, a bad size is named.
                page.locator(".imgkit-size button", has_text="Custom").click()
                custom = page.locator(".imgkit-custom-size input")
                custom.fill("2000x1000")
                custom.press("Enter")
                expect(page.locator(".imgkit-message")).to_contain_text("size")
                expect(page.locator(".imgkit-generate")).to_be_disabled()
                custom.fill("2048x1152")
                custom.press("Enter")
                expect(page.locator(".imgkit-generate")).to_be_enabled()
                expect(page.locator(".imgkit-aspect-frame")).to_have_attribute("data-ratio", "2048 / 1152")

                # 12 images: refused out loud, not clamped.
                images = page.locator(".imgkit-n input")
                images.fill("12")
                images.press("Enter")
                expect(page.locator(".imgkit-n-note")).to_have_text("1 to 10 images")
                expect(page.locator(".imgkit-generate")).to_be_disabled()
                expect(images).to_have_value("12")
                _shots(page, "studio-models-form")
                images.fill("1")
                images.press("Enter")
                expect(page.locator(".imgkit-n-note")).to_have_text("")
                generate = page.locator(".imgkit-generate")
                expect(generate).to_be_enabled()
                # Generate stays above the fold at 1280x800 with the extra rows.
                page.locator(".imgkit-studio").evaluate("el => el.scrollIntoView()")
                page.wait_for_timeout(300)
                box = generate.bounding_box()
                assert box is not None and box["y"] + box["height"] <= 800, box

                prompt = page.locator(".imgkit-prompt textarea")
                for text in ("a fox in the snow, poster", "an owl at night"):
                    prompt.fill(text)
                    generate.click()
                    expect(page.locator(".imgkit-counter")).to_contain_text(
                        f"{1 if text.startswith('a fox') else 2} completed", timeout=60_000
                    )
                expect(page.locator("img.imgkit-preview-image")).to_have_count(1, timeout=30_000)
                cards = page.locator(".imgkit-card")
                expect(cards).to_have_count(2)
                expect(page.locator(".imgkit-card.imgkit-card-shown")).to_have_count(1)

                # Star the fox (the second card: newest first), filter, hide the owl.
                fox = cards.filter(has_text="a fox in the snow")
                fox.locator(".imgkit-card-star").click()
                expect(fox.locator(".imgkit-card-star")).to_have_text("★")
                page.locator(".imgkit-filter-text input").fill("OWL")
                expect(cards).to_have_count(1)
                expect(cards.first).to_contain_text("an owl at night")
                expect(page.locator(".imgkit-filter-summary")).to_contain_text("1 of 2 runs match")
                page.locator(".imgkit-filter-text input").fill("")
                expect(cards).to_have_count(2)
                page.locator(".imgkit-filter-starred").click()
                expect(cards).to_have_count(1)
                expect(cards.first).to_contain_text("a fox in the snow")
                page.locator(".imgkit-filter-starred").click()
                cards.filter(has_text="an owl at night").locator(".imgkit-card-hide").click()
                expect(cards).to_have_count(1)
                expect(page.locator(".imgkit-filter-summary")).to_contain_text("1 hidden")
                page.locator(".imgkit-card").first.scroll_into_view_if_needed()
                _shots(page, "studio-models-history")
                page.locator(".imgkit-filter-hidden").click()
                expect(cards).to_have_count(2)
                expect(cards.filter(has_text="an owl at night").locator(".imgkit-card-hide")).to_have_text("Unhide")
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "studio-models-failure.png"), full_page=True)
                print(lab.log_tail())
                raise


@pytest.mark.timeout(300)
@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_a_saved_notebook_shows_the_snapshot_in_jupyterlab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: bool
) -> None:
    """A notebook executed and saved without its widget state (as JupyterLab saves by
    default), then opened in JupyterLab with no kernel running its cells: the live form
    cannot load, so the static snapshot shows, with the last image and the history table.
    Untrusted, JupyterLab renders the HTML outputs only; trusted (signed with this server's
    key), it tries the widget and says "model not found", and the snapshot shows below."""
    import subprocess
    import sys

    import nbformat
    from nbclient import NotebookClient
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    monkeypatch.setenv("IMGKIT_HOME", str(tmp_path / "imgkit-home"))  # the Lab's kernels use this one too
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    with jupyterlab(tmp_path) as lab:
        saved = write_notebook(
            lab.root / "saved.ipynb",
            "import imgkit\nimgkit.generate('a lighthouse, saved for later', quality='low')",
            "imgkit.studio()",
        )
        nb = nbformat.read(saved, as_version=4)
        NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=False).execute()
        nbformat.write(nb, saved)
        size = saved.stat().st_size
        assert size < 100 * 1024, size
        if trusted:
            subprocess.run(
                [sys.executable, "-m", "jupyter", "trust", str(saved)], check=True, capture_output=True,
                env={**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data")},
            )
        with chromium(tmp_path / "chromium-profile", width=1280, height=800) as browser:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            try:
                page.goto(lab.page_url("saved.ipynb"), wait_until="domcontentloaded", timeout=60_000)
                snapshot = page.locator(".jp-OutputArea-output .imgkit-snapshot")
                snapshot.wait_for(state="visible", timeout=60_000)
                expect(snapshot).to_have_count(1)
                expect(snapshot).to_contain_text("static snapshot")
                expect(snapshot.locator("table")).to_contain_text("a lighthouse, saved for later")
                image = snapshot.locator("img").first
                page.wait_for_function("img => img.naturalWidth > 0", arg=image.element_handle())
                expect(page.locator(".imgkit-studio")).to_have_count(0)  # no live form without its kernel
                snapshot.scroll_into_view_if_needed()
                _shots(page, f"studio-snapshot-lab-{'trusted' if trusted else 'untrusted'}")
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "studio-snapshot-failure.png"), full_page=True)
                print(lab.log_tail())
                raise
