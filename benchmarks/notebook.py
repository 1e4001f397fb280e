"""6. Notebook weight and memory.

Weight: results of a sweep over every tier and size are displayed the way Jupyter displays
them (IPython's display formatter: the text/plain and text/html bundle), one output per
result, and the notebook is written with nbformat. Bytes per image = (saved notebook with
the outputs - the same notebook without them) / images shown. The baseline is what showing
the image itself costs (``IPython.display.Image(path)``, the full PNG in the notebook).

Memory: a fresh interpreter runs an imgkit sweep of ``n`` one-image runs against the sandbox
and reports its peak RSS (VmHWM), for a small and a large ``n`` (two interpreters side by side). The growth between
them is set beside the growth of the ledger file, the one thing that ought to grow.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._core import Profile, Row
from benchmarks._sandbox import SandboxProcess

__all__ = ["run", "sweep_peak_rss"]

SCENARIO = "6 notebook weight, memory"
_FAST = {"seed": 5, "time_scale": 0.01, "credits": 1e12}


def _split(bundle: dict[str, Any]) -> dict[str, Any]:
    # As nbformat's writer does: text/* values become lists of lines in the file.
    return {k: v.splitlines(True) if isinstance(v, str) and k.startswith("text/") else v for k, v in bundle.items()}


def _notebook_bytes(bundles: list[dict[str, Any]]) -> tuple[int, int]:
    """Size of a saved notebook with one output per bundle, and without the outputs.

    The file is written the way nbformat 4 writes it (``indent=1``, sorted keys, text split
    into lines), byte for byte; nbformat itself is not imported because its validator's
    imports take seconds.
    """

    def build(with_outputs: bool) -> int:
        cells = []
        for count, data in enumerate(bundles, 1):
            outputs = (
                [{"data": _split(data), "execution_count": count, "metadata": {}, "output_type": "execute_result"}]
                if with_outputs
                else []
            )
            cells.append({"cell_type": "code", "execution_count": count, "id": f"cell-{count:04d}",
                          "metadata": {}, "outputs": outputs, "source": [f"results[{count - 1}]"]})
        notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        text = json.dumps(notebook, indent=1, sort_keys=True, separators=(",", ": "), ensure_ascii=False)
        return len(text.encode())

    return build(True), build(False)


def _bundle(obj: object) -> dict[str, Any]:
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(obj)
    return dict(data)


def notebook_weight(url: str, data_dir: Path, tiers: tuple[str, ...]) -> tuple[float, float, float]:
    """(mean bytes per image shown as a result, the largest, bytes per full image embedded)."""
    from IPython.display import Image

    import imgkit

    session = imgkit.Session(api_key="sk-bench", base_url=url, data_dir=data_dir)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            out = session.sweep(
                ["notebook weight: a lighthouse at dusk"], quality=tiers,
                size=("1:1", "2:3", "3:2"), confirm=True, progress=False,
            )
    finally:
        session.close()
    results = out.completed
    per_result = []
    for result in results:
        full, empty = _notebook_bytes([_bundle(result)])
        per_result.append((full - empty) / max(1, len(result.paths)))
    full, empty = _notebook_bytes([_bundle(r) for r in results])
    images = sum(len(r.paths) for r in results)
    embedded_full, embedded_empty = _notebook_bytes([_bundle(Image(filename=p)) for r in results for p in r.paths])
    return (full - empty) / images, max(per_result), (embedded_full - embedded_empty) / images


def sweep_peak_rss(url: str, sweeps: dict[str, tuple[int, Path]]) -> dict[str, dict[str, float]]:
    """Run each sweep (name -> images, data dir) in its own fresh interpreter, side by side
    (peak RSS is per process); their peak RSS and ledger sizes by name."""
    root = Path(__file__).resolve().parent.parent
    children = {
        name: subprocess.Popen(
            [sys.executable, "-m", "benchmarks._memory_child", url, str(images), str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root,
        )
        for name, (images, data_dir) in sweeps.items()
    }
    out = {}
    for name, child in children.items():
        stdout, stderr = child.communicate(timeout=1800)
        if child.returncode != 0:
            raise RuntimeError(f"the {name} sweep failed:\n{stderr[-2000:]}")
        out[name] = dict(json.loads(stdout.strip().splitlines()[-1]))
    return out


def run(profile: Profile, repeats: int) -> list[Row]:
    small, large = profile.memory_images
    rows = {
        "kb": Row(SCENARIO, "notebook bytes per displayed image (GenerationResult, 256 px thumbnail)", unit="KB",
                  target=("<=", 30.0)),
        "kb_max": Row(SCENARIO, "the same, largest single result (tier x size)", unit="KB"),
        "kb_full": Row(SCENARIO, "baseline: the full image embedded (IPython.display.Image)", unit="KB"),
        "rss_small": Row(SCENARIO, f"peak RSS, sweep of {small} images", unit="MB"),
        "rss_large": Row(SCENARIO, f"peak RSS, sweep of {large} images", unit="MB", target=("<=", 300.0)),
        "rss_growth": Row(SCENARIO, f"peak RSS growth, {small} -> {large} images", unit="MB"),
        "ledger_growth": Row(SCENARIO, f"ledger file growth, {small} -> {large} images", unit="MB"),
    }
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="imgkit-bench-") as tmp, SandboxProcess(**_FAST) as sandbox:
            mean, largest, embedded = notebook_weight(sandbox.url, Path(tmp) / "weight", profile.weight_tiers)
            rows["kb"].values.append(mean / 1024)
            rows["kb_max"].values.append(largest / 1024)
            rows["kb_full"].values.append(embedded / 1024)
            peaks = sweep_peak_rss(sandbox.url, {"small": (small, Path(tmp) / "small"),
                                                 "large": (large, Path(tmp) / "large")})
            a, b = peaks["small"], peaks["large"]
        mb = 1024 * 1024
        rows["rss_small"].values.append(a["peak_rss"] / mb)
        rows["rss_large"].values.append(b["peak_rss"] / mb)
        rows["rss_growth"].values.append((b["peak_rss"] - a["peak_rss"]) / mb)
        rows["ledger_growth"].values.append((b["ledger_bytes"] - a["ledger_bytes"]) / mb)
    return list(rows.values())
