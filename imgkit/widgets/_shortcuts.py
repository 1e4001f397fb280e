"""Keyboard shortcuts for the studio form: Ctrl/Cmd+Enter in the prompt generates.

An invisible anywidget placed inside the studio. Its few lines of JavaScript listen on the
studio's root for Ctrl+Enter (Cmd+Enter on a Mac) typed in the prompt field, keep
JupyterLab from also running the cell, and send ``{"kind": "generate"}`` to the kernel,
where :attr:`Shortcuts.on_generate` is called: the same path as a click on Generate,
double-click guard included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anywidget

__all__ = ["Shortcuts"]

_ESM = r"""
function render({ model, el }) {
  el.style.display = "none";
  let root = null;
  const onKey = (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    if (!event.target.closest || !event.target.closest(".imgkit-prompt")) return;
    event.preventDefault();
    event.stopPropagation();
    model.send({ kind: "generate" });
  };
  // The view is attached to the page after render returns: find the studio then.
  const attach = () => {
    root = el.closest(".imgkit-studio");
    if (!root) return requestAnimationFrame(attach);
    root.addEventListener("keydown", onKey, true);
    for (const box of root.querySelectorAll(".imgkit-prompt")) box.dataset.lmSuppressShortcuts = "true";
  };
  attach();
  return () => { if (root) root.removeEventListener("keydown", onKey, true); };
}
export default { render };
"""


class Shortcuts(anywidget.AnyWidget):
    """Ctrl/Cmd+Enter in the studio's prompt calls :attr:`on_generate`."""

    _esm = _ESM

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_generate: Callable[[], object] | None = None
        self.on_msg(self._on_message)

    def _on_message(self, _: object, content: Any, buffers: list[Any]) -> None:
        if isinstance(content, dict) and content.get("kind") == "generate" and self.on_generate is not None:
            self.on_generate()
