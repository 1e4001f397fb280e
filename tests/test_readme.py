"""The README as a test: every Python and shell example in README.md (and in the notebooks'
markdown) runs as written on the sandbox, in a fresh data directory, and prints what the
README says it prints (the ``# →`` lines; see tests/readme_examples.py)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("readme_examples.py")
VENV_BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)

#: Shell lines that other tests run, with the test that does; this one checks they exist.
COVERED_ELSEWHERE = {
    "make lab": "tests/test_make.py::test_make_lab_starts_for_this_user_and_opens_the_quickstart",
    "make demo": "tests/test_make.py::test_make_demo_twice_shows_the_same_figures_and_stays_small",
    "make test": ".ci/run (this test is part of it)",
    "make soak": "tests marked soak; `make test` runs each scenario at a small size (tests/test_faults.py)",
    "make bench": "tests/test_benchmarks_smoke.py runs the same harness at tiny sizes",
    "imgkit.login()": "asks for the key at a hidden prompt: tests/test_secrets.py drives it",
    # A team's ledger: the lines need a PostgreSQL server; this test runs them, as written, on one.
    **dict.fromkeys(
        [
            "psql -c \"CREATE ROLE imgkit LOGIN PASSWORD 'choose-one'\"",
            'psql -c "CREATE DATABASE imgkit OWNER imgkit"',
            'echo "db.internal:5432:imgkit:imgkit:choose-one" >> ~/.pgpass && chmod 600 ~/.pgpass',
            "export IMGKIT_LEDGER=postgresql://imgkit@db.internal/imgkit",
        ],
        "tests/test_pg_setup.py::test_the_readme_team_setup_runs_as_written",
    ),
}
#: Serving commands that run until stopped, by prefix, with the tests that start them.
SERVED_ELSEWHERE = {
    "imgkit app": "tests/test_browser_app.py (the page, end to end) and tests/test_studio_app.py (the command)",
}
#: Fake keys for the example that configures providers by environment variable (it only
#: lists them; nothing is sent).
FAKE_KEYS = {"EVOLINK_API_KEY": "sk-evo-readme_FAKE_key_for_listing", "OPENAI_API_KEY": "sk-readme_FAKE_key_for_listing"}


def _examples() -> list[tuple[str, str, str]]:
    """(where, language, code) for every python/bash block of the README and the notebooks'
    markdown cells."""
    docs = [("README.md", (ROOT / "README.md").read_text(encoding="utf-8"))]
    for book in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(book.read_text(encoding="utf-8"))["cells"]
        docs += [(f"{book.name} cell {i}", "".join(c["source"])) for i, c in enumerate(cells)
                 if c["cell_type"] == "markdown"]
    found = []
    for name, text in docs:
        for m in FENCE.finditer(text):
            if m.group(1) in ("python", "bash", "console"):
                line = text.count("\n", 0, m.start()) + 1
                found.append((f"{name}:{line}", m.group(1), m.group(2)))
    return found


EXAMPLES = _examples()
PYTHON = [(where, code) for where, lang, code in EXAMPLES if lang == "python"]
SHELL = [(where, line.split("#")[0].strip()) for where, lang, code in EXAMPLES if lang in ("bash", "console")
         for line in code.splitlines() if line.split("#")[0].strip() and (lang == "bash" or line.startswith("$ "))]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EVOLINK_API_KEY", "OPENAI_API_KEY", "PYTHONPATH")}
    env.update(IMGKIT_HOME=str(home), PATH=f"{VENV_BIN}:{env.get('PATH', '')}", PYTHONPATH=str(ROOT), **extra)
    return env


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def _server(command: str, cwd: Path, env: dict[str, str]) -> Iterator[int]:
    """Run a serving command from the README until the block is done; yield its port."""
    port = int(re.search(r"--port[= ](\d+)", command).group(1))  # type: ignore[union-attr]
    assert not _listening(port), f"port {port}, used by the README's example, is taken"
    log = cwd / "server.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"{command} did not listen within 60 s"
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh folder where `.venv/bin/...` resolves, as in a checkout after `make lab`."""
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(VENV_BIN.parent)
    return work


def test_every_example_is_found() -> None:
    assert len(PYTHON) >= 8 and len(SHELL) >= 6, (len(PYTHON), len(SHELL))


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=[w for w, _ in PYTHON])
def test_python_example_runs_as_written(where: str, code: str, workdir: Path) -> None:
    if code.split("#")[0].strip() in COVERED_ELSEWHERE:
        return
    extra = FAKE_KEYS if "api_key_env" in code else {}
    env = _env(workdir.parent / "imgkit-home", **extra)
    (workdir / "example.py").write_text(code, encoding="utf-8")
    served = next((line for _, line in SHELL if "imgkit sandbox" in line), None)
    needs_server = served is not None and re.search(r"127\.0\.0\.1:(\d+)", code) is not None
    with _server(served, workdir, env) if needs_server else _nothing():  # type: ignore[arg-type]
        run = subprocess.run([sys.executable, str(RUNNER), "example.py"], cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{where}:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_shell_examples_run_as_written(workdir: Path) -> None:
    env = _env(workdir.parent / "imgkit-home")
    seeded = subprocess.run([sys.executable, "-c", "import imgkit; imgkit.generate('a red fox', quality='low')"],
                            cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stderr
    for where, line in SHELL:
        command = line.removeprefix("$ ")
        served = next((k for k in SERVED_ELSEWHERE if command.startswith(k)), None)
        if served is not None:
            for test in SERVED_ELSEWHERE[served].split(" and "):
                assert (ROOT / test.split(" ")[0]).is_file(), test
            continue
        if command in COVERED_ELSEWHERE:
            covered = COVERED_ELSEWHERE[command]
            if covered.startswith("tests/"):
                assert (ROOT / covered.split("::")[0].split(" ")[0]).is_file(), covered
            continue
        if "imgkit sandbox" in command:
            with _server(command, workdir, env) as port:
                import httpx

                answer = httpx.get(f"http://127.0.0.1:{port}/v1/credits", headers={"Authorization": "Bearer x"})
                assert answer.status_code == 200, answer.text
            continue
        cwd = ROOT if command.startswith("make ") else workdir
        run = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"{where}: {command}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
        out = re.search(r"-o (\S+)", command)
        if out:
            assert (workdir / out.group(1)).stat().st_size > 0, command
