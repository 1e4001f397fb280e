"""5. Import time: ``import imgkit`` against ``import httpx``, each in a fresh interpreter.

The clock runs inside the child around the import statement alone, so interpreter start-up
is not counted. The two imports alternate, pair after pair, so load on the machine hits both.

Both are imported from bytecode, as an installed package is: pip compiles httpx when it
installs it, and an editable imgkit writes its ``__pycache__`` on the first import. A machine
that sets ``PYTHONDONTWRITEBYTECODE`` would otherwise compile imgkit from source on every
import while httpx loads its installed bytecode, so the children write and read bytecode in a
private cache folder (``PYTHONPYCACHEPREFIX``), warmed by one import of each before the clock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._core import Profile, Row

__all__ = ["run"]

SCENARIO = "5 import time"
_CHILD = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str, pycache: str) -> float:
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(module=module)],
        capture_output=True, text=True, check=True, cwd=root, env=env,
    )
    return float(out.stdout.strip().splitlines()[-1])


def run(profile: Profile, repeats: int) -> list[Row]:
    pairs = max(repeats, profile.import_pairs)
    rows = {
        "ratio": Row(SCENARIO, "import imgkit / import httpx", unit="x", target=("<=", 1.2)),
        "imgkit": Row(SCENARIO, "import imgkit", unit="ms"),
        "httpx": Row(SCENARIO, "baseline: import httpx", unit="ms"),
    }
    with tempfile.TemporaryDirectory(prefix="imgkit-bench-pycache-") as pycache:
        import_seconds("imgkit", pycache)  # warm the file cache and bytecode for both
        import_seconds("httpx", pycache)
        for _ in range(pairs):
            ours, theirs = import_seconds("imgkit", pycache), import_seconds("httpx", pycache)
            rows["imgkit"].values.append(1000 * ours)
            rows["httpx"].values.append(1000 * theirs)
            rows["ratio"].values.append(ours / theirs)
    return list(rows.values())
