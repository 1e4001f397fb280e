"""A throwaway PostgreSQL server for the tests: Debian's binaries, ``initdb`` into a temporary
folder, ``pg_ctl`` on a free loopback port (its socket in that folder), run as an unprivileged
user (as root: the ``postgres`` OS user, through ``runuser``). A role with a password owns a
fresh database per test; the server stops at the end of the session, also after a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

#: The role the tests connect as, and its password: the secrets scan looks for it.
ROLE = "imgkit_team"
PASSWORD = "pg-Secret_7f3a9c2e1d"  # a password no output may ever show

MISSING = (
    "PostgreSQL's server binaries are missing (no /usr/lib/postgresql/*/bin/initdb): install the "
    "Debian package postgresql (scripts/ensure-test-packages does)"
)


def bin_dir() -> Path:
    """The newest /usr/lib/postgresql/N/bin with initdb and pg_ctl; RuntimeError if none."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found or not (found[-1] / "pg_ctl").exists():
        raise RuntimeError(MISSING)
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One PostgreSQL server on 127.0.0.1:``port``."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="imgkit-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            # initdb and postgres refuse to run as root: the folder belongs to `postgres`.
            shutil.chown(self.root, "postgres", "postgres")
            self.root.chmod(0o700)

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [*(["runuser", "-u", "postgres", "--"] if self.as_root else []), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check,
                              cwd=self.root, env={**os.environ, "LC_ALL": "C.UTF-8"})

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-sync")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        if self.as_root:
            shutil.chown(self.data / "pg_hba.conf", "postgres", "postgres")
        self.start()
        self.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c max_connections=200 -c fsync=off -c full_page_writes=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  check=False)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")
        return ""

    def admin(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database,
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def new_database(self) -> str:
        """A fresh database owned by the role; its URL, without the password."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f"CREATE DATABASE {name} OWNER {ROLE}")
        return self.url(name)

    def url(self, database: str, *, password: bool = False) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{ROLE}{secret}@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running() -> Iterator[Server]:
    """A started server with the role, stopped and removed afterwards."""
    server = Server()
    try:
        server.init()
        yield server
    finally:
        server.close()


# --- one ledger contract, two backends -------------------------------------------------------


class Backend:
    """A ledger target of one kind (``sqlite`` or ``postgres``), and the few things the
    contract tests do beside the ledger: read what is committed from a connection of their
    own, hold the write lock as another kernel would, run raw SQL."""

    def __init__(self, kind: str, target: str | Path) -> None:
        self.kind = kind
        self.target = target

    def __repr__(self) -> str:
        return f"<Backend {self.kind}>"

    def open(self) -> object:
        from imgkit.ledger import open_ledger

        return open_ledger(self.target)

    def execute(self, sql: str) -> list[tuple[object, ...]]:
        if self.kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.target)
            try:
                rows = conn.execute(sql).fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(str(self.target), autocommit=True) as pg:
            cursor = pg.execute(sql)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def committed(self) -> set[str]:
        """The run ids committed, read by a connection of its own."""
        return {str(row[0]) for row in self.execute("SELECT run_id FROM runs")}

    @contextlib.contextmanager
    def write_locked(self) -> Iterator[None]:
        """Hold the runs table's write lock from another connection, so the ledger's next
        transaction waits and the writes queued meanwhile pile up."""
        if self.kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.target, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                conn.execute("COMMIT")
                conn.close()
            return
        import psycopg

        with psycopg.connect(str(self.target)) as pg:
            pg.execute("LOCK TABLE runs IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                pg.commit()

    def transactions(self) -> int:
        """How many write transactions the rows of ``runs`` were committed in (PostgreSQL:
        their distinct ``xmin``; SQLite: the WAL's frames, a page or a few per commit)."""
        if self.kind == "sqlite":
            return int(self.execute("PRAGMA wal_checkpoint")[0][1])  # type: ignore[call-overload]
        return int(self.execute("SELECT COUNT(DISTINCT xmin::text) FROM runs")[0][0])  # type: ignore[call-overload]

    @property
    def integrity_error(self) -> type[Exception]:
        if self.kind == "sqlite":
            import sqlite3

            return sqlite3.IntegrityError
        import psycopg

        return psycopg.errors.IntegrityError

    @property
    def closed_error(self) -> type[Exception]:
        if self.kind == "sqlite":
            import sqlite3

            return sqlite3.ProgrammingError
        from imgkit.errors import ConfigError

        return ConfigError

    def refuse_prompt(self, prompt: str, message: str) -> None:
        """Make the database refuse rows with ``prompt`` (as a full disk would refuse them)."""
        if self.kind == "sqlite":
            self.execute(
                f"CREATE TRIGGER refuse BEFORE INSERT ON runs WHEN NEW.prompt = '{prompt}' "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
            return
        self.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.prompt = '{prompt}' THEN RAISE EXCEPTION '{message}' USING ERRCODE = '23514'; END IF; "
            "RETURN NEW; END $$"
        )
        self.execute("CREATE TRIGGER refuse BEFORE INSERT ON runs FOR EACH ROW EXECUTE FUNCTION refuse()")
