"""A request the service refuses before any task exists reads as a refused request, not as a
task that failed."""

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
