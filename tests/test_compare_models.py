"""imgkit.compare(..., models=[...]) on the loopback sandbox: a grid of models x tiers with
cost and latency under each image, runs reused only while their files exist, one cost
statement for the whole grid, and tiers a model does not have drawn as such."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import imgkit
from imgkit.comparison import Comparison, compare

from .conftest import sandbox_tasks

MODELS = ["gpt-image-1", "gpt-image-2"]
TIERS = ("low", "medium", "high")


def _cells(cmp: Comparison) -> list:
    return [ax for sub in cmp.figure.subfigs for ax in sub.axes]


def test_models_by_tiers_with_cost_and_latency(session: imgkit.Session, sandbox_url: str, tmp_path: Path) -> None:
    before = len(sandbox_tasks(sandbox_url))
    cmp = compare(["a red fox"], models=MODELS, progress=False, confirm=True)
    new = sandbox_tasks(sandbox_url)[before:]
    assert sorted((t["model"], t["quality"]) for t in new) == sorted((m, q) for m in MODELS for q in TIERS)
    assert cmp.models == tuple(MODELS) and cmp.qualities == TIERS
    df = cmp.runs
    assert df["model"].astype(str).tolist() == [m for m in MODELS for _ in TIERS]
    assert df["quality"].astype(str).tolist() == list(TIERS) * 2
    assert (df["status"] == "completed").all() and not df["reused"].any()
    cells = _cells(cmp)
    assert len(cells) == 6
    # One row per model, named at its left; every cell shows its image, cost and latency.
    assert [ax.get_ylabel() for ax in cells] == ["gpt-image-1", "", "", "gpt-image-2", "", ""]
    assert [ax.get_title() for ax in cells] == list(TIERS) * 2
    for ax, row in zip(cells, df.itertuples(index=False), strict=True):
        money, latency = ax.get_xlabel().splitlines()
        assert money.startswith(f"{row.credits_reserved:.4g} credits · $"), (money, row)
        assert latency.endswith(" s")
        assert len(ax.images) == 1
    # gpt-image-2 is priced by tokens on its own sheet, gpt-image-1 on the table.
    assert dict(zip(df["model"].astype(str), df["price_sheet"].astype(str), strict=False)) == {
        "gpt-image-1": "evolink-table-2026-11", "gpt-image-2": "evolink-gpt-image-2-tokens-2026-12"}
    assert "1 prompt(s) x 2 model(s) x 3 tier(s): 6 runs, 0 reused" in repr(cmp)
    # The models' sweeps ran at once: each model's first run was sent before the other's last ended.
    # (The ledger's records: the DataFrame's times are whole seconds.)
    ours = [r for r in session.ledger.records() if r.run_id in set(df["run_id"])]
    for this, other in (MODELS, MODELS[::-1]):
        first_sent = min(r.submitted_at or 0 for r in ours if r.model == this)
        assert first_sent < max(r.completed_at or 0 for r in ours if r.model == other)
    png = tmp_path / "models.png"
    cmp.figure.savefig(png, dpi=60)
    with Image.open(png) as im:
        width, height = im.size
    assert height > width / 2  # two rows of square cells under one heading


def test_reuse_only_while_the_files_exist(session: imgkit.Session, sandbox_url: str) -> None:
    first = compare("a lighthouse", models=MODELS, qualities=["low"], progress=False)
    count = len(sandbox_tasks(sandbox_url))
    again = compare("a lighthouse", models=MODELS, qualities=["low"], progress=False)
    assert len(sandbox_tasks(sandbox_url)) == count
    assert again.runs["run_id"].tolist() == first.runs["run_id"].tolist() and again.runs["reused"].all()
    # gpt-image-2's run loses its file: only that cell is paid for again.
    gone = first.runs.iloc[1]
    assert str(gone["model"]) == "gpt-image-2"
    for path in gone["files"]:
        Path(path).unlink()
    third = compare("a lighthouse", models=MODELS, qualities=["low"], progress=False)
    new = sandbox_tasks(sandbox_url)[count:]
    assert [(t["model"], t["quality"]) for t in new] == [("gpt-image-2", "low")]
    assert third.runs["reused"].tolist() == [True, False]
    # A run at another resolution tier is not the default one.
    imgkit.generate("a bridge", model="gpt-image-2", size="1:1", resolution="2K", quality="low")
    count = len(sandbox_tasks(sandbox_url))
    bridge = compare("a bridge", model="gpt-image-2", qualities="low", progress=False)
    assert len(sandbox_tasks(sandbox_url)) == count + 1 and not bridge.runs["reused"].any()


def test_a_tier_a_model_lacks_is_a_cell_that_says_so(session: imgkit.Session, sandbox_url: str) -> None:
    count = len(sandbox_tasks(sandbox_url))
    cmp = compare("a red fox", models=["gpt-image-2", "gpt-image-2-beta"], qualities=["low", "auto"], progress=False)
    new = sandbox_tasks(sandbox_url)[count:]
    assert sorted(t["model"] for t in new) == ["gpt-image-2", "gpt-image-2-beta"]
    texts = [[t.get_text() for t in ax.texts] for ax in _cells(cmp)]
    assert texts == [[], ["gpt-image-2\nhas no auto tier"], ["gpt-image-2-beta\nhas no low tier"], []]
    assert cmp.runs["model"].astype(str).tolist() == ["gpt-image-2", "gpt-image-2-beta"]


def test_one_cost_statement_for_the_whole_grid(session: imgkit.Session, sandbox_url: str) -> None:
    # Each model's sweep alone is under the 50-credit threshold; together they are not.
    count = len(sandbox_tasks(sandbox_url))
    with pytest.raises(imgkit.ConfirmationRequired) as info:
        compare(["a red fox", "a cat"], models=MODELS, qualities=["high"], n=3, progress=False)
    assert info.value.credits > 50
    assert len(sandbox_tasks(sandbox_url)) == count


def test_bad_models_are_refused_before_anything_is_sent(session: imgkit.Session, sandbox_url: str) -> None:
    count = len(sandbox_tasks(sandbox_url))
    with pytest.raises(imgkit.ValidationError, match=r"either model= .* or models="):
        compare("a fox", model="gpt-image-1", models=MODELS, progress=False)
    with pytest.raises(imgkit.ValidationError, match=r"model='gpt-image-9' is not allowed: one of gpt-image-1"):
        compare("a fox", models=["gpt-image-1", "gpt-image-9"], progress=False)
    with pytest.raises(imgkit.ValidationError, match=r"quality='ultra'"):
        compare("a fox", models=MODELS, qualities=["low", "ultra"], progress=False)
    with pytest.raises(imgkit.ValidationError, match=r"at least one tier gpt-image-2-beta has: auto"):
        compare("a fox", models=["gpt-image-2", "gpt-image-2-beta"], qualities=["low"], progress=False)
    assert len(sandbox_tasks(sandbox_url)) == count


def test_compare_follows_the_default_model(sandbox_url: str, data_dir: Path) -> None:
    from .conftest import FAST_POLL, TEST_KEY

    imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL, model="gpt-image-2")
    cmp = imgkit.compare("a red fox", qualities="low", progress=False)
    assert cmp.runs["model"].astype(str).tolist() == ["gpt-image-2"]
    assert cmp.models == ("gpt-image-2",)
