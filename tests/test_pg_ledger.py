"""The ledger on PostgreSQL against a real server (tests/pg.py): the same frame, sums and
ratings as SQLite; migrations once per database; many processes writing at once; a team budget
that holds across processes; leases that give each unfinished run to one resumer; the server
going away mid-sweep; and the password nowhere a user or a log can see it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import imgkit
from imgkit.errors import ConfigError, ImgkitError, StorageError
from imgkit.ledger import SCHEMA_VERSION, Ledger, LedgerBackend, open_ledger
from imgkit.ledger_pg import LedgerUnavailable, PostgresLedger, safe_url
from imgkit.request import BalanceSnapshot, RunRecord
from imgkit.sandbox import SandboxConfig, running_sandbox

from . import pg
from .conftest import FAST_POLL, SANDBOX_ADMIN, TEST_KEY
from .test_secrets import _document_texts, _texts_of


def _record(i: int, **changes: Any) -> RunRecord:
    record = RunRecord(
        run_id=f"run-{i:05d}", provider="sandbox", model="gpt-image-1", prompt=f"prompt {i}",
        size="1024x1024", quality="low", n=1, est_credits=0.625, created_at=1_790_000_000.0 + i,
    )
    return record.replace(**changes) if changes else record


@pytest.fixture
def pg_ledger(pg_url: str) -> Iterator[PostgresLedger]:
    ledger = open_ledger(pg_url)
    assert isinstance(ledger, PostgresLedger)
    yield ledger
    ledger.close()


@pytest.fixture(scope="module")
def own_sandbox() -> Iterator[str]:
    """A sandbox with room for every run of this module."""
    with running_sandbox(SandboxConfig(seed=43, time_scale=0.01, credits=1e9)) as url:
        yield url


def _created(url: str, prefix: str) -> list[str]:
    """The prompts of the tasks the sandbox created whose prompt starts with ``prefix`` (as
    the sandbox keeps them: without their ``[[...]]`` directives)."""
    tasks = httpx.get(f"{url}/_sandbox/tasks", headers=SANDBOX_ADMIN, timeout=30).json()["tasks"]
    return [t["prompt"] for t in tasks if t["prompt"].startswith(prefix)]


# --- one contract: the same answers as SQLite ------------------------------------------------


def _varied() -> list[RunRecord]:
    """Runs with every kind of value a column can hold, in an order unlike their times."""
    base = _record(0)
    return [
        base.replace(run_id="b-completed", status="completed", task_id="task-b", files=("images/ab/x.png",),
                     thumbs=("thumbs/ab/x.jpg",), tags=("alpha", 'quote"d', "back\\slash"), credits_charged=1.5,
                     submitted_at=base.created_at + 1, completed_at=base.created_at + 9.25, user="ana",
                     project="poster", resolution="2K", background="transparent", output_format="png",
                     tokens_in=12, tokens_out=4160, partial_images=2, host="laptop", data_dir="/home/ana/.imgkit",
                     providers_tried=({"provider": "openai", "reason": "http_503"},), est_usd=0.04, est_cny=0.3,
                     price_sheet="evolink-table-2026-11"),
        base.replace(run_id="a-unknown", status="unknown", created_at=base.created_at + 5, prompt="ünïcode ✓",
                     quality="high", size="1536x1024", tags=("alpha",), user="ben", credits_reserved=2.0,
                     batch_id="batch-1", notes="may have cost"),
        base.replace(run_id="c-failed", status="failed", created_at=base.created_at - 86_400, error_code="x",
                     error_message="boom", reference_images=("https://example.com/r.png",), n=2, quality="medium",
                     est_credits=None),
        base.replace(run_id="d-pending", status="pending", task_id="task-d", created_at=base.created_at + 5,
                     size="1024x1536", progress=40, attempts=2),
    ]


def test_the_frame_sums_and_ratings_equal_sqlites(tmp_path: Path, pg_ledger: PostgresLedger) -> None:
    lite = Ledger(tmp_path / "ledger.sqlite3")
    try:
        pd.testing.assert_frame_equal(pg_ledger.to_dataframe(), lite.to_dataframe())  # empty, typed alike
        for ledger in (lite, pg_ledger):
            ledger.save_many(_varied())
            ledger.add_rating(prompt="p", left_run_id="b-completed", right_run_id="a-unknown",
                              left_quality="low", right_quality="high", choice="right", tag="t", created_at=5.0)
        for data_dir in (None, tmp_path):
            expected = lite.to_dataframe(data_dir=data_dir)
            got = pg_ledger.to_dataframe(data_dir=data_dir)
            assert list(got.columns) == list(expected.columns)
            assert got.dtypes.to_dict() == expected.dtypes.to_dict()
            pd.testing.assert_frame_equal(got, expected)
        pd.testing.assert_frame_equal(pg_ledger.ratings_frame(), lite.ratings_frame())
        for options in ({}, {"by_tag": True}, {"tags": ["alpha"]}, {"qualities": ["high", "medium"]},
                        {"since": 1_790_000_000.0, "until": 1_790_000_005.0, "until_inclusive": False}):
            got, expected = (sorted(ledger.cost_sums(**options), key=lambda r: repr(r[:7])) for ledger in (pg_ledger, lite))
            assert len(got) == len(expected) > 0, options
            for row, want in zip(got, expected, strict=True):
                assert [type(v) for v in row] == [type(v) for v in want], options
                assert list(row) == [pytest.approx(v) if isinstance(v, float) else v for v in want], options
        assert pg_ledger.records() == lite.records()
        assert pg_ledger.records(limit=2, newest_first=True) == lite.records(limit=2, newest_first=True)
        assert pg_ledger.unfinished() == lite.unfinished()
        assert pg_ledger.by_task("task-d") == lite.by_task("task-d")
        assert pg_ledger.spent_credits() == pytest.approx(lite.spent_credits())
        assert pg_ledger.spent_credits(user="ben") == pytest.approx(lite.spent_credits(user="ben")) == 0.625
    finally:
        lite.close()


@pytest.mark.parametrize("data_dir", [None, Path("/data/imgkit")])
def test_the_arrow_built_frame_equals_sqlites(tmp_path: Path, pg_ledger: PostgresLedger,
                                              data_dir: Path | None) -> None:
    """Large ledgers' frames (built from an Arrow table on both backends) are the same too."""
    from .test_ledger_arrow import _records

    records = [r.replace(user=("ana", "ben", None)[i % 3], project="p" if i % 2 else None, tokens_in=i or None)
               for i, r in enumerate(_records())]
    lite = Ledger(tmp_path / "ledger.sqlite3")
    try:
        for ledger in (lite, pg_ledger):
            ledger.ARROW_FROM_ROWS = 0  # type: ignore[misc]
            ledger.save_many(records)
        pd.testing.assert_frame_equal(pg_ledger.to_dataframe(data_dir=data_dir), lite.to_dataframe(data_dir=data_dir),
                                      check_exact=True)
    finally:
        lite.close()


