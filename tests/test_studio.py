"""The studio form, headless: set widget values, click, and check what it renders and what
the ledger holds. Runs go to the loopback sandbox (the ``session`` fixture)."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import imgkit
from imgkit.request import MODELS, JobEvent, RunRecord
from imgkit.widgets import Studio, studio
from imgkit.widgets._cards import Throttle
from imgkit.widgets._studio import SAMPLE_PROMPT, StudioApp

from .conftest import FAST_POLL, TEST_KEY

MB = 1024 * 1024


def _png(color: str = "red", size: tuple[int, int] = (32, 24), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def _upload(*files: tuple[str, bytes]) -> tuple[dict[str, Any], ...]:
    """What the browser's FileUpload sends: a tuple of dicts (ipywidgets 8)."""
    now = dt.datetime.now(dt.UTC)
    return tuple(
        {"name": name, "type": "", "size": len(data), "content": memoryview(data), "last_modified": now}
        for name, data in files
    )


def _text(html: str) -> str:
    import re

    return re.sub(r"<[^>]+>", "", html).replace("&#x27;", "'").replace("&amp;", "&")


# --- the package surface -----------------------------------------------------------------


def test_import_imgkit_widgets_stays_light() -> None:
    code = "import sys, imgkit.widgets; print([m for m in ('ipywidgets', 'IPython', 'PIL') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_studio_and_Studio_build_the_same_form(session: imgkit.Session) -> None:
    a, b = studio(), Studio(quality="low")
    assert isinstance(a, Studio)
    assert isinstance(b, StudioApp)
    assert a is not b
    b.prompt.value = "only b"
    assert a.prompt.value == SAMPLE_PROMPT  # independent forms
    bundle = a._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_bad_constructor_arguments_raise_the_core_error(session: imgkit.Session) -> None:
    with pytest.raises(imgkit.ValidationError, match="quality"):
        Studio(quality="ultra")


# --- the form ----------------------------------------------------------------------------


def test_defaults_banner_and_price(session: imgkit.Session) -> None:
    s = Studio()
    assert s.prompt.value == SAMPLE_PROMPT
    assert s.prompt.placeholder == SAMPLE_PROMPT
    assert (s.model.value, s.size.value, s.quality.value, s.n.value) == ("gpt-image-1", "1024x1024", "medium", 1)
    assert [label for label, _ in s.size.options] == [
        "Square 1:1 · 1024×1024",
        "Portrait 2:3 · 1024×1536",
        "Landscape 3:2 · 1536×1024",
    ]
    # Named for people (issue 16); the multipliers moved to the tooltips.
    assert [label for label, _ in s.quality.options] == ["low · fastest", "medium", "high · best"]
    assert [tip.partition(";")[0] for tip in s.quality.tooltips] == [
        "×0.26 the base price", "×1 the base price", "×3.91 the base price",
    ]
    banner = _text(s.banner.value)
    # the fixture's session has a key (the loopback sandbox plays the live service)
    assert "LIVE" in banner
    assert "…CRET" in banner
    assert TEST_KEY not in s.banner.value
    assert TEST_KEY[:-4] not in s.banner.value
    assert "gpt-image-1" in banner
    assert "evolink-table-2026-11" in banner
    # the loopback sandbox is shared by the whole test session: read its balance, don't assume it
    balance = imgkit.get_session().balance()
    assert balance is not None
    assert f"balance {balance.remaining_credits:.10g} credits" in banner
    assert "2.4192 credits" in _text(s.price.value)
    assert not s.generate_button.disabled
    assert _text(s.counter.value) == "0 running · 0 completed"
    assert _text(s.prompt_count.value) == f"{len(SAMPLE_PROMPT)} / 2000 characters"


def test_sandbox_banner_says_so(data_dir: Path) -> None:
    imgkit.configure(data_dir=data_dir)  # no key: the in-process sandbox
    banner = _text(Studio().banner.value)
    assert "SANDBOX" in banner
    assert "nothing is charged" in banner
    assert "key …" not in banner


@pytest.mark.parametrize(
    ("quality", "size", "n"),
    [("low", "1024x1024", 1), ("medium", "1536x1024", 2), ("high", "1024x1536", 10), ("low", "1536x1024", 3)],
)
def test_price_follows_every_change(session: imgkit.Session, quality: str, size: str, n: int) -> None:
    s = Studio()
    s.quality.value = quality
    s.size.value = size
    s.n.value = n
    est = imgkit.estimate(quality=quality, size=size, n=n)
    assert est == s.estimate()
    price = _text(s.price.value)
    assert f"{est.credits:.10g} credits" in price
    assert f"${est.usd:.4f}" in price
    assert f"¥{est.cny:.4f}" in price
    assert "base × quality × size × n" in price
    assert f"× {n} = {est.credits:.10g} credits" in price
    warned = est.credits > s.warn_credits
    assert ("per-run threshold" in s.price_warning.value) is warned


def test_the_price_shown_is_the_estimate_recorded_when_the_first_provider_is_not_the_gateway(
    data_dir: Path, sandbox_url: str
) -> None:
    imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=[
        {"name": "openai", "kind": "openai", "api_key": "sk-openai-sandbox-0123456789",
         "base_url": f"{sandbox_url}/openai/v1"},
    ])
    s = Studio(quality="low")
    shown = s.estimate()
    assert shown.sheet == "openai-tokens-2026-11"  # the provider's sheet, not the session's default
    assert shown == imgkit.estimate(quality="low")  # one price everywhere: imgkit.estimate() says the same
    assert f"{shown.credits:.10g} credits" in _text(s.price.value)
    assert "openai-tokens-2026-11" in _text(s.price.value)
    assert "openai-tokens-2026-11" in _text(s.banner.value)
    assert [label for label, _ in s.quality.options] == ["low · fastest", "medium", "high · best"]
    assert not any("×" in tip for tip in s.quality.tooltips)  # per token: no multipliers
    s.generate_button.click()
    record = s.results[0].record
    assert (record.provider, record.status) == ("openai", "completed")
    assert (record.est_credits, record.price_sheet) == (shown.credits, shown.sheet)
    assert f"{shown.credits:.10g} credits" in _text(s.history.children[0].children[1].children[0].value)


