"""Execute the example notebooks headless, as `make demo` and the tests do.

Each notebook runs in a fresh kernel with the working directory set to the output folder (so
the reports it exports land there) and its own data directory, emptied first
(``<out>/imgkit-home/<notebook>``), so a demo never mixes with the user's real ledger and a
second run shows the same figures as the first instead of adding to them. Executed copies are
saved beside the exports; a line per notebook says how long it took and how large the saved
notebook is.

Usage:
    python scripts/execute_notebooks.py [--out build/notebooks] [NOTEBOOK ...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set one environment variable (which the kernel inherits) for the duration."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def execute(
    notebook: Path, out: Path, *, timeout: int = 600, kernel: str = "python3", data_dir: Path | None = None
) -> tuple[Path, float, int]:
    """Run one notebook on a fresh, empty data directory; return the executed copy's path,
    seconds taken and saved bytes.

    Args:
        notebook: the ``.ipynb`` to run.
        out: the working directory of the kernel; the executed copy is saved there.
        timeout: seconds any one cell may take.
        kernel: the kernel name.
        data_dir: the notebook's ``IMGKIT_HOME``; emptied first. Default
            ``<out>/imgkit-home/<notebook stem>``.
    """
    out.mkdir(parents=True, exist_ok=True)
    home = data_dir or out / "imgkit-home" / notebook.stem
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    nb = nbformat.read(notebook, as_version=4)
    started = time.perf_counter()
    with _env("IMGKIT_HOME", str(home)):
        NotebookClient(nb, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(out)}}).execute()
    seconds = time.perf_counter() - started
    target = out / notebook.name
    nbformat.write(nb, target)
    return target, seconds, target.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "notebooks")
    parser.add_argument("--live", action="store_true", help="use EVOLINK_API_KEY (spends credits); default: sandbox")
    args = parser.parse_args(argv)
    books = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.live:
        if not os.environ.get("EVOLINK_API_KEY"):
            parser.error("--live needs EVOLINK_API_KEY")
        print("note: --live: the notebooks use the live service and spend credits", file=sys.stderr)
    else:
        os.environ.pop("EVOLINK_API_KEY", None)
    for book in books:
        target, seconds, size = execute(book, args.out.resolve())
        print(f"{book.name}: {seconds:.1f} s, {size / 1024:.0f} KiB -> {target}")
    print(f"exports and executed copies are in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
