"""Image files: verified, content-addressed, written atomically, with thumbnails.

Layout under the data directory::

    images/<first two hex digits>/<sha256>.<png|jpg|webp>   the image as downloaded
    thumbs/<first two hex digits>/<sha256>.jpg              a small JPEG for notebooks

Every download is decoded with Pillow before it is kept, so a stored file always opens.

The data directory holds the images unless ``$IMGKIT_IMAGES`` names another directory (a
shared one, for a team): :func:`images_dir`. Each run records the machine and the directory
its files were written to, so a run whose files are not here can say where they are
(:func:`images_elsewhere`) instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgkit.errors import DownloadError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "IMAGES_ENV",
    "THUMB_SIZE",
    "Store",
    "StoredImage",
    "default_data_dir",
    "images_dir",
    "images_elsewhere",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Far above any documented output (gpt-image-2 tops out at 8.3 M pixels), far below a bomb.
DEFAULT_MAX_PIXELS = 40_000_000
THUMB_SIZE = 256
_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
#: How much lower than the event loop's the image workers' scheduling priority is (a nice
#: increment, Linux only; 10 gives a busy loop thread about nine tenths of a shared core).
WORKER_NICENESS = 10
_WORKERS: ThreadPoolExecutor | None = None
_WORKERS_LOCK = threading.Lock()


def _lower_priority() -> None:
    """Run this worker thread behind the event loop when they share a core (Linux, where a
    thread has its own nice value; elsewhere nothing changes)."""
    if sys.platform.startswith("linux"):
        thread = threading.get_native_id()
        # Where it is forbidden (a locked-down container), the worker keeps the loop's priority.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + WORKER_NICENESS))


def _workers() -> ThreadPoolExecutor:
    global _WORKERS
    with _WORKERS_LOCK:
        if _WORKERS is None:
            _WORKERS = ThreadPoolExecutor(
                max_workers=min(4, os.cpu_count() or 1),
                thread_name_prefix="imgkit-images",
                initializer=_lower_priority,
            )
        return _WORKERS


def default_data_dir() -> Path:
    """Where imgkit keeps its ledger and images: ``$IMGKIT_HOME``, else the user data dir."""
    env = os.environ.get("IMGKIT_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("imgkit", appauthor=False))


#: The environment variable that points the image store at another (shared) directory.
IMAGES_ENV = "IMGKIT_IMAGES"


def images_dir(data_dir: Path) -> Path:
    """Where a session with ``data_dir`` keeps its images: ``$IMGKIT_IMAGES``, else
    ``data_dir`` (files are ``images/..`` and ``thumbs/..`` under it)."""
    env = os.environ.get(IMAGES_ENV, "").strip()
    return Path(env).expanduser() if env else data_dir


def images_elsewhere(
    files: Sequence[str], *, host: str | None, data_dir: str | None, here: str | None = None
) -> str | None:
    """Why a run's image ``files`` (absolute paths) cannot be shown on this machine, or None
    when they are all here (or the run has none).

    A run made on another machine, or under another image directory, says where
    (``made on host X in DIR; not on this machine``); otherwise the files were deleted.

    Args:
        files: the run's image paths as :func:`imgkit.runs` gives them.
        host, data_dir: the machine and directory the run recorded (None for old runs).
        here: this machine's name (``socket.gethostname()`` by default).
    """
    missing = [f for f in files if not Path(f).is_file()]
    if not missing:
        return None
    if here is None:
        import socket

        here = socket.gethostname()
    place = f" in {data_dir}" if data_dir else ""
    if host and host != here:
        return f"made on host {host}{place}; not on this machine ({len(missing)} of {len(files)} images missing)"
    if data_dir and not Path(data_dir).is_dir():
        return f"made in {data_dir}, which is not on this machine ({len(missing)} of {len(files)} images missing)"
    return f"{len(missing)} of {len(files)} images are no longer on disk{place} (deleted or moved)"


@dataclass(frozen=True, slots=True)
class StoredImage:
    """A kept image. Paths are relative to the data directory."""

    path: str
    thumb: str
    sha256: str
    width: int
    height: int
    format: str


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; images are ordinary user files
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store:
    """Content-addressed image files under ``root``.

    Args:
        root: the data directory.
        max_pixels: images with more pixels are refused before decoding (bomb guard).
    """

    def __init__(self, root: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.root = Path(root)
        self.max_pixels = max_pixels

    def abspath(self, relative: str) -> Path:
        return self.root / relative

    async def asave(self, data: bytes) -> StoredImage:
        """:meth:`save` in imgkit's image workers, without blocking the event loop.

        Decoding and thumbnailing are most of imgkit's CPU per image. The workers run at a
        lower scheduling priority than the loop (:data:`WORKER_NICENESS`), so on a busy core
        the next request, poll or download goes first and the service is kept busy; the
        image is kept a moment later (benchmarks/README.md, scenario 3).
        """
        return await asyncio.get_running_loop().run_in_executor(_workers(), self.save, data)

    def save(self, data: bytes) -> StoredImage:
        """Verify ``data`` is a PNG/JPEG/WEBP image, keep it and a thumbnail (blocking).

        Raises:
            DownloadError: not an image, a truncated one, or one too large to decode safely.
        """
        from PIL import Image, UnidentifiedImageError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                if image.format not in _EXT:
                    raise DownloadError(f"result is a {image.format} file, not PNG/JPEG/WEBP")
                width, height = image.size
                if width * height > self.max_pixels:
                    raise DownloadError(
                        f"result claims {width}x{height} pixels, over the {self.max_pixels:,} cap"
                    )
                image.load()
        except DownloadError:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            bomb = not isinstance(exc, UnidentifiedImageError)
            raise DownloadError(f"result is not a usable image: {type(exc).__name__}", retryable=not bomb) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise DownloadError(f"result image is corrupt or truncated: {exc}", retryable=True) from None
        digest = hashlib.sha256(data).hexdigest()
        ext = _EXT[image.format]
        rel = f"images/{digest[:2]}/{digest}.{ext}"
        thumb_rel = f"thumbs/{digest[:2]}/{digest}.jpg"
        if not (self.root / rel).exists():
            _atomic_write(self.root / rel, data)
        if not (self.root / thumb_rel).exists():
            _atomic_write(self.root / thumb_rel, _thumbnail(image))
        return StoredImage(rel, thumb_rel, digest, width, height, ext)


def _thumbnail(image: object) -> bytes:
    from PIL import Image

    assert isinstance(image, Image.Image)
    if _has_alpha(image):
        # A transparent result keeps its alpha in its file; its thumbnail (a JPEG) shows the
        # see-through part as a checkerboard, as image editors do, not as black.
        rgba = image.convert("RGBA")
        thumb = _checkerboard(rgba.size)
        thumb.paste(rgba, (0, 0), rgba)
    elif image.mode == "RGB":
        thumb = image  # shrunk in place: the caller's decoded copy, not needed afterwards
    else:
        thumb = image.convert("RGB")
    # reducing_gap=1.0: an integer box reduction (Image.reduce, an area average) does the
    # shrinking and LANCZOS only what is left (nothing for square results). About 5x faster
    # than the default gap of 2.0 on 1024-1536 px results and within ~40 dB PSNR of a full
    # LANCZOS: the same picture at 256 px. It was a third of imgkit's CPU per image
    # (benchmarks/README.md, scenario 3).
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS, reducing_gap=1.0)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=80, optimize=True)
    return buf.getvalue()


def _has_alpha(image: object) -> bool:
    from PIL import Image

    assert isinstance(image, Image.Image)
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


#: The checkerboard under transparent thumbnails: light and mid grey squares.
CHECKER_COLOURS = ((255, 255, 255), (204, 204, 204))


def _checkerboard(size: tuple[int, int]) -> PILImage:
    """An RGB checkerboard of ``size`` whose squares are 1/32 of the longer edge."""
    from PIL import Image

    width, height = size
    cell = max(1, max(width, height) // 32)
    small = Image.new("RGB", (-(-width // cell), -(-height // cell)), CHECKER_COLOURS[0])
    pixels = small.load()
    assert pixels is not None
    for y in range(small.height):
        for x in range(small.width):
            if (x + y) % 2:
                pixels[x, y] = CHECKER_COLOURS[1]
    return small.resize((small.width * cell, small.height * cell), Image.Resampling.NEAREST).crop((0, 0, width, height))
