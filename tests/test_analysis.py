"""Tier analysis: stored blind picks give exact win rates and Wilson intervals, pairs are
chosen as promised, the ratings table migrates in, and image statistics rank the sandbox's
tiers the way they look."""

from __future__ import annotations

import logging
import math
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

import imgkit
from imgkit import analysis
from imgkit.ledger import _MIGRATIONS, SCHEMA_VERSION, Ledger
from imgkit.request import RunRecord

# Independently computed (roots of (p̂ - p)² = z² p (1 - p) / n, z = 1.959964).
WILSON = {
    (0.5, 6): (0.008762291132128, 0.483182948786343),
    (5.0, 8): (0.305742394602627, 0.863155714176403),
    (4.5, 6): (0.364822560737339, 0.940010295311579),
    (7.0, 10): (0.396778147461145, 0.892208732593699),
    (0.0, 5): (0.0, 0.434482464783175),
}


@pytest.mark.parametrize(("successes", "n"), list(WILSON))
def test_wilson_interval_matches_the_quadratic_roots(successes: float, n: int) -> None:
    assert analysis.wilson_interval(successes, n) == pytest.approx(WILSON[successes, n], abs=1e-12)


def test_wilson_interval_of_nothing_is_undefined() -> None:
    assert all(math.isnan(x) for x in analysis.wilson_interval(0, 0))


