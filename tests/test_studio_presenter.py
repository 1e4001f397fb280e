"""The studio's presenter: what the form says, from plain session values, with no widget."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imgkit.errors import ValidationError
from imgkit.pricing import estimate, get_sheet
from imgkit.providers.base import Balance
from imgkit.request import MB, MODELS, RunRecord
from imgkit.widgets import _present as present
from imgkit.widgets._present import Tally


def _record(status: str = "completed", **changes: object) -> RunRecord:
    base = RunRecord(
        run_id=f"run-{status}",
        provider="gateway",
        model="gpt-image-1",
        prompt="a fox",
        size="1536x1024",
        quality="low",
        n=2,
        status=status,
    )
    return base.replace(**changes)


def test_the_presenter_imports_no_widgets() -> None:
    code = "import sys, imgkit.widgets._present; print([m for m in ('ipywidgets', 'IPython') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- numbers and choices -----------------------------------------------------------------


@pytest.mark.parametrize(("credits", "text"), [(13.90484, "13.90484"), (2.4192, "2.4192"), (3.0, "3"), (0.5808, "0.5808")])
def test_credits_read_as_the_sheets_state_them(credits: float, text: str) -> None:
    assert present.fmt_credits(credits) == text


@pytest.mark.parametrize(
    ("size", "label"),
    [("1536x1024", "Landscape 3:2 · 1536×1024"), ("1024x1024", "Square 1:1 · 1024×1024"), ("auto", "auto"),
     ("800x600", "800×600")],
)
def test_size_labels(size: str, label: str) -> None:
    assert present.size_label(size) == label


@pytest.mark.parametrize(("size", "text"), [(2 * MB, "2.0 MB"), (3 * 1024, "3.0 KB"), (10, "0.1 KB"), (MB, "1.0 MB")])
def test_human_sizes(size: int, text: str) -> None:
    assert present.human_size(size) == text


def test_size_options_per_model() -> None:
    assert present.size_options(MODELS["gpt-image-1"]) == [
        ("Square 1:1 · 1024×1024", "1024x1024"),
        ("Portrait 2:3 · 1024×1536", "1024x1536"),
        ("Landscape 3:2 · 1536×1024", "1536x1024"),
    ]
    ratios = present.size_options(MODELS["gpt-image-2"])
    assert ratios[0] == ("auto", "auto")
    # Fifteen short ratio buttons (shape and pixels on hover), then the custom WxH field.
    assert [v for _, v in ratios[1:-1]] == list(MODELS["gpt-image-2"].ratios)
    assert ("16:9", "16:9") in ratios
    assert ratios[-1] == ("Custom W×H", present.CUSTOM_SIZE)
    beta = present.size_options(MODELS["gpt-image-2-beta"])
    assert present.CUSTOM_SIZE not in [v for _, v in beta]  # the beta takes no WxH


def test_size_tooltips_give_the_pixels_of_the_chosen_tier() -> None:
    profile = MODELS["gpt-image-2"]
    values = [v for _, v in present.size_options(profile)]
    for tier in ("1K", "2K", "4K"):
        tips = dict(zip(values, present.size_tooltips(profile, tier), strict=True))
        pixels = profile.pixel_table[tier]["16:9"].replace("x", "×")
        assert tips["16:9"] == f"Landscape · {pixels} at {tier}"
        assert tips["9:16"].startswith("Portrait · ")
        assert tips["1:1"].startswith("Square · ")
    assert "multiples of 16" in dict(zip(values, present.size_tooltips(profile), strict=True))["custom"]


def test_model_controls_follow_the_profile_and_the_first_provider() -> None:
    two, beta, one = MODELS["gpt-image-2"], MODELS["gpt-image-2-beta"], MODELS["gpt-image-1"]
    assert present.resolution_options(two) == [("1K", "1K"), ("2K", "2K"), ("4K", "4K")]
    assert present.resolution_options(beta) == [("1K", "1K")]
    assert present.resolution_options(one) == []
    # The gateway carries opaque and transparent for gpt-image-2; auto is OpenAI's only.
    assert present.background_options(two, "gateway") == [
        ("default", ""), ("opaque", "opaque"), ("transparent", "transparent"),
    ]
    assert [v for _, v in present.background_options(two, "openai")] == ["", "opaque", "transparent", "auto"]
    assert present.background_options(one, "gateway") == []  # not a gateway field for gpt-image-1
    assert present.background_options(beta, "gateway") == []
    # Previews stream on OpenAI-kind providers only, 0-3.
    assert present.preview_options(two, "openai") == [("off", 0), ("1", 1), ("2", 2), ("3", 3)]
    assert present.preview_options(two, "gateway") == []
    assert present.preview_options(beta, "openai") == []
    assert present.masks_allowed(two, "gateway") and present.masks_allowed(one, "openai")
    assert not present.masks_allowed(one, "gateway") and not present.masks_allowed(beta, "gateway")


@pytest.mark.parametrize(("n", "max_n", "text"), [
    (12, 10, "1 to 10 images"), (0, 10, "1 to 10 images"), (-3, 10, "1 to 10 images"),
    (2, 1, "1 image only for this model"), (10, 10, ""), (1, 1, ""),
])
def test_images_out_of_range_are_named_not_clamped(n: int, max_n: int, text: str) -> None:
    shown = present.images_problem(n, max_n)
    assert (text in shown) if text else shown == ""
    if text:
        assert "imgkit-problem" in shown


def test_the_aspect_frame_has_the_shape_of_the_size() -> None:
    two = MODELS["gpt-image-2"]
    assert present.frame_size(two, "16:9", "2K") == tuple(map(int, two.pixel_table["2K"]["16:9"].split("x")))
    assert present.frame_size(two, "9:16", None) == tuple(map(int, two.pixel_table["1K"]["9:16"].split("x")))
    assert present.frame_size(two, "2048x1152") == (2048, 1152)
    assert present.frame_size(two, "auto") is None
    assert present.frame_size(two, "nonsense") is None
    assert present.frame_size(MODELS["gpt-image-1"], "1536x1024") == (1536, 1024)
    frame = present.aspect_frame("1536x1024", (1536, 1024))
    assert 'data-ratio="1536 / 1024"' in frame and "aspect-ratio:1536 / 1024" in frame
    assert "1536×1024" in frame
    assert "auto" in present.aspect_frame("auto", None)


def test_quality_options_name_the_multiplier_on_a_per_image_sheet_only() -> None:
    profile = MODELS["gpt-image-1"]
    # Named for people (issue 16); the multiplier is the tooltip's detail, per-image sheets only.
    named = [("low · fastest", "low"), ("medium", "medium"), ("high · best", "high")]
    assert present.quality_options(profile, get_sheet("evolink-table-2026-11")) == named
    assert present.quality_options(profile, get_sheet("openai-tokens-2026-11")) == named
    assert present.quality_tooltips(profile, get_sheet("evolink-table-2026-11")) == [
        "×0.26 the base price; fastest, cheapest",
        "×1 the base price; imgkit's default",
        "×3.91 the base price; slowest, best (the API's own default)",
    ]
    assert present.quality_tooltips(profile, get_sheet("openai-tokens-2026-11")) == list(present.QUALITY_TOOLTIPS)
    assert len(present.QUALITY_TOOLTIPS) == len(profile.qualities)


# --- messages ----------------------------------------------------------------------------


def test_prompt_counter_turns_red_past_the_limit() -> None:
    fine = present.prompt_count(12, 2000)
    assert "12 / 2000 characters</span>" in fine
    assert present.RED not in fine
    over = present.prompt_count(2001, 2000)
    assert present.RED in over
    assert "2001 / 2000 characters · 1 over the limit" in over


@pytest.mark.parametrize(
    ("mode", "count", "text"),
    [
        ("text-to-image", 0, "Mode: text-to-image"),
        ("image-to-image", 1, "Mode: image-to-image (1 reference image)"),
        ("image-to-image", 2, "Mode: image-to-image (2 reference images)"),
    ],
)
def test_mode_text(mode: str, count: int, text: str) -> None:
    html = present.mode_text(mode, count)
    assert html.replace('<b class="imgkit-mode-name">', "").replace("</b>", "") == text


def test_problems_are_red_and_escaped() -> None:
    html = present.problem("prompt='<script>' is not allowed")
    assert html.startswith('<span class="imgkit-problem"')
    assert present.RED in html
    assert "&lt;script&gt;" in html
    assert "<script>" not in html
    assert present.cannot_generate("x") == "Cannot generate yet: x"
    assert present.not_sent("over budget") == "Nothing was sent: over budget"


def test_reference_refusals_name_the_image_and_what_it_must_be() -> None:
    profile = MODELS["gpt-image-1"]
    error = ValidationError("images[0]", "fake.png", "a JPEG/PNG/WEBP image by its content")
    assert present.invalid_reference(error) == "it must be a JPEG/PNG/WEBP image by its content"
    assert present.refusal("fake.png", 26, present.invalid_reference(error)) == (
        "'fake.png' (0.1 KB) was not added: it must be a JPEG/PNG/WEBP image by its content"
    )
    assert present.refusal("/tmp/a.png", None, "x") == "'/tmp/a.png' was not added: x"
    assert present.too_many_references(profile) == (
        "at most 16 reference images per run (gpt-image-1); remove one first"
    )
    assert present.over_model_limit(profile, 18) == "gpt-image-1 takes at most 16 reference images; remove 2"
    assert present.never_uploaded("sketch.png") == "'sketch.png' was a local image that was never uploaded; add it again"
    assert present.refused_references([]) == ""
    block = present.refused_references(["one <a>", "two"])
    assert block.startswith('<div class="imgkit-refused">')
    assert block.count('class="imgkit-problem"') == 2
    assert "one &lt;a&gt;" in block


def test_reference_note_states_the_models_limits_and_the_upload_limit() -> None:
    note = present.reference_note(MODELS["gpt-image-1"], 10 * MB)
    assert "Up to 16 images, 50 MB each; JPEG, JPG, PNG, WEBP" in note
    assert "over 10 MiB" in note
    assert "local path" in note


# --- price and banner --------------------------------------------------------------------


def test_price_on_a_per_image_sheet_spells_out_the_formula() -> None:
    est = estimate(quality="medium", size="1536x1024", n=2, sheet="evolink-table-2026-11")
    html = present.price(est, get_sheet(est.sheet))
    assert f"<b>{present.fmt_credits(est.credits)} credits</b> · ${est.usd:.4f} · ¥{est.cny:.4f}" in html
    assert "base × quality × size × n = " in html
    assert f"× 2 = {present.fmt_credits(est.credits)} credits" in html
    assert "price sheet <code>evolink-table-2026-11</code>" in html


def test_price_on_a_per_token_sheet_names_no_multipliers() -> None:
    est = estimate(quality="low", sheet="openai-tokens-2026-11")
    html = present.price(est, get_sheet(est.sheet))
    assert "base × quality" not in html
    assert "output tokens" in html
    assert f"= {present.fmt_credits(est.credits)} credits" in html


def test_price_warnings() -> None:
    assert present.price_warning(2.4192, warn_credits=20.0) == ""
    assert present.price_warning(2.4192, warn_credits=None, remaining=None, balance=None) == ""
    over = present.price_warning(27.5, warn_credits=20.0)
    assert "⚠ This run costs 27.5 credits: above the per-run threshold of 20 credits" in over
    budget = present.price_warning(4.8384, warn_credits=20.0, remaining=3.0)
    assert "more than the remaining budget (3 credits left)" in budget
    poor = present.price_warning(4.8384, warn_credits=None, balance=Balance(remaining_credits=1.5))
    assert "more than the balance the service reports (1.5 credits)" in poor
    assert present.price_warning(4.8384, warn_credits=None, balance=Balance(0.0, unlimited=True)) == ""
    both = present.price_warning(30.0, warn_credits=20.0, remaining=3.0)
    assert "threshold of 20 credits; more than the remaining budget" in both


def test_no_estimate_is_escaped() -> None:
    assert present.no_estimate("no <price>") == (
        f'<span style="color:{present.ORANGE}">no estimate: no &lt;price&gt;</span>'
    )


def _banner(**changes: object) -> str:
    values: dict[str, object] = {
        "sandbox": False,
        "base_url": "https://api.evolink.ai",
        "key_hint": "CRET",
        "model": "gpt-image-1",
        "sheet_name": "evolink-table-2026-11",
        "sheet_date": "2026-11-24",
        "sheet_source": "the <gateway>'s page",
    }
    values.update(changes)
    return present.banner(**values)  # type: ignore[arg-type]


def test_banner_live_and_sandbox() -> None:
    live = _banner()
    assert "LIVE</b> https://api.evolink.ai · key …CRET" in live
    assert "model <b>gpt-image-1</b>" in live
    assert '<code title="the &lt;gateway&gt;&#x27;s page">evolink-table-2026-11</code> (2026-11-24)' in live
    assert "balance" not in live
    assert "budget" not in live
    assert "key …" not in _banner(key_hint=None)
    sandbox = _banner(sandbox=True)
    assert "SANDBOX</b> placeholder images, no key, nothing is charged" in sandbox
    assert "api.evolink.ai" not in sandbox


def test_banner_balance_and_budget() -> None:
    assert 'balance <b class="imgkit-balance">120.5 credits</b>' in _banner(balance=Balance(120.5))
    assert "balance <b>unlimited</b>" in _banner(balance=Balance(0.0, unlimited=True))
    assert "balance unavailable (APIError)" in _banner(balance_note="balance unavailable (APIError)")
    assert "budget <b>0.5808 credits</b> left" in _banner(remaining=0.5808)


# --- history -----------------------------------------------------------------------------


def test_a_run_is_interrupted_when_unfinished_and_followed_by_nobody() -> None:
    pending = _record("pending")
    assert present.is_interrupted(pending, in_flight=frozenset())
    assert not present.is_interrupted(pending, in_flight={"run-pending"})
    assert not present.is_interrupted(_record("completed"), in_flight=frozenset())
    assert not present.is_interrupted(_record("unknown"), in_flight=frozenset())


def test_tally_counts_by_state() -> None:
    records = [
        _record("completed", run_id="a"),
        _record("completed", run_id="b"),
        _record("failed", run_id="c"),
        _record("processing", run_id="d"),
        _record("pending", run_id="e"),
        _record("unknown", run_id="f"),
    ]
    tally = Tally.of(records, starting=1, in_flight={"d"})
    assert tally == Tally(running=2, completed=2, failed=1, unknown=1, interrupted=1)
    assert tally.text == "2 running · 2 completed · 1 failed · 1 unknown · 1 interrupted"
    assert tally.as_dict() == {"running": 2, "completed": 2, "failed": 1, "unknown": 1, "interrupted": 1}
    assert Tally().text == "0 running · 0 completed"
    assert Tally.of([], starting=1).text == "1 running · 0 completed"
    assert present.counter(Tally(completed=4, running=1)) == (
        '<span class="imgkit-counts" style="font-weight:600">1 running · 4 completed</span>'
    )


# --- cards -------------------------------------------------------------------------------


def test_cost_text() -> None:
    assert present.cost_text(_record()) == "no estimate"
    priced = _record(est_credits=0.92462, est_usd=0.0128, est_cny=0.0912)
    assert present.cost_text(priced) == "0.92462 credits ($0.0128 · ¥0.0912)"
    assert present.cost_text(priced.replace(credits_reserved=1.0)) == "0.92462 credits ($0.0128 · ¥0.0912) · reserved 1"
    charged = priced.replace(credits_reserved=1.0, credits_charged=0.92462)
    assert present.cost_text(charged).endswith(" · charged 0.92462")


def test_provider_text_names_the_providers_passed_over() -> None:
    assert present.provider_text(_record()) == "via gateway"
    failed_over = _record(provider="pricey", providers_tried=({"provider": "cheap", "reason": "http_503"},
                                                             {"provider": "pricey", "reason": "ok"}))
    assert present.provider_text(failed_over) == "via pricey (after cheap: http_503)"
    assert present.provider_text(_record(provider="<b>")) == "via &lt;b&gt;"


@pytest.mark.parametrize(
    ("status", "progress", "text", "color"),
    [
        ("processing", 40, "● processing 40%", "#1565c0"),
        ("processing", 0, "● processing", "#1565c0"),
        ("pending", 40, "● pending", "#1565c0"),
        ("completed", 100, "● completed", "#2e7d32"),
        ("failed", None, "● failed", present.RED),
        ("interrupted", None, "● interrupted", present.ORANGE),
    ],
)
def test_status_badges(status: str, progress: int | None, text: str, color: str) -> None:
    badge = present.status_badge(status, progress)
    assert f"color:{color}" in badge
    assert f"imgkit-status-{status}" in badge
    assert badge.endswith(f">{text}</span>")


def test_errors_are_described_with_code_hint_and_the_services_words() -> None:
    failed = _record("failed", error_code="content_policy_violation", error_message="Content policy violation.\nmore")
    text = present.describe_error(failed)
    assert text.startswith("<code>content_policy_violation</code>: blocked by safety filters")
    assert "The service said: Content policy violation.</span>" in text
    assert "more" not in text
    local = present.describe_error(_record("failed", error_code="result_expired"))
    assert "result links expire after 24 h" in local
    assert present.describe_error(_record("failed")).startswith("<code>unknown_error</code>")
    unknown = present.describe_error(_record("unknown", notes="the connection dropped"))
    assert "<b>unknown outcome</b>: the connection dropped" in unknown
    assert "imgkit.resume()" in unknown


def test_card_and_preview_lines() -> None:
    record = _record(est_credits=0.92462, est_usd=0.0128, est_cny=0.0912, submitted_at=100.0,
                     completed_at=103.14, mode="image-to-image")
    assert present.card_details(record) == (
        "low · Landscape 3:2 · 1536×1024 · n=2 · image-to-image · 0.92462 credits ($0.0128 · ¥0.0912)"
        " · via gateway · 3.1 s<br>"
    )
    assert present.preview_details(record) == (
        "low · Landscape 3:2 · 1536×1024 · n=2 · 0.92462 credits ($0.0128 · ¥0.0912) · via gateway"
        " · latency 3.1 s<br>"
    )
    assert present.card_details(record.replace(completed_at=None, mode="text-to-image")).endswith("via gateway<br>")


def test_titles_shorten_long_prompts_and_escape_them() -> None:
    long = "<" + "x" * 200
    title = present.title_html(long, "STATUS", "DETAILS<br>")
    assert f'title="{"&lt;" + "x" * 200}"' in title
    assert "&lt;" + "x" * 136 + "…</b>" in title
    assert title.endswith('<span style="font-size:90%">DETAILS<br>STATUS</span></div>')


# --- the drop zone and plain words -------------------------------------------------------


@pytest.mark.parametrize(("count", "label"), [(0, "Add images"), (1, "Add images (1)"), (16, "Add images (16)")])
def test_the_picker_counts_the_references_in_the_form(count: int, label: str) -> None:
    assert present.upload_label(count) == label


def test_the_picker_tooltip_says_how_many_more_fit() -> None:
    profile = MODELS["gpt-image-1"]
    assert present.upload_tooltip(profile, 0) == "room for 16 more (up to 16, 50 MB each)"
    assert present.upload_tooltip(profile, 2) == "2 reference images added; room for 14 more (up to 16, 50 MB each)"
    assert present.upload_tooltip(profile, 1).startswith("1 reference image added;")


def test_small_files_are_sized_in_kilobytes_not_zero_megabytes() -> None:
    assert present.refusal("a.png", 34 * 1024, "x") == "'a.png' (34.0 KB) was not added: x"
    assert "0.0 MB" not in present.refusal("a.png", 26, "x")


def test_a_missing_file_is_named_plainly() -> None:
    error = ValidationError("images[0]", "/home/me/sketch.png", "an existing image file, or a URL")
    text = present.reference_problem("/home/me/sketch.png", None, error)
    assert text.startswith("File not found: sketch.png")
    other = ValidationError("images[0]", "x.png", "a JPEG/PNG/WEBP image by its content")
    assert present.reference_problem("x.png", 2048, other) == (
        "'x.png' (2.0 KB) was not added: it must be a JPEG/PNG/WEBP image by its content"
    )


def test_form_errors_are_written_for_people() -> None:
    assert present.cannot_generate(ValidationError("prompt", "", "a non-empty text")).startswith(
        "Write a prompt first"
    )
    too_long = ValidationError("prompt", "x" * 2001, "at most 2000 characters", hint="it has 2001")
    assert present.cannot_generate(too_long) == "The prompt must be at most 2000 characters (it has 2001)"
    assert present.cannot_generate(ValidationError("n", 12, "1 to 10")) == "The number of images must be 1 to 10"
    assert "is not allowed" not in present.cannot_generate(too_long)


def test_the_lost_upload_note_names_the_server_limit() -> None:
    note = present.lost_upload_note(10 * MB)
    assert 'class="imgkit-lost-name"' in note
    assert "10 MiB" in note
    assert "websocket_max_message_size" in note
    assert present.DROP_HINT.startswith("or drop images here")


def test_the_gallery_line_has_cost_time_provider_and_run() -> None:
    import datetime as dt

    record = RunRecord(
        run_id="run-0123456789abcdef", provider="gateway", model="gpt-image-1", prompt="p", size="1024x1024",
        quality="low", n=1, status="completed", est_credits=0.61, created_at=0.0, submitted_at=0.0,
        completed_at=3.25,
    )
    meta = present.run_meta(record, tz=dt.UTC)
    assert meta.startswith("0.61 credits")
    assert "via gateway" in meta
    assert "00:00:00 · run <code>89abcdef</code>" in meta
    assert present.short_id("run-0123456789abcdef") == "89abcdef"


def test_the_button_and_its_confirmation_name_the_price() -> None:
    assert present.generate_label(1.85) == "Generate · 1.85 credits"
    assert present.generate_label(None) == "Generate"
    assert present.confirm_label(2.4192) == "Yes, generate again · 2.4192 credits"
    text = present.confirm_again(0.83, 2.4192, 4)
    assert "You started a run 0.8 s ago" in text
    assert "within 4 s" in text
    assert "another 2.4192 credits" in text


def test_the_price_names_the_price_of_one_image() -> None:
    est = estimate(quality="medium", size="1536x1024", n=2, sheet="evolink-table-2026-11")
    assert present.per_image(est) == f"{present.fmt_credits(est.per_image_credits)} credits per image"
    assert present.per_image(est) in present.price(est, get_sheet(est.sheet))


def _running(**changes: object) -> RunRecord:
    base = RunRecord(
        run_id="run-1", provider="gateway", model="gpt-image-1", prompt="p", size="1024x1024", quality="low",
        n=1, status="pending", created_at=100.0, submitted_at=101.0, estimated_s=30.0,
    )
    return base.replace(**changes)


def test_progress_says_elapsed_and_what_is_left() -> None:
    assert present.progress_line(_running(), 111.0) == "pending · 11 s elapsed · about 20 s left"
    # Once the service reports progress, the estimate follows it: 40 % in 20 s, 30 s to go.
    line = present.progress_line(_running(status="processing", progress=40), 121.0)
    assert line == "processing 40% · 21 s elapsed · about 30 s left"
    assert present.progress_line(_running(), 200.0) == (
        "pending · 1 min 40 s elapsed · longer than the service's estimate of 30 s"
    )
    assert present.progress_line(_running(estimated_s=None), 111.0) == "pending · 11 s elapsed"
    assert present.progress_line(_running(status="completed"), 111.0) == ""
    assert present.progress_line(None, 10.0, started=7.0) == "starting · 3 s elapsed"
    assert present.time_left(_running(submitted_at=None), 111.0) is None


def test_a_cancelled_run_says_the_service_may_still_bill_it() -> None:
    record = _running(tags=(present.CANCELLED_TAG,))
    assert present.is_cancelled(record)
    assert present.progress_line(record, 111.0) == ""  # no clock for a run nobody follows
    assert not present.is_cancelled(record.replace(status="completed"))
    text = present.cancel_done(record)
    assert "Cancelled run run-1" in text
    assert "may still finish it and bill it" in text


def test_a_card_says_when_and_which_run() -> None:
    import datetime as dt

    line = present.when(_running(run_id="run-0123456789abcdef", created_at=3600.0), tz=dt.UTC)
    assert 'class="imgkit-card-when"' in line
    assert "01:00:00 · run <code>89abcdef</code>" in line


def test_show_code_writes_a_call_ready_to_paste() -> None:
    from imgkit.request import ReferenceImage

    refs = [ReferenceImage(url="https://example.com/a.png", name="a.png"), ReferenceImage(data=b"x", name="up.png")]
    code = present.generate_code("a 'kite'", model="gpt-image-1", size="1024x1024", quality="low", n=2,
                                 references=refs)
    assert code.splitlines()[:4] == ["import imgkit", "", "result = imgkit.generate(", '    "a \'kite\'",']
    assert "    images=['https://example.com/a.png']," in code
    assert "up.png" in code.splitlines()[-3]
    compile(code, "<code>", "exec")
    block = present.code_block("x < y")
    assert "<summary" in block
    assert "x &lt; y" in block


def test_show_code_carries_the_models_options_and_the_mask() -> None:
    from pathlib import Path

    from imgkit.request import ReferenceImage

    mask = ReferenceImage(path=Path("/tmp/mask.png"), name="mask.png", format="png", size_bytes=10)
    code = present.generate_code(
        "a fox", model="gpt-image-2", size="16:9", quality="high", n=2,
        references=[ReferenceImage(url="https://example.com/a.png", name="a.png")],
        options={"resolution": "2K", "background": "transparent", "previews": None}, mask=mask,
    )
    assert "    resolution='2K',\n    background='transparent',\n" in code
    assert "previews" not in code
    assert "    mask='/tmp/mask.png'," in code
    uploaded = present.generate_code(
        "a fox", model="gpt-image-2", size="1:1", quality="low", n=1,
        mask=ReferenceImage(data=b"x", name="sky.png", format="png", size_bytes=1),
    )
    assert "sky.png (the mask)" in uploaded and "mask=" not in uploaded


def test_the_history_filter() -> None:
    fox = _record(prompt="A red Fox in snow", tags=("starred",))
    owl = _record(prompt="an owl", tags=())
    gone = _record(prompt="a fox, hidden", tags=("hidden",))
    everything = present.HistoryFilter()
    assert [everything.keep(r) for r in (fox, owl, gone)] == [True, True, False]
    assert not everything.active
    words = present.HistoryFilter(text="fox RED")
    assert [words.keep(r) for r in (fox, owl, gone)] == [True, False, False]
    assert words.active
    starred = present.HistoryFilter(starred_only=True, show_hidden=True)
    assert [starred.keep(r) for r in (fox, owl, gone)] == [True, False, False]
    assert [present.HistoryFilter(text="fox", show_hidden=True).keep(r) for r in (fox, owl, gone)] == [
        True, False, True,
    ]
    assert present.toggled_tags(("a", "starred", "b"), "starred", False) == ("a", "b")
    assert present.toggled_tags(("a",), "starred", True) == ("a", "starred")
    assert present.toggled_tags(("starred", "a"), "starred", True) == ("a", "starred")
    assert "2 of 5 runs match" in present.filter_summary(2, 5, words, 0)
    assert "3 hidden" in present.filter_summary(4, 4, everything, 3)
    assert present.filter_summary(4, 4, everything, 0) == ""
    assert present.star_label(True) == "★" and present.star_label(False) == "☆"


def test_the_static_snapshot_is_plain_html_with_images_and_a_history_table() -> None:
    import datetime as dt

    records = [
        _record(run_id="run-0123456789abcdef", prompt="a <b>fox</b>", tags=("starred",), created_at=0.0,
                est_credits=1.5),
        _record(status="failed", run_id="run-failed-xyz", created_at=60.0),
    ]
    html = present.snapshot_html(records, [("data:image/jpeg;base64,AAAA", "a fox")], tz=dt.UTC)
    assert "static snapshot" in html
    assert '<img class="imgkit-snapshot-image" src="data:image/jpeg;base64,AAAA"' in html
    assert html.count("<tr>") == 3  # the head and two runs
    assert "00:00:00" in html and "00:01:00" in html
    assert "89abcdef" in html and "★ a &lt;b&gt;fox&lt;/b&gt;" in html  # escaped
    assert "1.5 credits" in html and "failed" in html
    assert "<script" not in html
    assert "No runs yet." in present.snapshot_html([], [])