def test_the_price_is_quoted_on_each_setting_but_not_on_each_keystroke(session: imgkit.Session, data_dir: Path) -> None:
    quoted: list[imgkit.request.ImageRequest] = []

    class Counting(imgkit.Session):
        def quote(self, request: imgkit.request.ImageRequest) -> Any:
            quoted.append(request)
            return super().quote(request)

    s = Studio(Counting(api_key=TEST_KEY, base_url=session.base_url, data_dir=data_dir))
    before = len(quoted)
    s.prompt.value = "a fox"
    s.prompt.value = ""
    assert len(quoted) == before  # the text does not change the price
    assert "2.4192 credits" in _text(s.price.value)  # and an empty prompt keeps it in view
    s.quality.value = "low"
    assert len(quoted) == before + 1
    assert (quoted[-1].quality, quoted[-1].size, quoted[-1].n) == ("low", "1024x1024", 1)


def test_a_per_token_price_sheet(session: imgkit.Session, data_dir: Path) -> None:
    tokens = imgkit.Session(
        api_key=TEST_KEY, base_url=session.base_url, data_dir=data_dir, price_sheet="openai-tokens-2026-11"
    )
    s = Studio(tokens)
    assert [label for label, _ in s.quality.options] == ["low · fastest", "medium", "high · best"]
    assert not any("×" in tip for tip in s.quality.tooltips)
    est = tokens.estimate(quality="medium", size="1:1", n=1)
    price = _text(s.price.value)
    assert f"{est.credits:.10g} credits" in price
    assert "output tokens" in price
    assert "openai-tokens-2026-11" in _text(s.banner.value)


def test_warning_when_over_the_remaining_budget(session: imgkit.Session) -> None:
    session.set_budget(3.0, per="day")
    s = Studio()
    assert "budget 3 credits left" in _text(s.banner.value)
    assert s.price_warning.value == ""  # 2.4192 fits
    s.n.value = 2
    assert "remaining budget (3 credits left)" in _text(s.price_warning.value)
    assert not s.generate_button.disabled  # the session decides; the form warns


def test_validation_messages_and_the_counter(session: imgkit.Session) -> None:
    s = Studio()
    s.prompt.value = "   "
    assert s.generate_button.disabled
    assert "prompt" in _text(s.message.value)
    assert "non-empty" in _text(s.message.value)
    assert s.generate() is None  # nothing starts
    assert session.ledger.count() == 0

    s.prompt.value = "x" * 2001
    assert s.generate_button.disabled
    assert "#c62828" in s.prompt_count.value  # red past the limit
    assert "2001 / 2000 characters · 1 over the limit" in _text(s.prompt_count.value)
    assert "at most 2000 characters" in _text(s.message.value)

    s.prompt.value = "fine"
    assert not s.generate_button.disabled
    assert s.message.value == ""
    assert "#c62828" not in s.prompt_count.value


def test_fields_adapt_to_the_model(session: imgkit.Session) -> None:
    s = Studio(n=4, size="3:2")
    s.model.value = "gpt-image-1.5"
    assert s.n.value == 1
    assert s.n.disabled
    assert s.size.value == "1536x1024"

    s.model.value = "gpt-image-2"
    profile = MODELS["gpt-image-2"]
    values = [v for _, v in s.size.options]
    assert values[0] == "auto"
    assert "16:9" in values
    assert s.size.value == "3:2"  # the same shape, in the model's own terms
    assert not s.n.disabled
    s.n.value = profile.max_n
    assert s.n_note.value == ""
    s.prompt.value = "y" * 5000
    assert not s.generate_button.disabled  # 32000 characters for gpt-image-2
    assert "5000 / 32000" in _text(s.prompt_count.value)
    assert "evolink-gpt-image-2-tokens" in _text(s.price.value)  # every listed model has a price
    assert "gpt-image-2" in _text(s.banner.value)

    s.model.value = "gpt-image-1"
    assert s.size.value == "1536x1024"
    assert s.generate_button.disabled  # 5000 characters is too long here
    assert "at most 2000" in _text(s.message.value)


# --- reference images --------------------------------------------------------------------


def test_uploads_paths_and_urls(session: imgkit.Session, tmp_path: Path) -> None:
    s = Studio()
    assert "text-to-image" in _text(s.mode.value)
    note = _text(s.reference_note.value)
    assert "16 images, 50 MB each" in note
    assert "JPEG, JPG, PNG, WEBP" in note
    assert "10 MiB" in note
    assert "local path" in note

    s.upload.value = _upload(("red.png", _png()), ("blue.jpg", _png("blue", fmt="JPEG")))
    assert s.upload.value == ()  # consumed, so the same file can be added again
    assert [r.name for r in s.reference_images] == ["red.png", "blue.jpg"]
    assert [r.format for r in s.reference_images] == ["png", "jpeg"]
    assert len(s.references.children) == 2
    assert "image-to-image" in _text(s.mode.value)
    assert "2 reference images" in _text(s.mode.value)

    local = tmp_path / "green.webp"
    local.write_bytes(_png("green", fmt="WEBP"))
    s.reference_field.value = f"{local}\nhttps://example.com/ref.jpg"
    assert s.reference_field.value == ""
    assert [r.name for r in s.reference_images][2:] == ["green.webp", "ref.jpg"]
    assert s.reference_images[3].url == "https://example.com/ref.jpg"
    assert len(s.references.children) == 4

    s.remove_reference(0)
    assert [r.name for r in s.reference_images] == ["blue.jpg", "green.webp", "ref.jpg"]
    s.clear_references()
    assert s.reference_images == ()
    assert "text-to-image" in _text(s.mode.value)


