"""The package surface: curated exports, a light import, the layering contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imgkit


def test_all_is_sorted_and_complete() -> None:
    public = sorted(name for name in vars(imgkit) if not name.startswith("_") and name not in {"annotations"})
    modules = {"costs", "engine", "errors", "ledger", "pricing", "request", "session", "store", "sandbox", "cli",
               "widgets", "plots", "reports", "analysis", "comparison"}
    public = [n for n in public if n not in modules]
    assert imgkit.__all__ == sorted(imgkit.__all__, key=lambda s: (not s.isupper(), s))
    assert sorted(imgkit.__all__) == public


def test_exports_report_imgkit_as_their_module() -> None:
    assert imgkit.ValidationError.__module__ == "imgkit"
    assert imgkit.generate.__module__ == "imgkit"


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, imgkit; heavy = [m for m in ('pandas', 'matplotlib', 'ipywidgets', 'PIL', 'starlette',"
        " 'uvicorn', 'tenacity', 'stamina', 'IPython') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_layers_contract() -> None:
    # import-linter checks that lower layers never import higher ones, and that the sandbox
    # shares no client code.
    tool = Path(sys.executable).parent / "lint-imports"
    lint = subprocess.run([str(tool)], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert lint.returncode == 0, lint.stdout + lint.stderr
