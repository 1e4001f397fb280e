"""The studio page that `imgkit app` serves, headless: what it refuses and how it is started."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from PIL import Image

import imgkit
import imgkit.app


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, format="PNG")
    return buf.getvalue()


def test_the_page_refuses_a_typed_server_path(session: imgkit.Session, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png())
    s = imgkit.app.page()
    assert s.local_paths is False
    assert "/path/to" not in s.reference_field.placeholder
    s.reference_field.value = f"{secret}\nhttps://example.com/ok.png"
    assert [r.url for r in s.reference_images] == ["https://example.com/ok.png"]
    message = s.reference_message.value
    assert "does not read files on the server" in message
    assert str(secret) in message
    s.upload.receive({"name": "up.png", "content": _png()})  # uploads are welcome
    assert [r.name for r in s.reference_images] == ["ok.png", "up.png"]


def test_a_notebook_form_still_reads_local_paths(session: imgkit.Session, tmp_path: Path) -> None:
    local = tmp_path / "a.png"
    local.write_bytes(_png())
    s = imgkit.Studio()
    s.reference_field.value = str(local)
    assert [r.path for r in s.reference_images] == [local]


def test_the_voila_command_listens_on_loopback_with_a_token_and_big_uploads() -> None:
    command, token = imgkit.app.voila_command(port=9123)
    assert command[:4] == [sys.executable, "-m", "voila", str(imgkit.app.NOTEBOOK)]
    assert "--Voila.ip=127.0.0.1" in command
    assert "--port=9123" in command
    assert len(token) >= 24
    assert f"--token={token}" in command
    assert f"--Voila.tornado_settings={{'websocket_max_message_size': {imgkit.app.WEBSOCKET_LIMIT}}}" in command
    assert "--VoilaConfiguration.show_tracebacks=False" in command
    assert imgkit.app.voila_command()[1] != token  # a fresh token each time
    assert imgkit.app.voila_command(token="t", host="0.0.0.0")[0][4] == "--Voila.ip=0.0.0.0"


def test_the_served_notebook_builds_the_page_only() -> None:
    nb = nbformat.read(imgkit.app.NOTEBOOK, as_version=4)
    assert [c.cell_type for c in nb.cells] == ["code"]
    assert "imgkit.app.page()" in nb.cells[0].source
    assert all(not c.get("outputs") for c in nb.cells)


def test_imgkit_app_is_a_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "imgkit", "app", "--help"], capture_output=True, text=True, check=True
    )
    assert "--port" in out.stdout
    assert "--token" in out.stdout
    assert "--budget-credits" in out.stdout


def test_a_page_budget_refuses_the_run_that_would_pass_it(
    session: imgkit.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(imgkit.app.BUDGET_ENV, "5")
    s = imgkit.app.page(quality="medium")  # 2.4192 credits a run
    assert s.page_budget == 5.0
    assert "page budget: 5 of 5 credits left" in s.ui.page_budget.value
    s.generate()
    s.generate()
    assert session.ledger.count() == 2
    assert "0.1616 of 5 credits left" in s.ui.page_budget.value
    # The third run would pass the cap: refused out loud, before anything is sent.
    assert s.generate_button.disabled
    assert "this run costs 2.4192, more than the 0.1616 left" in s.message.value
    assert s.generate() is None
    assert session.ledger.count() == 2
    s.quality.value = "low"  # 0.62899 credits: still more than what is left
    assert s.generate_button.disabled
    assert "this run costs 0.62899," in s.message.value
    # A second page (another browser session, another kernel) has its own budget.
    other = imgkit.app.page()
    assert not other.generate_button.disabled
    assert "5 of 5 credits left" in other.ui.page_budget.value
    # The ledger's own budget still counts everything (the page cap is on top of it).
    assert imgkit.Studio().page_budget is None


def test_the_page_budget_must_be_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    assert imgkit.app.page_budget() is None
    monkeypatch.setenv(imgkit.app.BUDGET_ENV, "lots")
    with pytest.raises(imgkit.ValidationError, match="IMGKIT_APP_BUDGET"):
        imgkit.app.page_budget()
    with pytest.raises(imgkit.ValidationError, match="budget_credits"):
        imgkit.app.page_budget(-1)
    assert imgkit.app.page_budget(0) == 0.0
    out = subprocess.run(
        [sys.executable, "-m", "imgkit", "app", "--budget-credits", "-3"], capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "budget_credits" in out.stderr
