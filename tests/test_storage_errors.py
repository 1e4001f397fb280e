"""Storage and ledger errors become imgkit errors that name the run, the file and what to do;
raise_on_error=False is honoured for them; sweep() and resume() return every run's outcome.

A full disk is real: a 2 MB tmpfs mounted for the test when it runs as root, filled with a
ballast file mid-session. Without root, the same scenario runs in a subprocess whose file size
limit (RLIMIT_FSIZE) stops the writes; that variant also runs as root.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

import imgkit
from imgkit.errors import StorageError, storage_error
from imgkit.journal import JOURNAL_NAME, Journal
from imgkit.sandbox import SandboxConfig, running_sandbox

from .conftest import FAST_POLL, TEST_KEY, sandbox_tasks


@pytest.fixture(scope="module")
def own_sandbox() -> Iterator[str]:
    with running_sandbox(SandboxConfig(seed=41, time_scale=0.01, credits=1e9)) as url:
        yield url


@contextlib.contextmanager
def small_disk(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _write_until_full(f: BinaryIO, chunk: int) -> None:
    while True:
        f.write(b"\0" * chunk)


def fill(disk: Path, name: str = "ballast", leave: int = 0) -> Path:
    """Write a ballast file until the disk is full, then give back ``leave`` bytes; return it
    (delete it to free the space)."""
    ballast = disk / name
    with open(ballast, "wb", buffering=0) as f:
        for chunk in (64 * 1024, 4096, 512, 1):
            with pytest.raises(OSError, match="No space left on device"):
                _write_until_full(f, chunk)
        if leave:
            f.truncate(max(0, f.tell() - leave))
    return ballast


@pytest.mark.parametrize(("exc", "reason", "says"), [
    (OSError(errno.ENOSPC, "No space left on device"), "disk_full", "free space"),
    (OSError(errno.EROFS, "Read-only file system"), "read_only", "point IMGKIT_HOME at a writable folder"),
    (OSError(errno.EFBIG, "File too large"), "too_large", "file size limit"),
    (Exception("database or disk is full"), "disk_full", "free space"),
    (Exception("attempt to write a readonly database"), "read_only", "writable"),
    (Exception("database is locked"), "locked", "another process"),
    (Exception("database disk image is malformed"), "damaged", "imgkit ledger backup"),
    (Exception("disk I/O error"), "io", "permissions"),
    (Exception("the ledger database postgresql://db/x: cannot connect: refused"), "unavailable", "IMGKIT_LEDGER"),
])
def test_a_storage_error_names_the_run_the_file_and_what_to_do(exc: Exception, reason: str, says: str) -> None:
    error = storage_error(exc, path="/data/ledger.sqlite3", run_id="run-1")
    assert isinstance(error, imgkit.ImgkitError)
    assert error.reason == reason and error.run_id == "run-1" and error.path == "/data/ledger.sqlite3"
    text = str(error)
    assert text.startswith("run run-1: writing /data/ledger.sqlite3 failed")
    assert says in text


def _check_outcomes(results: list[imgkit.results.GenerationResult], home: Path) -> list[str]:
    """Every run has an outcome; the ones a file stopped say so in plain words."""
    stopped = []
    for res in results:
        assert res.status in ("completed", "failed", "unknown"), res.record
        if res.record.error_code == "storage_error":
            text = res.record.error_message or ""
            assert text.startswith(f"run {res.run_id}: writing ") and str(home) in text, text
            assert "imgkit.resume()" in text
            stopped.append(text)
    return stopped


def test_disk_full_mid_sweep_gives_imgkit_errors_and_every_outcome(
    own_sandbox: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:  # no tmpfs without root: the file size limit stands in for the full disk
        figures = file_size_limit_scenario(own_sandbox, tmp_path)
        assert figures["stopped"] > 0
        return
    tag = uuid.uuid4().hex[:6]
    with small_disk(tmp_path / "disk") as disk:
        home = disk / "home"
        imgkit.configure(api_key=TEST_KEY, base_url=own_sandbox, data_dir=home, poll=FAST_POLL)
        assert imgkit.generate(f"warm {tag}", quality="low").status == "completed"
        # Room for a few runs' images: the disk fills up in the middle of the sweep.
        ballasts = [fill(disk, leave=700 * 1024)]
        out = imgkit.sweep([f"full sweep {tag} {i}" for i in range(8)], quality="low", confirm=True,
                           progress=False)
        assert len(out.results) == 8  # the sweep did not stop at the first error

        ballasts.append(fill(disk, "ballast-2"))  # no room at all
        with pytest.raises(StorageError) as caught:
            imgkit.generate(f"full raise {tag}", quality="low")
        assert "the disk is full" in str(caught.value) and "free space" in str(caught.value)
        quiet = imgkit.generate(f"full quiet {tag}", quality="low", raise_on_error=False)
        assert quiet.record.error_code == "storage_error"
        stopped = _check_outcomes([*out.results, quiet], home)
        assert stopped and all("the disk is full" in s for s in stopped)
        swept = {r.status for r in out.results}

        for ballast in ballasts:  # space again: resume() finishes what the service accepted
            ballast.unlink()
        done = imgkit.resume()
        _check_outcomes(done, home)
        rows = {r.prompt: r for r in imgkit.get_session().ledger.records()}
        tasks = [t for t in sandbox_tasks(own_sandbox) if tag in t["prompt"]]
        per_prompt: dict[str, int] = {}
        for t in tasks:
            per_prompt[t["prompt"]] = per_prompt.get(t["prompt"], 0) + 1
        assert set(per_prompt.values()) == {1}  # no run was created twice
        for t in tasks:  # every task the service made is in the ledger, finished
            row = rows[t["prompt"]]
            assert row.task_id == t["id"] and row.status == "completed", row
        imgkit.get_session().close()
        assert Journal(home / JOURNAL_NAME).entries() == []
    with capsys.disabled():
        print(f"\n[disk full] runs 10 (8 swept: {sorted(swept)}), stopped by the full disk {len(stopped) + 1}, "
              f"tasks created {len(tasks)}, completed after resume "
              f"{sum(r.status == 'completed' and tag in r.prompt for r in rows.values())}")


LIMITED_CHILD = textwrap.dedent(
    """
    import json, resource, sys, imgkit
    key, url, home, tag = sys.argv[1:5]
    settings = dict(api_key=key, base_url=url, data_dir=home,
                    poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2))
    imgkit.configure(**settings)
    imgkit.generate(f"warm {tag}", quality="low")
    imgkit.configure(**settings)  # the first session closed: its WAL is checkpointed and empty
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (160 * 1024, hard))  # no file may grow past 160 KB
    out = imgkit.sweep([f"limited {tag} {i}" for i in range(6)], quality="low", confirm=True, progress=False)
    swept = [[r.run_id, r.status, r.record.error_code, r.record.error_message] for r in out.results]
    try:
        imgkit.generate(f"limited raise {tag}", quality="low")
        raised = None
    except imgkit.ImgkitError as exc:
        raised = [type(exc).__name__, str(exc)]
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    resumed = [[r.run_id, r.status, r.record.error_code] for r in imgkit.resume()]
    print(json.dumps({"raised": raised, "swept": swept, "resumed": resumed}), flush=True)
    """
)


def file_size_limit_scenario(url: str, tmp_path: Path) -> dict[str, int]:
    tag = uuid.uuid4().hex[:6]
    home = tmp_path / "limited"
    child = subprocess.run([sys.executable, "-c", LIMITED_CHILD, TEST_KEY, url, str(home), tag],
                           capture_output=True, timeout=300)
    assert child.returncode == 0, child.stderr.decode()[-3000:]
    assert b"Traceback" not in child.stderr, child.stderr.decode()[-3000:]
    report = json.loads(child.stdout.decode().strip().splitlines()[-1])
    assert report["raised"] is not None and report["raised"][0] == "StorageError", report["raised"]
    assert str(home) in report["raised"][1]
    swept = report["swept"]
    assert len(swept) == 6
    stopped = [s for s in swept if s[2] == "storage_error"]
    for run_id, status, _, message in stopped:
        assert status in ("failed", "unknown") and f"run {run_id}:" in message and str(home) in message
    tasks = [t for t in sandbox_tasks(url) if tag in t["prompt"] and not t["prompt"].startswith("warm")]
    prompts = [t["prompt"] for t in tasks]
    assert len(prompts) == len(set(prompts))  # no run created twice
    resumed = {run_id: status for run_id, status, _ in report["resumed"]}
    # Every run the service accepted is finished once the limit is lifted.
    accepted = {s[0] for s in swept if s[1] == "unknown"}
    assert all(resumed.get(run_id) == "completed" for run_id in accepted), (accepted, resumed)
    return {"stopped": len(stopped), "tasks": len(tasks), "resumed": len(resumed)}


def test_a_file_size_limit_gives_imgkit_errors_and_every_outcome(
    own_sandbox: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = file_size_limit_scenario(own_sandbox, tmp_path)
    assert figures["stopped"] > 0
    with capsys.disabled():
        print(f"\n[file size limit] {figures}")