def test_refused_references_are_named(session: imgkit.Session, tmp_path: Path) -> None:
    s = Studio()
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    s.upload.value = _upload(
        ("fake.png", b"this is text, not an image"),
        ("anim.webp", gif.getvalue()),
        ("huge.png", b"\x89PNG\r\n\x1a\n" + bytes(51 * MB)),
    )
    message = _text(s.reference_message.value)
    assert "'fake.png' (0.1 KB) was not added" in message  # not "(0.0 MB)"
    assert "JPEG/PNG/WEBP image by its content (its content is not an image)" in message
    assert "'anim.webp'" in message
    assert "its content is gif" in message
    assert "'huge.png' (51.0 MB) was not added: it must be at most 50 MB per image" in message
    assert s.reference_images == ()

    s.reference_field.value = "ftp://example.com/a.png"
    assert "http(s) URL" in _text(s.reference_message.value)
    s.reference_field.value = str(tmp_path / "missing.png")
    assert "existing image file" in _text(s.reference_message.value)

    s.upload.value = _upload(*[(f"img{i}.png", _png()) for i in range(17)])
    assert len(s.reference_images) == 16
    message = _text(s.reference_message.value)
    assert "'img16.png'" in message
    assert "at most 16 reference images" in message
    assert not s.generate_button.disabled  # 16 is allowed


# --- runs --------------------------------------------------------------------------------


def test_generate_sync_path_records_and_renders(session: imgkit.Session) -> None:
    s = Studio(quality="low", size="3:2")
    s.add_references(_png())
    s.generate_button.click()  # no running loop here: the run completes before click returns
    assert len(s.results) == 1
    result = s.results[0]
    assert result.status == "completed"
    rows = session.ledger.records()
    assert [r.run_id for r in rows] == [result.run_id]
    assert rows[0].quality == "low"
    assert rows[0].size == "1536x1024"
    assert rows[0].mode == "image-to-image"
    assert _text(s.counter.value) == "0 running · 1 completed"
    assert len(s.history.children) == 1
    card = _text(s.history.children[0].children[1].children[0].value)
    assert "low · Landscape 3:2 · 1536×1024 · n=1 · image-to-image" in card
    assert "0.92462 credits ($0.0128" in card
    assert "completed" in card
    assert "via gateway" in card  # the serving provider
    preview = _text(s.preview.header.value)
    assert "via gateway" in preview
    assert "latency" in preview
    assert "0.92462 credits" in preview
    # The gallery serves the image files on demand; its synced state names them only.
    gallery = s.preview.gallery
    assert len(gallery.items) == 1
    assert gallery.paths == tuple(result.paths)
    assert gallery.image_bytes(0) == result.paths[0].read_bytes()  # what "Full size" and Download show
    assert all(b"PNG" not in repr(v).encode() for v in gallery.get_state().values())

    # Re-run: the uploaded reference is re-used by its file-API URL
    s.history.children[0].children[2].children[2].click()
    assert [r.status for r in s.results] == ["completed", "completed"]
    again = s.results[1].record
    assert again.mode == "image-to-image"
    assert again.reference_images == rows[0].reference_images
    assert _text(s.counter.value) == "0 running · 2 completed"


@pytest.mark.anyio
async def test_clicks_do_not_block_and_two_runs_in_flight_both_complete(session: imgkit.Session) -> None:
    # Two deliberate runs: no double-click guard (test_a_second_click_soon_after_asks_first has it).
    s = Studio(prompt="slow one [[seconds:1]]", quality="low", confirm_within=0)
    t0 = time.monotonic()
    s.generate_button.click()
    assert time.monotonic() - t0 < 0.5  # scheduled, not awaited
    assert s.running == 1
    await asyncio.sleep(0.3)
    assert _text(s.counter.value) == "1 running · 0 completed"
    s.generate_button.click()  # a second click while the first is in flight
    assert s.running == 2
    await asyncio.sleep(0.2)
    assert _text(s.counter.value) == "2 running · 0 completed"
    results = await s.wait()
    assert [r.status for r in results] == ["completed", "completed"]
    assert len({r.run_id for r in results}) == 2
    assert s.running == 0
    assert session.ledger.count() == 2
    assert {r.status for r in session.ledger.records()} == {"completed"}
    assert _text(s.counter.value) == "0 running · 2 completed"
    assert len(s.history.children) == 2


@pytest.mark.anyio
async def test_a_failed_run_shows_code_and_hint(session: imgkit.Session) -> None:
    s = Studio(prompt="a red apple [[fail:content_policy_violation]]", quality="low")
    task = s.generate()
    assert task is not None
    result = await task
    assert result is not None
    assert result.status == "failed"
    card = s.history.children[0]
    error = _text(card.children[1].children[2].value)
    assert "content_policy_violation" in error
    assert "blocked by safety filters; change the prompt or images" in error
    assert "Content policy violation." in error  # the service's own words
    assert card.children[1].children[2].layout.display is None
    assert "content_policy_violation" in _text(s.preview.error.value)
    assert _text(s.counter.value) == "0 running · 0 completed · 1 failed"
    assert session.ledger.records()[0].error_code == "content_policy_violation"


@pytest.mark.anyio
async def test_a_run_over_the_budget_is_refused_and_nothing_is_sent(session: imgkit.Session) -> None:
    session.set_budget(3.0, per="day")
    s = Studio(n=2)
    task = s.generate()
    assert task is not None
    assert await task is None
    message = _text(s.message.value)
    assert "Nothing was sent" in message
    assert "would exceed the budget" in message
    assert "Nothing was sent" in _text(s.preview.error.value)
    assert _text(s.counter.value) == "0 running · 0 completed"
    assert s.history.children == ()
    assert session.ledger.count() == 0
    s.n.value = 1  # 2.4192 fits in 3
    assert s.message.value == ""
    assert await s.generate() is not None  # type: ignore[misc]
    assert _text(s.counter.value) == "0 running · 1 completed"
    assert "budget 0.5808 credits left" in _text(s.banner.value)


@pytest.mark.anyio
async def test_progress_renders_are_throttled_across_runs() -> None:
    shown: list[JobEvent] = []
    throttle = Throttle(shown.append, per_second=10)
    records = {
        run: RunRecord(run, "sandbox", "gpt-image-1", "p", "1024x1024", "low", 1, status="processing")
        for run in ("run-1", "run-2")
    }
    for progress in range(1, 100):
        for run, record in records.items():
            throttle(JobEvent(run, "processing", progress, record=record.replace(progress=progress)))
    assert [(e.run_id, e.progress) for e in shown] == [("run-1", 1)]  # the first at once, the rest held
    await asyncio.sleep(0.15)
    # then one round with the newest event of each run
    assert [(e.run_id, e.progress) for e in shown[:1]] == [("run-1", 1)]
    assert sorted((e.run_id, e.progress) for e in shown[1:]) == [("run-1", 99), ("run-2", 99)]
    done = records["run-1"].replace(status="completed", progress=100)
    throttle(JobEvent("run-1", "completed", 100, record=done))
    assert shown[-1].status == "completed"  # terminal: at once
    assert (throttle.received, throttle.rendered, throttle.rounds) == (199, 4, 3)


