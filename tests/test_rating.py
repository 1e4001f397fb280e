"""The blind rating widget, headless: buttons are clicked with ``click()``, picks land in
the ledger with the right winner, the counts on screen follow, nothing on screen names a
tier, and the tier_value table appears at the end."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

import imgkit
from imgkit.comparison import tier_value
from imgkit.widgets.rating import DISPLAY_PX, RatingWidget, rate

PROMPT = "a red fox in the snow"


@pytest.fixture
def runs(session: imgkit.Session) -> imgkit.results.SweepResult:
    # One prompt in three tiers: three cross-tier pairs.
    return imgkit.sweep(PROMPT, quality=["low", "medium", "high"], progress=False)


def _visible_text(widget: RatingWidget) -> str:
    texts = [widget.progress.value, widget.prompt.value, widget.result.value]
    texts += [b.description for b in widget.buttons.values()]
    return " ".join(texts)


def _winners(frame: object) -> list[str | None]:
    column = frame["winner_quality"]  # type: ignore[index]
    return column.astype(object).where(column.notna(), None).tolist()


def test_clicks_store_picks_and_update_the_counts(session: imgkit.Session, runs: imgkit.results.SweepResult) -> None:
    w = rate(seed=1, tag="tester")
    assert len(w.pairs) == 3 and w.progress.value == "<b>0 of 3 rated</b>"
    shown = []
    for button in ("left", "same", "right"):
        shown.append(w.current)
        w.buttons[button].click()
        assert w.progress.value == f"<b>{len(shown)} of 3 rated</b>"
    assert w.done and w.rated == 3 and w.skipped == 0

    frame = session.ledger.ratings_frame()
    assert frame["choice"].astype(str).tolist() == ["left", "same", "right"]
    assert frame["id"].tolist() == w.rating_ids
    assert frame["left_run_id"].tolist() == [p.left_run_id for p in shown]
    assert frame["right_run_id"].tolist() == [p.right_run_id for p in shown]
    assert _winners(frame) == [shown[0].left_quality, None, shown[2].right_quality]
    assert set(frame["tag"]) == {"tester"}

    # Done: the buttons are off and the tier_value table is shown.
    assert all(b.disabled for b in w.buttons.values())
    assert w._stage.layout.display == "none"
    assert "Done." in w.result.value and "win rate (95 % CI)" in w.result.value
    table = w.summary()
    assert table["comparisons"].tolist() == [2, 2, 2]
    assert table["wins"].sum() == 2 and table["ties"].sum() == 2
    for tier, row in table.iterrows():
        counts = " / ".join(str(int(row[k])) for k in ("wins", "ties", "losses"))
        cells = f"<td><b>{tier}</b></td><td>2</td><td>{counts}</td>"
        assert cells in w.result.value
    assert table.equals(tier_value())

    # Clicking on after the end changes nothing.
    w.pick("left")
    w.skip()
    assert len(session.ledger.ratings_frame()) == 3 and w.rated == 3


def test_pairs_are_blind_and_skips_store_nothing(session: imgkit.Session, runs: imgkit.results.SweepResult) -> None:
    w = rate(pairs=None, seed=2)
    assert len(w.pairs) == 3
    while not w.done:
        pair = w.current
        assert pair is not None and pair.left_quality != pair.right_quality
        assert not re.search(r"\b(low|medium|high)\b", _visible_text(w))
        assert PROMPT in w.prompt.value
        left = Image.open(io.BytesIO(w.left_image.value))
        right = Image.open(io.BytesIO(w.right_image.value))
        assert left.format == right.format == "JPEG"
        assert left.size == right.size == (DISPLAY_PX, DISPLAY_PX)
        w.buttons["skip"].click()
    assert w.progress.value == "<b>0 of 3 rated</b> · 3 skipped"
    assert session.ledger.ratings_frame().empty


def test_a_new_session_continues_where_the_last_stopped(session: imgkit.Session, runs: imgkit.results.SweepResult) -> None:
    first = rate(pairs=1, seed=3)
    first.buttons["left"].click()
    second = RatingWidget(pairs=None, seed=3)
    assert len(second.pairs) == 2
    rated = {frozenset((p.left_run_id, p.right_run_id)) for p in first.pairs}
    assert not rated & {frozenset((p.left_run_id, p.right_run_id)) for p in second.pairs}
    # The same seed over the same ledger shows the same pairs on the same sides.
    assert RatingWidget(pairs=None, seed=3).pairs == second.pairs


def test_only_the_given_runs_are_paired(session: imgkit.Session, runs: imgkit.results.SweepResult) -> None:
    df = runs.runs()
    w = rate(df[df["quality"] != "medium"], pairs=None, seed=4)
    assert len(w.pairs) == 1
    assert {w.pairs[0].left_quality, w.pairs[0].right_quality} == {"low", "high"}


def test_nothing_to_rate_says_why(session: imgkit.Session) -> None:
    imgkit.generate("a lone fox", quality="low")
    w = rate()
    assert w.done and w.pairs == []
    assert w.progress.value == "<b>0 of 0 rated</b>"
    assert "Nothing to rate" in w.result.value
    assert "application/vnd.jupyter.widget-view+json" in w._repr_mimebundle_()
