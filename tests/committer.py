"""Another connection that keeps committing to a ledger file while a test reads it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def committing(path: Path, sql: str, params: Callable[[int], tuple[Any, ...]]) -> Iterator[list[int]]:
    """Run ``sql`` with ``params(k)`` and commit, for k = 1, 2, ..., on a connection of its
    own in a thread, until the block ends; yields a list whose one item counts the commits."""
    stop = threading.Event()
    commits = [0]

    def write() -> None:
        conn = sqlite3.connect(path, timeout=30)
        try:
            while not stop.is_set():
                commits[0] += 1
                conn.execute(sql, params(commits[0]))
                conn.commit()
        finally:
            conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        yield commits
    finally:
        stop.set()
        writer.join()
