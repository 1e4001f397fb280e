"""A task id, once the service has given it, is never lost: the journal keeps it when the
ledger write right after the create fails, and resume() finishes the run with no second create."""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest

import imgkit
from imgkit._loop import LOOP
from imgkit.engine import Engine
from imgkit.journal import JOURNAL_NAME, Journal, JournalEntry
from imgkit.ledger import Ledger
from imgkit.request import ImageRequest, RunRecord

from .conftest import FAST_POLL, TEST_KEY, sandbox_tasks


class TaskIdWriteFails(Ledger):
    """A ledger whose first ``limit`` writes of a task id fail as a full disk makes them fail."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(path)
        self.limit = limit
        self.failures = 0

    async def asave(self, record: RunRecord) -> None:
        if record.task_id is not None and self.failures < self.limit:
            self.failures += 1
            raise sqlite3.OperationalError("database or disk is full")
        await super().asave(record)


def _run_with_failing_ledger(
    sandbox_url: str, data_dir: Path, prompt: str, limit: int
) -> tuple[RunRecord, TaskIdWriteFails]:
    first = imgkit.Session(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)
    ledger = TaskIdWriteFails(data_dir / "ledger.sqlite3", limit)
    engine = Engine(first.router, ledger, first.store, poll=FAST_POLL, journal=Journal(data_dir / JOURNAL_NAME))
    plan = first.router.plan(ImageRequest.build(prompt, quality="low"))
    try:
        record = LOOP.run(engine.run(plan, engine.new_record(plan)))
    finally:
        first.close()
    return record, ledger


@pytest.mark.parametrize("limit", [1, 2], ids=["fails-once", "fails-again-after"])
def test_a_failed_ledger_write_after_create_is_resumed_with_one_create(
    sandbox_url: str, data_dir: Path, caplog: pytest.LogCaptureFixture, limit: int
) -> None:
    prompt = f"journal {uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.ERROR, logger="imgkit"):
        record, ledger = _run_with_failing_ledger(sandbox_url, data_dir, prompt, limit)
    assert ledger.failures == limit
    # The run ends unknown, naming its task, the ledger file and what to do; not a raw error.
    assert record.status == "unknown" and record.error_code == "storage_error"
    assert record.task_id is not None
    assert str(data_dir / "ledger.sqlite3") in (record.error_message or "")
    assert "free space" in (record.error_message or "")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(record.run_id in m and record.task_id in m for m in errors), errors
    # The journal has the id. The ledger has it only if the row written after the failure went
    # through; when that failed too, the row still says "submitting", with no task id.
    entries = Journal(data_dir / JOURNAL_NAME).entries()
    assert [(e.run_id, e.task_id) for e in entries] == [(record.run_id, record.task_id)]
    row = ledger.get(record.run_id)
    assert row is not None
    assert (row.status, row.task_id) == (("unknown", record.task_id) if limit == 1 else ("submitting", None))
    ledger.close()

    imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)
    done = imgkit.resume()
    assert [(r.run_id, r.status) for r in done] == [(record.run_id, "completed")]
    assert done[0].record.task_id == record.task_id and len(done[0].paths) == 1
    # Exactly one create reached the service.
    assert len([t for t in sandbox_tasks(sandbox_url) if t["prompt"] == prompt]) == 1
    imgkit.get_session().close()
    assert Journal(data_dir / JOURNAL_NAME).entries() == []  # compacted: the ledger holds it


def test_a_task_id_only_in_the_journal_is_restored(sandbox_url: str, data_dir: Path) -> None:
    """The row stayed 'submitting' without a task id (the ledger refused every write after the
    create); the journal line alone brings the run back."""
    session = imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)
    prompt = f"journal only {uuid.uuid4().hex[:8]}"
    done = imgkit.generate(prompt, quality="low")
    task_id = done.record.task_id
    assert task_id is not None
    # As if the task id had never reached the ledger.
    session.ledger.save(done.record.replace(status="submitting", task_id=None, files=(), thumbs=(),
                                            result_urls=(), completed_at=None))
    journal = Journal(data_dir / JOURNAL_NAME)
    journal.append(done.run_id, task_id, done.record.provider)
    resumed = imgkit.resume()
    assert [(r.run_id, r.status, r.record.task_id) for r in resumed] == [(done.run_id, "completed", task_id)]
    assert "restored from the task journal" in (resumed[0].record.notes or "")
    assert len([t for t in sandbox_tasks(sandbox_url) if t["prompt"] == prompt]) == 1
    assert journal.entries() == []


def test_without_the_journal_the_same_failure_loses_the_task(sandbox_url: str, data_dir: Path) -> None:
    """What the journal prevents: the ledger alone cannot name the task after that failure."""
    first = imgkit.Session(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)
    ledger = TaskIdWriteFails(data_dir / "ledger.sqlite3", 2)
    engine = Engine(first.router, ledger, first.store, poll=FAST_POLL)  # no journal
    plan = first.router.plan(ImageRequest.build(f"no journal {uuid.uuid4().hex[:8]}", quality="low"))
    try:
        record = LOOP.run(engine.run(plan, engine.new_record(plan)))
    finally:
        first.close()
    row = ledger.get(record.run_id)
    ledger.close()
    assert row is not None and row.status == "submitting" and row.task_id is None
    assert not (data_dir / JOURNAL_NAME).exists()
    imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)
    (lost,) = imgkit.resume()
    assert lost.status == "unknown" and lost.record.task_id is None  # the paid task cannot be found


def test_a_journal_that_cannot_be_written_logs_the_task_id(
    sandbox_url: str, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / JOURNAL_NAME).mkdir()  # not a file: every append fails
    imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)
    with caplog.at_level(logging.ERROR, logger="imgkit"):
        res = imgkit.generate("journal refused", quality="low")
    assert res.status == "completed"  # the ledger took it: the run goes on
    assert any(res.record.task_id in r.getMessage() and res.run_id in r.getMessage() for r in caplog.records)


def test_lines_cut_short_are_skipped_and_compaction_keeps_the_rest(tmp_path: Path) -> None:
    journal = Journal(tmp_path / JOURNAL_NAME)
    journal.append("run-a", "task-a", "gateway", when=1.0)
    journal.append("run-b", "task-b", "gateway", when=2.0)
    with open(journal.path, "a", encoding="utf-8") as f:
        f.write('{"run_id": "run-c", "task_')  # a crash mid-line
    assert [e.task_id for e in journal.entries()] == ["task-a", "task-b"]
    left = journal.compact(lambda entries: [e for e in entries if e.task_id == "task-a"])
    assert left == 1
    assert journal.entries() == [JournalEntry("run-b", "task-b", "gateway", 2.0)]
    assert journal.compact(lambda entries: entries) == 0
    assert not journal.path.exists()


def test_appends_from_many_threads_survive_compaction(tmp_path: Path) -> None:
    journal = Journal(tmp_path / JOURNAL_NAME)
    stop = threading.Event()

    def writer(k: int) -> None:
        for i in range(40):
            journal.append(f"run-{k}-{i}", f"task-{k}-{i}", "gateway")

    def compactor() -> None:
        while not stop.is_set():  # drops the even ones only
            journal.compact(lambda entries: [e for e in entries if int(e.task_id.rsplit("-", 1)[1]) % 2 == 0])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    squeeze = threading.Thread(target=compactor)
    squeeze.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    squeeze.join()
    left = {e.task_id for e in journal.entries()}
    odd = {f"task-{k}-{i}" for k in range(6) for i in range(40) if i % 2}
    assert odd <= left  # no line written during a compaction was lost