@pytest.mark.anyio
async def test_a_run_renders_at_most_about_ten_times_a_second(session: imgkit.Session) -> None:
    s = Studio(prompt="steady [[seconds:0.6]]", quality="low")
    await s.wait()
    rounds = s._throttle.rounds
    started = time.monotonic()
    await s.generate()  # type: ignore[misc]
    elapsed = time.monotonic() - started
    assert s.results[0].status == "completed"
    assert s._throttle.rounds - rounds <= 10 * elapsed + 2


# --- history -----------------------------------------------------------------------------


def _old_record(i: int, **changes: Any) -> RunRecord:
    base = RunRecord(
        run_id=f"run-old-{i:02d}",
        provider="gateway",
        model="gpt-image-1",
        prompt=f"old prompt {i}",
        size="1024x1536",
        quality="high",
        n=2,
        status="completed",
        est_credits=27.80967,
        est_usd=0.3862,
        est_cny=2.7423,
        created_at=1_700_000_000 + i,
    )
    return base.replace(**changes)


def test_history_keeps_the_last_20_newest_first(session: imgkit.Session) -> None:
    records = [_old_record(i, status="failed" if i % 5 == 0 else "completed") for i in range(25)]
    session.ledger.save_many(records)
    s = Studio()
    assert len(s.history.children) == 20
    shown = [r.run_id for r in s.history_records()]
    assert shown == [f"run-old-{i:02d}" for i in range(24, 4, -1)]
    assert "old prompt 24" in _text(s.history.children[0].children[1].children[0].value)
    assert _text(s.counter.value) == "0 running · 16 completed · 4 failed"
    assert session.ledger.count() == 25  # older ones stay in the ledger
    s.generate_button.click()
    assert len(s.history.children) == 20
    assert s.history_records()[0].run_id == s.results[0].run_id
    assert _text(s.counter.value) == "0 running · 17 completed · 3 failed"
    assert session.ledger.count() == 26


def test_use_and_rerun_a_history_entry(session: imgkit.Session) -> None:
    session.ledger.save(
        _old_record(1, prompt="a lighthouse at dusk", quality="low", size="1536x1024", n=3,
                    reference_images=("https://example.com/ref.png", "sketch.png sha256:0123456789abcdef"))
    )
    s = Studio()
    card = s.history.children[0]
    use, rerun = card.children[2].children[1], card.children[2].children[2]
    assert (use.description, rerun.description) == ("Use", "Re-run")
    use.click()
    assert (s.prompt.value, s.quality.value, s.size.value, s.n.value) == ("a lighthouse at dusk", "low", "1536x1024", 3)
    assert [r.url for r in s.reference_images] == ["https://example.com/ref.png"]
    assert "sketch.png" in _text(s.reference_message.value)
    assert "add it again" in _text(s.reference_message.value)
    assert "image-to-image" in _text(s.mode.value)
    assert f"{imgkit.estimate(quality='low', size='3:2', n=3).credits:.10g} credits" in _text(s.price.value)

    s.clear_references()  # example.com is not reachable from the sandbox
    s.prompt.value = "something else"
    s.history.children[0].children[2].children[2].click()  # Re-run
    assert len(s.results) == 1
    again = s.results[0].record
    assert (again.prompt, again.quality, again.size, again.n) == ("a lighthouse at dusk", "low", "1536x1024", 3)
    assert _text(s.counter.value) == "0 running · 2 completed"


def test_runs_an_earlier_kernel_left_are_offered_for_resume(session: imgkit.Session, sandbox_url: str) -> None:
    reply = httpx.post(
        f"{sandbox_url}/v1/images/generations",
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        json={"model": "gpt-image-1", "prompt": "left behind", "size": "1024x1024", "quality": "low", "n": 1},
    )
    reply.raise_for_status()
    task_id = reply.json()["id"]
    session.ledger.save(
        _old_record(1, prompt="left behind", status="pending", task_id=task_id, submitted_at=time.time(),
                    created_at=time.time() - 3600, quality="low", size="1024x1024", n=1)
    )
    s = Studio()
    assert _text(s.counter.value) == "0 running · 0 completed · 1 interrupted"
    assert s.resume_button.layout.display is None
    assert "Resume" in _text(s.history.children[0].children[1].children[2].value)
    s.resume_button.click()
    assert session.ledger.get("run-old-01").status == "completed"  # type: ignore[union-attr]
    assert _text(s.counter.value) == "0 running · 1 completed"
    assert s.resume_button.layout.display == "none"


@pytest.mark.anyio
async def test_a_run_stopped_in_this_kernel_is_offered_for_resume(session: imgkit.Session) -> None:
    s = Studio(prompt="stopped [[seconds:4]]", quality="low")
    task = s.generate()
    assert task is not None
    for _ in range(200):  # until the service has the task
        await asyncio.sleep(0.02)
        rows = session.ledger.records()
        if rows and rows[0].task_id is not None:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):  # the engine stops following it on its own loop
        if not session.engine.in_flight:
            break
        await asyncio.sleep(0.02)
    s.refresh_history()
    # Nobody follows the run any more, so it is not "running": Resume can finish it.
    assert _text(s.counter.value) == "0 running · 0 completed · 1 interrupted"
    assert s.resume_button.layout.display is None
    resumed = s.resume()
    assert resumed is not None
    assert [r.status for r in await resumed] == ["completed"]
    assert _text(s.counter.value) == "0 running · 1 completed"
    assert s.resume_button.layout.display == "none"


