"""imgkit.compare (imgkit.comparison) against the loopback sandbox: the grid's shape and captions, reuse of
ledger runs (no new tasks), reuse=False, and what a cell shows for a failed run."""

from __future__ import annotations

from pathlib import Path

import pytest

import imgkit
from imgkit.comparison import Comparison, compare, tier_value

from .conftest import sandbox_tasks

PROMPTS = ["a red fox in the snow", "a lighthouse at dusk"]
TIERS = ("low", "medium", "high")




def _cells(cmp: Comparison) -> list:
    return [ax for sub in cmp.figure.subfigs for ax in sub.axes]


def test_grid_is_prompts_by_tiers_with_cost_and_latency(session: imgkit.Session, sandbox_url: str) -> None:
    before = len(sandbox_tasks(sandbox_url))
    cmp = compare(PROMPTS, progress=False)
    assert len(sandbox_tasks(sandbox_url)) == before + 6
    assert cmp.prompts == tuple(PROMPTS) and cmp.qualities == TIERS
    assert [sub._suptitle.get_text() for sub in cmp.figure.subfigs] == [f"“{p}”" for p in PROMPTS]
    cells = _cells(cmp)
    assert len(cells) == 6
    assert [ax.get_title() for ax in cells] == list(TIERS) * 2
    credits = {"low": "0.629 credits · $0.0087", "medium": "2.419 credits · $0.0336", "high": "9.459 credits · $0.1314"}
    for ax, tier in zip(cells, TIERS * 2, strict=True):
        caption = ax.get_xlabel()
        assert caption.startswith(credits[tier]), caption
        assert caption.splitlines()[1].endswith(" s")
        assert len(ax.images) == 1  # the thumbnail is drawn
    df = cmp.runs
    assert df["prompt"].tolist() == [p for p in PROMPTS for _ in TIERS]
    assert df["quality"].astype(str).tolist() == list(TIERS) * 2
    assert (df["status"] == "completed").all() and not df["reused"].any()
    fig, runs = cmp
    assert fig is cmp.figure and runs is cmp.runs
    assert cmp._repr_jpeg_().startswith(b"\xff\xd8\xff")  # JPEG keeps notebooks light
    assert "2 prompt(s) x 3 tier(s): 6 runs, 0 reused" in repr(cmp)


def test_reuse_takes_the_newest_matching_runs_without_new_tasks(session: imgkit.Session, sandbox_url: str) -> None:
    first = compare(PROMPTS[0], progress=False)
    count = len(sandbox_tasks(sandbox_url))
    again = compare(PROMPTS[0], progress=False)
    assert len(sandbox_tasks(sandbox_url)) == count
    assert again.runs["run_id"].tolist() == first.runs["run_id"].tolist()
    assert again.runs["reused"].all()
    assert "3 runs, 3 reused from the ledger, 0 new" in repr(again)

    fresh = compare(PROMPTS[0], reuse=False, progress=False)
    assert len(sandbox_tasks(sandbox_url)) == count + 3
    assert not set(fresh.runs["run_id"]) & set(first.runs["run_id"])
    newest = compare(PROMPTS[0], progress=False)
    assert newest.runs["run_id"].tolist() == fresh.runs["run_id"].tolist()
    assert len(sandbox_tasks(sandbox_url)) == count + 3


def test_only_what_is_missing_is_generated(session: imgkit.Session, sandbox_url: str) -> None:
    compare(PROMPTS[0], qualities="low", progress=False)
    count = len(sandbox_tasks(sandbox_url))
    cmp = compare(PROMPTS, qualities=["high", "low"], progress=False, tags=iter(["partial"]))
    new = sandbox_tasks(sandbox_url)[count:]
    assert sorted((t["prompt"], t["quality"]) for t in new) == sorted(
        [(PROMPTS[0], "high"), (PROMPTS[1], "high"), (PROMPTS[1], "low")]
    )
    assert cmp.runs["reused"].tolist() == [False, True, False, False]
    # Two sweeps (one tier for the first prompt, two for the second) both carry the tags.
    assert [("partial" in tags) for tags in cmp.runs["tags"]] == [True, False, True, True]
    assert [ax.get_title() for ax in _cells(cmp)] == ["high", "low"] * 2
    # A run with fewer images than asked, or of another size, is not a match.
    count = len(sandbox_tasks(sandbox_url))
    compare(PROMPTS[0], qualities="low", n=2, progress=False)
    compare(PROMPTS[0], qualities="low", size="3:2", progress=False)
    assert len(sandbox_tasks(sandbox_url)) == count + 2


