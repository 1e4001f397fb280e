"""Nothing a request asks for is dropped on the way to the service: the fields of today's
models reach the sandbox's wire, a provider that cannot carry one is never chosen, and every
run is priced on the sheet of its model (so estimate, quote, budget and ledger agree)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import imgkit
from imgkit.pricing import estimate as sheet_estimate
from imgkit.pricing import register_price_sheet, sheet_for
from imgkit.providers.router import Capabilities, Endpoint, Router, carriers
from imgkit.request import ImageRequest
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import FAST_POLL, TEST_KEY, sandbox_tasks

G1_ONLY = {"name": "test-g1-only", "date": "2026-12-02", "source": "test", "base_credits": 2.0,
           "credits_per_usd": 72}


def _png(size: tuple[int, int], mode: str = "RGB", clear_left: bool = False) -> bytes:
    img = Image.new(mode, size, (20, 160, 90, 255)[: len(mode)])
    if clear_left:
        img.paste(Image.new("RGBA", (size[0] // 2, size[1]), (0, 0, 0, 0)), (0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(SandboxConfig(seed=11, time_scale=0.01, openai_models=("gpt-image-1", "gpt-image-2")))


@pytest.fixture(scope="module")
def url(app: Any) -> Iterator[str]:
    with running_sandbox(app=app) as base:
        yield base


@pytest.fixture
def session(url: str, data_dir: Path) -> imgkit.Session:
    return imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)


def test_resolution_and_transparent_background_reach_the_sandbox(session: imgkit.Session, app: Any) -> None:
    session.set_budget(1000)
    res = imgkit.generate("a fox", model="gpt-image-2", size="16:9", resolution="2K", background="transparent",
                          quality="low")
    assert res.status == "completed"
    task = next(t for t in app.state.sandbox.tasks() if t.id == res.record.task_id)
    assert (task.size, task.background) == ("2736x1536", "transparent")
    (row,) = [t for t in sandbox_tasks(session.base_url) if t["id"] == res.record.task_id]
    assert row["size"] == "2736x1536"
    with Image.open(res.paths[0]) as img:
        assert img.mode == "RGBA" and img.size == (2736, 1536)
        assert img.getchannel("A").getextrema()[0] == 0  # really see-through somewhere
    # The price recorded is the one shown: the gateway's gpt-image-2 token sheet, at 2K.
    shown = imgkit.estimate(model="gpt-image-2", size="16:9", resolution="2K", quality="low")
    assert shown.sheet == "evolink-gpt-image-2-tokens-2026-12"
    assert (res.record.est_credits, res.record.price_sheet) == (shown.credits, shown.sheet)
    assert session.quote(ImageRequest.build("a fox", model="gpt-image-2", size="16:9", resolution="2K",
                                            quality="low")) == shown
    assert session.remaining_budget() == pytest.approx(1000 - shown.credits)


def test_a_masked_edit_uploads_the_mask_and_sends_mask_url(session: imgkit.Session, app: Any) -> None:
    ref, mask = _png((64, 48)), _png((64, 48), "RGBA", clear_left=True)
    before = len(app.state.sandbox.uploads())
    res = imgkit.generate("aurora sky", model="gpt-image-2", size="1:1", quality="low", images=[ref], mask=mask)
    assert res.status == "completed"
    task = next(t for t in app.state.sandbox.tasks() if t.id == res.record.task_id)
    assert task.mask == mask  # the uploaded mask, found through its mask_url
    assert len(app.state.sandbox.uploads()) == before + 2  # the reference and the mask


def test_module_and_session_estimates_take_resolution_and_reference_images(session: imgkit.Session) -> None:
    expected = sheet_estimate(model="gpt-image-2", size="16:9", resolution="4K", quality="high",
                              sheet=sheet_for("gpt-image-2", "evolink-table-2026-11"))
    assert imgkit.estimate(model="gpt-image-2", size="16:9", resolution="4K", quality="high") == expected
    assert session.estimate(model="gpt-image-2", size="16:9", resolution="4K", quality="high") == expected
    assert expected.credits > session.estimate(model="gpt-image-2", size="16:9", resolution="1K",
                                               quality="high").credits
    with_refs = session.estimate(model="gpt-image-2", size="1:1", quality="low", images=2)
    assert with_refs == sheet_estimate(model="gpt-image-2", size="1:1", quality="low", images=2,
                                       sheet="evolink-gpt-image-2-tokens-2026-12")
    beta = imgkit.estimate(model="gpt-image-2-beta", size="16:9", resolution="1K")
    assert beta.credits == 1.02


class _Named:
    def __init__(self, name: str, kind: str = "gateway") -> None:
        self.name = name
        self.kind = kind


@pytest.mark.parametrize(
    ("fields", "field", "kinds"),
    [
        ({"output_format": "webp"}, "output_format", ["openai"]),
        ({"moderation": "low"}, "moderation", ["openai"]),
        ({"previews": 2}, "previews", ["openai"]),
        ({"background": "auto"}, "background", ["openai"]),
    ],
)
def test_the_router_refuses_a_provider_that_would_drop_a_field(
    fields: dict[str, Any], field: str, kinds: list[str]
) -> None:
    request = ImageRequest.build("a fox", model="gpt-image-2", size="1:1", quality="low", **fields)
    assert carriers(request, field) == kinds
    gateway_only = Router([Endpoint.of(_Named("evolink"), sheet="evolink-table-2026-11")])
    assert gateway_only.candidates(request) == []
    with pytest.raises(imgkit.ValidationError) as info:
        gateway_only.check(request)
    assert info.value.field == field and "openai" in str(info.value) and "evolink" in str(info.value)
    both = Router([Endpoint.of(_Named("evolink"), sheet="evolink-table-2026-11"),
                   Endpoint.of(_Named("oa", "openai"), sheet="openai-tokens-2026-11",
                               capabilities=Capabilities())])
    assert [c.name for c in both.candidates(request)] == ["oa"]


def test_generate_refuses_a_field_the_gateway_cannot_carry_before_sending(session: imgkit.Session) -> None:
    before = len(sandbox_tasks(session.base_url))
    with pytest.raises(imgkit.ValidationError, match="output_format") as info:
        imgkit.generate("a fox", model="gpt-image-2", output_format="webp", quality="low")
    assert "openai" in str(info.value)
    assert len(sandbox_tasks(session.base_url)) == before
    assert imgkit.runs().empty


def test_a_run_without_a_price_is_refused_under_a_budget_not_sent(url: str, data_dir: Path) -> None:
    register_price_sheet(G1_ONLY)
    session = imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL,
                               price_sheet="test-g1-only")
    before = len(sandbox_tasks(url))
    session.set_budget(100)
    # The old _admit formatted the missing estimate: TypeError: unsupported format string
    # passed to NoneType.__format__.
    with pytest.raises(imgkit.BudgetExceeded) as info:
        imgkit.generate("a fox", model="gpt-image-2", size="3:2", quality="low")
    text = str(info.value)
    assert "gpt-image-2 3:2" in text and "test-g1-only" in text
    assert "register_price_sheet" in text and "nothing was sent" in text
    assert len(sandbox_tasks(url)) == before
    assert imgkit.runs().empty
    session.set_budget(None)  # without a budget the run goes, unpriced
    assert imgkit.generate("a fox", model="gpt-image-2", size="3:2", quality="low").status == "completed"
