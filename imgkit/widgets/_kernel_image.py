"""An image the browser fetches from the kernel when it draws it, never kept in widget state.

``ipywidgets.Image`` keeps its bytes in the widget's synced state, and a saved notebook
keeps that state: twenty history thumbnails per studio, saved again after every run, grew
notebook 01 from 165 KiB to 969 KiB. A :class:`KernelImage` syncs only a key; the browser
asks the kernel for the file with a custom message, and the bytes come back as a binary
buffer that lives in the page only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anywidget
import traitlets

__all__ = ["KernelImage"]

log = logging.getLogger("imgkit")

_ESM = r"""
function render({ model, el }) {
  const img = document.createElement("img");
  el.append(img);
  let shown = null;
  let serial = 0;
  function draw() {
    img.className = model.get("img_class");
    img.style.cssText = model.get("img_style");
    img.alt = model.get("alt");
    const key = model.get("key");
    if (!key) { img.removeAttribute("src"); return; }
    const req = `${key}#${serial++}`;
    model.send({ kind: "get", req });
    shown = req;
  }
  model.on("msg:custom", (msg, buffers) => {
    if (!msg || msg.req !== shown || !buffers || !buffers.length) return;
    const old = img.src;
    img.src = URL.createObjectURL(new Blob([buffers[0]], { type: msg.mime || "image/jpeg" }));
    if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
  });
  model.on("change", draw);
  draw();
}
export default { render };
"""


class KernelImage(anywidget.AnyWidget):
    """A picture from a file in the kernel, sent to the browser on demand.

    Attributes:
        key: names what is shown (synced); the file itself is :attr:`path` (not synced).
        img_class, img_style, alt: the ``<img>`` element's class, CSS and alt text.
    """

    _esm = _ESM
    key = traitlets.Unicode("").tag(sync=True)
    img_class = traitlets.Unicode("").tag(sync=True)
    img_style = traitlets.Unicode("").tag(sync=True)
    alt = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path: Path | None = None
        self.data: bytes | None = None
        self.on_msg(self._on_message)

    def show(self, path: Path | None, key: str = "") -> None:
        """Show the file at ``path`` (None: nothing), named ``key`` (its path by default)."""
        self.path = path
        self.data = None
        self.key = (key or str(path)) if path is not None else ""

    def show_bytes(self, data: bytes | None, key: str) -> None:
        """Show an encoded image held in the kernel's memory (a streamed partial image)."""
        self.path = None
        self.data = data
        self.key = key if data is not None else ""

    def _on_message(self, _: object, content: Any, buffers: list[Any]) -> None:
        if not isinstance(content, dict) or content.get("kind") != "get":
            return
        if self.data is not None:
            mime = "image/png" if self.data.startswith(b"\x89PNG") else "image/jpeg"
            if self.data[8:12] == b"WEBP":
                mime = "image/webp"
            self.send({"req": content.get("req"), "mime": mime}, [self.data])
            return
        if self.path is None:
            return
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            log.warning("imgkit: cannot read %s: %s", self.path.name, exc)
            return
        mime = "image/png" if self.path.suffix.lower() == ".png" else "image/jpeg"
        self.send({"req": content.get("req"), "mime": mime}, [data])