def test_the_widgets_start_no_event_loop_and_share_their_helpers() -> None:
    import ast

    import imgkit.widgets

    defined: dict[str, list[str]] = {}
    for path in sorted(Path(imgkit.widgets.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        assert not calls & {"asyncio.run", "asyncio.new_event_loop", "run_until_complete"}, path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                defined.setdefault(node.name, []).append(path.name)
    assert defined["esc"] == ["_common.py"]
    assert "running_loop" not in defined  # imgkit._loop's, through _common
    assert "_esc" not in defined
    assert "_running_loop" not in defined


def test_cards_name_the_providers_passed_over() -> None:
    from imgkit.widgets._present import provider_text

    record = RunRecord(run_id="r", provider="pricey", model="gpt-image-1", prompt="p", size="1024x1024",
                       quality="low", n=1, providers_tried=({"provider": "cheap", "reason": "http_503"},))
    assert provider_text(record) == "via pricey (after cheap: http_503)"


# --- the drop zone -----------------------------------------------------------------------


def test_dropped_and_pasted_files_arrive_as_message_buffers_not_state(session: imgkit.Session) -> None:
    s = Studio()
    zone = s.upload
    assert zone.label == "Add images"
    # What the drop zone's JavaScript sends for each dropped or pasted file.
    drop = {"kind": "files", "id": "1", "names": ["red.png", "blue.png"], "types": ["image/png"]}
    zone._on_message(zone, drop, [memoryview(_png()), memoryview(_png("blue"))])
    zone._on_message(zone, {"kind": "files", "id": "2", "names": ["pasted image 1.png"]}, [memoryview(_png("green"))])
    zone._on_message(zone, {"kind": "other"}, [])
    assert [r.name for r in s.reference_images] == ["red.png", "blue.png", "pasted image 1.png"]
    assert zone.value == ()  # consumed
    assert zone.label == "Add images (3)"
    assert zone.picker_tooltip.startswith("3 reference images added; room for 13 more")
    # No file bytes in the synced state (a saved notebook keeps that state).
    state = zone.get_state()
    assert "value" not in state
    assert all(not isinstance(v, bytes | memoryview) for v in state.values())
    assert "websocket_max_message_size" in zone.lost_note
    s.clear_references()
    assert zone.label == "Add images"


def test_a_missing_path_and_an_empty_prompt_read_plainly(session: imgkit.Session, tmp_path: Path) -> None:
    s = Studio()
    s.reference_field.value = str(tmp_path / "sketch.png")
    assert _text(s.reference_message.value).startswith("File not found: sketch.png")
    s.prompt.value = "   "
    assert _text(s.message.value).startswith("Write a prompt first")
    assert "is not allowed" not in _text(s.message.value)


def test_a_reused_uploaded_reference_keeps_its_picture(session: imgkit.Session) -> None:
    s = Studio(quality="low")
    s.upload.receive({"name": "red.png", "content": _png()})
    s.generate()
    record = s.results[0].record
    assert record.reference_images[0].startswith("http")
    s.clear_references()
    s.use(record)
    assert s.reference_images[0].url == record.reference_images[0]
    picture = s.references.children[0].children[0].children[0]
    assert picture.__class__.__name__ == "Image"  # not the grey URL box
    # A URL the studio never uploaded is drawn by the browser, the kernel fetches nothing.
    s.clear_references()
    s.add_references("https://example.com/a'(b).png")
    box = s.references.children[0].children[0].children[0].value
    assert "url('https://example.com/a%27%28b%29.png')" in box


def test_the_gallery_zips_downloads_and_reuses_a_runs_images(session: imgkit.Session) -> None:
    import zipfile

    s = Studio(quality="low", n=2)
    s.generate()
    result = s.results[0]
    gallery = s.preview.gallery
    short = result.run_id[-8:]
    assert [item["name"] for item in gallery.items] == [f"imgkit-{short}-1.png", f"imgkit-{short}-2.png"]
    assert all(item["width"] > 0 and item["height"] > 0 for item in gallery.items)
    assert gallery.key == result.run_id
    assert gallery.prompt == SAMPLE_PROMPT
    meta = _text(gallery.meta)
    assert "credits" in meta
    assert "via gateway" in meta
    assert result.run_id[-8:] in meta
    with zipfile.ZipFile(io.BytesIO(gallery.zip_bytes())) as archive:
        names = archive.namelist()
        assert names == [f"imgkit-{short}-1.png", f"imgkit-{short}-2.png"]
        assert archive.read(names[1]) == result.paths[1].read_bytes()
    assert gallery.zip_name == f"imgkit-{short}.zip"
    # "Use as reference", as the browser asks for it.
    gallery._on_message(gallery, {"kind": "use", "index": 1}, [])
    assert [r.path for r in s.reference_images] == [result.paths[1]]
    assert "image-to-image" in _text(s.mode.value)
    gallery._on_message(gallery, {"kind": "use", "index": 7}, [])  # a stale index is ignored
    assert len(s.reference_images) == 1


# --- a calm form -------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_button_carries_the_price(session: imgkit.Session) -> None:
    s = Studio(quality="low", size="3:2")
    assert s.generate_button.description == "Generate · 0.92462 credits"
    s.n.value = 2
    assert s.generate_button.description == "Generate · 1.84924 credits"
    assert "0.92462 credits per image" in _text(s.price.value)
    assert s.n.description == "Images"


def test_a_second_click_soon_after_asks_first(session: imgkit.Session) -> None:
    clock = _Clock()
    s = Studio(quality="low", confirm_within=4.0, clock=clock)
    s.click_generate()  # no running loop: the run completes before the call returns
    assert len(session.ledger.records()) == 1
    clock.now += 1.2
    assert s.click_generate() is None  # asks; nothing is spent
    assert len(session.ledger.records()) == 1
    assert "You started a run 1.2 s ago" in _text(s.message.value)
    assert s.generate_button.description == "Yes, generate again · 0.62899 credits"
    assert s.generate_button.button_style == "warning"
    clock.now += 1.0
    s.click_generate()  # confirmed
    assert len(session.ledger.records()) == 2
    assert s.generate_button.description == "Generate · 0.62899 credits"
    assert s.generate_button.button_style == "primary"
    assert "You started" not in _text(s.message.value)
    clock.now += 10  # a later click is a plain click
    s.click_generate()
    assert len(session.ledger.records()) == 3


def test_ctrl_enter_in_the_prompt_generates_through_the_guard(session: imgkit.Session) -> None:
    clock = _Clock()
    s = Studio(quality="low", clock=clock)
    keys = s.ui.shortcuts
    keys._on_message(keys, {"kind": "generate"}, [])  # what Ctrl/Cmd+Enter sends
    assert len(session.ledger.records()) == 1
    keys._on_message(keys, {"kind": "generate"}, [])
    assert len(session.ledger.records()) == 1  # a second press at once asks first
    assert "You started a run" in _text(s.message.value)


# --- progress and cancel -----------------------------------------------------------------


@pytest.mark.anyio
async def test_cancel_stops_following_and_records_it(session: imgkit.Session) -> None:
    s = Studio(prompt="a long one [[seconds:6]]", quality="low")
    assert s.cancel() is False  # nothing in flight
    task = s.generate()
    assert task is not None
    assert s.preview.cancel.layout.display is None
    assert "elapsed" in _text(s.preview.timing.value)
    for _ in range(200):  # until the service has the task
        await asyncio.sleep(0.02)
        rows = session.ledger.records()
        if rows and rows[0].task_id is not None:
            break
    assert s.cancel() is True
    with pytest.raises(asyncio.CancelledError):
        await task
    record = session.ledger.records()[0]
    assert "cancelled-by-user" in record.tags
    assert not record.terminal
    assert "may still finish" in (record.notes or "")
    message = _text(s.message.value)
    assert message.startswith(f"Cancelled run {record.run_id[-8:]}")
    assert "may still finish it and bill it" in message
    assert s.preview.cancel.layout.display == "none"
    assert "cancelled" in _text(s.preview.header.value)
    assert s.preview.timing.value == ""
    s.refresh_history()
    card = _text(s.history.children[0].children[1].children[0].value)
    assert "cancelled" in card
    assert _text(s.counter.value) == "0 running · 0 completed · 1 interrupted"
    resumed = s.resume()  # the service finished it: Resume fetches it without resubmitting
    assert resumed is not None
    assert [r.status for r in await resumed] == ["completed"]


# --- history -----------------------------------------------------------------------------


def test_cards_tell_runs_apart_and_the_shown_one_is_marked(session: imgkit.Session) -> None:
    s = Studio(quality="low", confirm_within=0)
    s.generate()
    s.generate()
    first, second = s.results
    cards = s.history.children
    assert first.run_id[-8:] in _text(cards[1].children[1].children[0].value)
    assert second.run_id[-8:] in _text(cards[0].children[1].children[0].value)
    assert cards[0]._dom_classes.count("imgkit-card-shown") == 1  # the latest is in the preview
    assert "imgkit-card-shown" not in cards[1]._dom_classes
    cards[1].children[2].children[0].click()  # Show the older run
    assert "imgkit-card-shown" in cards[1]._dom_classes
    assert "imgkit-card-shown" not in cards[0]._dom_classes
    assert s.preview.gallery.key == first.run_id


def test_no_image_bytes_in_the_widget_state(session: imgkit.Session) -> None:
    s = Studio(quality="low", n=2)
    s.add_references(_png())
    s.generate()
    s.generate()

    def tree(widget: Any) -> Iterator[Any]:
        yield widget
        for child in getattr(widget, "children", ()):
            yield from tree(child)

    chips = {id(c.children[0].children[0]) for c in s.references.children}
    held = [
        (type(widget).__name__, name)
        for widget in tree(s.widget)
        if id(widget) not in chips
        for name, value in widget.get_state().items()
        if isinstance(value, bytes | memoryview)
    ]
    # History thumbnails and results travel on demand; only reference chips keep a small JPEG.
    assert held == []


def test_a_new_form_shows_the_latest_run(session: imgkit.Session) -> None:
    Studio(prompt="before the restart", quality="low").generate()
    again = Studio()  # a kernel restart builds the form anew over the same ledger
    assert "before the restart" in _text(again.preview.header.value)
    assert len(again.preview.gallery.items) == 1
    assert "imgkit-card-shown" in again.history.children[0]._dom_classes


# --- show code ---------------------------------------------------------------------------


def _call_of(code: str) -> tuple[str, dict[str, Any]]:
    """The prompt and keyword arguments of the imgkit.generate(...) call in ``code``."""
    import ast

    calls = [
        node for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "imgkit.generate"
    ]
    assert len(calls) == 1
    call = calls[0]
    return ast.literal_eval(call.args[0]), {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}


def test_show_code_is_the_forms_request(session: imgkit.Session, tmp_path: Path) -> None:
    local = tmp_path / "sketch.png"
    local.write_bytes(_png())
    s = Studio(prompt='A "quoted" kite\nover dunes', quality="high", size="3:2", n=2)
    s.add_references(str(local), "https://example.com/ref.jpg")
    s.upload.receive({"name": "pasted image 1.png", "content": _png("blue")})
    code = s.code()
    assert code in _text(s.ui.code.value).replace("&quot;", '"')
    assert "Show code" in s.ui.code.value
    prompt, kwargs = _call_of(code)
    pasted = imgkit.request.ImageRequest.build(prompt, **kwargs)
    form = s.request()
    assert (pasted.prompt, pasted.model, pasted.size, pasted.quality, pasted.n) == (
        form.prompt, form.model, form.size, form.quality, form.n,
    )
    assert kwargs["images"] == [str(local), "https://example.com/ref.jpg"]
    assert "pasted image 1.png" in code  # named; its bytes cannot be pasted
    compile(code, "<show code>", "exec")


def test_show_code_executed_makes_the_same_run(session: imgkit.Session, tmp_path: Path) -> None:
    local = tmp_path / "sketch.png"
    local.write_bytes(_png())
    s = Studio(prompt="A heron in reeds, ink", quality="low", size="2:3", n=2)
    s.add_references(str(local))
    namespace: dict[str, Any] = {}
    exec(compile(s.code(), "<show code>", "exec"), namespace)  # as pasted into a cell
    record = namespace["result"].record
    form = s.request()
    assert (record.prompt, record.model, record.size, record.quality, record.n, record.mode) == (
        form.prompt, form.model, form.size, form.quality, form.n, form.mode,
    )
    assert len(record.reference_images) == 1


# --- the studio adapts to the model (issue 15, item 8) -----------------------------------


def _rgba(size: tuple[int, int], alpha: bool = True) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA" if alpha else "RGB", size, (0, 0, 0, 0) if alpha else (0, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def test_gpt_image_2_shows_tier_ratio_custom_size_and_background_and_the_price_follows(
    session: imgkit.Session,
) -> None:
    s = Studio(quality="low")
    assert s.ui.resolution_row.layout.display == "none"  # gpt-image-1 has no tiers
    assert s.ui.background_row.layout.display == "none"  # nor a background on the gateway
    s.model.value = "gpt-image-2"
    assert s.ui.resolution_row.layout.display is None
    assert [v for _, v in s.resolution.options] == ["1K", "2K", "4K"]
    assert [v for _, v in s.background.options] == ["", "opaque", "transparent"]  # auto is OpenAI's only
    assert s.ui.previews_row.layout.display == "none"  # the gateway does not stream
    s.size.value = "16:9"
    prices = set()
    for tier in ("1K", "2K", "4K"):
        s.resolution.value = tier
        est = imgkit.estimate(model="gpt-image-2", size="16:9", resolution=tier, quality="low")
        assert s.estimate() == est
        assert f"{est.credits:.10g} credits" in _text(s.price.value)
        assert s.generate_button.description == f"Generate · {est.credits:.10g} credits"
        pixels = MODELS["gpt-image-2"].pixel_table[tier]["16:9"]
        assert pixels.replace("x", "×") in _text(s.preview.frame.value)  # the empty preview's frame
        assert f"{pixels.replace('x', '×')} at {tier}" in dict(zip([v for _, v in s.size.options], s.size.tooltips,
                                                                    strict=True))["16:9"]
        prices.add(est.credits)
    assert len(prices) == 3  # each tier has its own price
    s.background.value = "transparent"
    assert s.params()["background"] == "transparent"
    assert "background='transparent'" in _text(s.ui.code.value)

    # A custom WxH: the tier buttons step aside (the tier is inferred for billing).
    s.size.value = "custom"
    assert s.ui.custom_size_row.layout.display is None
    assert s.resolution.disabled
    s.custom_size.value = "2000x1000"  # 1000 is not a multiple of 16
    assert s.generate_button.disabled
    assert "size" in _text(s.message.value).lower()
    assert s.generate() is None
    s.custom_size.value = "2048 × 1152"
    assert not s.generate_button.disabled
    assert s.params()["size"] == "2048x1152" and "resolution" not in s.params()
    assert s.estimate() == imgkit.estimate(model="gpt-image-2", size="2048x1152", quality="low")
    assert "2048×1152" in _text(s.preview.frame.value)
    shown = s.estimate()
    s.generate_button.click()
    record = s.results[-1].record
    assert (record.status, record.size, record.background) == ("completed", "2048x1152", "transparent")
    with Image.open(s.results[-1].paths[0]) as im:  # the sandbox drew it with real alpha
        assert im.mode == "RGBA" and im.getextrema()[3][0] < 255
    assert (record.est_credits, record.price_sheet) == (shown.credits, shown.sheet)

    # Use puts a run's settings back, custom size included.
    s.model.value = "gpt-image-1"
    s.use(record)
    assert (s.model.value, s.size.value, s.custom_size.value, s.background.value) == (
        "gpt-image-2", "custom", "2048x1152", "transparent",
    )


def test_images_out_of_range_are_refused_visibly_not_clamped(session: imgkit.Session) -> None:
    s = Studio()
    s.n.value = 12
    assert s.n.value == 12  # what was typed stays
    assert "1 to 10 images" in _text(s.n_note.value)
    assert s.generate_button.disabled
    assert "number of images" in _text(s.message.value)
    assert s.generate() is None
    s.n.value = 0
    assert "1 to 10 images" in _text(s.n_note.value)
    s.n.value = 10
    assert s.n_note.value == ""
    assert not s.generate_button.disabled
    assert session.ledger.count() == 0


def test_a_mask_for_an_edit_is_checked_before_sending(session: imgkit.Session, data_dir: Path) -> None:
    sent: list[dict[str, Any]] = []

    class Recording(imgkit.Session):
        async def agenerate(self, prompt: str, **options: Any) -> Any:
            sent.append(options)
            return await super().agenerate(prompt, **options)

    recording = Recording(api_key=TEST_KEY, base_url=session.base_url, data_dir=data_dir, poll=FAST_POLL)
    s = Studio(recording, model="gpt-image-2", size="1:1", quality="low")
    assert s.ui.mask_row.layout.display == "none"  # a mask needs references
    s.add_references(_png(size=(64, 48)))
    assert s.ui.mask_row.layout.display is None
    refused = s.set_mask(_rgba((64, 48), alpha=False))
    assert "alpha channel" in refused and "alpha channel" in _text(s.mask_message.value)
    assert s.mask is None
    refused = s.set_mask(_rgba((32, 32)))
    assert "64x48" in refused
    s.mask_upload.receive({"name": "sky-mask.png", "type": "image/png", "content": _rgba((64, 48))})
    assert s.mask is not None and s.mask_message.value == ""
    assert "sky-mask.png" in _text(s.ui.mask_chip.children[0].children[1].value)
    assert "mask" in s.params()
    s.generate_button.click()
    assert s.results[-1].status == "completed"
    assert sent[-1]["mask"] is s.mask  # the checked mask went with the run
    # Removing the references drops the mask from the request (an edit needs them).
    s.clear_references()
    assert s.ui.mask_row.layout.display == "none"
    assert "mask" not in s.params()
    s.model.value = "gpt-image-1"  # the gateway takes no mask for gpt-image-1
    s.add_references(_png(size=(64, 48)))
    assert s.ui.mask_row.layout.display == "none"


def test_live_previews_when_the_first_provider_streams(data_dir: Path, sandbox_url: str) -> None:
    imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=[
        # An OpenAI-compatible endpoint that serves gpt-image-1 alone (as this sandbox does).
        {"name": "openai", "kind": "openai", "api_key": "sk-openai-sandbox-0123456789",
         "base_url": f"{sandbox_url}/openai/v1", "models": ["gpt-image-1"]},
    ])
    s = Studio(quality="low")
    assert s.provider_kind() == "openai"
    assert s.ui.previews_row.layout.display is None
    assert [v for _, v in s.previews.options] == [0, 1, 2, 3]
    assert [v for _, v in s.background.options] == ["", "opaque", "transparent", "auto"]  # OpenAI's own auto
    assert "previews" not in s.params()  # off by default
    s.previews.value = 2
    assert s.params()["previews"] == 2
    shown = s.estimate()
    assert shown == imgkit.estimate(quality="low")
    assert "previews=2" in _text(s.ui.code.value)
    s.generate_button.click()
    record = s.results[-1].record
    assert record.status == "completed"
    assert record.partial_images == 2  # what the service streamed, as the ledger keeps it
    assert s.previews_received == 2  # each partial image reached the preview as it came
    assert (record.est_credits, record.price_sheet) == (shown.credits, shown.sheet)
    # The final image replaces the partial one; no image bytes sit in the widget state.
    assert s.preview.partial.layout.display == "none"
    assert len(s.preview.gallery.items) == 1
    assert all(b"PNG" not in repr(v).encode() for v in s.preview.partial.get_state().values())

    s.model.value = "gpt-image-2"  # this OpenAI endpoint does not serve it: nothing streams
    assert s.ui.previews_row.layout.display == "none"
    assert "previews" not in s.params()


