"""Blind pairwise rating: two images of one prompt from different tiers, unlabelled, in
random order; the rater picks the better one (or "same") and the pick goes to the ledger.

The widget only renders and forwards clicks. Which pairs to show and on which side is
:func:`imgkit.analysis.rating_pairs`; a pick is stored by :func:`imgkit.analysis.record_pick`
(:meth:`~imgkit.ledger.Ledger.add_rating`); the table shown at the end is
:func:`imgkit.analysis.tier_value`. Both images are re-encoded to the same JPEG size, so
neither the file nor its dimensions give the tier away.

ipywidgets and Pillow are imported when a widget is built, so importing this module is cheap.

Example:
    >>> from imgkit.widgets.rating import rate
    >>> rate(pairs=12)             # in a notebook: click through, then read the table
    >>> imgkit.tier_value()        # the same table, any time later
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

from imgkit import analysis
from imgkit.session import Session, get_session
from imgkit.widgets._common import esc

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RatingWidget", "rate"]

log = logging.getLogger("imgkit")

#: Long side, in pixels, of the images shown (both sides alike).
DISPLAY_PX = 400
_LABELS = {"left": "Left is better", "same": "Same", "right": "Right is better", "skip": "Skip"}


class RatingWidget:
    """A blind A/B rating session over completed runs.

    Attributes:
        session: where runs are read and picks stored.
        runs: the runs pairs are drawn from.
        pairs: the pairs of this session, in the order shown.
        position: index of the pair on screen (``len(pairs)`` when done).
        rated, skipped: how many pairs got a pick or were skipped.
        rating_ids: ledger ids of the picks made here.
        buttons: ``left``, ``same``, ``right`` and ``skip`` buttons (``.click()`` them in tests).
        widget: the ipywidgets box that is displayed.

    Args:
        df: the runs to draw pairs from (all of the session's runs when None).
        session: the session (the default session when None).
        pairs: the most pairs to show; pairs rated before are never shown again.
        seed: seeds the order, the sides and which image of a run is shown.
        tag: a label stored with every pick (who rated, which experiment).

    Example:
        >>> w = RatingWidget(pairs=10, tag="alice")
        >>> w                          # in a notebook
        >>> w.summary()                # the tier_value table over these runs
    """

    def __init__(
        self,
        df: pd.DataFrame | None = None,
        session: Session | None = None,
        *,
        pairs: int | None = 20,
        seed: int | None = None,
        tag: str | None = None,
    ) -> None:
        import ipywidgets as w

        self.session = session or get_session()
        self.runs = self.session.runs() if df is None else df
        self.pairs = analysis.rating_pairs(self.runs, self.session.ledger.ratings_frame(), limit=pairs, seed=seed)
        self.tag = tag
        self.position = 0
        self.rated = 0
        self.skipped = 0
        self.rating_ids: list[int] = []

        self.progress = w.HTML()
        self.prompt = w.HTML()
        box = w.Layout(flex="1 1 0", max_width=f"{DISPLAY_PX}px", margin="0 4px")
        self.left_image = w.Image(format="jpeg", layout=w.Layout(width="100%"))
        self.right_image = w.Image(format="jpeg", layout=w.Layout(width="100%"))
        self.buttons = {
            choice: w.Button(description=label, layout=w.Layout(width="auto", margin="4px"),
                             button_style="" if choice == "skip" else "info")
            for choice, label in _LABELS.items()
        }
        self.result = w.HTML()
        self.log = w.Output()
        capture = self.log.capture()
        for button in self.buttons.values():
            button.on_click(capture(self._on_click))
        self._stage = w.VBox([
            self.prompt,
            w.HBox([w.Box([self.left_image], layout=box), w.Box([self.right_image], layout=box)]),
            w.HBox([self.buttons["left"], self.buttons["same"], self.buttons["right"], self.buttons["skip"]],
                   layout=w.Layout(justify_content="center")),
        ])
        self.widget = w.VBox([self.progress, self._stage, self.result, self.log])
        self._render()

    def __repr__(self) -> str:
        return f"<RatingWidget {self.rated} of {len(self.pairs)} rated, {self.skipped} skipped>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def done(self) -> bool:
        return self.position >= len(self.pairs)

    @property
    def current(self) -> analysis.Pair | None:
        """The pair on screen (None when done)."""
        return None if self.done else self.pairs[self.position]

    def pick(self, choice: str) -> int | None:
        """Store ``choice`` (``"left"``, ``"right"`` or ``"same"``) for the pair on screen and
        show the next one; returns the rating's id (None when there was nothing to rate)."""
        pair = self.current
        if pair is None:
            return None
        rating_id = analysis.record_pick(self.session.ledger, pair, choice, tag=self.tag)
        self.rating_ids.append(rating_id)
        self.rated += 1
        self._advance()
        return rating_id

    def skip(self) -> None:
        """Show the next pair without storing anything."""
        if self.current is None:
            return
        self.skipped += 1
        self._advance()

    def summary(self) -> pd.DataFrame:
        """:func:`imgkit.analysis.tier_value` over this widget's runs and all stored picks."""
        return analysis.tier_value(self.runs, self.session.ledger.ratings_frame())

    def _on_click(self, button: Any) -> None:
        choice = next(c for c, b in self.buttons.items() if b is button)
        if choice == "skip":
            self.skip()
        else:
            self.pick(choice)

    def _advance(self) -> None:
        self.position += 1
        self._render()

    def _render(self) -> None:
        total = len(self.pairs)
        text = f"<b>{self.rated} of {total} rated</b>"
        if self.skipped:
            text += f" · {self.skipped} skipped"
        self.progress.value = text
        pair = self.current
        if pair is None:
            self._stage.layout.display = "none"
            for button in self.buttons.values():
                button.disabled = True
            if total == 0:
                self.result.value = (
                    "<p>Nothing to rate: blind pairs need completed runs of the same prompt and size in at "
                    "least two tiers, not rated before. <code>imgkit.compare([...])</code> makes some.</p>"
                )
            else:
                self.result.value = _table_html(self.summary())
            return
        self.prompt.value = f"<p>Which is better for <i>“{esc(pair.prompt)}”</i>?</p>"
        self.left_image.value = _display_jpeg(pair.left_path)
        self.right_image.value = _display_jpeg(pair.right_path)


def rate(
    df: pd.DataFrame | None = None,
    session: Session | None = None,
    *,
    pairs: int | None = 20,
    seed: int | None = None,
    tag: str | None = None,
) -> RatingWidget:
    """Rate pairs of images blind; takes :class:`RatingWidget`'s arguments.

    Each pick is stored in the ledger at once; when the pairs run out the widget shows the
    :func:`imgkit.tier_value` table (win rate per tier with its 95 % interval, mean credits
    per image and wins per credit).

    Example:
        >>> imgkit.compare(["a red fox", "a lighthouse"])    # runs in three tiers
        >>> imgkit.rate(pairs=6)
    """
    return RatingWidget(df, session, pairs=pairs, seed=seed, tag=tag)


def _display_jpeg(path: str) -> bytes:
    """``path`` as a JPEG no larger than :data:`DISPLAY_PX` (a grey tile when unreadable)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            shown = ImageOps.contain(im.convert("RGB"), (DISPLAY_PX, DISPLAY_PX), Image.Resampling.LANCZOS)
    except (OSError, ValueError) as exc:
        log.warning("rating: cannot show %s: %s", path, exc)
        shown = Image.new("RGB", (DISPLAY_PX, DISPLAY_PX), "#dddddd")
    buf = io.BytesIO()
    shown.save(buf, format="JPEG", quality=80)  # saved in the notebook: keep it light
    return buf.getvalue()


def _table_html(table: pd.DataFrame) -> str:
    rows = []
    for tier, r in table.iterrows():
        if not r["comparisons"]:
            continue
        rows.append(
            f"<tr><td><b>{esc(tier)}</b></td><td>{int(r['comparisons'])}</td>"
            f"<td>{int(r['wins'])} / {int(r['ties'])} / {int(r['losses'])}</td>"
            f"<td>{r['win_rate']:.0%} ({r['ci_low']:.0%}–{r['ci_high']:.0%})</td>"
            f"<td>{r['mean_credits']:.4g}</td><td>{r['wins_per_credit']:.3g}</td></tr>"
        )
    head = (
        "<tr><th>tier</th><th>comparisons</th><th>wins / ties / losses</th><th>win rate (95 % CI)</th>"
        "<th>credits per image</th><th>wins per credit</th></tr>"
    )
    return f"<p><b>Done.</b> Ties count half a win.</p><table>{head}{''.join(rows)}</table>"
