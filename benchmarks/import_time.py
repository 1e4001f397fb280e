"""5. Import time: ``import imgkit`` against ``import httpx``, each in a fresh interpreter.

The clock runs inside the child around the import statement alone, so interpreter start-up
is not counted. The two imports alternate, pair after pair, so load on the machine hits both.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks._core import Profile, Row

__all__ = ["run"]

SCENARIO = "5 import time"
_CHILD = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str) -> float:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(module=module)],
        capture_output=True, text=True, check=True, cwd=root,
    )
    return float(out.stdout.strip().splitlines()[-1])


def run(profile: Profile, repeats: int) -> list[Row]:
    pairs = max(repeats, profile.import_pairs)
    rows = {
        "ratio": Row(SCENARIO, "import imgkit / import httpx", unit="x", target=("<=", 1.5)),
        "imgkit": Row(SCENARIO, "import imgkit", unit="ms"),
        "httpx": Row(SCENARIO, "baseline: import httpx", unit="ms"),
    }
    import_seconds("imgkit")  # warm the file cache and bytecode for both
    import_seconds("httpx")
    for _ in range(pairs):
        ours, theirs = import_seconds("imgkit"), import_seconds("httpx")
        rows["imgkit"].values.append(1000 * ours)
        rows["httpx"].values.append(1000 * theirs)
        rows["ratio"].values.append(ours / theirs)
    return list(rows.values())
