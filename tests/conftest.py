"""Shared fixtures: an isolated data directory per test, no key from the environment, and
retries without backoff (stamina's testing mode) so fault tests run fast."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina

import imgkit
from imgkit import session as _session

#: A fake key in the real key's shape; tests search outputs for it.
TEST_KEY = "sk-evo-test_KEY_0123456789_abcdef_SECRET"  # key-shaped, but no real key's long run


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "imgkit-home"
    monkeypatch.setenv("IMGKIT_HOME", str(home))
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("IMGKIT_MODEL", raising=False)  # the default model is gpt-image-1 unless a test sets it
    monkeypatch.delenv("IMGKIT_LEDGER", raising=False)  # the SQLite file in IMGKIT_HOME unless a test says
    with stamina.set_testing(True, attempts=4, cap=True):
        yield home
    if _session._DEFAULT is not None:
        _session._DEFAULT.close()
        _session._DEFAULT = None


@pytest.fixture
def data_dir(_isolated: Path) -> Path:
    return _isolated


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """A sandbox on a real loopback port, fast enough for tests (1 % of real durations)."""
    from imgkit.sandbox import SandboxConfig, running_sandbox

    with running_sandbox(SandboxConfig(seed=7, time_scale=0.01)) as url:
        yield url


#: The task error codes the gateway documents (spec §3), for tests of both sides of the wire.
TASK_ERROR_CODES = [
    "content_policy_violation",
    "invalid_parameters",
    "image_processing_error",
    "image_dimension_mismatch",
    "request_cancelled",
    "generation_failed_no_content",
    "service_error",
    "generation_timeout",
    "resource_exhausted",
    "quota_exceeded",
    "service_unavailable",
    "resource_not_found",
    "unknown_error",
]


#: The header the sandbox's introspection endpoints want (any token will do).
SANDBOX_ADMIN = {"Authorization": "Bearer x"}


def sandbox_tasks(url: str) -> list[dict]:
    """Every task the sandbox at ``url`` has created, from its introspection endpoint."""
    return httpx.get(f"{url}/_sandbox/tasks", headers=SANDBOX_ADMIN, timeout=30).json()["tasks"]


FAST_POLL = imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2, deadline=60.0)


@pytest.fixture
def session(sandbox_url: str, data_dir: Path) -> imgkit.Session:
    """The real client against the loopback sandbox, as the default session (closed by
    the autouse fixture)."""
    return imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)


def pytest_report_header() -> str:
    return f"imgkit {imgkit.__version__}; IMGKIT_HOME isolated per test; pid {os.getpid()}"


# --- PostgreSQL: a throwaway server for the session, a fresh database per test ---------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A PostgreSQL server of the test session's own (tests/pg.py); it FAILS, never skips,
    when the binaries are missing."""
    from . import pg

    try:
        pg.bin_dir()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    with pg.running() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database's URL (no password in it: libpq reads PGPASSWORD, as a team sets it)."""
    from . import pg

    monkeypatch.setenv("PGPASSWORD", pg.PASSWORD)
    return str(pg_server.new_database())


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ledger contract's two backends: a SQLite file, or a fresh PostgreSQL database.
    ``IMGKIT_LEDGER`` points at it, so the session's ledger is that one too."""
    from . import pg

    if request.param == "sqlite":
        target: str | Path = tmp_path / "ledger.sqlite3"
    else:
        target = request.getfixturevalue("pg_url")
    monkeypatch.setenv("IMGKIT_LEDGER", str(target))
    return pg.Backend(request.param, target)
