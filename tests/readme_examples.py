"""Run one Python example from the README the way a reader would paste it, statement by
statement, and check what it prints against the ``# →`` lines written under a statement.

Usage: python readme_examples.py EXAMPLE.py   (exit 0: ran and matched; 1: it did not)

``...`` in a ``# →`` line stands for any text (doctest's ELLIPSIS). A statement's output is
what it prints, and for an expression the repr of its value (as a console shows it); the
lines the README shows are what it prints first (a progress bar may follow).
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import io
import sys
import traceback
from pathlib import Path

ARROW = "# → "


def expected_after(lines: list[str], end: int) -> list[str]:
    """The ``# →`` lines right after a statement that ends on line ``end`` (1-based)."""
    out = []
    for line in lines[end:]:
        text = line.strip()
        if not text.startswith(ARROW):
            break
        out.append(text[len(ARROW):])
    return out


def main(path: str) -> int:
    source = Path(path).read_text(encoding="utf-8")
    lines = source.splitlines()
    namespace: dict[str, object] = {"__name__": "__main__"}
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for node in ast.parse(source).body:
        want = expected_after(lines, node.end_lineno or node.lineno)
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                if isinstance(node, ast.Expr):
                    value = eval(compile(ast.Expression(node.value), path, "eval"), namespace)
                    if value is not None:
                        print(repr(value))
                else:
                    exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), namespace)
        except BaseException:
            print(f"line {node.lineno} raised:\n{lines[node.lineno - 1]}", file=sys.stderr)
            traceback.print_exc()
            return 1
        got = printed.getvalue()
        sys.stdout.write(got)
        if want and not checker.check_output("\n".join(want) + "...", got, flags):
            print(f"line {node.lineno}: the README shows\n  {chr(10).join(want)}\nbut it printed\n  {got}",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