# --- history: star, hide, filter -----------------------------------------------------------


def _card_prompts(s: StudioApp) -> list[str]:
    return [card.record.prompt for card in s._cards.values() if card.widget in s.history.children
            and card.record is not None]


def test_star_hide_and_filter_the_history_and_they_survive_a_restart(session: imgkit.Session) -> None:
    s = Studio(quality="low")
    for prompt in ("a red fox", "an owl at night", "a fox cub"):
        s.prompt.value = prompt
        s.generate()
    fox, owl, cub = (r.run_id for r in sorted(session.ledger.records(), key=lambda r: r.created_at))
    assert len(s.history.children) == 3

    # The card's star button stars the run in the ledger (a tag), and shows it.
    card = s._cards[fox]
    assert card.star is not None and card.star.description == "☆"
    card.star.click()
    assert "starred" in session.ledger.get(fox).tags
    assert card.star.description == "★"
    s.hide(owl)
    assert "hidden" in session.ledger.get(owl).tags
    assert len(s.history.children) == 2  # hidden runs leave the list...
    assert "1 hidden" in _text(s.ui.filter_summary.value)
    s.show_hidden.value = True
    assert len(s.history.children) == 3  # ...and come back on request
    assert s._cards[owl].hide is not None and s._cards[owl].hide.description == "Unhide"
    s.show_hidden.value = False

    s.filter_text.value = "FOX"
    assert sorted(_card_prompts(s)) == ["a fox cub", "a red fox"]
    assert "2 of 2 runs match" in _text(s.ui.filter_summary.value)
    s.starred_only.value = True
    assert _card_prompts(s) == ["a red fox"]
    s.filter_text.value = ""
    assert _card_prompts(s) == ["a red fox"]

    # A new form (after a kernel restart, say) reads the same tags from the ledger.
    again = Studio()
    assert len(again.history.children) == 2  # the owl stays hidden
    # The shown card (the latest run) is highlighted.
    shown = [c for c in again._cards.values() if "imgkit-card-shown" in c.widget._dom_classes]
    assert [c.run_id for c in shown] == [cub]
    again.starred_only.value = True
    assert _card_prompts(again) == ["a red fox"]
    # Toggling twice puts the tags back; other tags are kept.
    again.star(fox)
    assert "starred" not in session.ledger.get(fox).tags
    again.hide(owl, on=False)
    assert session.ledger.get(owl).tags == ()


