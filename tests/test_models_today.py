"""Today's models in the API: ``configure(model=...)`` and ``$IMGKIT_MODEL`` choose the model
of runs that name none (gpt-image-1 otherwise), and generate, sweep, estimate, describe,
compare and the studio follow it (an unknown name is refused before anything is sent); the
ledger's columns of today's fields are filled from the request and the service's answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import imgkit
from imgkit import session as _session
from imgkit.request import MODELS, JobEvent
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import FAST_POLL, TEST_KEY, sandbox_tasks


def _configure(url: str, data_dir: Path, **settings: object) -> imgkit.Session:
    return imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL, **settings)


def test_gpt_image_1_stays_the_default(session: imgkit.Session, sandbox_url: str) -> None:
    assert session.model == "gpt-image-1"
    res = imgkit.generate("a red fox", quality="low")
    assert res.record.model == "gpt-image-1"
    assert sandbox_tasks(sandbox_url)[-1]["model"] == "gpt-image-1"
    assert imgkit.estimate(quality="low").sheet == "evolink-table-2026-11"
    assert "model" not in str(session.describe())  # the line of before, unchanged


def test_configure_model_is_the_default_of_every_verb(sandbox_url: str, data_dir: Path) -> None:
    session = _configure(sandbox_url, data_dir, model="gpt-image-2")
    assert session.model == "gpt-image-2"
    described = session.describe()
    assert "; model gpt-image-2;" in str(described) and "gpt-image-2" in described._repr_html_()

    est = imgkit.estimate(size="16:9", resolution="4K", quality="high")
    assert est.sheet == "evolink-gpt-image-2-tokens-2026-12"
    assert est == imgkit.estimate(model="gpt-image-2", size="16:9", resolution="4K", quality="high")
    # resolution is a gpt-image-2 field: with gpt-image-1 as the default it would be refused.
    res = imgkit.generate("a poster of a fox", size="16:9", resolution="2K", quality="low")
    assert res.record.model == "gpt-image-2" and res.record.size == "16:9"
    task = sandbox_tasks(sandbox_url)[-1]
    assert task["model"] == "gpt-image-2"

    out = imgkit.sweep("a lighthouse", quality=["low", "medium"], confirm=True, progress=False)
    assert {r.record.model for r in out.results} == {"gpt-image-2"}
    assert set(out.runs()["model"].astype(str)) == {"gpt-image-2"}

    # A model named in the call wins over the default.
    one = imgkit.generate("a red fox", model="gpt-image-1", quality="low")
    assert one.record.model == "gpt-image-1" and one.record.size == "1024x1024"


def test_imgkit_model_sets_the_default(sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGKIT_MODEL", " GPT-Image-2 ")
    # Before any session: the module estimate prices the environment's model.
    assert _session._DEFAULT is None
    assert imgkit.estimate(quality="high").sheet == "evolink-gpt-image-2-tokens-2026-12"
    session = _configure(sandbox_url, data_dir)
    assert session.model == "gpt-image-2"
    assert imgkit.generate("a red fox", quality="low").record.model == "gpt-image-2"
    # configure(model=...) wins over the variable.
    assert _configure(sandbox_url, data_dir, model="gpt-image-1.5").model == "gpt-image-1.5"


@pytest.mark.parametrize(
    ("where", "value", "field", "hint"),
    [
        ("configure", "gpt-image-9", "model", ""),
        ("configure", "dall-e-3", "model", "dall-e-3 is retired or not served; use gpt-image-2"),
        ("env", "gpt-image-1-mini", "IMGKIT_MODEL", "use gpt-image-2"),
        ("configure", 2, "model", ""),
    ],
)
def test_an_unknown_model_is_refused_with_the_list(
    sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch, where: str, value: object, field: str, hint: str
) -> None:
    before = _configure(sandbox_url, data_dir)
    count = len(sandbox_tasks(sandbox_url))
    settings = {} if where == "env" else {"model": value}
    if where == "env":
        monkeypatch.setenv("IMGKIT_MODEL", str(value))
    with pytest.raises(imgkit.ValidationError) as info:
        imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, **settings)
    err = info.value
    assert err.field == field and err.value == value
    assert all(name in err.allowed for name in MODELS)
    assert hint in str(err)
    assert imgkit.get_session() is before  # the session in use is unchanged
    assert len(sandbox_tasks(sandbox_url)) == count


def test_the_studio_starts_on_the_default_model(sandbox_url: str, data_dir: Path) -> None:
    session = _configure(sandbox_url, data_dir, model="gpt-image-2-beta")
    studio = imgkit.Studio(session)
    # The beta has no quality field: the form takes the model's own default tier.
    assert studio.model.value == "gpt-image-2-beta" and studio.quality.value == "auto"
    assert imgkit.Studio(session, model="gpt-image-1").model.value == "gpt-image-1"


def test_runs_keep_the_auto_tier_of_gpt_image_2_beta(session: imgkit.Session) -> None:
    imgkit.generate("a red fox", model="gpt-image-2-beta")
    imgkit.generate("a red fox", quality="low")
    df = imgkit.runs()
    assert df["quality"].astype(str).tolist() == ["auto", "low"]  # not read as missing
    assert list(df["quality"].cat.categories[:3]) == ["low", "medium", "high"]


# --- the ledger's columns of today's fields ------------------------------------------------------


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    config = SandboxConfig(seed=5, time_scale=0.01, openai_models=("gpt-image-1", "gpt-image-2"))
    with running_sandbox(app=create_app(config)) as base:
        yield base


def _openai(url: str, data_dir: Path) -> imgkit.Session:
    return imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=[
        {"name": "openai", "kind": "openai", "api_key": TEST_KEY, "base_url": f"{url}/openai/v1",
         "models": ["gpt-image-1", "gpt-image-2"]},
    ])


_COLUMNS = ["resolution", "background", "output_format", "batch_id", "tokens_in", "tokens_out", "partial_images"]


def _row(run_id: str) -> dict[str, Any]:
    """The run's row of imgkit.runs(), today's columns only (empty cells as None)."""
    import pandas as pd

    df = imgkit.runs()
    row = df[df["run_id"] == run_id].iloc[0]
    return {name: None if pd.isna(row[name]) else row[name] for name in _COLUMNS}


def test_gateway_runs_record_the_request_fields(url: str, data_dir: Path) -> None:
    imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
    res = imgkit.generate("a poster of a fox", model="gpt-image-2", size="16:9", resolution="2k",
                          background="transparent", quality="low")
    # The gateway's task reports no token usage: those columns stay empty, never guessed.
    assert _row(res.record.run_id) == {
        "resolution": "2K", "background": "transparent", "output_format": None, "batch_id": None,
        "tokens_in": None, "tokens_out": None, "partial_images": None,
    }
    plain = imgkit.generate("a red fox", quality="low")
    assert set(_row(plain.record.run_id).values()) == {None}


def test_openai_runs_record_the_usage_the_service_returned(url: str, data_dir: Path) -> None:
    _openai(url, data_dir)
    body = {"model": "gpt-image-2", "prompt": "a red fox", "n": 1, "size": "1360x768", "quality": "low",
            "output_format": "webp"}
    answer = httpx.post(f"{url}/openai/v1/images/generations", json=body,
                        headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=60).json()
    usage = answer["usage"]
    res = imgkit.generate("a red fox", model="gpt-image-2", size="16:9", quality="low", output_format="webp")
    assert _row(res.record.run_id) == {
        "resolution": None, "background": answer["background"], "output_format": "webp", "batch_id": None,
        "tokens_in": usage["input_tokens"], "tokens_out": usage["output_tokens"], "partial_images": None,
    }
    assert res.record.tokens_out == usage["output_tokens"] and res.record.tokens_out > 0
    # Left to the service, the format is the one it says it made.
    png = imgkit.generate("a red fox", model="gpt-image-2", size="16:9", quality="low")
    assert _row(png.record.run_id)["output_format"] == "png"


def test_streamed_runs_record_their_previews_and_usage(url: str, data_dir: Path) -> None:
    _openai(url, data_dir)
    plain = imgkit.generate("a lighthouse", model="gpt-image-2", quality="low", n=2)
    events: list[JobEvent] = []
    res = imgkit.generate("a lighthouse", model="gpt-image-2", quality="low", n=2, previews=2,
                          on_event=events.append)
    row = _row(res.record.run_id)
    assert row["partial_images"] == sum(e.preview is not None for e in events) == 4
    # The stream's usage is the sum of its completed events (one per image, each with the
    # prompt's input tokens), the partial images' output tokens included.
    assert row["tokens_in"] >= _row(plain.record.run_id)["tokens_in"] > 0
    assert row["tokens_out"] > _row(plain.record.run_id)["tokens_out"] > 0
    assert res.record.partial_images == 4 and res.record.tokens_out == row["tokens_out"]
