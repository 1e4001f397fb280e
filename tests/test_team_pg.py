"""The team features on a real PostgreSQL ledger (the test session's own server): runs()
shows your own runs by default, a personal budget counts only yours while a team budget
counts everyone's, and `ledger import`/`export` work on the team's database as on a file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import imgkit
from imgkit import teamio
from imgkit.ledger import Ledger
from imgkit.request import RunRecord

from .conftest import FAST_POLL, TEST_KEY

DAY = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()


def _as(user: str, pg_url: str, sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> imgkit.Session:
    monkeypatch.setenv("IMGKIT_USER", user)
    return imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir / user, poll=FAST_POLL,
                            ledger=pg_url, project="posters" if user == "ana" else None)


def test_on_a_team_ledger_runs_shows_your_own_by_default(
    pg_url: str, sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as("ana", pg_url, sandbox_url, data_dir, monkeypatch)
    imgkit.generate("ana's fox", quality="low")
    session = _as("bob", pg_url, sandbox_url, data_dir, monkeypatch)
    assert session.team_ledger
    imgkit.generate("bob's fox", quality="low")
    assert list(imgkit.runs()["prompt"]) == ["bob's fox"]
    assert list(imgkit.runs(user="me")["prompt"]) == ["bob's fox"]
    everyone = imgkit.runs(user="all")
    assert list(everyone["user"].astype(str)) == ["ana", "bob"]
    assert list(everyone["project"].astype("string").fillna("(none)")) == ["posters", "(none)"]
    assert list(imgkit.runs(user="all", project="posters")["prompt"]) == ["ana's fox"]
    # Ana's files are in her image directory, and runs() says so.
    (ana_files,) = imgkit.runs(user="ana")["files"]
    assert ana_files[0].startswith(f"{data_dir / 'ana'}/images/") and Path(ana_files[0]).is_file()


def test_on_a_team_ledger_a_personal_budget_counts_your_runs_and_a_team_budget_everyones(
    pg_url: str, sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as("ana", pg_url, sandbox_url, data_dir, monkeypatch)
    one = imgkit.generate("ana's fox", quality="low").record.est_credits
    assert one is not None
    imgkit.generate("ana's lighthouse", quality="low")
    session = _as("bob", pg_url, sandbox_url, data_dir, monkeypatch)
    imgkit.budget(credits=one * 1.5)  # personal: Ana's two runs do not count against Bob
    assert session.remaining_budget() == pytest.approx(one * 1.5)
    imgkit.generate("bob's fox", quality="low")
    with pytest.raises(imgkit.BudgetExceeded) as personal:
        imgkit.generate("bob's second fox", quality="low")
    assert "(personal budget: bob's runs in the team ledger count;" in str(personal.value)
    imgkit.budget(credits=one * 3.5, per="month", scope="team")  # everyone's three runs count
    assert session.remaining_budget() == pytest.approx(one * 0.5)
    with pytest.raises(imgkit.BudgetExceeded) as team:
        imgkit.generate("bob's third fox", quality="low")
    assert "(team budget: everyone's runs in the ledger count;" in str(team.value)
    assert len(imgkit.runs(user="all")) == 3  # refused runs were never sent nor recorded


def _run(run_id: str, created: float, **fields: object) -> RunRecord:
    values: dict[str, object] = {
        "run_id": run_id, "provider": "sandbox", "model": "gpt-image-1", "prompt": f"prompt {run_id}",
        "size": "1024x1024", "quality": "low", "n": 1, "status": "completed", "task_id": f"task-{run_id}",
        "est_credits": 0.62899, "credits_reserved": 0.62899, "created_at": created, "submitted_at": created + 1,
        "completed_at": created + 9.25, "files": (f"images/ab/{run_id}.png",), "tags": ("team",),
        "providers_tried": ({"reason": "circuit_open", "provider": "openai"},), "host": "laptop-7",
        "data_dir": "/home/ana/.local/share/imgkit",
    }
    values.update(fields)
    return RunRecord(**values)  # type: ignore[arg-type]


def test_a_personal_ledger_imports_into_the_team_database_once(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgkit.ledger_pg import PostgresLedger

    source = Ledger(tmp_path / "ana.sqlite3")
    source.save_many([_run(f"r{i}", DAY + i * 3600, user=None if i == 0 else "ana") for i in range(30)])
    source.close()
    monkeypatch.setenv("IMGKIT_USER", "ana")
    team = PostgresLedger(pg_url)
    try:
        team.save(_run("r29", DAY + 29 * 3600, user="ana", credits_charged=0.6))  # a conflict
        first = teamio.import_ledger(tmp_path / "ana.sqlite3", team)
        assert (first.imported, first.identical, first.conflicting) == (29, 0, ("r29",))
        frame = team.to_dataframe()
        second = teamio.import_ledger(tmp_path / "ana.sqlite3", team)
        assert (second.imported, second.identical, second.conflicting) == (0, 29, ("r29",))
        pd.testing.assert_frame_equal(team.to_dataframe(), frame)
        assert team.get("r0").user == "ana"  # type: ignore[union-attr]
        assert team.get("r29").credits_charged == 0.6  # type: ignore[union-attr]
        done = teamio.export_ledger(tmp_path / "team.parquet", team, since="2026-12-01T12:00:00")
        assert done.runs == 18
        table = pq.read_table(tmp_path / "team.parquet")
        assert table.column("run_id").to_pylist() == [f"r{i}" for i in range(12, 30)]
        assert table.column("tags").to_pylist()[0] == ["team"]
    finally:
        team.close()


def test_the_commands_import_and_export_the_team_database_without_showing_its_password(
    pg_url: str, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    from . import pg

    source = Ledger(tmp_path / "ana.sqlite3")
    source.save_many([_run(f"r{i}", DAY + i, user="ana") for i in range(4)])
    source.close()
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "IMGKIT_LEDGER": pg_url, "PYTHONPATH": root, "IMGKIT_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "imgkit", *args], env=env, capture_output=True, text=True,
                              timeout=300)

    outputs = [cli("ledger", "import", str(tmp_path / "ana.sqlite3")), cli("ledger", "import", str(tmp_path / "ana.sqlite3")),
               cli("ledger", "export", "-o", str(tmp_path / "team.csv")), cli("runs", "--user", "all")]
    for out in outputs:
        assert out.returncode == 0, out.stderr
        assert pg.PASSWORD not in out.stdout + out.stderr
    assert "imported 4, identical 0, conflicting 0" in outputs[0].stderr
    assert "imported 0, identical 4, conflicting 0" in outputs[1].stderr
    assert "exported 4 runs" in outputs[2].stderr
    assert list(pd.read_csv(tmp_path / "team.csv")["run_id"]) == ["r0", "r1", "r2", "r3"]
    assert len(outputs[3].stdout.splitlines()) == 5 and " ana " in outputs[3].stdout
    assert not (tmp_path / "home" / "ledger.sqlite3").exists()  # the team's database, not a file
