"""Ledger.to_dataframe's bulk decoding (benchmarks scenario 4): one json.loads per column, the
garbage collector paused meanwhile, and the same frame as decoding cell by cell; lists, paths
and times on both ledger backends (a SQLite file, a PostgreSQL database)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from imgkit.ledger import _load, _load_column
from imgkit.request import RunRecord

from .pg import Backend


@pytest.mark.parametrize(
    "texts",
    [
        ['["a", "b"]', "[]", None, '["c"]'],
        ['["a"', '"b"]'],  # two broken cells that would join into one list
        ['["a"], ["b"]', "[]"],  # one cell holding two lists
        ['"not a list"', '["x"]'],
        ["[", "]"],
        [],
    ],
)
def test_load_column_matches_cell_by_cell(texts: list[str | None]) -> None:
    try:
        expected = [list(_load(t)) for t in texts]
    except json.JSONDecodeError:
        with pytest.raises(json.JSONDecodeError):
            _load_column(texts)
        return
    assert _load_column(texts) == expected


def test_load_column_gives_each_row_its_own_list() -> None:
    rows = _load_column(["[]", "[]"])
    rows[0].append("x")
    assert rows[1] == []


def test_frame_lists_and_paths(tmp_path: Path, backend: Backend) -> None:
    ledger = backend.open()
    done = RunRecord(run_id="r1", provider="sandbox", model="gpt-image-1", prompt="p", size="1024x1024",
                     quality="low", n=2, status="completed", files=("images/ab/x.png", "images/cd/y.png"),
                     thumbs=("thumbs/ab/x.jpg", "thumbs/cd/y.jpg"), tags=("t1", "t2"), created_at=1.0)
    empty = RunRecord(run_id="r2", provider="sandbox", model="gpt-image-1", prompt="q", size="1024x1024",
                      quality="high", n=1, created_at=2.0)
    ledger.save_many([done, empty])
    was_enabled = gc.isenabled()
    df = ledger.to_dataframe(data_dir=tmp_path)
    assert gc.isenabled() == was_enabled
    assert df["files"].tolist() == [[f"{tmp_path}/images/ab/x.png", f"{tmp_path}/images/cd/y.png"], []]
    assert df["thumbs"].tolist()[0][1] == f"{tmp_path}/thumbs/cd/y.jpg"
    assert df["tags"].tolist() == [["t1", "t2"], []]
    assert df["n_images"].tolist() == [2, 0]
    assert df["providers_tried"].tolist() == [[], []]
    assert ledger.to_dataframe()["files"].tolist()[0] == ["images/ab/x.png", "images/cd/y.png"]
    ledger.close()


def test_times_show_to_the_second(backend: Backend) -> None:
    ledger = backend.open()
    ledger.save(RunRecord(run_id="r", provider="sandbox", model="gpt-image-1", prompt="p", size="1024x1024",
                          quality="low", n=1, created_at=1764686530.123456, submitted_at=1764686530.5,
                          completed_at=1764686532.25))
    df = ledger.to_dataframe()
    ledger.close()
    assert str(df["created_at"].iloc[0]) == "2025-12-02 14:42:10+00:00"  # no fraction in a table
    assert df["latency_s"].iloc[0] == 1.75