def test_open_ledger_picks_the_backend_by_its_target(tmp_path: Path, pg_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    lite = open_ledger(tmp_path / "l.sqlite3")
    assert isinstance(lite, Ledger)
    lite.close()
    ledger = open_ledger(pg_url.replace("postgresql://", "postgres://"))
    assert isinstance(ledger, PostgresLedger) and ledger.path.startswith("postgres://")
    ledger.close()
    # Unset: the SQLite file in the data directory, as before.
    session = imgkit.configure(sandbox=True)
    assert session.ledger_target == session.data_dir / "ledger.sqlite3"
    assert isinstance(session.ledger, Ledger)
    # IMGKIT_LEDGER, and configure(ledger=...) over it.
    monkeypatch.setenv("IMGKIT_LEDGER", pg_url)
    session = imgkit.configure(sandbox=True)
    assert isinstance(session.ledger, PostgresLedger) and f"(ledger {pg_url})" in session.describe()
    session = imgkit.configure(sandbox=True, ledger=tmp_path / "mine.sqlite3")
    assert isinstance(session.ledger, Ledger) and session.ledger.path == tmp_path / "mine.sqlite3"


def test_migrations_are_versioned_and_a_newer_schema_is_refused(pg_url: str, pg_ledger: PostgresLedger) -> None:
    backend = pg.Backend("postgres", pg_url)
    versions = [row[0] for row in backend.execute("SELECT version FROM imgkit_schema_version ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    again = open_ledger(pg_url)  # a second open finds it done
    again.close()
    assert len(backend.execute("SELECT version FROM imgkit_schema_version")) == SCHEMA_VERSION
    backend.execute("INSERT INTO imgkit_schema_version VALUES (99, 0)")
    with pytest.raises(ConfigError, match="schema 99, newer than this imgkit"):
        open_ledger(pg_url)


def test_backup_says_how_a_database_is_copied(pg_ledger: PostgresLedger, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pg_dump") as info:
        pg_ledger.backup(tmp_path / "copy.sqlite3")
    assert "imgkit ledger export" in str(info.value)
    assert not (tmp_path / "copy.sqlite3").exists()


def test_without_psycopg_the_error_names_the_extra(pg_url: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["psycopg"] = None  # as if it were not installed
        from imgkit.ledger import open_ledger
        from imgkit.errors import ConfigError
        try:
            open_ledger({pg_url!r})
        except ConfigError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "pip install 'imgkit[postgres]'" in out.stdout


def test_balance_snapshots_oldest_first_and_filtered(backend: pg.Backend) -> None:
    ledger = backend.open()
    try:
        _snapshots(ledger)
    finally:
        ledger.close()


def _snapshots(pg_ledger: LedgerBackend) -> None:
    snaps = [
        BalanceSnapshot(taken_at=30.0, provider="evolink", remaining_credits=90.0, binding="key", source="sweep-end",
                        user="ana"),
        BalanceSnapshot(taken_at=10.0, provider="evolink", remaining_credits=100.0, key_remaining=100.0,
                        account_remaining=500.0, binding="key", source="sweep-start", user="ana"),
        BalanceSnapshot(taken_at=20.0, provider="openai", remaining_credits=None, source="balance"),
    ]
    for snap in snaps:
        pg_ledger.add_balance_snapshot(snap)
    assert pg_ledger.balance_snapshots() == [snaps[1], snaps[2], snaps[0]]
    assert pg_ledger.balance_snapshots(provider="evolink", since=10.0, until=29.0) == [snaps[1]]


def test_claim_renew_release(backend: pg.Backend) -> None:
    """On both backends: a lease is taken once, kept by a save, given up, renewed, and free
    again once expired; its holder may claim it again."""
    ledger = backend.open()
    try:
        ledger.save_many([_record(i, status="pending", task_id=f"t{i}") for i in range(4)])
        ledger.save(_record(9, status="completed", task_id="t9"))
        assert [r.run_id for r in ledger.claim("ana", ttl_s=60, run_ids=["run-00001", "run-00009"])] == ["run-00001"]
        assert [r.run_id for r in ledger.claim("ben", ttl_s=60)] == ["run-00000", "run-00002", "run-00003"]
        assert ledger.claim("cy", ttl_s=60) == []  # every lease is held
        # A save keeps the lease: it never writes the lease columns.
        ledger.save(_record(1, status="processing", task_id="t1", progress=50))
        assert ledger.claim("cy", ttl_s=60, run_ids=["run-00001"]) == []
        assert [r.run_id for r in ledger.claim("ana", ttl_s=60)] == ["run-00001"]  # its own, again
        ledger.release("ben", ["run-00000", "run-00001"])  # run-00001 is not ben's: left alone
        assert [r.run_id for r in ledger.claim("cy", ttl_s=60)] == ["run-00000"]
        # An expired lease is free: ana's, renewed to end at once (ben's renewal is not his to make).
        ledger.renew("ben", ["run-00001"], ttl_s=600)
        ledger.renew("ana", ["run-00001"], ttl_s=0.001)
        time.sleep(0.05)
        assert [r.run_id for r in ledger.claim("dee", ttl_s=60)] == ["run-00001"]
        owners = dict(backend.execute("SELECT run_id, lease_owner FROM runs"))
        assert owners == {"run-00000": "cy", "run-00001": "dee", "run-00002": "ben", "run-00003": "ben",
                          "run-00009": None}
    finally:
        ledger.close()


# --- many processes at once ------------------------------------------------------------------


def _race(script: str, args_for: list[list[str]], go: Path, timeout: float) -> list[subprocess.CompletedProcess[str]]:
    """Start one process per argument list, release them together, wait for all."""
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for args in args_for
    ]
    time.sleep(0.5)
    go.touch()
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    for proc in done:
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return done


# The engine's write pattern, straight on the ledger, from a fresh database: every process
# also runs the migrations at the same instant.
WRITER_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from imgkit.ledger import open_ledger
    from imgkit.request import RunRecord
    url, go, worker, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    while not os.path.exists(go):
        time.sleep(0.001)
    ledger = open_ledger(url)
    errors = 0
    for i in range(runs):
        rec = RunRecord(run_id=f"w{worker}-{i:04d}", provider="sandbox", model="gpt-image-1",
                        prompt=f"worker {worker} run {i}", size="1024x1024", quality="low", n=1,
                        est_credits=0.62899, user=f"user{worker}")
        try:
            if i % 10 == 0:
                assert ledger.admit(rec, limit=1e12, since=None) is None
            else:
                ledger.save(rec)
            task = f"task-{worker}-{i:04d}"
            ledger.save(rec.replace(status="pending", task_id=task, submitted_at=time.time()))
            ledger.save(rec.replace(status="completed", task_id=task, completed_at=time.time(),
                                    files=(f"images/00/{task}.png",)))
            if i % 50 == 0:
                ledger.to_dataframe(); ledger.unfinished(); ledger.spent_credits(); ledger.count()
        except Exception as exc:
            errors += 1
            print("error", repr(exc), file=sys.stderr)
    ledger.close()
    print("errors", errors, flush=True)
    """
)


def test_eight_processes_write_250_runs_each(pg_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    done = _race(WRITER_CHILD, [[pg_url, str(go), str(w), "250"] for w in range(8)], go, timeout=600)
    assert [p.stdout.split()[-1] for p in done] == ["0"] * 8  # no process saw an error
    rows = pg.Backend("postgres", pg_url).execute("SELECT run_id, status, task_id, prompt FROM runs")
    assert len(rows) == 2000
    assert {r[1] for r in rows} == {"completed"}
    assert len({r[0] for r in rows}) == len({r[2] for r in rows}) == len({r[3] for r in rows}) == 2000
    versions = pg.Backend("postgres", pg_url).execute("SELECT version FROM imgkit_schema_version")
    assert sorted(v[0] for v in versions) == list(range(1, SCHEMA_VERSION + 1))  # migrated once


BUDGET_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    key, url, data_dir, go, worker, runs, tag, scope, credits = sys.argv[1:10]
    os.environ["IMGKIT_USER"] = f"member{worker}"  # five people
    import imgkit
    imgkit.register_price_sheet({"name": "one-credit", "date": "2026-11-24", "source": "test",
                                 "base_credits": 1.0, "credits_per_usd": 100})
    imgkit.configure(api_key=key, base_url=url, data_dir=data_dir, price_sheet="one-credit",
                     concurrency=50, budget=imgkit.config.Budget(float(credits), scope=scope),
                     poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2))
    while not os.path.exists(go):
        time.sleep(0.001)

    async def main():
        return await asyncio.gather(*(imgkit.agenerate(f"{tag} {worker}-{i}") for i in range(int(runs))),
                                    return_exceptions=True)

    outcomes = asyncio.run(main())
    print(json.dumps({"sent": sum(isinstance(o, imgkit.results.GenerationResult) for o in outcomes),
                      "refused": sum(isinstance(o, imgkit.BudgetExceeded) for o in outcomes),
                      "other": [repr(o) for o in outcomes
                                if not isinstance(o, imgkit.results.GenerationResult | imgkit.BudgetExceeded)]}),
          flush=True)
    """
)


@pytest.mark.parametrize(("scope", "credits"), [("team", 10), ("personal", 2)])
def test_a_team_budget_holds_across_five_processes(pg_url: str, own_sandbox: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, scope: str, credits: int) -> None:
    """Five people's kernels, each with its own data directory, one team ledger: 50 runs at
    once against room for 10 one-credit runs, as a team budget of 10 or as five personal
    budgets of 2."""
    monkeypatch.setenv("IMGKIT_LEDGER", pg_url)
    go = tmp_path / "go"
    tag = f"{scope}-{uuid.uuid4().hex[:8]}"
    args = [[TEST_KEY, own_sandbox, str(tmp_path / f"home-{w}"), str(go), str(w), "10", tag, scope, str(credits)]
            for w in range(5)]
    done = _race(BUDGET_CHILD, args, go, timeout=300)
    counts = [json.loads(p.stdout.strip().splitlines()[-1]) for p in done]
    assert [c["other"] for c in counts] == [[]] * 5
    assert sum(c["sent"] for c in counts) == 10
    assert sum(c["refused"] for c in counts) == 40
    if scope == "personal":
        assert [c["sent"] for c in counts] == [2] * 5
    assert len(_created(own_sandbox, f"{tag} ")) == 10
    users = pg.Backend("postgres", pg_url).execute('SELECT "user" FROM runs')
    assert len(users) == 10 and {u[0] for u in users} <= {f"member{w}" for w in range(5)}


CLAIM_CHILD = textwrap.dedent(
    """
    import json, os, random, sys, time
    from imgkit.ledger import open_ledger
    url, go, owner, seed = sys.argv[1:5]
    ids = [f"run-{i:05d}" for i in range(20)]
    random.Random(int(seed)).shuffle(ids)
    ledger = open_ledger(url)
    while not os.path.exists(go):
        time.sleep(0.001)
    got = []
    for start in range(0, 20, 2):  # a few at a time, in an order of its own
        got += [r.run_id for r in ledger.claim(owner, ttl_s=300, run_ids=ids[start:start + 3])]
    got += [r.run_id for r in ledger.claim(owner, ttl_s=300)]  # and whatever is left
    ledger.close()
    print(json.dumps(sorted(set(got))), flush=True)  # (its own leases come back when it asks again)
    """
)


@pytest.mark.parametrize("seed", [1, 2])
def test_two_processes_claiming_the_same_20_runs_get_each_once(backend: pg.Backend, tmp_path: Path,
                                                                seed: int) -> None:
    ledger = backend.open()
    ledger.save_many([_record(i, status="pending", task_id=f"task-{i}") for i in range(20)])
    ledger.close()
    go = tmp_path / "go"
    args = [[str(backend.target), str(go), f"kernel-{k}", str(seed * 10 + k)] for k in range(2)]
    done = _race(CLAIM_CHILD, args, go, 120)
    first, second = (json.loads(p.stdout.strip().splitlines()[-1]) for p in done)
    assert not set(first) & set(second)
    assert sorted(first + second) == [f"run-{i:05d}" for i in range(20)]
    owners = dict(backend.execute("SELECT run_id, lease_owner FROM runs"))
    assert all(owners[r] == "kernel-0" for r in first) and all(owners[r] == "kernel-1" for r in second)


# --- the server going away -------------------------------------------------------------------


def _wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _pending_with_task(pg_url: str, prefix: str) -> int:
    assert imgkit.get_session().ledger.count() >= 0  # opened: the tables are there
    rows = pg.Backend("postgres", pg_url).execute(
        f"SELECT COUNT(*) FROM runs WHERE task_id IS NOT NULL AND prompt LIKE '{prefix}%'")
    return int(rows[0][0])  # type: ignore[call-overload]


def test_a_sweep_goes_on_while_the_server_restarts(pg_server: pg.Server, pg_url: str, own_sandbox: str,
                                                   data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server stops (pg_ctl stop -m fast) once every run has its task id, and comes back:
    the writes wait for it, every run completes, none is sent twice."""
    monkeypatch.setenv("IMGKIT_LEDGER", pg_url)
    imgkit.configure(api_key=TEST_KEY, base_url=own_sandbox, data_dir=data_dir, poll=FAST_POLL)
    tag = f"restart-{uuid.uuid4().hex[:6]}"
    prompts = [f"{tag} {i} [[seconds:3]]" for i in range(8)]
    out: dict[str, Any] = {}
    sweeping = threading.Thread(target=lambda: out.update(result=imgkit.sweep(
        prompts, quality="low", concurrency=8, confirm=True, progress=False)))
    sweeping.start()
    try:
        _wait_for(lambda: _pending_with_task(pg_url, tag) == 8)
        pg_server.stop("fast")
        time.sleep(2.0)
    finally:
        pg_server.start()
        sweeping.join(timeout=120)
    assert len(out["result"].completed) == 8
    assert imgkit.resume() == []  # nothing left over
    statuses = pg.Backend("postgres", pg_url).execute(f"SELECT status FROM runs WHERE prompt LIKE '{tag}%'")
    assert [s[0] for s in statuses] == ["completed"] * 8
    assert sorted(_created(own_sandbox, tag)) == sorted(p.split(" [[")[0] for p in prompts)  # each sent once


def test_runs_cut_off_from_the_database_finish_after_resume(pg_server: pg.Server, pg_url: str, own_sandbox: str,
                                                            data_dir: Path, caplog: pytest.LogCaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The server stays away longer than the ledger's patience: the runs end with an error
    naming the database and what failed (no password); once it is back, resume() finishes
    every run from the rows committed before, without sending any again."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("IMGKIT_LEDGER", pg_url)
    session = imgkit.configure(api_key=TEST_KEY, base_url=own_sandbox, data_dir=data_dir, poll=FAST_POLL)
    session._ledger = PostgresLedger(pg_url, patience=1.0)  # a short wait, for the test
    tag = f"outage-{uuid.uuid4().hex[:6]}"
    prompts = [f"{tag} {i} [[seconds:2]]" for i in range(6)]

    async def run_all() -> list[Any]:
        return await asyncio.gather(*(imgkit.agenerate(p, quality="low") for p in prompts), return_exceptions=True)

    out: dict[str, Any] = {}
    running = threading.Thread(target=lambda: out.update(outcomes=asyncio.run(run_all())))
    running.start()
    try:
        _wait_for(lambda: _pending_with_task(pg_url, tag) == 6)
        pg_server.stop("fast")
        running.join(timeout=120)
        with pytest.raises(LedgerUnavailable) as read_error:
            imgkit.runs()
    finally:
        pg_server.start()
    # Each run ends as a storage error: its task exists, the ledger could not record its end.
    errors = out["outcomes"]
    assert len(errors) == 6 and all(isinstance(e, StorageError) for e in errors), errors
    shown = str(errors[0])
    assert safe_url(pg_url) in shown and "could not be written" in shown and "imgkit.resume()" in shown
    assert safe_url(pg_url) in str(read_error.value) and "a read failed" in str(read_error.value)
    results = imgkit.resume()
    assert sorted(r.record.prompt for r in results if r.record.status == "completed") == sorted(prompts)
    statuses = pg.Backend("postgres", pg_url).execute(f"SELECT status FROM runs WHERE prompt LIKE '{tag}%'")
    assert [s[0] for s in statuses] == ["completed"] * 6
    # resume() polled the tasks; nothing was sent again.
    assert sorted(_created(own_sandbox, tag)) == sorted(p.split(" [[")[0] for p in prompts)
    assert any("waiting to write" in r.getMessage() for r in caplog.records)
    for text in [*_texts_of(errors[0]), *_texts_of(read_error.value), caplog.text]:
        assert pg.PASSWORD not in text


def test_closing_while_the_server_is_away_gives_up_after_a_short_wait(pg_server: pg.Server, pg_url: str) -> None:
    """A process on its way out (close(), or interpreter exit) does not wait the whole
    patience (five minutes) for a server that is gone: its queued writes fail, named."""
    ledger = open_ledger(pg_url)
    ledger.save(_record(0))
    pg_server.stop("fast")
    try:
        futures = [ledger.save_nowait(_record(i)) for i in range(1, 4)]
        ledger.close()  # (pytest's timeout would end the test long before five minutes)
        errors = [f.exception() for f in futures]
        assert all(isinstance(e, LedgerUnavailable) and "could not be written" in str(e) for e in errors), errors
    finally:
        pg_server.start()
    assert pg.Backend("postgres", pg_url).committed() == {"run-00000"}


class _StopsTheServerAtTheTaskId(PostgresLedger):
    """A team ledger whose server stops (pg_ctl stop -m fast) just before the row with the
    run's task id is written: the real write then fails, as a server going away makes it fail."""

    def __init__(self, url: str, server: pg.Server) -> None:
        super().__init__(url, patience=1.0)
        self.server = server
        self.stopped = False

    async def asave(self, record: RunRecord) -> None:
        if record.task_id is not None and not self.stopped:
            self.stopped = True
            await asyncio.to_thread(self.server.stop, "fast")
        await super().asave(record)


def test_a_task_id_the_database_missed_is_kept_by_the_journal_and_resumed(
    pg_server: pg.Server, pg_url: str, sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server goes away between the create and the ledger row with the task id: the run
    ends unknown (a StorageError naming the database), the task journal holds its id, and once
    the server is back resume() finishes the run with one create in all."""
    from imgkit._loop import LOOP
    from imgkit.engine import Engine
    from imgkit.journal import JOURNAL_NAME, Journal
    from imgkit.request import ImageRequest

    monkeypatch.setenv("IMGKIT_LEDGER", pg_url)
    prompt = f"journal on pg {uuid.uuid4().hex[:8]}"
    first = imgkit.Session(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)
    ledger = _StopsTheServerAtTheTaskId(pg_url, pg_server)
    engine = Engine(first.router, ledger, first.store, poll=FAST_POLL, journal=Journal(data_dir / JOURNAL_NAME))
    plan = first.router.plan(ImageRequest.build(prompt, quality="low"))
    try:
        record = LOOP.run(engine.run(plan, engine.new_record(plan)))
    finally:
        pg_server.start()
        first.close()
        ledger.close()
    assert ledger.stopped and record.status == "unknown" and record.error_code == "storage_error"
    assert record.task_id is not None and safe_url(pg_url) in (record.error_message or "")
    assert [(e.run_id, e.task_id) for e in Journal(data_dir / JOURNAL_NAME).entries()] == [
        (record.run_id, record.task_id)]
    row = pg.Backend("postgres", pg_url).execute(f"SELECT status, task_id FROM runs WHERE run_id = '{record.run_id}'")
    assert row == [("submitting", None)]  # the database never heard of the task

    imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL)
    done = imgkit.resume()
    assert [(r.run_id, r.status, r.record.task_id) for r in done] == [(record.run_id, "completed", record.task_id)]
    assert len(_created(sandbox_url, prompt)) == 1  # one create in all
    assert Journal(data_dir / JOURNAL_NAME).entries() == []


# --- the password ------------------------------------------------------------------------------


def _failure(call: Any) -> list[str]:
    try:
        call()
    except ImgkitError as exc:
        return _texts_of(exc)
    raise AssertionError("expected an error")


@pytest.mark.parametrize("where", ["url", "PGPASSWORD"])
def test_the_password_is_never_shown(pg_server: pg.Server, pg_url: str, own_sandbox: str, data_dir: Path,
                                     tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                     monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    caplog.set_level(logging.DEBUG)
    database = pg_url.rsplit("/", 1)[1]
    if where == "url":
        monkeypatch.delenv("PGPASSWORD")
        url = pg_server.url(database, password=True)
    else:
        url = pg_url
    monkeypatch.setenv("IMGKIT_LEDGER", url)
    texts: list[str] = []
    session = imgkit.configure(api_key=TEST_KEY, base_url=own_sandbox, data_dir=data_dir, poll=FAST_POLL,
                               budget=imgkit.config.Budget(1e6))
    texts += [repr(session), session.describe(), session.describe()._repr_html_(), str(vars(session))]
    ok = imgkit.generate("a team's run", quality="low")
    texts += [repr(ok), ok._repr_html_()]
    ledger = session.ledger
    texts += [repr(ledger), str(vars(ledger)), repr(ledger._writer.__dict__), repr(ledger._pool), str(vars(ledger._pool))]
    texts += _failure(lambda: imgkit.backup(tmp_path / "b.sqlite3"))
    df = imgkit.runs()
    texts += [df.to_csv(), df.to_json(date_format="iso"), repr(df), df.to_html()]
    report = imgkit.report()
    texts += [repr(report), report._repr_html_(), report.to_markdown()]
    exports = tmp_path / "exports"
    exports.mkdir()
    for ext in ("csv", "html", "md"):
        texts += _document_texts(report.save(exports / f"report.{ext}"))
    # A wrong password, a server that is not there, a URL libpq cannot read.
    # (Read from the environment inside the call, so no frame of the test holds a URL.)
    monkeypatch.setenv("WRONG_URL", pg_server.url(database).replace("@", ":wrong-" + pg.PASSWORD[::-1] + "@"))
    texts += _failure(lambda: open_ledger(os.environ["WRONG_URL"]))
    monkeypatch.setenv("NOBODY_URL", url.replace(f":{pg_server.port}/", f":{_closed_port()}/"))
    texts += _failure(lambda: open_ledger(os.environ["NOBODY_URL"]))
    monkeypatch.setenv("BAD_URL", url.replace("postgresql://", "postgresql://[").replace("@", "@@"))
    texts += _failure(lambda: open_ledger(os.environ["BAD_URL"]))
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    texts += [str(r.exc_info) for r in caplog.records if r.exc_info]
    for text in texts:
        assert pg.PASSWORD not in text and pg.PASSWORD[::-1] not in text, text[:2000]
    assert any(f"{safe_url(url)}" in t and "cannot connect" in t for t in texts)
    stored = pg.Backend("postgres", pg_url).execute("SELECT r::text FROM runs AS r")
    assert stored and all(pg.PASSWORD not in row[0] for row in stored)
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert pg.PASSWORD.encode() not in path.read_bytes(), path


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_ledger_satisfies_the_contract(backend: pg.Backend) -> None:
    """Every operation the contract names is there, with its parameters, on both backends."""
    import inspect

    pg_ledger = backend.open()
    pg_ledger.close()

    for name in [n for n in dir(LedgerBackend) if not n.startswith("_")]:
        want = getattr(LedgerBackend, name)
        have = getattr(pg_ledger, name)
        if callable(want):
            assert inspect.signature(have).parameters.keys() - {"self"} == (
                inspect.signature(want).parameters.keys() - {"self"}), name
