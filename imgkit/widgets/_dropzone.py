"""The reference images' drop zone: drag files from the desktop, paste an image, or pick files.

A small anywidget (a few lines of ES module JavaScript below, no build step, nothing
downloaded at run time), so it works wherever anywidget does: JupyterLab, Notebook 7,
Voilà, VS Code and Colab. The files of one drop, paste or pick go to the kernel as one
custom widget message whose bytes travel as binary buffers, so no file content is ever
kept in the widget's synced state (nor, therefore, in a saved notebook). The kernel
answers every message it receives; files that get no answer were dropped by the Jupyter
server (Tornado's ``websocket_max_message_size``), and only then does the zone show
:attr:`DropZone.lost_note`.

On the Python side :attr:`DropZone.value` receives the files in the shape ipywidgets'
``FileUpload`` uses (dicts with ``name``, ``type``, ``size`` and ``content``); it is not
synced. The controller observes it by name and resets it, as with ``FileUpload``.
"""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets

__all__ = ["DropZone"]

_ESM = r"""
function render({ model, el }) {
  const zone = document.createElement("div");
  zone.className = "imgkit-dropzone";
  zone.tabIndex = 0;
  // JupyterLab's shortcuts must not take Ctrl+V away from the zone.
  zone.dataset.lmSuppressShortcuts = "true";
  const hint = document.createElement("span");
  hint.className = "imgkit-dropzone-hint";
  const pick = document.createElement("button");
  pick.type = "button";
  pick.className = "jupyter-button imgkit-upload";
  const input = document.createElement("input");
  input.type = "file";
  input.multiple = true;
  input.style.display = "none";
  const status = document.createElement("div");
  status.className = "imgkit-dropzone-status";
  status.style.display = "none";
  zone.append(pick, hint, input);
  el.append(zone, status);

  const waiting = new Map();
  let serial = 0;
  let pasted = 0;

  function update() {
    pick.textContent = model.get("label");
    pick.title = model.get("picker_tooltip");
    hint.textContent = model.get("hint");
    input.accept = model.get("accept");
    pick.disabled = model.get("disabled");
    zone.classList.toggle("imgkit-dropzone-disabled", model.get("disabled"));
  }

  function lost(name) {
    status.innerHTML = model.get("lost_note");
    const who = status.querySelector(".imgkit-lost-name");
    if (who) who.textContent = name;
    status.style.display = "";
  }

  async function send(files) {
    if (model.get("disabled") || !files.length) return;
    const names = files.map((file) => {
      if (file.name && file.name !== "image.png") return file.name;
      pasted += 1;
      return `pasted image ${pasted}.${(file.type.split("/")[1] || "png").replace("jpeg", "jpg")}`;
    });
    const buffers = await Promise.all(files.map((file) => file.arrayBuffer()));
    const size = buffers.reduce((total, b) => total + b.byteLength, 0);
    const id = `${Date.now()}-${serial++}`;
    // One message per drop, in the order dropped. Allow about 1 s per MB for the answer.
    const timer = setTimeout(() => { waiting.delete(id); lost(names.join(", ")); }, 15000 + size / 1000);
    waiting.set(id, timer);
    model.send({ kind: "files", id, names, types: files.map((f) => f.type) }, undefined, buffers);
  }

  function filesOf(transfer) {
    if (!transfer) return [];
    const files = Array.from(transfer.files || []);
    if (files.length) return files;
    return Array.from(transfer.items || [])
      .filter((item) => item.kind === "file")
      .map((item) => item.getAsFile())
      .filter(Boolean);
  }

  model.on("msg:custom", (msg) => {
    if (msg && msg.kind === "received") {
      clearTimeout(waiting.get(msg.id));
      waiting.delete(msg.id);
      if (!waiting.size) status.style.display = "none";
    }
  });
  pick.addEventListener("click", (event) => {
    event.stopPropagation();
    input.value = "";
    input.click();
  });
  input.addEventListener("change", () => send(Array.from(input.files || [])));
  zone.addEventListener("click", () => zone.focus());
  for (const kind of ["dragenter", "dragover"]) {
    zone.addEventListener(kind, (event) => {
      event.preventDefault();
      event.stopPropagation();
      zone.classList.add("imgkit-dropzone-over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("imgkit-dropzone-over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    event.stopPropagation();
    zone.classList.remove("imgkit-dropzone-over");
    send(filesOf(event.dataTransfer));
  });
  zone.addEventListener("paste", (event) => {
    const files = filesOf(event.clipboardData);
    if (!files.length) return;
    event.preventDefault();
    event.stopPropagation();
    send(files);
  });
  model.on("change", update);
  update();
}
export default { render };
"""

_CSS = """
.imgkit-dropzone {
  display: flex; align-items: center; gap: 10px; flex-wrap: wrap;
  padding: 10px 12px; border: 2px dashed #b0bec5; border-radius: 6px;
  background: #fafafa; cursor: default; outline: none;
}
.imgkit-dropzone:focus { border-color: #1976d2; }
.imgkit-dropzone.imgkit-dropzone-over { border-color: #1976d2; background: #e3f2fd; }
.imgkit-dropzone.imgkit-dropzone-disabled { opacity: .6; }
.imgkit-dropzone .imgkit-upload { height: 30px; padding: 0 12px; flex: 0 0 auto; }
.imgkit-dropzone-hint { opacity: .75; font-size: 90%; }
.imgkit-dropzone-status { margin-top: 4px; font-size: 88%; color: #ef6c00; line-height: 1.35; }
"""


class DropZone(anywidget.AnyWidget):
    """Drop, paste or pick reference images; they arrive in :attr:`value`.

    Attributes:
        label: the picker button's text (``Add images (2)``).
        picker_tooltip: the picker button's tooltip (not ``tooltip``: the widget's own one needs a description).
        hint: the text beside the button.
        accept: what the file picker lists (the service judges files by content).
        disabled: refuse new files.
        lost_note: HTML shown when a file never reached the kernel; an element with class
            ``imgkit-lost-name`` in it receives the file's name.
        value: the files received last (not synced), as ipywidgets' ``FileUpload`` gives them.
    """

    _esm = _ESM
    _css = _CSS
    label = traitlets.Unicode("Add images").tag(sync=True)
    picker_tooltip = traitlets.Unicode("").tag(sync=True)
    hint = traitlets.Unicode("").tag(sync=True)
    accept = traitlets.Unicode("").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)
    lost_note = traitlets.Unicode("").tag(sync=True)
    value = traitlets.Tuple()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._on_message)

    def _on_message(self, _: object, content: Any, buffers: list[Any]) -> None:
        if not isinstance(content, dict) or content.get("kind") != "files":
            return
        # The answer comes first: a file refused by the form still arrived.
        self.send({"kind": "received", "id": content.get("id")})
        names, kinds = list(content.get("names") or []), list(content.get("types") or [])
        self.receive(
            *(
                {
                    "name": str(names[i]) if i < len(names) else f"image {i + 1}",
                    "type": str(kinds[i]) if i < len(kinds) else "",
                    "content": bytes(buffer),
                }
                for i, buffer in enumerate(buffers)
            )
        )

    def receive(self, *files: dict[str, Any]) -> None:
        """Hand files to the observers, as if they were dropped (``name`` and ``content``)."""
        self.value = tuple(
            {"name": f["name"], "type": f.get("type", ""), "size": len(f["content"]), "content": f["content"]}
            for f in files
        )