def _run(run_id: str, quality: str, *, prompt: str = "a fox", size: str = "1024x1024", n: int = 1,
         credits: float, reserved: float | None = None, status: str = "completed", t: float = 1.0) -> RunRecord:
    return RunRecord(
        run_id=run_id, provider="test", model="gpt-image-1", prompt=prompt, size=size, quality=quality, n=n,
        status=status, est_credits=credits, credits_reserved=reserved, created_at=t,
        files=tuple(f"images/{run_id}-{i}.png" for i in range(n)),
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    led = Ledger(tmp_path / "ledger.sqlite3")
    led.save_many([
        _run("L", "low", credits=0.62899),
        _run("M", "medium", credits=2.4192),
        # What the service reserved beats the estimate; two images halve the cost per image.
        _run("H", "high", n=2, credits=99.0, reserved=18.91814),
        _run("X", "high", credits=9.45907, status="failed"),
    ])
    return led


# (left run, right run, choice): low-medium 4, medium-high 4, low-high 2, sides mixed.
PICKS = [
    ("L", "M", "right"), ("M", "L", "left"), ("M", "L", "left"), ("L", "M", "same"),
    ("M", "H", "right"), ("H", "M", "left"), ("H", "M", "right"), ("M", "H", "same"),
    ("H", "L", "left"), ("L", "H", "right"),
]


def _store(ledger: Ledger, picks: list[tuple[str, str, str]]) -> None:
    tier = {"L": "low", "M": "medium", "H": "high"}
    for left, right, choice in picks:
        ledger.add_rating(prompt="a fox", left_run_id=left, right_run_id=right, left_quality=tier[left],
                          right_quality=tier[right], choice=choice, tag="test")


def test_stored_picks_give_the_expected_win_rates(ledger: Ledger) -> None:
    _store(ledger, PICKS)
    table = analysis.tier_value(ledger.to_dataframe(), ledger.ratings_frame())
    assert list(table.index) == ["low", "medium", "high"]
    assert table.index.name == "quality"
    counts = table[["comparisons", "wins", "ties", "losses"]]
    assert counts.to_dict("index") == {
        "low": {"comparisons": 6, "wins": 0, "ties": 1, "losses": 5},
        "medium": {"comparisons": 8, "wins": 4, "ties": 2, "losses": 2},
        "high": {"comparisons": 6, "wins": 4, "ties": 1, "losses": 1},
    }
    # Ties count half: low 0.5/6, medium 5/8, high 4.5/6.
    assert table["win_rate"].tolist() == pytest.approx([0.5 / 6, 5 / 8, 4.5 / 6])
    for tier, key in (("low", (0.5, 6)), ("medium", (5.0, 8)), ("high", (4.5, 6))):
        assert (table.loc[tier, "ci_low"], table.loc[tier, "ci_high"]) == pytest.approx(WILSON[key], abs=1e-12)
    # Reserved (18.91814 for two images) beats the estimate; the failed run is not counted.
    assert table["mean_credits"].tolist() == pytest.approx([0.62899, 2.4192, 9.45907])
    assert table["wins_per_credit"].tolist() == pytest.approx(
        [(0.5 / 6) / 0.62899, (5 / 8) / 2.4192, (4.5 / 6) / 9.45907]
    )
    assert table.loc["high", "wins_per_credit_high"] == pytest.approx(WILSON[4.5, 6][1] / 9.45907)


def test_a_slice_of_runs_counts_only_its_own_ratings(ledger: Ledger) -> None:
    _store(ledger, PICKS)
    df = ledger.to_dataframe()
    table = analysis.tier_value(df[df["quality"] != "high"], ledger.ratings_frame())
    assert list(table.index) == ["low", "medium"]
    assert table.loc["medium", ["wins", "ties", "losses"]].tolist() == [3, 1, 0]
    assert table.loc["medium", "win_rate"] == pytest.approx(3.5 / 4)


def test_no_ratings_gives_costs_and_no_rates(ledger: Ledger) -> None:
    table = analysis.tier_value(ledger.to_dataframe(), ledger.ratings_frame())
    assert table["comparisons"].tolist() == [0, 0, 0]
    assert table["win_rate"].isna().all() and table["wins_per_credit"].isna().all()
    assert table["mean_credits"].notna().all()


def test_ratings_frame_is_typed_and_winner_follows_the_choice(ledger: Ledger) -> None:
    _store(ledger, PICKS[:3] + PICKS[3:4])
    frame = ledger.ratings_frame()
    assert list(frame.columns) == [
        "id", "created_at", "prompt", "left_run_id", "right_run_id", "left_image", "right_image",
        "left_quality", "right_quality", "choice", "winner_quality", "tag",
    ]
    assert str(frame["created_at"].dtype).startswith("datetime64") and str(frame["created_at"].dt.tz) == "UTC"
    assert frame["left_quality"].cat.ordered
    assert frame["winner_quality"].astype(object).where(frame["winner_quality"].notna(), None).tolist() == [
        "medium", "medium", "medium", None
    ]
    assert Ledger(ledger.path).ratings_frame().empty is False  # another connection sees them


@pytest.mark.parametrize("choice", ["up", "", "LEFT"])
def test_a_pick_must_be_left_right_or_same(ledger: Ledger, choice: str) -> None:
    with pytest.raises(imgkit.ValidationError, match="choice"):
        ledger.add_rating(prompt="a fox", left_run_id="L", right_run_id="M", left_quality="low",
                          right_quality="medium", choice=choice)
    with pytest.raises(imgkit.ValidationError, match="choice"):
        analysis.Pair("a fox", "1024x1024", "L", "M", "low", "medium", "a", "b").winner(choice)
    assert ledger.ratings_frame().empty


def test_empty_ratings_frame_has_its_columns(ledger: Ledger) -> None:
    frame = ledger.ratings_frame()
    assert frame.empty and "winner_quality" in frame.columns


def test_a_v1_ledger_migrates_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (run_id, provider, model, prompt, size, quality, n, mode, status, created_at) "
        "VALUES ('old', 'gateway', 'gpt-image-1', 'a fox', '1024x1024', 'low', 1, 'text-to-image', 'completed', 1)"
    )
    conn.commit()
    conn.close()

    led = Ledger(path)
    assert SCHEMA_VERSION == len(_MIGRATIONS) >= 2
    assert led._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert led.get("old") is not None
    led.save(_run("new", "high", credits=9.45907))
    rating = led.add_rating(prompt="a fox", left_run_id="old", right_run_id="new", left_quality="low",
                            right_quality="high", choice="right")
    assert rating == 1
    led.close()
    again = Ledger(path)  # opening a current ledger migrates nothing
    assert len(again.ratings_frame()) == 1 and again.count() == 2


def test_ratings_refer_to_runs_in_the_ledger(ledger: Ledger) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        ledger.add_rating(prompt="a fox", left_run_id="L", right_run_id="nope", left_quality="low",
                          right_quality="high", choice="left")


# --- pairs --------------------------------------------------------------------------------


@pytest.fixture
def runs(tmp_path: Path) -> Ledger:
    led = Ledger(tmp_path / "pairs.sqlite3")
    records = []
    for prompt in ("a fox", "a lighthouse"):
        for i, quality in enumerate(("low", "medium", "high")):
            records.append(_run(f"{prompt[2:5]}-{quality}", quality, prompt=prompt, n=2, credits=1.0, t=i))
    records += [
        _run("fox-wide", "high", prompt="a fox", size="1536x1024", credits=1.0),  # another size: no partner
        _run("fox-failed", "medium", prompt="a fox", status="failed", credits=1.0),  # not completed
        _run("fox-low-2", "low", prompt="a fox", credits=1.0, t=9),  # a second low run of "a fox"
    ]
    led.save_many(records)
    return led


