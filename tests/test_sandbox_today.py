"""The sandbox a user reaches without a key plays an account of today: imgkit's in-process
sandbox and ``imgkit sandbox`` serve gpt-image-2 (and gpt-image-1.5) on the OpenAI side too,
with live previews; ``--openai-models`` narrows it. And a result's cost says what counts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

import imgkit
from imgkit.request import JobEvent
from imgkit.sandbox import OPENAI_MODELS, SandboxConfig

OPENAI_SANDBOX = {"name": "openai", "kind": "openai", "sandbox": True}


def test_in_process_openai_sandbox_streams_gpt_image_2_previews(data_dir: Path) -> None:
    imgkit.configure(providers=[OPENAI_SANDBOX], data_dir=data_dir)
    events: list[JobEvent] = []
    res = imgkit.generate("a red fox", model="gpt-image-2", quality="low", previews=2, on_event=events.append)
    assert (res.status, res.record.model, res.record.provider) == ("completed", "gpt-image-2", "openai")
    previews = [e.preview for e in events if e.preview is not None]
    assert len(previews) == 2
    with Image.open(res.paths[0]) as img:
        assert img.size == (1024, 1024)
    # Charged from the usage the stream reported: the image's tokens and its two previews'.
    assert res.record.tokens_out is not None and res.record.partial_images == 2
    assert res.record.credits_charged is not None and res.record.est_credits is not None
    assert res.record.credits_charged > res.record.est_credits
    # The older model is still served there, as imgkit's default.
    assert imgkit.generate("a red fox", quality="low").record.model == "gpt-image-1"


def test_a_given_sandbox_config_plays_its_own_account(data_dir: Path) -> None:
    # SandboxConfig's default is an account from before gpt-image-2: the service refuses it,
    # and nothing is charged.
    imgkit.configure(providers=[OPENAI_SANDBOX], data_dir=data_dir,
                     sandbox_config=SandboxConfig(time_scale=0.01))
    with pytest.raises(imgkit.TaskFailed, match=r"nothing was charged.*model_not_found") as caught:
        imgkit.generate("a red fox", model="gpt-image-2", quality="low")
    assert "gpt-image-2 is not served to this key; check the account's model access" in str(caught.value)
    (run,) = imgkit.get_session().ledger.records()
    assert (run.status, run.error_code, run.credits_charged) == ("failed", "model_not_found", None)


def test_a_refused_retired_model_names_its_successor(data_dir: Path) -> None:
    # An account of today: OpenAI retired gpt-image-1 on 2026-10-23.
    imgkit.configure(providers=[OPENAI_SANDBOX], data_dir=data_dir,
                     sandbox_config=SandboxConfig(time_scale=0.01, openai_models=("gpt-image-1.5", "gpt-image-2")))
    with pytest.raises(imgkit.TaskFailed) as caught:
        imgkit.generate("a red fox", quality="low")
    assert caught.value.code == "model_not_found"
    assert str(caught.value).endswith("(hint: gpt-image-1 is retired or not served to this key; use gpt-image-2: "
                                      "imgkit.configure(model='gpt-image-2') or model='gpt-image-2')")


def test_an_openai_provider_serves_todays_models_unless_narrowed(data_dir: Path) -> None:
    imgkit.configure(providers=[OPENAI_SANDBOX], data_dir=data_dir)
    for model in OPENAI_MODELS:
        assert imgkit.generate("a fox", model=model, quality="low").record.model == model
    imgkit.configure(providers=[{**OPENAI_SANDBOX, "models": ["gpt-image-2"]}], data_dir=data_dir)
    with pytest.raises(imgkit.ValidationError, match="openai serves gpt-image-2, not gpt-image-1"):
        imgkit.generate("a fox", quality="low")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "imgkit", "sandbox", "--port", str(port), "--time-scale", "0.01",
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/v1/credits", headers={"Authorization": "Bearer x"}, timeout=1)
            return proc, url
        except httpx.TransportError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"imgkit sandbox did not start: {proc.communicate()[1].decode()}")


@pytest.mark.parametrize(("args", "served"), [((), OPENAI_MODELS), (("--openai-models", "gpt-image-2"),
                                                                     ("gpt-image-2",))])
def test_cli_sandbox_serves_todays_openai_models(args: tuple[str, ...], served: tuple[str, ...]) -> None:
    proc, url = _serve(*args)
    try:
        with httpx.Client(base_url=f"{url}/openai/v1", headers={"Authorization": "Bearer x"}, timeout=30) as c:
            for model in OPENAI_MODELS:
                r = c.post("/images/generations", json={"model": model, "prompt": "a fox", "quality": "low",
                                                        "size": "1024x1024"})
                if model in served:
                    assert r.status_code == 200, r.text
                    assert r.json()["data"][0]["b64_json"]
                else:
                    assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_cli_refuses_a_model_the_sandbox_cannot_serve() -> None:
    out = subprocess.run([sys.executable, "-m", "imgkit", "sandbox", "--openai-models", "gpt-image-1,dall-e-3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "'dall-e-3' is not a model the sandbox serves; choose among gpt-image-1, gpt-image-1.5, gpt-image-2" in (
        out.stderr)


# --- what a result's cost says ----------------------------------------------------------------


def test_cost_leads_with_the_charge_the_service_reported(data_dir: Path) -> None:
    imgkit.configure(providers=[OPENAI_SANDBOX], data_dir=data_dir)
    res = imgkit.generate("a red fox", model="gpt-image-2", quality="low", previews=1)
    charged, est = res.record.credits_charged, res.record.est_credits
    assert charged is not None and est is not None and charged != est
    text = str(res.cost)
    assert text.startswith(f"{charged:g} credits charged ($")
    assert text.endswith(f"estimated {est:g}")
    assert (res.cost.basis, res.cost.spent) == ("charged", charged)
    assert f"cost={charged:g} credits charged" in repr(res)
    assert f"{charged:g} credits charged" in res._repr_html_()


def test_cost_labels_reserved_failed_and_unknown(data_dir: Path) -> None:
    imgkit.configure(data_dir=data_dir)
    res = imgkit.generate("a red fox", quality="low")
    reserved = res.record.credits_reserved
    assert reserved is not None and res.record.credits_charged is None
    assert str(res.cost).startswith(f"{reserved:g} credits reserved by the service ($")
    failed = imgkit.generate("a fox [[fail:content_policy_violation]]", quality="low", raise_on_error=False)
    assert str(failed.cost).startswith("0 credits (failed, nothing charged), estimated ")
    record = failed.record.replace(status="unknown", error_code=None, credits_reserved=None)
    from imgkit.results import Cost

    cost = Cost.of(record)
    assert cost.basis == "may have cost" and cost.may_have_cost == record.est_credits
    assert str(cost).startswith(f"may have cost {record.est_credits:g} credits ($")
