"""The image store's worker threads and thumbnails (real files, real Pillow)."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from imgkit import store as store_module
from imgkit.store import THUMB_SIZE, WORKER_NICENESS, Store, StoredImage


def _png(mode: str, size: tuple[int, int] = (640, 400)) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _reference_thumbnail(data: bytes) -> bytes:
    """The thumbnail as made from a converted copy of the decoded image."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS, reducing_gap=1.0)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80, optimize=True)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L", "P"])
def test_a_thumbnail_is_the_same_whether_or_not_the_decoded_image_is_shrunk_in_place(
    mode: str, tmp_path: Path
) -> None:
    data = _png(mode)
    kept = Store(tmp_path).save(data)
    thumb = (tmp_path / kept.thumb).read_bytes()
    assert thumb == _reference_thumbnail(data)
    with Image.open(io.BytesIO(thumb)) as small:
        assert small.size == (THUMB_SIZE, 160)
    assert (tmp_path / kept.path).read_bytes() == data  # the image itself, as downloaded


@pytest.mark.anyio
async def test_asave_keeps_the_image_in_a_worker_thread_without_blocking_the_loop(tmp_path: Path) -> None:
    seen: list[str] = []

    class Watched(Store):
        def save(self, data: bytes) -> StoredImage:
            seen.append(threading.current_thread().name)
            return super().save(data)

    data = _png("RGB")
    kept = await Watched(tmp_path).asave(data)
    assert kept == Store(tmp_path).save(data)
    assert seen and seen[0].startswith("imgkit-images") and seen[0] != threading.current_thread().name


@pytest.mark.anyio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
async def test_image_workers_run_behind_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_WORKERS", None)  # new workers, made by this test
    niceness: list[int] = []

    class Watched(Store):
        def save(self, data: bytes) -> StoredImage:
            niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return super().save(data)

    loop_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    await asyncio.gather(*(Watched(tmp_path).asave(_png("RGB", (64 + i, 64))) for i in range(3)))
    assert niceness == [min(19, loop_niceness + WORKER_NICENESS)] * 3
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_niceness  # the loop's own is untouched
    workers = store_module._WORKERS
    assert workers is not None
    workers.shutdown(wait=True)

