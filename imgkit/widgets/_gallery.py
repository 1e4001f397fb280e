"""A run's images, large: a gallery that fits its column, a full-window lightbox, downloads.

An anywidget (ES module JavaScript below, no build step). Its synced state holds only the
images' names and sizes, never their bytes: the browser asks the kernel for each image
when it shows it (a custom message answered with the file as a binary buffer), so a saved
notebook does not grow with every run. In the browser each image gets:

- a tile as wide as the column allows (``imgkit-preview-image``), and a lightbox over the
  whole window (``imgkit-full-image``): arrow keys step between images, Esc closes, a click
  zooms to the image's own pixels;
- a **Download** button that saves the file as it was received, and **Use as reference**,
  which puts the image in the form's references;

and the run gets **Download all** (a zip the kernel builds), **Copy prompt** and a line with
its cost, time and provider.

Every action is also a method (:meth:`Gallery.image_bytes`, :meth:`Gallery.zip_bytes`,
:meth:`Gallery.use`), which is what the headless tests call.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

__all__ = ["Gallery"]

log = logging.getLogger("imgkit")

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}

_ESM = r"""
function button(text, cls, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `jupyter-button ${cls}`;
  b.textContent = text;
  if (title) b.title = title;
  return b;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "imgkit-gallery";
  el.append(root);
  const urls = new Map();      // index -> blob URL of the image's bytes
  const asked = new Map();     // request id -> resolve
  let serial = 0;
  let box = null;              // the open lightbox

  function ask(content) {
    const req = `${Date.now()}-${serial++}`;
    return new Promise((resolve) => {
      asked.set(req, resolve);
      model.send({ ...content, req });
    });
  }
  model.on("msg:custom", (msg, buffers) => {
    const resolve = asked.get(msg.req);
    if (!resolve) return;
    asked.delete(msg.req);
    const data = buffers && buffers.length ? buffers[0] : null;
    resolve(data ? new Blob([data], { type: msg.mime || "application/octet-stream" }) : null);
  });
  async function url(index) {
    if (!urls.has(index)) {
      const key = model.get("key");
      const blob = await ask({ kind: "image", index });
      if (model.get("key") !== key) return null;
      urls.set(index, blob ? URL.createObjectURL(blob) : null);
    }
    return urls.get(index);
  }
  function save(href, name) {
    const a = document.createElement("a");
    a.href = href;
    a.download = name;
    a.className = "imgkit-download-link";
    document.body.append(a);
    a.click();
    a.remove();
  }

  function closeBox() {
    if (!box) return;
    document.removeEventListener("keydown", box.onKey, true);
    box.el.remove();
    box = null;
  }
  async function openBox(index) {
    const items = model.get("items");
    if (!items.length) return;
    index = (index + items.length) % items.length;
    if (!box) {
      const overlay = document.createElement("div");
      overlay.className = "imgkit-lightbox";
      overlay.tabIndex = -1;
      overlay.dataset.lmSuppressShortcuts = "true";
      const img = document.createElement("img");
      img.className = "imgkit-full-image";
      const bar = document.createElement("div");
      bar.className = "imgkit-lightbox-bar";
      const caption = document.createElement("span");
      caption.className = "imgkit-lightbox-caption";
      const prev = button("‹ Previous", "imgkit-lightbox-prev", "previous image (←)");
      const next = button("Next ›", "imgkit-lightbox-next", "next image (→)");
      const down = button("Download", "imgkit-lightbox-download");
      const close = button("Close ✕", "imgkit-lightbox-close", "close (Esc)");
      bar.append(prev, caption, next, down, close);
      overlay.append(img, bar);
      document.body.append(overlay);
      const onKey = (event) => {
        if (event.key === "Escape") closeBox();
        else if (event.key === "ArrowRight") openBox(box.index + 1);
        else if (event.key === "ArrowLeft") openBox(box.index - 1);
        else return;
        event.preventDefault();
        event.stopPropagation();
      };
      document.addEventListener("keydown", onKey, true);
      box = { el: overlay, img, caption, index, onKey };
      prev.onclick = () => openBox(box.index - 1);
      next.onclick = () => openBox(box.index + 1);
      close.onclick = closeBox;
      down.onclick = async () => save(await url(box.index), model.get("items")[box.index].name);
      img.onclick = () => overlay.classList.toggle("imgkit-lightbox-zoom");
      overlay.addEventListener("click", (event) => { if (event.target === overlay) closeBox(); });
      overlay.focus();
    }
    box.index = index;
    const item = items[index];
    box.caption.textContent = `${index + 1} / ${items.length} · ${item.name} · ${item.width}×${item.height}`;
    box.img.src = (await url(index)) || "";
    box.img.alt = item.name;
  }

  function draw() {
    closeBox();
    for (const u of urls.values()) if (u) URL.revokeObjectURL(u);
    urls.clear();
    root.replaceChildren();
    const items = model.get("items");
    if (!items.length) return;
    const head = document.createElement("div");
    head.className = "imgkit-gallery-head";
    const meta = document.createElement("span");
    meta.className = "imgkit-gallery-meta";
    meta.innerHTML = model.get("meta");
    const label = items.length > 1 ? `Download all (${items.length}, zip)` : "Download (zip)";
    const all = button(label, "imgkit-download-all");
    all.onclick = async () => {
      const blob = await ask({ kind: "zip" });
      if (blob) save(URL.createObjectURL(blob), model.get("zip_name"));
    };
    const copy = button("Copy prompt", "imgkit-copy-prompt", "copy this run's prompt");
    copy.onclick = async () => {
      try {
        await navigator.clipboard.writeText(model.get("prompt"));
        copy.textContent = "Copied ✓";
      } catch (error) {
        copy.textContent = "Copy failed";
      }
      setTimeout(() => { copy.textContent = "Copy prompt"; }, 1500);
    };
    head.append(meta, all, copy);
    const grid = document.createElement("div");
    grid.className = "imgkit-gallery-grid";
    if (items.length === 1) grid.classList.add("imgkit-gallery-one");
    items.forEach((item, index) => {
      const tile = document.createElement("figure");
      tile.className = "imgkit-gallery-tile";
      const frame = document.createElement("div");
      frame.className = "imgkit-gallery-frame";
      frame.style.aspectRatio = `${item.width} / ${item.height}`;
      const img = document.createElement("img");
      img.className = "imgkit-preview-image";
      img.alt = item.name;
      img.title = "open full window (arrow keys step, Esc closes)";
      img.onclick = () => openBox(index);
      url(index).then((u) => { if (u) img.src = u; });
      frame.append(img);
      const actions = document.createElement("figcaption");
      const view = button("⤢ Full size", "imgkit-full-size", "open full window");
      view.onclick = () => openBox(index);
      const down = button("Download", "imgkit-download", `save ${item.name}`);
      down.onclick = async () => save(await url(index), item.name);
      const use = button("Use as reference", "imgkit-use-reference", "add this image to the references");
      use.onclick = () => model.send({ kind: "use", index });
      actions.append(view, down, use);
      tile.append(frame, actions);
      grid.append(tile);
    });
    root.append(head, grid);
  }
  model.on("change:key", draw);
  model.on("change:meta", () => {
    const meta = root.querySelector(".imgkit-gallery-meta");
    if (meta) meta.innerHTML = model.get("meta");
  });
  draw();
  return () => closeBox();
}
export default { render };
"""

_CSS = """
.imgkit-gallery-head { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 4px 0; }
.imgkit-gallery-meta { flex: 1 1 200px; font-size: 90%; }
.imgkit-gallery-grid { display: grid; gap: 8px; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); }
.imgkit-gallery-grid.imgkit-gallery-one { grid-template-columns: 1fr; }
.imgkit-gallery-tile { margin: 0; }
.imgkit-gallery-frame { width: 100%; max-height: 75vh; background: #eceff1; border-radius: 4px; overflow: hidden; }
.imgkit-gallery-frame img { width: 100%; height: 100%; object-fit: contain; display: block; cursor: zoom-in; }
.imgkit-gallery-tile figcaption { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 4px; }
.imgkit-gallery button, .imgkit-lightbox button { height: 28px; padding: 0 10px; width: auto; }
.imgkit-lightbox {
  position: fixed; inset: 0; z-index: 10000; background: rgba(0, 0, 0, .92);
  display: flex; flex-direction: column; align-items: center; justify-content: center; outline: none;
}
.imgkit-lightbox img { max-width: 100vw; max-height: calc(100vh - 56px); object-fit: contain; cursor: zoom-in; }
.imgkit-lightbox.imgkit-lightbox-zoom { overflow: auto; justify-content: flex-start; align-items: flex-start; }
.imgkit-lightbox.imgkit-lightbox-zoom img { max-width: none; max-height: none; cursor: zoom-out; }
.imgkit-lightbox-bar {
  position: fixed; left: 0; right: 0; bottom: 0; height: 48px; display: flex; gap: 8px;
  align-items: center; justify-content: center; background: rgba(0, 0, 0, .6); color: #fff;
}
.imgkit-lightbox-caption { min-width: 200px; text-align: center; }
"""


class Gallery(anywidget.AnyWidget):
    """A run's images at the column's width, with a lightbox and downloads.

    Attributes:
        items: name, width and height of each image (synced; no bytes).
        key: changes when a new set of images is shown (the browser redraws then).
        meta: the run's cost, time and provider (HTML).
        prompt: what **Copy prompt** copies.
        zip_name: the file name **Download all** saves.
        on_use: called with an image's path when **Use as reference** is clicked.
    """

    _esm = _ESM
    _css = _CSS
    items: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    key = traitlets.Unicode("").tag(sync=True)
    meta = traitlets.Unicode("").tag(sync=True)
    prompt = traitlets.Unicode("").tag(sync=True)
    zip_name = traitlets.Unicode("images.zip").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.paths: tuple[Path, ...] = ()
        self.on_use: Callable[[Path], object] | None = None
        self.on_msg(self._on_message)

    def show(self, key: str, paths: Sequence[Path], sizes: Sequence[tuple[int, int]], *, prompt: str = "") -> None:
        """Show ``paths`` (with their pixel sizes) as the set named ``key``; () clears."""
        if key == self.key and tuple(paths) == self.paths:
            return
        self.paths = tuple(paths)
        self.prompt = prompt
        self.zip_name = f"imgkit-{key[-8:]}.zip" if key else "images.zip"
        # Files are stored under their content hash; a person saves "imgkit-<run>-1.png".
        stem = f"imgkit-{key[-8:]}" if key else "imgkit"
        self.items = [
            {"name": f"{stem}-{index}{path.suffix}", "width": width, "height": height}
            for index, (path, (width, height)) in enumerate(zip(self.paths, sizes, strict=True), start=1)
        ]
        self.key = key

    def image_bytes(self, index: int) -> bytes:
        """The file of image ``index``, as a download saves it."""
        return self.paths[index].read_bytes()

    def zip_bytes(self) -> bytes:
        """Every image of the set in one zip (stored: images are compressed already)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for item, path in zip(self.items, self.paths, strict=True):
                archive.writestr(item["name"], path.read_bytes())
        return buffer.getvalue()

    def use(self, index: int) -> None:
        """Put image ``index`` in the form's references (what **Use as reference** does)."""
        if self.on_use is not None:
            self.on_use(self.paths[index])

    def _on_message(self, _: object, content: Any, buffers: list[Any]) -> None:
        if not isinstance(content, dict):
            return
        kind, req = content.get("kind"), content.get("req")
        try:
            if kind == "image":
                index = int(content["index"])
                mime = _MIME.get(self.paths[index].suffix.lower(), "application/octet-stream")
                self.send({"req": req, "mime": mime}, [self.image_bytes(index)])
            elif kind == "zip":
                self.send({"req": req, "mime": "application/zip"}, [self.zip_bytes()])
            elif kind == "use":
                self.use(int(content["index"]))
        except (OSError, IndexError, KeyError, ValueError) as exc:
            log.warning("imgkit gallery: %s failed: %s", kind, exc)
            if req is not None:
                self.send({"req": req})
