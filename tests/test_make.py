"""The README's first command and the headless demo, run as a new user would: `make lab` as
this user (root here, as in Docker images and CI boxes) and `make demo` twice."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
KIB = 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.notebooks
def test_make_lab_starts_for_this_user_and_opens_the_quickstart() -> None:
    port, token = _free_port(), "make-lab-test-token"
    extra = f"--port={port} --no-browser --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token}"
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_ARGS={extra}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={k: v for k, v in os.environ.items() if k != "EVOLINK_API_KEY"},
    )
    try:
        status = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/api/status", params={"token": token}, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert proc.poll() is None, "make lab exited"
        assert status is not None and status.status_code == 200, status
        assert httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=5).status_code == 403  # the token is needed
        book = httpx.get(f"http://127.0.0.1:{port}/api/contents/01-quickstart.ipynb", params={"token": token,
                         "content": "0"}, timeout=10)
        assert book.status_code == 200 and book.json()["type"] == "notebook"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    command = next(line for line in output.splitlines() if "jupyter lab" in line)
    assert "notebooks/01-quickstart.ipynb" in command
    assert "websocket_max_message_size" in command and f"--port={port}" in command  # LAB_ARGS adds, never replaces
    assert ("--allow-root" in command) == (os.geteuid() == 0)
    assert "Running as root is not recommended" not in output


def _report_line(book: Path) -> str:
    """What notebook 03's report cell shows: "<CostReport <day>: N runs, X credits ...>",
    without the day."""
    nb = nbformat.read(book, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("rep = imgkit.report("):
            text = "".join(o["data"]["text/plain"] for o in cell.outputs if o.output_type == "execute_result")
            return re.sub(r"^<CostReport [^:]*:", "", text)
    raise AssertionError("no report cell in notebook 03")


@pytest.mark.notebooks
def test_make_demo_twice_shows_the_same_figures_and_stays_small(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    lines = []
    for _ in range(2):
        run = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO_OUT={out}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=900,
                             env={k: v for k, v in os.environ.items() if k not in ("EVOLINK_API_KEY", "IMGKIT_HOME")})
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
        lines.append(_report_line(out / "03-cost-report.ipynb"))
        for book in sorted(out.glob("*.ipynb")):
            size = book.stat().st_size
            assert size < 250 * KIB, f"{book.name} saves as {size / KIB:.0f} KiB"
            errors = [o for c in json.loads(book.read_text())["cells"] for o in c.get("outputs", [])
                      if o.get("output_type") == "error"]
            assert not errors, book.name
    assert re.search(r"\d+ runs", lines[0]), lines[0]
    assert lines[0] == lines[1]
