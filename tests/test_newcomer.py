"""A newcomer's first minutes, the session side (issue 11): a sweep that needs confirmation
says so, a missing key skips its provider, a sandbox on a loopback port needs no key,
announcements are information (stdout or display, never stderr), and describe() reads well."""

from __future__ import annotations

import math
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import imgkit
from imgkit.config import LOOPBACK_PLACEHOLDER_KEY
from imgkit.results import Description
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import FAST_POLL, SANDBOX_ADMIN, TEST_KEY, sandbox_tasks

# --- item 4: a sweep above the threshold asks for confirmation ------------------------------


def test_sweep_above_threshold_raises_confirmation_required(session: imgkit.Session, sandbox_url: str) -> None:
    before = len(sandbox_tasks(sandbox_url))
    grid = {"quality": "high", "size": "3:2", "n": 2}
    figure = session.plan_sweep(["a", "b", "c"], **grid).credits
    assert figure > 50
    with pytest.raises(imgkit.ConfirmationRequired) as info:
        imgkit.sweep(["a", "b", "c"], progress=False, **grid)
    error = info.value
    assert isinstance(error, imgkit.ImgkitError)
    assert not isinstance(error, imgkit.BudgetExceeded)  # no budget was set, none was exceeded
    assert (error.credits, error.threshold) == (figure, 50)
    message = str(error)
    assert f"estimated {figure:.10g} credits" in message  # the figure
    assert "above the sweep threshold of 50 credits" in message
    assert "confirm=True" in message and f"sweep_threshold = {math.ceil(figure)}" in message  # how to confirm
    assert len(sandbox_tasks(sandbox_url)) == before
    session.sweep_threshold = math.ceil(figure)  # as the message says
    out = imgkit.sweep(["a", "b", "c"], progress=False, **grid)
    assert len(out.completed) == 3


def test_a_real_budget_overrun_still_raises_budget_exceeded(session: imgkit.Session, sandbox_url: str) -> None:
    imgkit.budget(credits=5)
    before = len(sandbox_tasks(sandbox_url))
    # 3 x 2.4192 credits: below the sweep threshold, above the budget.
    with pytest.raises(imgkit.BudgetExceeded, match=r"above the 5 credits left in the budget") as info:
        imgkit.sweep(["a", "b", "c"], quality="medium", progress=False)
    assert not isinstance(info.value, imgkit.ConfirmationRequired)
    # Above both: the budget is what stops it.
    with pytest.raises(imgkit.BudgetExceeded, match=r"sweep threshold.*budget"):
        imgkit.sweep(["a", "b", "c"], quality="high", size="3:2", n=2, progress=False)
    assert len(sandbox_tasks(sandbox_url)) == before


def test_confirmation_required_is_in_the_drawn_tree() -> None:
    assert "ConfirmationRequired" in imgkit.errors.__doc__
    assert "ConfirmationRequired" in imgkit.__all__
    assert issubclass(imgkit.ConfirmationRequired, imgkit.ImgkitError)


# --- item 5: providers whose key is missing are skipped --------------------------------------


