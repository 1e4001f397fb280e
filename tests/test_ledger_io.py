"""`imgkit ledger import` and `imgkit ledger export`: merging a personal SQLite ledger into the
current one by run id (idempotent, conflicts reported and never overwritten) and writing runs
to Parquet or CSV atomically; on real SQLite files, through the Python API and the command."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import imgkit
from imgkit import teamio
from imgkit.ledger import Ledger
from imgkit.request import RunRecord

from .conftest import FAST_POLL, TEST_KEY

ROOT = Path(__file__).resolve().parents[1]
DAY = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()


def _run(run_id: str, *, created: float, user: str | None = "ana", **fields: object) -> RunRecord:
    values: dict[str, object] = {
        "run_id": run_id, "provider": "sandbox", "model": "gpt-image-1", "prompt": f"prompt {run_id}",
        "size": "1024x1024", "quality": "low", "n": 1, "status": "completed", "task_id": f"task-{run_id}",
        "est_credits": 0.62899, "est_usd": 0.0087, "est_cny": 0.0629, "price_sheet": "evolink-table-2026-11",
        "credits_reserved": 0.62899, "created_at": created, "submitted_at": created + 1, "completed_at": created + 9,
        "files": (f"images/ab/{run_id}.png",), "thumbs": (f"thumbs/ab/{run_id}.jpg",), "tags": ("team", run_id),
        "providers_tried": ({"provider": "openai", "reason": "circuit_open"},), "user": user, "project": "posters",
        "host": "laptop-7", "data_dir": "/home/ana/.local/share/imgkit",
    }
    values.update(fields)
    return RunRecord(**values)  # type: ignore[arg-type]


def _ledger(path: Path, records: list[RunRecord]) -> Path:
    ledger = Ledger(path)
    try:
        ledger.save_many(records)
    finally:
        ledger.close()
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EVOLINK_API_KEY", "OPENAI_API_KEY")}
    env.update(IMGKIT_HOME=str(home), PYTHONPATH=str(ROOT), IMGKIT_USER="bob")
    return subprocess.run([sys.executable, "-m", "imgkit", *args], env=env, capture_output=True, text=True,
                          timeout=300)


# --- import ------------------------------------------------------------------------------


def test_importing_the_same_file_twice_changes_nothing_the_second_time(
    sandbox_url: str, data_dir: Path, tmp_path: Path
) -> None:
    # Ana's personal ledger: a real run on the sandbox, and older ones.
    ana_home = tmp_path / "ana"
    ana = imgkit.Session(api_key=TEST_KEY, base_url=sandbox_url, data_dir=ana_home, poll=FAST_POLL)
    real = ana.generate("a red fox", quality="low").record
    ana.ledger.save_many([_run(f"old-{i}", created=DAY + i) for i in range(5)])
    ana.close()
    source = ana_home / "ledger.sqlite3"
    before = _digest(source)

    # The team's ledger already has one run of its own.
    team = Ledger(data_dir / "ledger.sqlite3")
    try:
        team.save(_run("bobs-run", created=DAY, user="bob"))
        first = teamio.import_ledger(source, team)
        assert (first.imported, first.identical, first.conflicting) == (6, 0, ())
        frame = team.to_dataframe()
        second = teamio.import_ledger(source, team)
        assert (second.imported, second.identical, second.conflicting) == (0, 6, ())
        pd.testing.assert_frame_equal(team.to_dataframe(), frame)
        assert team.count() == 7
        assert team.get(real.run_id) == real
    finally:
        team.close()
    assert _digest(source) == before  # the source is read, never written
    assert str(second) == f"{source}: imported 0, identical 6, conflicting 0"


def test_a_conflicting_run_is_reported_by_id_and_never_overwritten(tmp_path: Path) -> None:
    source = _ledger(tmp_path / "ana.sqlite3", [_run("r1", created=DAY), _run("r2", created=DAY + 1)])
    team = Ledger(tmp_path / "team.sqlite3")
    try:
        ours = _run("r2", created=DAY + 1, credits_charged=0.7, tags=("kept",))
        team.save(ours)
        result = teamio.import_ledger(source, team)
        assert (result.imported, result.identical, result.conflicting) == (1, 0, ("r2",))
        assert team.get("r2") == ours
        assert "conflicting 1 (kept as they are in the current ledger: r2)" in str(result)
        again = teamio.import_ledger(source, team)
        assert (again.imported, again.identical, again.conflicting) == (0, 1, ("r2",))
    finally:
        team.close()


def test_runs_recorded_without_a_user_are_attributed_to_the_importer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _ledger(tmp_path / "old.sqlite3", [_run("r1", created=DAY, user=None), _run("r2", created=DAY)])
    monkeypatch.setenv("IMGKIT_USER", "ana")
    team = Ledger(tmp_path / "team.sqlite3")
    try:
        assert teamio.import_ledger(source, team).imported == 2
        assert (team.get("r1").user, team.get("r2").user) == ("ana", "ana")  # type: ignore[union-attr]
        assert teamio.import_ledger(source, team).identical == 2  # the same attribution: identical
        # Someone else importing the same file later: the attribution is not a conflict.
        again = teamio.import_ledger(source, team, user="carol")
        assert (again.imported, again.identical, again.conflicting) == (0, 2, ())
        assert team.get("r1").user == "ana"  # type: ignore[union-attr]
        other = Ledger(tmp_path / "other.sqlite3")
        try:
            teamio.import_ledger(source, other, user="carol")
            assert (other.get("r1").user, other.get("r2").user) == ("carol", "ana")  # type: ignore[union-attr]
        finally:
            other.close()
        with pytest.raises(imgkit.ValidationError, match="user"):
            teamio.import_ledger(source, team, user=" ")
    finally:
        team.close()


def test_a_ledger_of_an_earlier_schema_imports(tmp_path: Path) -> None:
    """A ledger from before schema v5 (no user, project, host columns) reads without being
    migrated: the source file is never written."""
    old = tmp_path / "v4.sqlite3"
    conn = sqlite3.connect(old)
    conn.executescript("""
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL, prompt TEXT NOT NULL,
            size TEXT NOT NULL, quality TEXT NOT NULL, n INTEGER NOT NULL, reference_images TEXT NOT NULL DEFAULT '[]',
            mode TEXT NOT NULL, task_id TEXT, status TEXT NOT NULL, progress INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL, files TEXT NOT NULL DEFAULT '[]', tags TEXT NOT NULL DEFAULT '[]',
            est_credits REAL);
        INSERT INTO runs (run_id, provider, model, prompt, size, quality, n, mode, task_id, status, created_at, files,
            est_credits) VALUES ('v4-run', 'gateway', 'gpt-image-1', 'a fox', '1024x1024', 'low', 1, 'text-to-image',
            't1', 'completed', 1764547200.5, '["images/ab/x.png"]', 0.62899);
        PRAGMA user_version = 4;
    """)
    conn.close()
    (tmp_path / "images").mkdir()  # a ledger in its data directory: its images beside it
    before = _digest(old)
    team = Ledger(tmp_path / "team" / "ledger.sqlite3")
    try:
        result = teamio.import_ledger(old, team, user="ana")
        assert result.imported == 1
        run = team.get("v4-run")
        assert run is not None and (run.files, run.user, run.est_credits) == (("images/ab/x.png",), "ana", 0.62899)
        # Where its files went, which the old ledger did not record: this machine, that folder.
        assert (run.host, run.data_dir) == (socket.gethostname(), str(tmp_path))
        assert teamio.import_ledger(old, team).identical == 1
    finally:
        team.close()
    assert _digest(old) == before


def test_what_is_not_an_imgkit_ledger_is_refused_and_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, just some words " * 50)
    team = Ledger(tmp_path / "team.sqlite3")
    try:
        for bad in (other, text):
            before = _digest(bad)
            with pytest.raises(imgkit.ConfigError, match="not an imgkit ledger"):
                teamio.import_ledger(bad, team)
            assert _digest(bad) == before
        odd = _ledger(tmp_path / "odd.sqlite3", [_run("r1", created=DAY), _run("r2", created=DAY + 1)])
        conn = sqlite3.connect(odd)
        conn.execute("UPDATE runs SET status = 'teleported' WHERE run_id = 'r2'")
        conn.commit()
        conn.close()
        with pytest.raises(imgkit.ConfigError, match="run r2 does not read as a run"):
            teamio.import_ledger(odd, team)
        with pytest.raises(imgkit.ConfigError, match="no such file"):
            teamio.import_ledger(tmp_path / "missing.sqlite3", team)
        with pytest.raises(imgkit.ConfigError, match="into itself"):
            teamio.import_ledger(tmp_path / "team.sqlite3", team)
        assert team.count() == 0
    finally:
        team.close()


def test_the_command_imports_twice_and_reports_conflicts(tmp_path: Path) -> None:
    source = _ledger(tmp_path / "ana.sqlite3", [_run(f"r{i}", created=DAY + i) for i in range(3)])
    home = tmp_path / "home"
    first = _cli("ledger", "import", str(source), home=home)
    assert first.returncode == 0, first.stderr
    assert "imported 3, identical 0, conflicting 0" in first.stderr
    second = _cli("ledger", "import", str(source), home=home)
    assert second.returncode == 0, second.stderr
    assert "imported 0, identical 3, conflicting 0" in second.stderr

    changed = Ledger(tmp_path / "ana-later.sqlite3")
    try:
        changed.save_many([_run("r1", created=DAY + 1, credits_charged=0.5), _run("r9", created=DAY + 9)])
    finally:
        changed.close()
    third = _cli("ledger", "import", str(tmp_path / "ana-later.sqlite3"), home=home)
    assert third.returncode == 1, third.stderr
    assert "imported 1, identical 0, conflicting 1" in third.stderr
    assert "conflict: run r1 differs" in third.stderr
    refused = _cli("ledger", "import", str(tmp_path / "missing.sqlite3"), home=home)
    assert refused.returncode == 2 and "no such file" in refused.stderr


# --- export ------------------------------------------------------------------------------


def _team(tmp_path: Path) -> Ledger:
    ledger = Ledger(tmp_path / "team.sqlite3")
    ledger.save_many([
        _run("nov-30", created=DAY - 3600),
        _run("dec-01-a", created=DAY + 10),
        _run("dec-01-b", created=DAY + 86399, user="bob"),
        _run("dec-02", created=DAY + 86400 + 5, tags=(), providers_tried=()),
    ])
    return ledger


def test_export_to_parquet_keeps_every_column_and_list(tmp_path: Path) -> None:
    ledger = _team(tmp_path)
    try:
        done = teamio.export_ledger(tmp_path / "team.parquet", ledger)
        assert (done.runs, done.format) == (4, "parquet")
        table = pq.read_table(tmp_path / "team.parquet")
        assert table.column_names == list(ledger.to_dataframe().columns)
        df = table.to_pandas()
    finally:
        ledger.close()
    assert list(df["run_id"]) == ["nov-30", "dec-01-a", "dec-01-b", "dec-02"]
    assert list(df["user"]) == ["ana", "ana", "bob", "ana"]
    assert list(df.loc[0, "tags"]) == ["team", "nov-30"] and list(df.loc[3, "tags"]) == []
    assert list(df.loc[0, "files"]) == ["images/ab/nov-30.png"]  # relative to the run's data_dir
    assert json.loads(df.loc[0, "providers_tried"]) == [{"provider": "openai", "reason": "circuit_open"}]
    assert df.loc[0, "est_credits"] == 0.62899
    assert str(df["created_at"].dt.tz) == "UTC"


def test_export_filters_by_date_and_until_a_date_takes_the_whole_day(tmp_path: Path) -> None:
    ledger = _team(tmp_path)
    try:
        teamio.export_ledger(tmp_path / "dec1.csv", ledger, since="2026-12-01", until="2026-12-01")
        teamio.export_ledger(tmp_path / "from-dec1.parquet", ledger, since=dt.date(2026, 12, 1))
        teamio.export_ledger(tmp_path / "to-noon.csv", ledger, until="2026-12-01T12:00:00+00:00")
        with pytest.raises(imgkit.ValidationError, match="since"):
            teamio.export_ledger(tmp_path / "bad.csv", ledger, since="first of December")
        with pytest.raises(imgkit.ValidationError, match="until"):
            teamio.export_ledger(tmp_path / "bad.csv", ledger, since="2026-12-02", until="2026-12-01")
        with pytest.raises(imgkit.ValidationError, match=r"\.parquet or \.csv"):
            teamio.export_ledger(tmp_path / "team.xlsx", ledger)
    finally:
        ledger.close()
    dec1 = pd.read_csv(tmp_path / "dec1.csv")
    assert list(dec1["run_id"]) == ["dec-01-a", "dec-01-b"]
    assert list(dec1["created_at"]) == ["2026-12-01T00:00:10Z", "2026-12-01T23:59:59Z"]
    assert json.loads(dec1.loc[0, "tags"]) == ["team", "dec-01-a"]
    assert list(pq.read_table(tmp_path / "from-dec1.parquet").column("run_id").to_pylist()) == [
        "dec-01-a", "dec-01-b", "dec-02"]
    assert list(pd.read_csv(tmp_path / "to-noon.csv")["run_id"]) == ["nov-30", "dec-01-a"]
    assert not (tmp_path / "bad.csv").exists() and not (tmp_path / "team.xlsx").exists()


def test_export_replaces_a_file_atomically_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "team.csv"
    target.parent.mkdir()
    target.write_text("an older export\n")
    ledger = _team(tmp_path)
    try:
        teamio.export_ledger(target, ledger, since="2026-12-02")
    finally:
        ledger.close()
    assert list(pd.read_csv(target)["run_id"]) == ["dec-02"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["team.csv"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_the_command_exports(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    _team(home).close()
    (home / "team.sqlite3").rename(home / "ledger.sqlite3")
    done = _cli("ledger", "export", "--since", "2026-12-01", "-o", str(tmp_path / "team.parquet"), home=home)
    assert done.returncode == 0, done.stderr
    assert f"exported 3 runs to {tmp_path / 'team.parquet'} (parquet)" in done.stderr
    assert pq.read_table(tmp_path / "team.parquet").num_rows == 3
    bad = _cli("ledger", "export", "--since", "yesterday", "-o", str(tmp_path / "x.csv"), home=home)
    assert bad.returncode == 2 and "since" in bad.stderr and not (tmp_path / "x.csv").exists()
