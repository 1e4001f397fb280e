"""The README's setup of a team's ledger, run as written on a real PostgreSQL server: the
administrator's two psql lines, a member's ~/.pgpass and IMGKIT_LEDGER, then imgkit on the
sandbox records its run in the database and never shows the password."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from . import pg
from .test_readme import COVERED_ELSEWHERE, ROOT

SECTION = "## A team's ledger on PostgreSQL"
FENCE = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def _setup_blocks() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return [[line for line in block.splitlines() if line.strip()] for block in FENCE.findall(text[start:end])]


def test_the_readme_team_setup_runs_as_written(pg_server: pg.Server, tmp_path: Path) -> None:
    admin, member = _setup_blocks()
    for line in admin + member:  # the README test leaves these lines to this test
        assert COVERED_ELSEWHERE[line].startswith("tests/test_pg_setup.py::"), line
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "IMGKIT_", "EVOLINK", "OPENAI"))}
    env |= {"HOME": str(home), "IMGKIT_HOME": str(tmp_path / "imgkit-home"),
            "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    # The administrator connects as the server's superuser; "db.internal" is this server.
    where = f"127.0.0.1:{pg_server.port}"
    admin_env = env | {"PGHOST": "127.0.0.1", "PGPORT": str(pg_server.port), "PGUSER": "postgres",
                       "PGDATABASE": "postgres"}
    done = subprocess.run(["bash", "-ec", "\n".join(admin)], env=admin_env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    check = textwrap.dedent(
        """
        import imgkit
        imgkit.configure(sandbox=True)
        imgkit.generate("a team's first run", quality="low")
        s = imgkit.get_session()
        print(type(s.ledger).__name__, s.ledger.count(), s.describe(), repr(s.ledger), sep="\\n")
        """
    )
    (tmp_path / "check.py").write_text(check)
    script = "\n".join(
        line.replace("db.internal:5432", where).replace("db.internal", where) for line in member
    ) + f"\n{sys.executable} {tmp_path / 'check.py'}"
    done = subprocess.run(["bash", "-ec", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    kind, count, described, shown = done.stdout.strip().splitlines()[-4:]
    assert (kind, count) == ("PostgresLedger", "1")
    assert f"(ledger postgresql://imgkit@{where}/imgkit)" in described and f"@{where}/imgkit" in shown
    assert "choose-one" not in done.stdout + done.stderr
    assert (home / ".pgpass").stat().st_mode & 0o077 == 0
    rows = pg.Backend("postgres", f"postgresql://postgres@{where}/imgkit").execute("SELECT prompt FROM runs")
    assert rows == [("a team's first run",)]