def test_a_provider_without_its_key_is_skipped_with_a_warning(
    data_dir: Path, sandbox_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-test-0123456789")
    monkeypatch.delenv("MY_GATEWAY_KEY", raising=False)
    with caplog.at_level("WARNING", logger="imgkit"):
        session = imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=[
            {"name": "evolink", "kind": "gateway", "base_url": sandbox_url, "api_key_env": "MY_GATEWAY_KEY"},
            {"name": "openai", "kind": "openai", "base_url": f"{sandbox_url}/openai/v1"},
        ])
    assert [c.name for c in session.provider_configs] == ["openai"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "$MY_GATEWAY_KEY" in warnings[0].getMessage() and "'evolink'" in warnings[0].getMessage()
    assert imgkit.generate("routed to the one left", quality="low").record.provider == "openai"


def test_no_provider_left_is_a_config_error_naming_the_variables(data_dir: Path) -> None:
    with pytest.raises(imgkit.ConfigError, match=r"\$EVOLINK_API_KEY.*\$OPENAI_API_KEY"):
        imgkit.Session(data_dir=data_dir, providers=[{"kind": "gateway"}, {"kind": "openai"}])


# --- item 6: a sandbox on a loopback port, and base_url checks --------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served_sandbox() -> Iterator[str]:
    """``imgkit sandbox --port N`` in a subprocess, as a user would start it."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgkit", "sandbox", "--port", str(port), "--time-scale", "0.01"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/_sandbox/tasks", headers=SANDBOX_ADMIN, timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("imgkit sandbox did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_base_url_on_loopback_needs_no_key(served_sandbox: str, data_dir: Path) -> None:
    session = imgkit.configure(base_url=served_sandbox, data_dir=data_dir, poll=FAST_POLL)
    assert session.provider_configs[0].api_key.reveal() == LOOPBACK_PLACEHOLDER_KEY
    res = imgkit.generate("a fox from the served sandbox", quality="low")
    assert res.status == "completed"
    assert len(sandbox_tasks(served_sandbox)) == 1
    assert str(session.describe()).startswith(f"sandbox at {served_sandbox} (no key)")


def _recording(app: Any, seen: list[str]) -> Any:
    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.extend(v.decode() for k, v in scope["headers"] if k == b"authorization")
        await app(scope, receive, send)

    wrapper.state = app.state  # type: ignore[attr-defined]  # running_sandbox reads the sandbox's state
    return wrapper


def test_the_loopback_key_is_a_placeholder(data_dir: Path) -> None:
    seen: list[str] = []
    app = _recording(create_app(SandboxConfig(seed=3, time_scale=0.01)), seen)
    with running_sandbox(app=app) as url:
        imgkit.configure(base_url=url.replace("127.0.0.1", "localhost"), data_dir=data_dir, poll=FAST_POLL)
        imgkit.generate("placeholder", quality="low")
    assert seen and set(seen) == {f"Bearer {LOOPBACK_PLACEHOLDER_KEY}"}


def test_base_url_elsewhere_without_a_key_says_what_to_pass(data_dir: Path) -> None:
    with pytest.raises(imgkit.ConfigError) as info:
        imgkit.configure(base_url="https://images.example.com", data_dir=data_dir)
    message = str(info.value)
    assert "api_key=" in message and "$EVOLINK_API_KEY" in message
    assert "imgkit sandbox --port N" in message and "base_url='http://127.0.0.1:N'" in message
    # With a key it is accepted (nothing is sent until a run).
    assert imgkit.configure(base_url="https://images.example.com", api_key=TEST_KEY, data_dir=data_dir)


def test_sandbox_true_with_base_url_is_a_config_error(data_dir: Path) -> None:
    with pytest.raises(imgkit.ConfigError, match=r"sandbox=True.*base_url"):
        imgkit.configure(sandbox=True, base_url="http://127.0.0.1:8808", data_dir=data_dir)


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1:8808", "127.0.0.1:8808", "http://", "http://127.0.0.1:0", "http://127.0.0.1:65536",
    "http://127.0.0.1:port", "not a url",
])
def test_base_url_is_checked(url: str, data_dir: Path) -> None:
    with pytest.raises(imgkit.ConfigError, match="base_url"):
        imgkit.configure(base_url=url, api_key=TEST_KEY, data_dir=data_dir)


def test_provider_base_urls_are_checked_too(data_dir: Path) -> None:
    with pytest.raises(imgkit.ConfigError, match="port"):
        imgkit.Session(data_dir=data_dir, providers=[{"kind": "gateway", "api_key": TEST_KEY,
                                                      "base_url": "http://127.0.0.1:99999"}])


# --- item 8: announcements are information ----------------------------------------------------


@pytest.mark.parametrize("progress", [False, True])
def test_sweep_writes_nothing_to_stderr(session: imgkit.Session, capsys: pytest.CaptureFixture[str],
                                        progress: bool) -> None:
    imgkit.sweep(["a fox", "a kite"], quality="low", progress=progress)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "sweep: 2 runs, 2 images, estimated" in captured.out


def test_in_ipython_the_announcement_is_display_output(session: imgkit.Session,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.display_pub = CapturingDisplayPublisher()
        imgkit.sweep("a fox", quality="low", progress=False)
        outputs = list(shell.display_pub.outputs)
    finally:
        InteractiveShell.clear_instance()
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "sweep: 1 runs" not in captured.out  # shown once, as display output
    assert len(outputs) == 1
    data = outputs[0]["data"]
    assert data["text/plain"].startswith("sweep: 1 runs, 1 images, estimated 0.62899 credits")
    assert "<b>sweep: 1 runs" in data["text/html"]


# --- item 9 (first half): describe() ----------------------------------------------------------


def test_describe_reads_as_text_and_html(session: imgkit.Session, sandbox_url: str) -> None:
    described = session.describe()
    assert isinstance(described, Description)
    line = f"live {sandbox_url} (key ...{TEST_KEY[-4:]}); price sheet {session.price_sheet}; data {session.data_dir}"
    assert str(described) == line and repr(described) == line  # the same line as before, unquoted
    from IPython.lib.pretty import pretty

    assert pretty(described) == line
    html = described._repr_html_()
    assert "<table" in html and sandbox_url in html and session.price_sheet in html
    assert pickle.loads(pickle.dumps(described)) == described
    assert repr(session) == f"<imgkit.Session {line}>"


def test_describe_never_shows_a_key_or_userinfo(data_dir: Path) -> None:
    with running_sandbox(SandboxConfig(seed=4, time_scale=0.01)) as url:
        with_userinfo = url.replace("http://", "http://alice:hunter2-SECRET@")
        for settings in ({"base_url": with_userinfo, "api_key": TEST_KEY},
                         {"providers": [{"kind": "gateway", "base_url": with_userinfo, "api_key": TEST_KEY},
                                        {"kind": "openai", "base_url": f"{url}/openai/v1", "api_key": TEST_KEY}]}):
            session = imgkit.configure(data_dir=data_dir, **settings)
            described = session.describe()
            table = session.providers().to_string()
            for text in (str(described), repr(described), described._repr_html_(), repr(session), table):
                assert TEST_KEY[:-4] not in text
                assert "hunter2" not in text and "alice" not in text
    with pytest.raises(imgkit.ConfigError) as info:
        imgkit.configure(base_url="https://bob:hunter2@images.example.com", data_dir=data_dir)
    assert "hunter2" not in str(info.value)


def test_in_a_kernel_the_sweep_shows_information_not_errors(data_dir: Path, sandbox_url: str) -> None:
    """A real kernel, as a notebook runs it: the cost announcement is display output and
    nothing of the sweep (announcement, progress bar) is on stderr."""
    import nbformat
    from nbclient import NotebookClient

    cells = [
        "import imgkit\n"
        f"imgkit.configure(base_url={sandbox_url!r}, data_dir={str(data_dir)!r},"
        " poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2))\n"
        "imgkit.get_session().describe()",
        "out = imgkit.sweep(['a fox', 'a kite'], quality='low', confirm=True)\nlen(out.completed)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    described, swept = (cell["outputs"] for cell in nb.cells)
    assert [o["output_type"] for o in described] == ["execute_result"]
    assert described[0]["data"]["text/plain"].startswith(f"sandbox at {sandbox_url} (no key)")  # unquoted
    assert "<table" in described[0]["data"]["text/html"]
    assert not [o for o in swept if o["output_type"] == "stream" and o["name"] == "stderr"], swept
    shown = [o for o in swept if o["output_type"] == "display_data" and "sweep: 2 runs" in o["data"].get("text/plain", "")]
    assert len(shown) == 1 and "<b>sweep: 2 runs" in shown[0]["data"]["text/html"]
    assert swept[-1]["data"]["text/plain"] == "2"
