"""Run in a fresh interpreter by the memory benchmark: one sweep, then print its peak RSS.

``python -m benchmarks._memory_child URL IMAGES DATA_DIR`` prints one JSON line:
``{"images": n, "completed": n, "peak_rss": bytes, "ledger_bytes": bytes}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
from pathlib import Path


def peak_rss() -> int:
    """This process's peak resident set, in bytes.

    VmHWM, not ``ru_maxrss``: Linux carries ``ru_maxrss`` across ``exec``, so a child of a
    big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def main(url: str, images: int, data_dir: Path) -> dict[str, int]:
    import imgkit

    session = imgkit.Session(api_key="sk-bench", base_url=url, data_dir=data_dir, concurrency=32)
    prompts = [f"memory {i:05d}: a red fox in snow" for i in range(images)]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            out = session.sweep(prompts, quality="low", size="1:1", confirm=True, progress=False)
    finally:
        session.close()
    ledger = data_dir / "ledger.sqlite3"
    ledger_bytes = sum(p.stat().st_size for p in ledger.parent.glob(ledger.name + "*"))
    return {
        "images": images,
        "completed": len(out.completed),
        "peak_rss": peak_rss(),
        "ledger_bytes": ledger_bytes,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))))
