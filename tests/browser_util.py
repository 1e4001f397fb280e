"""Helpers for the browser tests: JupyterLab on a loopback port, headless Debian Chromium.

Nothing here downloads anything: JupyterLab is the one in this environment, the browser is
``/usr/bin/chromium`` driven by Playwright's Python package, and every network feature that
would phone home (news, update checks, Chromium's background services) is switched off,
because on a closed network those hang instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import nbformat

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: What `make lab` passes: uploads of 16 x 50 MB must fit in one websocket message.
WEBSOCKET_SETTINGS = "{'websocket_max_message_size': 943718400}"
ARTIFACTS = Path(__file__).parent / "artifacts"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


def _quiet_lab_settings(settings_dir: Path) -> None:
    """No news, no update checks, no toasts over the screenshots."""
    target = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}))


@dataclass
class Lab:
    """A running JupyterLab (or Notebook 7) server."""

    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]
    app: str = "jupyterlab"

    def page_url(self, notebook: str) -> str:
        if self.app == "notebook":  # Notebook 7 opens a notebook at /notebooks/
            return f"{self.url}/notebooks/{notebook}?token={self.token}"
        return f"{self.url}/lab/tree/{notebook}?token={self.token}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextlib.contextmanager
def jupyterlab(
    tmp: Path, *, env: dict[str, str] | None = None, startup_timeout: float = 60.0, app: str = "jupyterlab"
) -> Iterator[Lab]:
    """Start JupyterLab (or, with ``app="notebook"``, Notebook 7) on a loopback port with
    ``tmp/root`` as its root; stop it afterwards.

    Its kernels get ``IMGKIT_HOME=tmp/imgkit-home`` and no ``EVOLINK_API_KEY`` (the sandbox),
    plus ``env``. Jupyter's config, data and settings directories are private to ``tmp``.
    """
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    settings = tmp / "lab-settings"
    _quiet_lab_settings(settings)
    port, token = free_port(), secrets.token_hex(16)
    child_env = {k: v for k, v in os.environ.items() if k not in ("EVOLINK_API_KEY", "OPENAI_API_KEY")}
    child_env.update(
        IMGKIT_HOME=str(tmp / "imgkit-home"),
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
        JUPYTER_DATA_DIR=str(tmp / "jupyter-data"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "lab-workspaces"),
        IPYTHONDIR=str(tmp / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    child_env.update(env or {})
    log = tmp / "jupyterlab.log"
    command = [
        sys.executable,
        "-m",
        app,
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",  # ServerApp.token is its deprecated alias
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.tornado_settings={WEBSOCKET_SETTINGS}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.allow_remote_access=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers often run as root
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=root, env=child_env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, log=log, process=process, app=app)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{lab.log_tail()}")
            try:
                reply = httpx.get(f"{lab.url}/api/status", headers={"Authorization": f"token {token}"}, timeout=2)
                if reply.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {startup_timeout:.0f} s:\n{lab.log_tail()}")
            time.sleep(0.25)
        yield lab
    finally:
        _stop(lab)


def _stop(lab: Lab) -> None:
    process = lab.process
    if process.poll() is None:
        # The server's own shutdown stops its kernels too.
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{lab.url}/api/shutdown", headers={"Authorization": f"token {lab.token}"}, timeout=5)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    # Anything the server started in its own session (kernels) and left behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def chromium(profile: Path, *, width: int = 1400, height: int = 1800) -> Iterator[BrowserContext]:
    """Headless Debian Chromium with a fresh profile, driven by Playwright (no download).

    Raises (never skips) when the browser cannot start.
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (scripts/ensure-test-packages)")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
            timeout=60_000,
        )
        try:
            yield context
        finally:
            context.close()