def test_a_failed_run_is_a_grey_cell_with_its_error(session: imgkit.Session) -> None:
    cmp = compare("a cat [[fail:content_policy_violation]]", qualities=["low"], progress=False)
    (cell,) = _cells(cmp)
    assert cell.get_title() == "low"
    assert not cell.images
    assert [t.get_text() for t in cell.texts] == ["failed: content_policy_violation"]
    assert cmp.runs["status"].tolist() == ["failed"]


def test_several_images_share_a_cell(session: imgkit.Session) -> None:
    cmp = compare(PROMPTS[0], qualities=["low", "high"], size="3:2", n=2, progress=False)
    for cell in _cells(cmp):
        assert "n=2" in cell.get_xlabel()
        # Two landscape thumbnails stack into one taller-than-wide cell image.
        height, width = cell.images[0].get_array().shape[:2]
        assert height > width


def test_the_sweep_asks_before_expensive_comparisons(session: imgkit.Session, sandbox_url: str) -> None:
    count = len(sandbox_tasks(sandbox_url))
    with pytest.raises(imgkit.ConfirmationRequired, match="confirm=True"):
        compare([f"prompt {i}" for i in range(5)], size="3:2", n=2, progress=False)
    assert len(sandbox_tasks(sandbox_url)) == count


def test_one_size_per_grid(session: imgkit.Session) -> None:
    with pytest.raises(imgkit.ValidationError, match="one size per comparison"):
        compare("a fox", size=["1:1", "3:2"], progress=False)  # type: ignore[arg-type]
    with pytest.raises(imgkit.ValidationError, match="quality"):
        compare("a fox", qualities=["low", "ultra"], progress=False)


def test_imgkit_compare_is_the_function() -> None:
    assert imgkit.compare is compare
    assert imgkit.tier_value is tier_value


def test_tier_value_reads_the_default_session(session: imgkit.Session) -> None:
    cmp = compare(PROMPTS[0], qualities=["low", "high"], progress=False)
    low, high = cmp.runs["run_id"].tolist()
    session.ledger.add_rating(prompt=PROMPTS[0], left_run_id=high, right_run_id=low, left_quality="high",
                              right_quality="low", choice="left")
    table = tier_value()
    assert table.loc["high", "win_rate"] == 1.0 and table.loc["low", "win_rate"] == 0.0
    assert table.loc["high", "mean_credits"] == pytest.approx(9.45907)
    assert tier_value(cmp.runs[cmp.runs["quality"] == "low"])["comparisons"].tolist() == [0]


def test_runs_whose_images_are_gone_are_made_again(session: imgkit.Session, sandbox_url: str) -> None:
    first = compare(PROMPTS[0], progress=False)
    gone = first.runs.iloc[1]  # the medium run
    for path in gone["files"]:
        Path(path).unlink()
    count = len(sandbox_tasks(sandbox_url))
    again = compare(PROMPTS[0], progress=False)
    assert len(sandbox_tasks(sandbox_url)) == count + 1  # only the run with missing files
    assert again.runs["reused"].tolist() == [True, False, True]
    assert again.runs.iloc[1]["run_id"] != gone["run_id"]


def test_a_string_tag_is_one_tag(session: imgkit.Session) -> None:
    cmp = compare(PROMPTS[0], qualities=["low"], tags="client-a", progress=False)
    assert "client-a" in cmp.runs.iloc[0]["tags"] and "c" not in cmp.runs.iloc[0]["tags"]