def test_pairs_are_same_prompt_and_size_different_tiers(runs: Ledger) -> None:
    pairs = analysis.rating_pairs(runs.to_dataframe(), seed=1)
    keys = {frozenset((p.left_run_id, p.right_run_id)) for p in pairs}
    # a fox: low, low-2, medium, high -> 5 cross-tier pairs; a lighthouse: 3.
    assert len(pairs) == len(keys) == 8
    assert all(p.left_quality != p.right_quality for p in pairs)
    assert not any({"fox-wide", "fox-failed"} & set(k) for k in keys)
    assert all(p.left_path == f"images/{p.left_run_id}-{p.left_image}.png" for p in pairs)
    # Sides are random: the dearer tier is sometimes left, sometimes right.
    order = {"low": 0, "medium": 1, "high": 2}
    assert {order[p.left_quality] > order[p.right_quality] for p in pairs} == {True, False}


def test_pairs_are_reproducible_limited_and_skip_rated_ones(runs: Ledger) -> None:
    df = runs.to_dataframe()
    first = analysis.rating_pairs(df, seed=5)
    assert analysis.rating_pairs(df, seed=5) == first
    assert analysis.rating_pairs(df.sample(frac=1, random_state=3), seed=5) == first
    assert analysis.rating_pairs(df, seed=5, limit=3) == first[:3]
    analysis.record_pick(runs, first[0], "left", tag="t")
    analysis.record_pick(runs, first[1], "same")
    rest = analysis.rating_pairs(df, runs.ratings_frame(), seed=5)
    assert len(rest) == len(first) - 2
    done = {frozenset((p.left_run_id, p.right_run_id)) for p in first[:2]}
    assert not done & {frozenset((p.left_run_id, p.right_run_id)) for p in rest}
    frame = runs.ratings_frame()
    assert frame["winner_quality"].iloc[0] == first[0].left_quality
    assert frame["tag"].tolist()[0] == "t"


# --- image statistics ----------------------------------------------------------------------


def test_image_stats_of_plain_images(tmp_path: Path) -> None:
    grey, red = tmp_path / "grey.png", tmp_path / "red.png"
    Image.new("RGB", (600, 400), (128, 128, 128)).save(grey)
    Image.new("RGB", (600, 400), (255, 0, 0)).save(red)
    import pandas as pd

    df = pd.DataFrame({"run_id": ["g", "r", "none", "missing"],
                       "files": [[str(grey)], [str(red)], [], [str(tmp_path / "gone.png")]]})
    stats = analysis.image_stats(df)
    assert stats.loc[0, "sharpness"] == pytest.approx(0.0)
    assert stats.loc[0, "colorfulness"] == pytest.approx(0.0)
    # Hasler-Süsstrunk of pure red: no spread, mean term 0.3 * hypot(255, 127.5).
    assert stats.loc[1, "colorfulness"] == pytest.approx(0.3 * math.hypot(255, 127.5), rel=1e-3)
    assert 0 < stats.loc[0, "jpeg_kb"] < 10
    assert stats.loc[2:, ["sharpness", "jpeg_kb", "colorfulness"]].isna().all().all()
    assert list(df.columns) == ["run_id", "files"]  # the input is left alone


def test_image_stats_warns_about_unreadable_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import pandas as pd

    with caplog.at_level(logging.WARNING, logger="imgkit"):
        analysis.image_stats(pd.DataFrame({"files": [[str(tmp_path / "gone.png")]]}))
    assert "1 of 1 image files could not be read" in caplog.text


def test_high_tier_sandbox_images_are_sharper_than_low(session: imgkit.Session) -> None:
    out = imgkit.sweep("a red fox in the snow", quality=["low", "high"], size=["1:1", "3:2"], progress=False)
    stats = analysis.image_stats(out.runs())
    assert stats[["sharpness", "jpeg_kb", "colorfulness"]].notna().all().all()
    for _, group in stats.groupby(["prompt", "size"], observed=True):
        by_tier = group.set_index(group["quality"].astype(str))
        assert by_tier.loc["high", "sharpness"] > 1.2 * by_tier.loc["low", "sharpness"]
        assert by_tier.loc["high", "jpeg_kb"] > by_tier.loc["low", "jpeg_kb"]
    means = stats.groupby("quality", observed=True)["sharpness"].mean()
    assert means["high"] > means["low"]
