"""The package surface: curated exports, a light import, the layering contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imgkit


def test_all_is_sorted_and_complete() -> None:
    # dir(): the verbs that load on first use are listed before they are loaded.
    public = sorted(name for name in dir(imgkit) if not name.startswith("_") and name not in {"annotations"})
    modules = {"costs", "engine", "errors", "ledger", "pricing", "request", "session", "store", "sandbox", "cli",
               "widgets", "plots", "reports", "analysis", "comparison", "config", "results", "app", "journal",
               "teamio", "ledger_pg",
               "reconciliation"}
    public = [n for n in public if n not in modules]
    assert imgkit.__all__ == sorted(imgkit.__all__, key=lambda s: (not s.isupper(), s))
    assert sorted(imgkit.__all__) == public


def test_all_is_what_a_notebook_user_types() -> None:
    # The verbs, Session, the studio and the exception tree; value types stay in their modules.
    # about thirty: the verbs (backup, balance, batches and reconcile among them), Session, Studio, errors
    assert len(imgkit.__all__) <= 37
    errors = {name for name in imgkit.errors.__all__}
    assert errors <= set(imgkit.__all__)
    for module, name in [("results", "GenerationResult"), ("results", "SweepResult"), ("results", "Cost"),
                         ("results", "SweepPlan"), ("config", "ProviderConfig"), ("config", "Budget"),
                         ("request", "ImageRequest"), ("request", "JobEvent"), ("request", "MODELS"),
                         ("engine", "PollPolicy"), ("pricing", "Estimate")]:
        assert name not in imgkit.__all__
        assert hasattr(getattr(imgkit, module), name)


def test_the_loop_bridge_exists_once() -> None:
    # One private loop and one "is there a running loop" helper, in imgkit/_loop.py, for the
    # session and (through `from imgkit._loop import LOOP, running_loop`) the studio.
    root = Path(imgkit.__file__).parent
    sources = {p: p.read_text("utf-8") for p in root.rglob("*.py")}
    for helper in ("def _running_loop(", "def running_loop(", "class _LoopThread", "def _call_on("):
        defined = [p.relative_to(root).as_posix() for p, text in sources.items() if helper in text]
        assert defined in ([], ["_loop.py"]), (helper, defined)
    assert not [p for p, text in sources.items() if "def _esc(" in text]  # results use html.escape
    assert [p.relative_to(root).as_posix() for p, text in sources.items() if "def esc(" in text] == [
        "widgets/_common.py"
    ]


def test_exports_report_imgkit_as_their_module() -> None:
    assert imgkit.ValidationError.__module__ == "imgkit"
    assert imgkit.generate.__module__ == "imgkit"
    assert imgkit.compare.__module__ == "imgkit"  # loaded on first use


def test_lazy_verbs_load_on_first_use() -> None:
    code = (
        "import sys, imgkit; before = 'imgkit.comparison' in sys.modules; from imgkit import compare, report;"
        " print(before, 'imgkit.comparison' in sys.modules, callable(compare) and callable(report),"
        " compare is imgkit.compare)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "True"]


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, imgkit; heavy = [m for m in ('pandas', 'matplotlib', 'ipywidgets', 'PIL', 'starlette',"
        " 'uvicorn', 'tenacity', 'stamina', 'IPython', 'httpx', 'tqdm') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_layers_contract() -> None:
    # import-linter checks that lower layers never import higher ones, and that the sandbox
    # shares no client code.
    tool = Path(sys.executable).parent / "lint-imports"
    lint = subprocess.run([str(tool)], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert lint.returncode == 0, lint.stdout + lint.stderr
