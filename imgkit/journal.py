"""The task journal: every task id a service has given, on disk before anything else can fail.

A run's task id is what lets :func:`imgkit.resume` find a paid task again (the gateway has no
endpoint that lists tasks). The engine appends it here the moment the service returns it, and
only then writes the ledger; if that write fails (a full disk, a read-only or locked ledger, a
database that is away), the id survives in this file and ``resume()`` puts it back into the
ledger and finishes the run, with no second create.

The journal is a JSON-lines file (``<data dir>/journal.jsonl``), one object per task::

    {"run_id": "run-...", "task_id": "task-...", "provider": "evolink", "time": 1764700000.0}

Each line is written with one ``O_APPEND`` write and ``fsync``'d (the folder too, when the
file is new), under an advisory lock that :meth:`Journal.compact` also takes, so several
processes may append at once and a compaction never drops a line written meanwhile. A line
cut short by a crash is skipped when read. Entries are dropped (compacted) once the ledger
holds their task ids.

A full disk is the likeliest reason the ledger write fails, and it would stop the journal's
line too; so the journal keeps a reserve file (``journal.jsonl.reserve``, :data:`RESERVE_BYTES`)
beside it and, when an append finds the disk full, deletes the reserve and writes the line in
the space it freed. The reserve is made again once there is room.

It knows nothing of the ledger's backend (SQLite or PostgreSQL): :meth:`Journal.compact` is
told which entries the ledger holds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["JOURNAL_NAME", "Journal", "JournalEntry"]

log = logging.getLogger("imgkit")

#: The journal's file name in the data directory.
JOURNAL_NAME = "journal.jsonl"
#: Bytes kept in reserve for journal lines on a full disk (a few hundred lines).
RESERVE_BYTES = 64 * 1024
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One task id the service gave a run.

    Attributes:
        run_id: imgkit's run id.
        task_id: the service's task id.
        provider: the provider that accepted the task (where to poll it).
        time: when the service answered (Unix seconds).
    """

    run_id: str
    task_id: str
    provider: str
    time: float

    @classmethod
    def parse(cls, line: str) -> JournalEntry | None:
        """The entry on one line, or None for a line that is not one (cut short by a crash)."""
        try:
            data = json.loads(line)
            entry = cls(str(data["run_id"]), str(data["task_id"]), str(data["provider"]), float(data["time"]))
        except (ValueError, KeyError, TypeError):
            return None
        return entry


class Journal:
    """The append-only journal of task ids at ``path``.

    Args:
        path: the JSON-lines file (created with its folder on the first append).

    Example:
        >>> journal = Journal(data_dir / "journal.jsonl")
        >>> journal.append(run_id, task_id, "evolink")
        >>> journal.entries()
        [JournalEntry(run_id='run-...', task_id='task-...', provider='evolink', time=...)]
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._reserve = self.path.with_name(self.path.name + ".reserve")

    def __repr__(self) -> str:
        return f"<Journal {self.path}>"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the journal's advisory lock (between processes; a no-op where there is none)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: appends are still single writes
            yield
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def append(self, run_id: str, task_id: str, provider: str, *, when: float | None = None) -> None:
        """Add one task id and return once it is on disk (fsync'd).

        Raises:
            OSError: it could not be written (a full disk, a read-only folder).
        """
        entry = JournalEntry(run_id, task_id, provider, time.time() if when is None else when)
        line = (json.dumps(asdict(entry), separators=(",", ":")) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            try:
                self._write_line(line)
            except OSError as exc:
                if exc.errno not in _FULL or not self._reserve.exists():
                    raise
                # The disk is full: give up the reserve and write the line in its place.
                self._reserve.unlink()
                self._write_line(line)
                return
            self._keep_reserve()

    def _write_line(self, line: bytes) -> None:
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except OSError:
                # Leave no partial line behind for the retry to follow.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
        if new:
            _fsync_dir(self.path.parent)

    def _keep_reserve(self) -> None:
        """Make the reserve file when it is missing and there is room (best effort)."""
        if self._reserve.exists():
            return
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return
        try:
            _write_all(fd, b"\0" * RESERVE_BYTES)  # real blocks: a sparse file would free nothing
            os.fsync(fd)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                self._reserve.unlink()
            return
        os.close(fd)

    def entries(self) -> list[JournalEntry]:
        """Every entry, oldest first (lines cut short by a crash are skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        parsed = (JournalEntry.parse(line) for line in text.splitlines() if line.strip())
        return [entry for entry in parsed if entry is not None]

    def compact(self, held: Callable[[list[JournalEntry]], Iterable[JournalEntry]]) -> int:
        """Drop the entries the ledger holds; return how many are left.

        Args:
            held: given the entries, returns those whose task id the ledger holds now.

        The file is rewritten (a new file, fsync'd, renamed over the old one) under the lock
        that appends take, so no line written meanwhile is lost. If the rewrite fails (a full
        disk), the journal is left as it was.
        """
        with self._locked():
            entries = self.entries()
            if not entries:
                return 0
            done = set(held(entries))
            keep = [entry for entry in entries if entry not in done]
            if len(keep) == len(entries):
                return len(keep)
            if not keep:
                self.path.unlink(missing_ok=True)
                return 0
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    payload = "".join(json.dumps(asdict(e), separators=(",", ":")) + "\n" for e in keep)
                    _write_all(fd, payload.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(temporary, self.path)
                _fsync_dir(self.path.parent)
            except OSError as exc:
                temporary.unlink(missing_ok=True)
                log.warning("the task journal %s could not be compacted (%s); it keeps every entry", self.path, exc)
                return len(entries)
            return len(keep)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(path: Path) -> None:
    """Make a new or renamed file's directory entry durable (where the platform allows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)