def test_the_saved_output_carries_a_small_static_snapshot(session: imgkit.Session) -> None:
    s = Studio(quality="low", size="3:2")
    assert "No runs yet." in s._repr_mimebundle_()["text/html"]
    for prompt in ("a red fox", "a lighthouse"):
        s.prompt.value = prompt
        s.generate()
    s.hide(session.ledger.records(newest_first=True)[0].run_id)
    bundle = Studio()._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # the live form first
    html = bundle["text/html"]
    assert "imgkit-snapshot" in html and "<script" not in html
    assert html.count('src="data:image/jpeg;base64,') == 1  # the hidden run is left out
    assert "a red fox" in html and "a lighthouse" not in html
    assert len(html.encode()) < 20 * 1024


def test_a_saved_notebook_renders_the_snapshot_without_a_kernel(
    session: imgkit.Session, sandbox_url: str, data_dir: Path, tmp_path: Path
) -> None:
    """Executed by a real kernel and saved as JupyterLab saves by default (no widget state),
    then rendered to HTML as a static viewer would: the snapshot is there, not the form."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    imgkit.generate("a snapshot fox", quality="low")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import imgkit\n"
            f"imgkit.configure(api_key={TEST_KEY!r}, base_url={sandbox_url!r}, data_dir={str(data_dir)!r})\n"
            "imgkit.studio()"
        )
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=False).execute()
    saved = tmp_path / "studio.ipynb"
    nbformat.write(nb, saved)
    assert saved.stat().st_size < 60 * 1024
    outputs = nb.cells[0].outputs
    assert "application/vnd.jupyter.widget-view+json" in outputs[0]["data"]  # the live form...
    assert outputs[0]["data"]["text/plain"].startswith("<imgkit.Studio ")
    assert list(outputs[1]["data"]) == ["text/html"]  # ...and the snapshot as an output of its own
    assert outputs[1]["data"]["text/html"].startswith('<div class="imgkit-static">')
    html, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(saved, as_version=4))
    assert html.count('class="imgkit-snapshot"') == 1
    assert "a snapshot fox" in html
    assert 'src="data:image/jpeg;base64,' in html
    assert "Error displaying widget" not in html


def test_the_models_options_can_be_given_when_the_form_is_built(session: imgkit.Session) -> None:
    s = Studio(model="gpt-image-2", size="16:9", resolution="2k", background="transparent")
    assert (s.resolution.value, s.background.value) == ("2K", "transparent")
    assert s.params()["resolution"] == "2K" and s.params()["background"] == "transparent"
    assert s.estimate() == imgkit.estimate(model="gpt-image-2", size="16:9", resolution="2K")
    with pytest.raises(imgkit.ValidationError, match="resolution"):
        Studio(model="gpt-image-2", size="auto", resolution="2K")  # a tier needs a ratio size
    with pytest.raises(imgkit.ValidationError, match="page_budget"):
        Studio(page_budget=-1)
