"""Errors a user reads as sentences: a request the service refused before any task existed, and
an image deleted from disk."""

from __future__ import annotations

import pandas as pd
import pytest

import imgkit


@pytest.mark.parametrize(("directive", "says"), [
    ("[[http:401]]", "the API key was refused"),
    ("[[http:429]]", "kept refusing with 429"),
])
def test_a_refused_create_names_no_task(session: imgkit.Session, directive: str, says: str) -> None:
    with pytest.raises(imgkit.TaskFailed) as caught:
        imgkit.generate(f"a fox {directive}", quality="low")
    text = str(caught.value)
    assert "task ?" not in text and "no task was created, nothing was charged" in text
    assert says in text
    run = imgkit.runs().iloc[-1]
    assert run["status"] == "failed" and pd.isna(run["task_id"])


def test_a_deleted_image_is_named_with_its_run(session: imgkit.Session) -> None:
    res = imgkit.generate("a fox", quality="low")
    res.paths[0].unlink()
    with pytest.raises(FileNotFoundError, match=rf"run {res.run_id}: an image of this run is no longer on disk") as e:
        res.images  # noqa: B018 - the property loads the files
    assert e.value.filename == str(res.paths[0])
