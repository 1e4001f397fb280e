"""Retries are told, not logged: stamina's bare ``stamina.retry_scheduled`` lines no longer
reach stderr; each retry of a run's request becomes a progress event ("rate limited; retrying
in 1.3 s (2 of 5)") that the sweep's bar, an ``on_event`` handler and a log handler render. A
create the service refuses reads as a refused request, never as "task ? failed"."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

import pandas as pd
import pytest
import stamina

import imgkit
from imgkit.errors import APIError, DownloadError, RequestError
from imgkit.providers._http import RetryNotice, install_retry_hooks, retry_reason
from imgkit.request import JobEvent
from imgkit.sandbox import FaultConfig, SandboxConfig, running_sandbox

from .conftest import FAST_POLL, TEST_KEY

NOTICE = re.compile(r"^rate limited; retrying in \d+\.\d s \((\d+) of (\d+)\)$")


def test_a_rate_limited_create_is_told_as_events_and_log_lines_not_on_stderr(
    session: imgkit.Session, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    events: list[JobEvent] = []
    with caplog.at_level(logging.INFO, logger="imgkit"), pytest.raises(imgkit.TaskFailed) as caught:
        imgkit.generate("a fox [[http:429]]", quality="low", on_event=events.append)
    told = [e for e in events if e.message.startswith("rate limited")]
    assert told, [e.message for e in events]
    attempts = []
    for event in told:
        match = NOTICE.match(event.message)
        assert match, event.message
        attempts.append(int(match.group(1)))
        assert event.status == "submitting" and event.record is not None  # the run's state, unchanged
    assert attempts == list(range(2, 2 + len(told)))
    # A log handler sees the same notices, with the run id.
    lines = [r.getMessage() for r in caplog.records if r.name == "imgkit" and "retrying in" in r.getMessage()]
    assert len(lines) == len(told) and all(line.startswith(f"run {told[0].run_id}: rate limited") for line in lines)
    # Nothing from stamina on stderr (or anywhere a notebook shows it).
    out, err = capfd.readouterr()
    assert "stamina" not in err and "stamina" not in out
    assert not [r for r in caplog.records if r.name == "stamina"]
    # When it gives up: a refused request, not "task ? failed".
    text = str(caught.value)
    assert "task ?" not in text and "the service refused the request (no task was created" in text
    assert "kept refusing with 429" in text


def test_a_refused_key_reads_as_refused_and_is_not_retried(
    session: imgkit.Session, capfd: pytest.CaptureFixture[str]
) -> None:
    events: list[JobEvent] = []
    with pytest.raises(imgkit.TaskFailed) as caught:
        imgkit.generate("a fox [[http:401]]", quality="low", on_event=events.append)
    text = str(caught.value)
    assert "task ?" not in text and "the API key was refused" in text and "nothing was charged" in text
    assert not [e for e in events if "retrying" in e.message]
    run = imgkit.runs().iloc[-1]
    assert run["status"] == "failed" and pd.isna(run["task_id"])
    assert "stamina" not in capfd.readouterr().err


def test_the_sweep_bar_shows_the_retry(session: imgkit.Session, capsys: pytest.CaptureFixture[str]) -> None:
    out = imgkit.sweep([f"bar {uuid.uuid4().hex[:6]} [[http:429]]"], quality="low", confirm=True, progress=True)
    assert out.results[0].status == "failed"
    captured = capsys.readouterr()
    assert re.search(r"rate limited; retrying in \d+\.\d s \(\d+ of \d+\)", captured.out), captured.out[-2000:]
    assert "stamina" not in captured.err


def test_polls_retried_after_a_429_are_told_too(data_dir: Path) -> None:
    with running_sandbox(SandboxConfig(seed=3, time_scale=0.01, faults=FaultConfig(poll_429=0.5))) as url:
        imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        events: list[JobEvent] = []
        res = imgkit.generate("a fox [[seconds:0.5]]", quality="low", on_event=events.append, raise_on_error=False)
        imgkit.get_session().close()
    told = [e for e in events if "retrying in" in e.message]
    assert res.status in ("completed", "unknown")
    assert told and all(NOTICE.match(e.message) for e in told)
    assert {e.status for e in told} <= {"pending", "processing"}


@pytest.mark.parametrize(("exc", "reason"), [
    (APIError(429, "rate_limit_exceeded", "slow down"), "rate limited"),
    (APIError(503, "service_unavailable", "busy"), "the service answered HTTP 503"),
    (RequestError("timed out connecting to x (ConnectTimeout); nothing was sent", sent=False), "a request timed out"),
    (RequestError("could not connect to x: ConnectError; nothing was sent", sent=False), "the connection failed"),
    (DownloadError("garbled", retryable=True), "a download came back garbled"),
])
def test_retry_reasons_and_the_notice_in_words(exc: Exception, reason: str) -> None:
    assert retry_reason(exc) == reason
    assert str(RetryNotice(reason, 1.26, 2, 5)) == f"{reason}; retrying in 1.3 s (2 of 5)"
    assert str(RetryNotice(reason, 0.0, 3)) == f"{reason}; retrying in 0.0 s (attempt 3)"


def test_a_users_own_stamina_retries_still_log(caplog: pytest.LogCaptureFixture) -> None:
    """imgkit quiets stamina only for its own requests."""
    install_retry_hooks()
    calls = []

    @stamina.retry(on=ValueError, attempts=2)
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("once")
        return "ok"

    with caplog.at_level(logging.WARNING, logger="stamina"):
        assert flaky() == "ok"
    assert [r.getMessage() for r in caplog.records if r.name == "stamina"] == ["stamina.retry_scheduled"]


def test_the_studio_card_shows_a_retry_until_the_next_status(session: imgkit.Session) -> None:
    from imgkit.widgets import Studio

    s = Studio(quality="low")
    s.generate_button.click()  # no running loop here: the run completes before click returns
    record = s.results[0].record
    card = s._cards[record.run_id]
    assert card.error.layout.display == "none"
    waiting = record.replace(status="pending", progress=0, files=(), thumbs=())
    s._on_event(card, JobEvent(record.run_id, "pending", 0, "rate limited; retrying in 1.3 s (2 of 5)", waiting))
    assert card.error.layout.display is None and "rate limited; retrying in 1.3 s (2 of 5)" in card.error.value
    s._on_event(card, JobEvent(record.run_id, "processing", 40, "", waiting.replace(status="processing",
                                                                                    progress=40)))
    assert card.error.layout.display == "none"
