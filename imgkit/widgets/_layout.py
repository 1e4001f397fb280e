"""The studio's widgets, built and arranged: nothing else.

:class:`StudioLayout` makes every widget of the form with its initial values, CSS classes
(the browser test and users' stylesheets find them by class) and place on the page. It
registers no observer, reads no session and writes no status text: the controller
(:mod:`imgkit.widgets._studio`) wires the widgets and fills them with what the presenter
(:mod:`imgkit.widgets._present`) says. A new look for the studio is a new layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import ipywidgets as w

from imgkit.widgets._cards import Preview
from imgkit.widgets._common import esc
from imgkit.widgets._dropzone import DropZone
from imgkit.widgets._present import DROP_HINT, QUALITY_TOOLTIPS, upload_label
from imgkit.widgets._shortcuts import Shortcuts

__all__ = ["CSS", "StudioLayout", "reference_chip"]

# Widgets' HTML boxes use the inline-control line height (28 px), which spreads multi-line
# text; tighten it inside the studio only. (An HTML widget's <style> applies page-wide, so
# every rule is scoped to .imgkit-studio.)
CSS = """<style>
.imgkit-studio .widget-html-content { line-height: 1.45; }
.imgkit-studio .imgkit-quality .widget-toggle-button,
.imgkit-studio .imgkit-size .widget-toggle-button,
.imgkit-studio .imgkit-resolution .widget-toggle-button,
.imgkit-studio .imgkit-background .widget-toggle-button,
.imgkit-studio .imgkit-previews .widget-toggle-button {
  width: auto; min-width: 88px; padding: 0 10px; margin: 2px 4px 2px 0;
}
.imgkit-studio .imgkit-size.imgkit-ratios .widget-toggle-button,
.imgkit-studio .imgkit-resolution .widget-toggle-button,
.imgkit-studio .imgkit-previews .widget-toggle-button { min-width: 44px; padding: 0 6px; }
.imgkit-studio .imgkit-ref-remove { padding: 0; min-width: 0; }
.imgkit-studio .imgkit-quality .widget-toggle-button.mod-active,
.imgkit-studio .imgkit-size .widget-toggle-button.mod-active,
.imgkit-studio .imgkit-resolution .widget-toggle-button.mod-active,
.imgkit-studio .imgkit-background .widget-toggle-button.mod-active,
.imgkit-studio .imgkit-previews .widget-toggle-button.mod-active {
  background: #1976d2; color: #fff; font-weight: 600; box-shadow: none;
}
.imgkit-studio .imgkit-generate { font-weight: 600; }
.imgkit-studio .imgkit-problem { overflow-wrap: anywhere; }
</style>"""

#: What the upload button accepts (the service judges by content; this only filters the picker).
UPLOAD_ACCEPT = ",".join([".jpeg", ".jpg", ".png", ".webp", "image/jpeg", "image/png", "image/webp"])

Options = Sequence[tuple[str, str]]


def _labelled(label: str, widget: w.Widget) -> w.HBox:
    """A label of its own: ToggleButtons wraps its buttons under a description."""
    return w.HBox(
        [
            w.HTML(
                f'<div style="text-align:right;padding-right:8px">{esc(label)}</div>',
                layout=w.Layout(width="80px", flex="0 0 auto"),
            ),
            widget,
        ],
        layout=w.Layout(align_items="center"),
    )


def _section(title: str) -> w.HTML:
    return w.HTML(f'<div style="font-weight:600;margin-top:6px">{esc(title)}</div>')


class StudioLayout:
    """Every widget of one studio form, arranged in :attr:`widget`.

    Args:
        prompt: the prompt field's initial text.
        placeholder: the prompt field's placeholder.
        models: the model dropdown's choices.
        model, size, quality, n: the initial values.
        size_options, quality_options: (label, value) pairs for the size and quality choices.
        quality_tooltips: the quality buttons' tooltips.
        max_n: the n slider's maximum.
        history_title: the History panel's heading (HTML).
        data_dir: returns the session's data directory (the preview reads images from it).
        reference_placeholder: the URL field's placeholder.
    """

    def __init__(
        self,
        *,
        prompt: str,
        placeholder: str,
        models: Sequence[str],
        model: str,
        size_options: Options,
        size: str,
        quality_options: Options,
        quality_tooltips: Sequence[str] = QUALITY_TOOLTIPS,
        quality: str,
        n: int,
        max_n: int,
        history_title: str,
        data_dir: Callable[[], Path],
        reference_placeholder: str = "https://example.com/image1.png  or  /path/to/local.png  (Enter to add)",
    ) -> None:
        self.log = w.Output(layout=w.Layout(max_height="160px", overflow="auto"))
        self.log.add_class("imgkit-log")
        self.banner = w.HTML()
        self.banner.add_class("imgkit-banner")

        # --- the prompt and the request's settings ----------------------------------------
        self.prompt = w.Textarea(value=prompt, placeholder=placeholder, rows=4, layout=w.Layout(width="100%"))
        self.prompt.add_class("imgkit-prompt")
        self.prompt_count = w.HTML()
        self.prompt_count.add_class("imgkit-prompt-count")
        narrow = {"description_width": "64px"}
        self.model = w.Dropdown(
            options=list(models), value=model, description="Model", style=narrow, layout=w.Layout(width="280px"),
        )
        self.model.add_class("imgkit-model")
        # Visible choices, as the playground shows them (a dropdown hid the shapes).
        self.size = w.ToggleButtons(
            options=list(size_options), value=size, style={"button_width": "auto"}, layout=w.Layout(width="auto"),
        )
        self.size.add_class("imgkit-size")
        self.quality = w.ToggleButtons(
            options=list(quality_options),
            value=quality,
            tooltips=list(quality_tooltips),
            style={"button_width": "auto"},
            layout=w.Layout(width="auto"),
        )
        self.quality.add_class("imgkit-quality")
        # A number field, not a slider: 12 stays 12 and is refused out loud (n_note), not clamped.
        self.n = w.IntText(value=n, description="Images", style=narrow, layout=w.Layout(width="150px"))
        self.n.add_class("imgkit-n")
        self.n_note = w.HTML()
        self.n_note.add_class("imgkit-n-note")
        self.max_n = max_n

        # --- what some models add: tier, custom size, background, previews, mask ----------
        def choices(css: str) -> w.ToggleButtons:
            toggles = w.ToggleButtons(options=[], style={"button_width": "auto"}, layout=w.Layout(width="auto"))
            toggles.add_class(css)
            return toggles

        self.custom_size = w.Text(
            placeholder="width x height, e.g. 2048x1152", continuous_update=False, layout=w.Layout(width="220px"),
        )
        self.custom_size.add_class("imgkit-custom-size")
        self.resolution = choices("imgkit-resolution")
        self.background = choices("imgkit-background")
        self.previews = choices("imgkit-previews")
        self.mask_upload = DropZone(
            accept=".png,image/png", label="Add mask", hint="a PNG with alpha: transparent pixels are redrawn",
            layout=w.Layout(flex="1 1 auto", width="auto"),
        )
        self.mask_upload.add_class("imgkit-mask-drop")
        self.mask_chip = w.HBox()
        self.mask_chip.add_class("imgkit-mask")
        self.mask_message = w.HTML()
        self.mask_message.add_class("imgkit-mask-message")

        # --- reference images -------------------------------------------------------------
        # Drop, paste or pick: the files reach the kernel as message buffers, never as
        # synced state (see imgkit.widgets._dropzone).
        self.upload = DropZone(
            accept=UPLOAD_ACCEPT, label=upload_label(0), hint=DROP_HINT, layout=w.Layout(flex="1 1 auto", width="auto"),
        )
        self.upload.add_class("imgkit-drop")
        self.reference_field = w.Text(
            placeholder=reference_placeholder,
            continuous_update=False,
            layout=w.Layout(flex="1 1 auto", width="auto"),
        )
        self.reference_field.add_class("imgkit-ref-field")
        self.reference_add = w.Button(
            description="Add", tooltip="add this URL or local path", layout=w.Layout(width="auto")
        )
        self.reference_add.add_class("imgkit-ref-add")
        self.reference_clear = w.Button(
            description="Remove all", layout=w.Layout(width="auto", flex="0 0 auto", display="none")
        )
        self.reference_clear.add_class("imgkit-ref-clear")
        self.references = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.references.add_class("imgkit-refs")
        self.reference_message = w.HTML()
        self.reference_message.add_class("imgkit-ref-message")
        self.reference_note = w.HTML()
        self.reference_note.add_class("imgkit-ref-note")
        self.mode = w.HTML()
        self.mode.add_class("imgkit-mode")

        # --- price and the button ---------------------------------------------------------
        self.price = w.HTML()
        self.price.add_class("imgkit-price")
        self.price_warning = w.HTML()
        self.price_warning.add_class("imgkit-price-warning")
        self.generate_button = w.Button(
            description="Generate", button_style="primary", icon="paint-brush",
            tooltip="start a run; the kernel stays free while it runs",
            layout=w.Layout(width="auto", min_width="200px", height="36px"),
        )
        self.generate_button.add_class("imgkit-generate")
        self.shortcuts = Shortcuts()
        self.message = w.HTML()
        self.message.add_class("imgkit-message")
        self.code = w.HTML()
        self.code.add_class("imgkit-show-code")

        # --- preview and history ----------------------------------------------------------
        self.preview = Preview(data_dir)
        self.counter = w.HTML()
        self.counter.add_class("imgkit-counter")
        self.refresh_button = w.Button(icon="refresh", tooltip="read the ledger again", layout=w.Layout(width="36px"))
        self.refresh_button.add_class("imgkit-refresh")
        self.resume_button = w.Button(
            description="Resume", icon="play", button_style="warning",
            tooltip="finish runs an earlier kernel left unfinished (polls; never resubmits)",
            layout=w.Layout(width="auto", display="none"),
        )
        self.resume_button.add_class("imgkit-resume")
        self.history = w.VBox(layout=w.Layout(width="100%"))
        self.history.add_class("imgkit-history")
        self.filter_text = w.Text(
            placeholder="filter by prompt", continuous_update=True, layout=w.Layout(width="220px"),
        )
        self.filter_text.add_class("imgkit-filter-text")
        self.starred_only = w.ToggleButton(
            description="★ starred", tooltip="list starred runs only", layout=w.Layout(width="auto"),
        )
        self.starred_only.add_class("imgkit-filter-starred")
        self.show_hidden = w.ToggleButton(
            description="show hidden", tooltip="also list the runs you hid", layout=w.Layout(width="auto"),
        )
        self.show_hidden.add_class("imgkit-filter-hidden")
        self.filter_summary = w.HTML()
        self.filter_summary.add_class("imgkit-filter-summary-box")

        self.widget = self._arrange(history_title)

    def _arrange(self, history_title: str) -> w.VBox:
        hidden = w.Layout(display="none")
        self.custom_size_row = w.HBox([w.HTML(layout=w.Layout(width="80px")), self.custom_size], layout=hidden)
        self.resolution_row = _labelled("Resolution", self.resolution)
        self.resolution_row.layout.display = "none"
        self.background_row = _labelled("Background", self.background)
        self.background_row.layout.display = "none"
        self.previews_row = _labelled("Previews", self.previews)
        self.previews_row.layout.display = "none"
        self.mask_row = w.VBox(
            [_section("Mask (optional, edits only)"), self.mask_upload, self.mask_chip, self.mask_message],
            layout=w.Layout(display="none", width="100%"),
        )
        form = w.VBox(
            [
                _section("Prompt"),
                self.prompt,
                self.prompt_count,
                self.model,
                _labelled("Size", self.size),
                self.custom_size_row,
                self.resolution_row,
                _labelled("Quality", self.quality),
                self.background_row,
                w.HBox([self.n, self.n_note], layout=w.Layout(align_items="center")),
                self.previews_row,
                # Price and button above the references: their chips can grow by rows.
                _section("Price"),
                self.price,
                self.price_warning,
                w.HBox([self.generate_button, self.shortcuts], layout=w.Layout(margin="6px 0")),
                self.message,
                _section("Reference images (optional)"),
                w.HBox([self.upload, self.reference_clear], layout=w.Layout(width="100%", align_items="center")),
                w.HBox([self.reference_field, self.reference_add], layout=w.Layout(width="100%")),
                self.references,
                self.reference_message,
                self.mask_row,
                self.reference_note,
                self.mode,
                self.code,
            ],
            # The form keeps a fixed width; the preview takes what is left, so results are large.
            layout=w.Layout(flex="0 1 360px", min_width="320px", padding="0 12px 0 0"),
        )
        form.add_class("imgkit-form")
        right = w.VBox(
            [_section("Preview"), self.preview.widget],
            layout=w.Layout(flex="1 1 420px", min_width="300px"),
        )
        history_head = w.HBox(
            [w.HTML(history_title), self.counter, self.refresh_button, self.resume_button],
            layout=w.Layout(align_items="center", justify_content="space-between", width="100%", margin="8px 0 2px"),
        )
        history_filter = w.HBox(
            [self.filter_text, self.starred_only, self.show_hidden, self.filter_summary],
            layout=w.Layout(align_items="center", flex_flow="row wrap", width="100%"),
        )
        widget = w.VBox(
            [
                w.HTML(CSS, layout=w.Layout(height="0px", overflow="hidden", margin="0")),
                self.banner,
                w.HBox([form, right], layout=w.Layout(flex_flow="row wrap", width="100%")),
                history_head,
                history_filter,
                self.history,
                self.log,
            ],
            layout=w.Layout(width="100%", padding="4px"),
        )
        widget.add_class("imgkit-studio")
        return widget


def _css_url(url: str) -> str:
    """``url`` safe inside CSS ``url('...')``: quotes, brackets and backslashes percent-encoded."""
    for char, code in (("%", "%25"), ("'", "%27"), ('"', "%22"), ("(", "%28"), (")", "%29"), ("\\", "%5C")):
        url = url.replace(char, code)
    return url


def reference_chip(
    thumbnail: bytes | None, caption: str, tooltip: str, url: str | None = None
) -> tuple[w.VBox, w.Button]:
    """One reference image's chip: its thumbnail, caption and a remove button, which is
    returned too for the controller to wire.

    Without a thumbnail, an http(s) ``url`` is drawn by the browser itself (the kernel
    fetches nothing); a grey ``URL`` box shows while, or if, it cannot load.
    """
    if thumbnail is not None:
        square = w.Layout(width="72px", height="72px", object_fit="cover")
        picture: w.Widget = w.Image(value=thumbnail, format="jpeg", layout=square)
        picture.add_class("imgkit-ref-thumb")
    else:
        drawn = (
            f"background-image:url('{esc(_css_url(url))}');background-size:cover;background-position:center;"
            if url and url.lower().startswith(("http://", "https://"))
            else ""
        )
        picture = w.HTML(
            '<div class="imgkit-ref-url" style="width:72px;height:72px;display:flex;align-items:flex-end;'
            f'justify-content:center;background-color:#eceff1;{drawn}border-radius:4px;font-size:75%">'
            '<span style="background:rgba(255,255,255,.8);padding:0 3px;border-radius:2px">URL</span></div>'
        )
    remove = w.Button(description="×", tooltip=tooltip, layout=w.Layout(width="24px", height="24px"))
    remove.add_class("imgkit-ref-remove")
    chip = w.VBox(
        [w.HBox([picture, remove], layout=w.Layout(align_items="flex-start")), w.HTML(caption)],
        layout=w.Layout(margin="2px 6px 2px 0", border="1px solid #e0e0e0", padding="2px"),
    )
    chip.add_class("imgkit-ref-chip")
    return chip, remove
