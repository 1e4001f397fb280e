"""The example notebooks: committed without outputs, executed top to bottom by a real kernel
on the sandbox, light when saved; and the Binder environment built from binder/ alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01-quickstart.ipynb", "02-compare-quality-tiers.ipynb", "03-cost-report.ipynb"]
sys.path.insert(0, str(ROOT / "scripts"))
from execute_notebooks import execute  # noqa: E402


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name: str) -> None:
    nb = json.loads((ROOT / "notebooks" / name).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"][:80]


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_the_sandbox(name: str, tmp_path: Path) -> None:
    target, _seconds, size = execute(ROOT / "notebooks" / name, tmp_path / "out")
    nb = nbformat.read(target, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert size < 2 * 1024 * 1024, f"{name} saves as {size} bytes"


@pytest.mark.notebooks
def test_binder_environment_runs_the_quickstart(tmp_path: Path) -> None:
    """Build the environment the way Binder would (a fresh virtual environment from binder/
    files only, then postBuild from the repository root) and execute the quickstart in it."""
    venv = tmp_path / "binder-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path / "home")}
    env.pop("PYTHONPATH", None)
    env.pop("EVOLINK_API_KEY", None)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(ROOT / "binder" / "requirements.txt")], check=True, env=env, cwd=ROOT)
    subprocess.run(["bash", str(ROOT / "binder" / "postBuild")], check=True, env=env, cwd=ROOT)
    config = (tmp_path / "home" / ".jupyter" / "jupyter_server_config.py").read_text()
    assert "websocket_max_message_size" in config
    out = tmp_path / "out"
    env["IMGKIT_HOME"] = str(tmp_path / "imgkit-home")
    run = subprocess.run(
        [str(py), str(ROOT / "scripts" / "execute_notebooks.py"), "--out", str(out), str(ROOT / "notebooks" / NOTEBOOKS[0])],
        env=env, cwd=tmp_path, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (out / NOTEBOOKS[0]).is_file()
