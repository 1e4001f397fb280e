"""The sandbox on loopback in its own process, with a request counter, for the benchmarks.

A separate process plays the service: its CPU work (rendering placeholders, JSON) does not
compete with the client under test for the GIL, as a real remote service would not. A thin
ASGI middleware counts status requests per task and answers ``GET /_bench/stats``; the
sandbox itself is unchanged.

Run directly, it serves until its stdin closes (or it is terminated):
``python -m benchmarks._sandbox '{"seed": 0, "time_scale": 1.0}'`` prints the base URL.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx

__all__ = ["AUTH", "SandboxProcess", "cpu_split", "pinned_client"]

#: Any bearer token works with the sandbox's default config; the introspection routes need one.
AUTH = {"Authorization": "Bearer sk-bench"}
_STATUS_PATH = re.compile(r"/v1/tasks/(task-unified-[^/]+)")
_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _split_cpus() -> tuple[set[int], set[int]] | None:
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


_SPLIT = _split_cpus()  # taken at import, before anything is pinned


def cpu_split() -> tuple[set[int], set[int]] | None:
    """(client CPUs, service CPUs): the usable CPUs in two halves; None with only one.

    The sandbox plays a remote service, so it must not take CPU from the client under test,
    nor the client from it: on a 2-core machine each gets one core.
    """
    return _SPLIT


@contextlib.contextmanager
def _on(cpus: set[int]) -> Iterator[None]:
    """Keep this process (every thread, and the processes it starts) on ``cpus`` while the
    block runs, then put each thread back where it was."""
    threads = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    before = {tid: os.sched_getaffinity(tid) for tid in threads}
    for tid in threads:
        os.sched_setaffinity(tid, cpus)
    try:
        yield
    finally:
        for tid, was in before.items():
            with contextlib.suppress(OSError):  # a thread that has ended since
                os.sched_setaffinity(tid, was)


def pinned_client() -> contextlib.AbstractContextManager[None]:
    """Keep this process (every thread, and the processes it starts) on the client half of
    the CPUs while the block runs."""
    return contextlib.nullcontext() if _SPLIT is None else _on(_SPLIT[0])


def all_cpus() -> contextlib.AbstractContextManager[None]:
    """Let this process use every CPU while the block runs, inside :func:`pinned_client`: for
    a scenario with no service, where a notebook would have the whole machine."""
    return contextlib.nullcontext() if _SPLIT is None else _on(_SPLIT[0] | _SPLIT[1])


class SandboxProcess:
    """A sandbox served by a child process; a context manager yielding itself.

    Args:
        config: keyword arguments of :class:`imgkit.sandbox.SandboxConfig` (JSON-able).

    The process runs on the service half of the CPUs (see :func:`cpu_split`).
    """

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in __exit__)
        self._client: httpx.Client | None = None

    def __enter__(self) -> SandboxProcess:
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        config = {**self.config, "_cpus": sorted(_SPLIT[1]) if _SPLIT else []}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._sandbox", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=root,
            env=env,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http"):
            self.__exit__(None, None, None)
            self._log.seek(0)
            raise RuntimeError(f"the sandbox process did not start: {line!r}\n{self._log.read()[-2000:]}")
        self.url = line
        self._client = httpx.Client(base_url=line, headers=AUTH, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        proc, self._proc = self._proc, None
        if proc is not None:
            # Nothing in the sandbox needs a graceful shutdown; SIGTERM ends it at once.
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        self._log.close()

    def _get(self, path: str) -> Any:
        assert self._client is not None, "use SandboxProcess as a context manager"
        response = self._client.get(path)
        response.raise_for_status()
        return response.json()

    def tasks(self) -> list[dict[str, Any]]:
        """Every task the sandbox created (``GET /_sandbox/tasks``), oldest first."""
        return list(self._get("/_sandbox/tasks")["tasks"])

    def cpu_seconds(self) -> float:
        """CPU time the sandbox process has used so far (user + system); NaN off Linux."""
        if self._proc is None:
            return math.nan
        try:
            with open(f"/proc/{self._proc.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, Any]:
        """``{"polls": {task_id: status requests}, "requests": n}`` so far."""
        return dict(self._get("/_bench/stats"))


class _Counting:
    """ASGI middleware: counts status requests per task and serves ``/_bench/stats``."""

    def __init__(self, app: Callable[[_Scope, _Receive, _Send], Awaitable[None]]) -> None:
        self.app = app
        self.polls: Counter[str] = Counter()
        self.requests = 0

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/_bench/stats":
                body = json.dumps({"polls": dict(self.polls), "requests": self.requests}).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            self.requests += 1
            match = _STATUS_PATH.fullmatch(path)
            if match and scope["method"] == "GET":
                self.polls[match[1]] += 1
        await self.app(scope, receive, send)


def _serve(config_json: str) -> None:
    import logging

    from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

    logging.getLogger("imgkit.sandbox").setLevel(logging.WARNING)
    config = json.loads(config_json)
    cpus = config.pop("_cpus", None)
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)  # before any thread starts: they inherit it
    if "latency" in config:
        config["latency"] = {tier: tuple(v) for tier, v in config["latency"].items()}
    app = create_app(SandboxConfig(**config))
    app.add_middleware(_Counting)  # type: ignore[arg-type]
    with running_sandbox(app=app) as url:
        print(url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or dies)


if __name__ == "__main__":
    _serve(sys.argv[1] if len(sys.argv) > 1 else "{}")
