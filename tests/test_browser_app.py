"""`imgkit app`'s page in real Voilà, driven through headless Chromium.

Voilà serves the studio page (:mod:`imgkit.app`) on a loopback port with a token; its kernel
runs **live**, with a key in its environment, against a sandbox on another loopback port, so
the key is really there to leak. The test goes from prompt to download, checks that a typed
server path is refused, and searches the page's HTML, every websocket frame (the widget
state travels in them) and the downloads for the key. Screenshots at 1600, 1280x800 and
800 px go to ``tests/artifacts/``. A browser that cannot start fails the test.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import imgkit.app

from .browser_util import ARTIFACTS, chromium, free_port, write_notebook
from .conftest import TEST_KEY

pytestmark = pytest.mark.browser

CELL = """\
import imgkit
import imgkit.app
from imgkit.engine import PollPolicy

# The key comes from the environment, as on a team server; the service is a loopback sandbox.
imgkit.configure(base_url={url!r}, poll=PollPolicy(min_interval=0.05, max_interval=0.3, deadline=60))
imgkit.app.page()
"""


@contextlib.contextmanager
def voila(tmp: Path, notebook: Path, extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, str, Path]]:
    """Serve ``notebook`` as `imgkit app` does; yield its URL (with the token), the token and its log."""
    port = free_port()
    command, token = imgkit.app.voila_command(port=port, notebook=notebook)
    env = {k: v for k, v in os.environ.items() if k not in ("EVOLINK_API_KEY", "OPENAI_API_KEY")}
    env.update(
        EVOLINK_API_KEY=TEST_KEY,
        IMGKIT_HOME=str(tmp / "imgkit-home"),
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
        JUPYTER_DATA_DIR=str(tmp / "jupyter-data"),
        IPYTHONDIR=str(tmp / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env or {})
    log = tmp / "voila.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=notebook.parent, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Voilà exited with {process.returncode}:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/api/status", params={"token": token}, timeout=2).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Voilà did not answer:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)
        yield f"{base}/?token={token}", token, log
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.timeout(240)
def test_the_page_runs_from_prompt_to_download_and_keeps_the_key(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from imgkit.sandbox import SandboxConfig, running_sandbox

    ARTIFACTS.mkdir(exist_ok=True)
    root = tmp_path / "root"
    root.mkdir()
    with running_sandbox(SandboxConfig(seed=3, time_scale=0.05)) as sandbox_url:
        notebook = write_notebook(root / "studio.ipynb", CELL.format(url=sandbox_url))
        with voila(tmp_path, notebook) as (url, _token, log):
            # Without the token there is no page.
            assert httpx.get(url.split("?")[0], timeout=30).status_code in (302, 401, 403)
            with chromium(tmp_path / "chromium-profile", width=1280, height=800) as browser:
                page = browser.new_page()
                frames: list[str] = []
                page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))
                console: list[str] = []
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
                page.set_default_timeout(30_000)
                try:
                    started = time.monotonic()
                    page.goto(url, wait_until="domcontentloaded", timeout=90_000)
                    page.locator(".imgkit-studio").wait_for(state="visible", timeout=90_000)
                    page_shown_s = time.monotonic() - started
                    expect(page.locator(".imgkit-banner")).to_contain_text("LIVE")
                    expect(page.locator(".imgkit-banner")).to_contain_text("key …")
                    assert page.locator(".jp-InputArea").count() == 0  # no code cells
                    assert "imgkit.app.page()" not in page.content()
                    _screens(page, "app-empty")

                    # A typed path on the server is refused; an upload is welcome.
                    field = page.locator(".imgkit-ref-field input")
                    expect(field).to_have_attribute("placeholder", re.compile("^https://"))
                    field.fill(str(notebook))
                    field.press("Enter")
                    expect(page.locator(".imgkit-ref-message")).to_contain_text("does not read files on the server")
                    expect(page.locator(".imgkit-ref-chip")).to_have_count(0)

                    prompt = page.locator(".imgkit-prompt textarea")
                    prompt.fill("A paper boat on a puddle, morning light")
                    page.locator(".imgkit-quality button", has_text="low").click()
                    generate = page.locator(".imgkit-generate")
                    expect(generate).to_contain_text("Generate · ")
                    clicked = time.monotonic()
                    generate.click()
                    expect(page.locator(".imgkit-preview-timing")).to_contain_text("elapsed")
                    preview_s = time.monotonic() - clicked
                    tile = page.locator("img.imgkit-preview-image").first
                    tile.wait_for(state="visible", timeout=60_000)
                    page.wait_for_function("() => document.querySelector('img.imgkit-preview-image').naturalWidth > 0")
                    image_s = time.monotonic() - clicked
                    width = tile.evaluate("img => img.getBoundingClientRect().width")
                    assert width >= 512, width  # at 1280 px the result fits its column, large
                    expect(page.locator(".imgkit-counter")).to_have_text("0 running · 1 completed")
                    _screens(page, "app-result")

                    page.set_viewport_size({"width": 1280, "height": 800})
                    with page.expect_download() as saved:
                        page.locator(".imgkit-download").first.click()
                    data = Path(saved.value.path()).read_bytes()
                    assert data.startswith(b"\x89PNG")
                    assert TEST_KEY.encode() not in data
                    with page.expect_download() as saved:
                        page.locator(".imgkit-download-all").click()
                    archive = Path(saved.value.path()).read_bytes()
                    with zipfile.ZipFile(io.BytesIO(archive)) as z:
                        assert [z.read(n) for n in z.namelist()] == [data]
                    assert TEST_KEY.encode() not in archive

                    # The key is nowhere the browser can see: the page, the widget state, the logs.
                    html = page.content()
                    assert TEST_KEY not in html
                    assert TEST_KEY[-12:] not in html
                    assert frames, "no websocket frames were seen"
                    assert not [f for f in frames if TEST_KEY in f or TEST_KEY[-12:] in f]
                    assert TEST_KEY not in httpx.get(url, timeout=60).text
                    expect(page.locator(".imgkit-log")).to_have_text("")
                    (ARTIFACTS / "app-timings.txt").write_text(
                        f"page shown: {page_shown_s:.1f} s\nclick to first preview: {preview_s:.1f} s\n"
                        f"click to first image: {image_s:.1f} s\n"
                    )
                except Exception:
                    page.screenshot(path=str(ARTIFACTS / "app-failure.png"), full_page=True)
                    print("browser console errors:", *console, sep="\n  ")
                    print("voila log tail:\n", log.read_text(errors="replace")[-4000:])
                    raise


@pytest.mark.timeout(240)
def test_a_page_budget_refuses_the_run_that_would_pass_it_on_the_page(tmp_path: Path) -> None:
    """`imgkit app --budget-credits 3` (here IMGKIT_APP_BUDGET=3): one medium run of 2.4192
    credits fits, the second is refused on the page before anything is sent."""
    from playwright.sync_api import expect

    from imgkit.sandbox import SandboxConfig, running_sandbox

    from .conftest import SANDBOX_ADMIN

    ARTIFACTS.mkdir(exist_ok=True)
    root = tmp_path / "root"
    root.mkdir()
    with running_sandbox(SandboxConfig(seed=5, time_scale=0.02)) as sandbox_url:
        notebook = write_notebook(root / "studio.ipynb", CELL.format(url=sandbox_url))
        with voila(tmp_path, notebook, {imgkit.app.BUDGET_ENV: "3"}) as (url, _token, log), \
                chromium(tmp_path / "chromium-profile", width=1280, height=800) as browser:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            try:
                page.goto(url, wait_until="domcontentloaded", timeout=90_000)
                page.locator(".imgkit-studio").wait_for(state="visible", timeout=90_000)
                expect(page.locator(".imgkit-page-budget")).to_have_text("page budget: 3 of 3 credits left")
                generate = page.locator(".imgkit-generate")
                expect(generate).to_have_text(re.compile(r"Generate · 2\.4192 credits"))
                generate.click()
                expect(page.locator(".imgkit-counter")).to_have_text("0 running · 1 completed", timeout=60_000)
                expect(page.locator(".imgkit-page-budget")).to_have_text("page budget: 0.5808 of 3 credits left")
                expect(generate).to_be_disabled()
                expect(page.locator(".imgkit-message")).to_contain_text(
                    "this run costs 2.4192, more than the 0.5808 left"
                )
                page.locator(".imgkit-studio").evaluate("el => el.scrollIntoView()")
                page.screenshot(path=str(ARTIFACTS / "app-page-budget-1280.png"))
                tasks = httpx.get(f"{sandbox_url}/_sandbox/tasks", headers=SANDBOX_ADMIN, timeout=30).json()["tasks"]
                assert len(tasks) == 1  # the refused run never reached the service
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "app-budget-failure.png"), full_page=True)
                print("voila log tail:\n", log.read_text(errors="replace")[-4000:])
                raise


def _screens(page: object, name: str) -> None:
    for width, height in ((1600, 1000), (1280, 800), (800, 1000)):
        page.set_viewport_size({"width": width, "height": height})  # type: ignore[attr-defined]
        page.wait_for_timeout(400)  # type: ignore[attr-defined]
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"))  # type: ignore[attr-defined]
