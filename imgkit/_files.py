"""Writing a file a user keeps (a report, an export) without ever leaving a half-written
file where a good one was."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_text"]


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path in ``path``'s folder to write to; on success it replaces ``path`` in
    one step (so a reader, or the old file, never sees a partial one), readable by others as
    any file the user saves (0644); on error it is removed and ``path`` is left as it was.

    Example:
        >>> with atomic_path(Path("spend.pdf")) as tmp:
        ...     write_pdf(tmp)
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as done:
            os.fsync(done.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the file is an ordinary one to share
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: Path, text: str | Callable[[], str]) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text() if callable(text) else text, encoding="utf-8")
