"""The sync and async helpers inside a real IPython kernel (whose loop is already running),
plain and after the user applied nest_asyncio."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import TEST_KEY

SETUP = """
import imgkit
imgkit.configure(api_key={key!r}, base_url={url!r}, poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2))
"""
CELLS = [
    "res = imgkit.generate('inside a kernel', quality='low', n=2)\nprint(res.status, len(res.paths))",
    "res2 = await imgkit.agenerate('awaited in a cell', size='3:2')\nprint(res2.status, res2.images[0].size)",
    "import asyncio\nboth = await asyncio.gather(imgkit.agenerate('a'), imgkit.agenerate('b'))\nprint([r.status for r in both])",
    "print(len(imgkit.runs()), imgkit.estimate(quality='high').credits)",
    "res._repr_html_().count('<img')",
]
EXPECTED = [
    "completed 2",
    "completed (1536, 1024)",
    "['completed', 'completed']",
    "4 9.45907",
    "2",
]


def _output_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream" and out.name == "stdout":
            parts.append(out.text)
        elif out.output_type == "execute_result":
            parts.append(out.data.get("text/plain", ""))
        elif out.output_type == "error":
            raise AssertionError("\n".join(out.traceback))
    return "".join(parts).strip()


@pytest.mark.parametrize("nest", [False, True], ids=["plain-kernel", "nest_asyncio-applied"])
def test_helpers_in_a_real_kernel(sandbox_url: str, nest: bool) -> None:
    cells = [SETUP.format(key=TEST_KEY, url=sandbox_url), *CELLS]
    if nest:
        cells.insert(0, "import nest_asyncio\nnest_asyncio.apply()")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    code_cells = nb.cells[-len(CELLS):]
    assert [_output_text(c) for c in code_cells] == EXPECTED
