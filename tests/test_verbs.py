"""Each public verb is declared once: the sync and async forms, on Session and as module
functions, take the same parameters, and the sync form drives the async one."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import threading
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import imgkit
from imgkit import session as session_module
from imgkit._loop import LOOP, running_loop
from imgkit.session import GenerateOptions, Session, SweepGrid, SweepOptions

# (sync, async) pairs a notebook user can call.
MODULE_PAIRS = [
    (imgkit.generate, imgkit.agenerate),
    (imgkit.sweep, imgkit.asweep),
    (imgkit.resume, imgkit.aresume),
]
SESSION_PAIRS = [
    (Session.generate, Session.agenerate),
    (Session.sweep, Session.asweep),
    (Session.resume, Session.aresume),
    (Session.balance, Session.abalance),
]


def _params(fn: Callable[..., Any], *, drop_self: bool = False) -> list[tuple[str, Any, Any, Any]]:
    params = list(inspect.signature(fn).parameters.values())
    if drop_self:
        assert params[0].name == "self"
        params = params[1:]
    return [(p.name, p.kind, p.default, p.annotation) for p in params]


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(fn, include_extras=True)


@pytest.mark.parametrize(("sync", "async_"), MODULE_PAIRS + SESSION_PAIRS, ids=lambda f: f.__qualname__)
def test_sync_and_async_forms_take_the_same_parameters(sync: Callable[..., Any], async_: Callable[..., Any]) -> None:
    assert not inspect.iscoroutinefunction(sync)
    assert inspect.iscoroutinefunction(async_)
    assert _params(sync) == _params(async_)
    assert _hints(sync) == _hints(async_)  # the return type too: the sync one returns what the async one awaits


@pytest.mark.parametrize(("function", "method"), [
    (imgkit.generate, Session.generate),
    (imgkit.agenerate, Session.agenerate),
    (imgkit.sweep, Session.sweep),
    (imgkit.asweep, Session.asweep),
    (imgkit.resume, Session.resume),
    (imgkit.aresume, Session.aresume),
], ids=lambda f: f.__qualname__)
def test_module_functions_take_the_session_methods_parameters(function: Callable[..., Any],
                                                               method: Callable[..., Any]) -> None:
    assert _params(function) == _params(method, drop_self=True)
    assert _hints(function) == _hints(method)


def test_options_are_declared_once() -> None:
    # generate and sweep share the request fields; a sweep's grid is quality x size of them.
    shared = set(session_module.RequestOptions.__annotations__)
    assert shared <= set(GenerateOptions.__annotations__)
    assert shared <= set(SweepGrid.__annotations__)
    assert set(SweepGrid.__annotations__) <= set(SweepOptions.__annotations__)
    for name in ("plan_sweep",):
        kinds = [p.kind for p in inspect.signature(getattr(Session, name)).parameters.values()]
        assert inspect.Parameter.VAR_KEYWORD in kinds
    # Every field ImageRequest.build takes is an option of both verbs, declared once.
    build = set(inspect.signature(imgkit.request.ImageRequest.build).parameters) - {"prompt"}
    assert shared | {"size", "quality"} == build


@pytest.mark.parametrize("call", [
    lambda: imgkit.generate("a fox", sizes="1:1"),
    lambda: imgkit.sweep("a fox", qualities=["low"], progress=False),
    lambda: imgkit.get_session().plan_sweep("a fox", modle="gpt-image-1"),
], ids=["generate", "sweep", "plan_sweep"])
def test_an_unknown_option_is_a_type_error_and_sends_nothing(call: Callable[[], object]) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument") as info:
        call()
    assert "did you mean" in str(info.value)
    assert len(imgkit.runs()) == 0


def test_sync_generate_drives_the_async_one(data_dir: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    class Spy(Session):
        async def agenerate(self, prompt: str, **options: Any) -> Any:
            seen.append((prompt, options))
            return await super().agenerate(prompt, **options)

    session = Spy(data_dir=data_dir)
    try:
        res = session.generate("a fox", quality="low", tags=["t"])
    finally:
        session.close()
    assert seen == [("a fox", {"quality": "low", "tags": ["t"]})]
    assert res.status == "completed"
    assert res.record.tags == ("t",)


def test_the_callers_steps_run_on_the_callers_thread() -> None:
    threads: list[str] = []

    async def verb() -> str:
        threads.append(threading.current_thread().name)
        assert running_loop() is None  # while a sync call waits, its caller's loop cannot run callbacks
        inner = await LOOP.run_async(_on_loop(threads))
        threads.append(threading.current_thread().name)
        return inner

    assert LOOP.drive(verb()) == "done"
    here = threading.current_thread().name
    assert threads == [here, "imgkit-loop", here]


async def _on_loop(threads: list[str]) -> str:
    threads.append(threading.current_thread().name)
    await asyncio.sleep(0)
    return "done"


def test_drive_passes_errors_back_into_the_verb() -> None:
    async def boom() -> None:
        raise ValueError("from the loop")

    async def verb() -> str:
        try:
            await LOOP.run_async(boom())
        except ValueError as exc:
            return f"caught {exc}"
        return "not raised"

    assert LOOP.drive(verb()) == "caught from the loop"


def test_sync_verbs_work_inside_a_running_loop() -> None:
    # As in a kernel: a cell's sync call while the kernel's loop is running.
    async def cell() -> str:
        res = imgkit.generate("a fox", quality="low")
        return res.status

    assert asyncio.run(cell()) == "completed"


NEST_ASYNCIO_SCRIPT = """
import asyncio, sys
import nest_asyncio
import imgkit

async def cell():
    # A kernel's cell after nest_asyncio.apply(): sync verbs inside a running, patched loop.
    res = imgkit.generate("a fox", quality="low")
    out = imgkit.sweep(["a", "b"], quality="low", progress=True)
    later = await imgkit.agenerate("a kite", quality="low")
    return res.status, len(out.completed), later.status

loop = asyncio.new_event_loop()
nest_asyncio.apply(loop)
print(loop.run_until_complete(cell()))
"""


def test_sync_verbs_work_where_nest_asyncio_was_applied(data_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "IMGKIT_HOME": str(data_dir)}
    out = subprocess.run([sys.executable, "-c", NEST_ASYNCIO_SCRIPT], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "('completed', 2, 'completed')"
    assert out.stderr == ""  # the announcement and the progress bar are information, on stdout


def test_module_estimate_is_the_default_sessions(data_dir: Path) -> None:
    session = imgkit.configure(data_dir=data_dir, price_sheet="evolink-formula-2026-11")
    assert imgkit.estimate(quality="low", size="3:2", n=2) == session.estimate(quality="low", size="3:2", n=2)
    assert imgkit.estimate(quality="low").sheet == "evolink-formula-2026-11"
    assert imgkit.estimate(quality="low", sheet="evolink-table-2026-11").sheet == "evolink-table-2026-11"
