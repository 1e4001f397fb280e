"""The facade a notebook user calls: generate/agenerate, runs, resume, estimate, configure.

One async core. The sync functions are thin wrappers that hand the coroutine to one private
event-loop thread and wait, so they work from plain scripts and from inside a kernel whose
loop is already running, without patching that loop (and still work where a user applied
nest_asyncio). The async functions run their work on the same private loop too, so all runs
of a process share one HTTP connection pool, one concurrency limit and one ledger writer.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import html
import logging
import os
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from imgkit.engine import Engine, EventHandler, PollPolicy, RetryPolicy, raise_for_record
from imgkit.errors import ConfigError
from imgkit.ledger import Ledger
from imgkit.pricing import Estimate, get_sheet
from imgkit.pricing import estimate as _estimate
from imgkit.providers.base import Balance, Provider
from imgkit.request import DEFAULT_MODEL, ImageRequest, JobEvent, RunRecord
from imgkit.store import Store, default_data_dir

if TYPE_CHECKING:
    import pandas as pd
    from PIL.Image import Image

    from imgkit.sandbox import SandboxConfig

__all__ = [
    "Cost",
    "GenerationResult",
    "Session",
    "agenerate",
    "aresume",
    "configure",
    "estimate",
    "generate",
    "get_session",
    "login",
    "resume",
    "runs",
]

log = logging.getLogger("imgkit")
T = TypeVar("T")

SANDBOX_URL = "http://sandbox"
KEY_ENV = "EVOLINK_API_KEY"


# --- the private loop --------------------------------------------------------------------


class _LoopThread:
    """One daemon thread running an event loop for all of imgkit's I/O."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    ready.set()
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name="imgkit-loop", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait for it (blocking the caller)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("imgkit's sync functions cannot be called from its own loop; await the a* form")
        future = self.submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            # Ctrl-C / the notebook's stop button: cancel the work, keep what the ledger has.
            future.cancel()
            raise

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the private loop from any other loop."""
        if self.in_loop_thread():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))


_LOOP = _LoopThread()


def _call_on(loop: asyncio.AbstractEventLoop | None, handler: EventHandler | None) -> EventHandler | None:
    """Deliver events to ``handler`` on ``loop`` (the caller's), or directly when None."""
    if handler is None or loop is None:
        return handler

    def deliver(event: JobEvent) -> None:
        if loop.is_closed():
            return
        loop.call_soon_threadsafe(handler, event)

    return deliver


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cost:
    """What a run cost: the estimate (with its price sheet) and what the service reserved or
    charged."""

    credits: float | None
    usd: float | None
    cny: float | None
    sheet: str | None
    credits_reserved: float | None
    credits_charged: float | None

    def __str__(self) -> str:
        if self.credits is None:
            return "cost unknown"
        text = f"{self.credits:g} credits (${self.usd:.4f}, ¥{self.cny:.4f}; {self.sheet})"
        if self.credits_reserved is not None:
            text += f", service reserved {self.credits_reserved:g}"
        return text


class GenerationResult:
    """The outcome of one run: its images, files, cost and ledger record.

    In a notebook it displays as a gallery of thumbnails with the prompt, size, tier, cost
    and latency.
    """

    def __init__(self, record: RunRecord, data_dir: Path) -> None:
        self.record = record
        self._data_dir = data_dir
        self._images: list[Image] | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def paths(self) -> list[Path]:
        """The image files on disk."""
        return [self._data_dir / p for p in self.record.files]

    @property
    def thumbnails(self) -> list[Path]:
        return [self._data_dir / p for p in self.record.thumbs]

    @property
    def images(self) -> list[Image]:
        """The images as PIL images (loaded on first use)."""
        if self._images is None:
            from PIL import Image as PILImage

            loaded = []
            for path in self.paths:
                with PILImage.open(path) as im:
                    im.load()
                    loaded.append(im.copy())
            self._images = loaded
        return self._images

    @property
    def cost(self) -> Cost:
        r = self.record
        return Cost(r.est_credits, r.est_usd, r.est_cny, r.price_sheet, r.credits_reserved, r.credits_charged)

    @property
    def latency_s(self) -> float | None:
        return self.record.latency_s

    def __repr__(self) -> str:
        r = self.record
        latency = f"{r.latency_s:.1f}s" if r.latency_s is not None else "-"
        return (
            f"<GenerationResult {r.run_id} {r.status} {r.quality} {r.size} n={r.n} "
            f"images={len(r.files)} cost={self.cost.credits} credits latency={latency}>"
        )

    def _repr_html_(self) -> str:
        r = self.record
        cells = []
        for thumb in self.thumbnails:
            try:
                data = base64.b64encode(thumb.read_bytes()).decode()
            except OSError:
                continue
            cells.append(
                f'<img src="data:image/jpeg;base64,{data}" alt="{html.escape(r.prompt[:80])}" '
                'style="max-width:200px;max-height:200px;margin:2px;border-radius:4px">'
            )
        latency = f"{r.latency_s:.1f} s" if r.latency_s is not None else "-"
        usd = f" (${r.est_usd:.4f})" if r.est_usd is not None else ""
        status = html.escape(r.status)
        if r.error_code:
            status += f": {html.escape(r.error_code)}"
        caption = (
            f"<b>{html.escape(r.prompt[:200])}</b><br>{html.escape(r.size)} · {html.escape(r.quality)}"
            f" · n={r.n} · {r.est_credits if r.est_credits is not None else '?'} credits{usd}"
            f" · {latency} · {status} · <code>{html.escape(r.run_id)}</code>"
        )
        return f'<div class="imgkit-result"><div>{"".join(cells)}</div><div style="font-size:90%">{caption}</div></div>'


# --- the session -------------------------------------------------------------------------


class Session:
    """Settings, provider, ledger and store for a set of runs.

    Most users never build one: the module functions (:func:`generate`, :func:`runs`, ...)
    use a default session made from the environment, and :func:`configure` replaces it.

    Args:
        api_key: the gateway key; when None, ``$EVOLINK_API_KEY``; when neither, the sandbox.
        base_url: the task API host (a loopback sandbox in tests); the live host by default.
        files_url: the file API host; defaults to the live files host, or ``base_url``.
        data_dir: where the ledger and images live (``$IMGKIT_HOME`` by default).
        sandbox: force the in-process sandbox (True) or forbid it (False).
        sandbox_config: the in-process sandbox's settings.
        price_sheet: the price sheet estimates use.
        concurrency: the most tasks in flight at once.
        poll, retry: the engine's policies.
        timeout: seconds per HTTP request.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        files_url: str | None = None,
        data_dir: str | Path | None = None,
        sandbox: bool | None = None,
        sandbox_config: SandboxConfig | None = None,
        price_sheet: str | None = None,
        concurrency: int = 8,
        poll: PollPolicy | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
    ) -> None:
        key = api_key or os.environ.get(KEY_ENV) or None
        if sandbox is None:
            sandbox = key is None and base_url is None
        if not sandbox and key is None:
            raise ConfigError(
                f"no API key: set ${KEY_ENV}, call imgkit.login(), or imgkit.configure(api_key=...)"
            )
        self.sandbox = sandbox
        self._key = key if not sandbox else "sk-sandbox"
        self.base_url = SANDBOX_URL if sandbox else (base_url or "https://api.evolink.ai")
        self.files_url = files_url
        self.data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
        self.sandbox_config = sandbox_config
        self.price_sheet = get_sheet(price_sheet).name
        self.concurrency = concurrency
        self.poll = poll
        self.retry = retry
        self.timeout = timeout
        self._ledger: Ledger | None = None
        self._engine: Engine | None = None
        self._sandbox_app: Any = None

    def __repr__(self) -> str:
        return f"<imgkit.Session {self.describe()}>"

    def describe(self) -> str:
        """One line: sandbox or live, where, the price sheet and the data directory."""
        if self.sandbox:
            where = "sandbox (in-process, no key)"
        else:
            tail = self._key[-4:] if self._key and len(self._key) >= 12 else "****"
            where = f"live {self.base_url} (key ...{tail})"
        return f"{where}; price sheet {self.price_sheet}; data {self.data_dir}"

    @property
    def key_hint(self) -> str | None:
        """At most the key's last four characters, for banners."""
        if self.sandbox or not self._key:
            return None
        return self._key[-4:] if len(self._key) >= 12 else None

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.data_dir / "ledger.sqlite3")
        return self._ledger

    @property
    def store(self) -> Store:
        return Store(self.data_dir)

    def _provider(self) -> Provider:
        from imgkit.providers.gateway import GatewayProvider

        transport = None
        name = "gateway"
        if self.sandbox:
            import httpx

            from imgkit.sandbox import SandboxConfig, create_app

            config = self.sandbox_config or SandboxConfig(time_scale=0.3)
            self._sandbox_app = create_app(config)
            transport = httpx.ASGITransport(app=self._sandbox_app)
            name = "sandbox"
        assert self._key is not None
        return GatewayProvider(
            self._key,
            base_url=self.base_url,
            files_url=self.files_url,
            transport=transport,
            timeout=self.timeout,
            name=name,
        )

    @property
    def engine(self) -> Engine:
        """The engine (created on first use; it belongs to imgkit's private loop)."""
        if self._engine is None:
            self._engine = Engine(
                self._provider(),
                self.ledger,
                self.store,
                concurrency=self.concurrency,
                poll=self.poll,
                retry=self.retry,
            )
        return self._engine

    # --- async API ---------------------------------------------------------------------

    async def agenerate(
        self,
        prompt: str,
        *,
        size: str = "1:1",
        quality: str = "medium",
        n: int = 1,
        images: Iterable[Any] | None = None,
        model: str = DEFAULT_MODEL,
        tags: Iterable[str] = (),
        on_event: EventHandler | None = None,
        raise_on_error: bool = True,
    ) -> GenerationResult:
        """Generate images without blocking; see :func:`generate`."""
        request = ImageRequest.build(prompt, model=model, size=size, quality=quality, n=n, images=images)
        caller = _running_loop()
        return await _LOOP.run_async(
            self._run(request, tuple(tags), _call_on(caller, on_event), raise_on_error)
        )

    async def _run(
        self, request: ImageRequest, tags: tuple[str, ...], on_event: EventHandler | None, raise_on_error: bool
    ) -> GenerationResult:
        engine = self.engine
        est = self._estimate_or_none(request)
        record = engine.new_record(request, estimate=est, tags=tags)
        record = await engine.run(request, record, on_event=on_event)
        if raise_on_error:
            raise_for_record(record)
        return GenerationResult(record, self.data_dir)

    def _estimate_or_none(self, request: ImageRequest) -> Estimate | None:
        try:
            return _estimate(
                quality=request.quality, size=request.size, n=request.n, model=request.model, sheet=self.price_sheet
            )
        except ConfigError as exc:
            log.warning("no estimate for this run: %s", exc)
            return None

    async def aresume(self, *, on_event: EventHandler | None = None) -> list[GenerationResult]:
        """Finish every run an earlier process left unfinished; see :func:`resume`."""
        caller = _running_loop()
        return await _LOOP.run_async(self._resume(_call_on(caller, on_event)))

    async def _resume(self, on_event: EventHandler | None) -> list[GenerationResult]:
        engine = self.engine
        pending = [r for r in self.ledger.unfinished()] + self._retryable_downloads()
        records = await asyncio.gather(*(engine.resume(r, on_event=on_event) for r in pending))
        return [GenerationResult(r, self.data_dir) for r in records]

    def _retryable_downloads(self) -> list[RunRecord]:
        return [
            r
            for r in self.ledger.records()
            if r.status == "failed" and r.error_code == "download_failed" and r.result_urls
        ]

    async def abalance(self) -> Balance | None:
        """The credits balance the service reports."""
        return await _LOOP.run_async(self.engine.provider.balance())

    # --- sync API ----------------------------------------------------------------------

    def generate(self, prompt: str, **kwargs: Any) -> GenerationResult:
        """Generate images and wait for them; see :func:`generate`."""
        request_kwargs = {k: kwargs.pop(k) for k in ("size", "quality", "n", "images", "model") if k in kwargs}
        request = ImageRequest.build(prompt, **request_kwargs)
        return _LOOP.run(
            self._run(request, tuple(kwargs.pop("tags", ())), kwargs.pop("on_event", None),
                      kwargs.pop("raise_on_error", True))
        )

    def resume(self, *, on_event: EventHandler | None = None) -> list[GenerationResult]:
        return _LOOP.run(self._resume(on_event))

    def balance(self) -> Balance | None:
        return _LOOP.run(self.engine.provider.balance())

    def runs(self) -> pd.DataFrame:
        """Every run in this session's ledger as a typed DataFrame."""
        return self.ledger.to_dataframe(data_dir=self.data_dir)

    def estimate(self, *, quality: str = "medium", size: str = "1:1", n: int = 1, model: str = DEFAULT_MODEL) -> Estimate:
        request = ImageRequest.build("estimate", model=model, size=size, quality=quality, n=n)
        return _estimate(quality=request.quality, size=request.size, n=request.n, model=model, sheet=self.price_sheet)

    def close(self) -> None:
        """Close connections and the ledger."""
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                _LOOP.run(engine.provider.aclose())
            except RuntimeError:
                pass
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# --- the default session and module functions --------------------------------------------

_DEFAULT: Session | None = None
_DEFAULT_LOCK = threading.Lock()


def get_session() -> Session:
    """The default session, made from the environment on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Session()
        return _DEFAULT


def configure(**settings: Any) -> Session:
    """Replace the default session; takes :class:`Session`'s arguments.

    Example:
        >>> imgkit.configure(api_key=os.environ["MY_KEY"], price_sheet="evolink-formula-2026-11")
    """
    global _DEFAULT
    session = Session(**settings)
    with _DEFAULT_LOCK:
        old, _DEFAULT = _DEFAULT, session
    if old is not None:
        old.close()
    return session


def login(prompt: str = "EvoLink API key: ", **settings: Any) -> Session:
    """Ask for the API key without echoing it (getpass) and use the live service."""
    import getpass

    key = getpass.getpass(prompt).strip()
    if not key:
        raise ConfigError("no key entered; the session is unchanged")
    return configure(api_key=key, **settings)


def generate(
    prompt: str,
    *,
    size: str = "1:1",
    quality: str = "medium",
    n: int = 1,
    images: Iterable[Any] | None = None,
    model: str = DEFAULT_MODEL,
    tags: Iterable[str] = (),
    on_event: EventHandler | None = None,
    raise_on_error: bool = True,
) -> GenerationResult:
    """Generate images and wait for them.

    Args:
        prompt: what to draw (up to 2000 characters for gpt-image-1).
        size: ``1:1``, ``2:3``, ``3:2`` or ``1024x1024``, ``1024x1536``, ``1536x1024``.
        quality: ``low`` (0.26x), ``medium`` (1x) or ``high`` (3.91x); always sent, since the
            service's own default is high.
        n: images in this run, 1-10.
        images: 1-16 reference images (URLs, local paths, bytes or PIL images) for
            image-to-image or editing; local ones are uploaded through the file API.
        model: ``gpt-image-1`` or a sibling from :data:`imgkit.MODELS`.
        tags: labels kept in the ledger, for reports.
        on_event: called with a :class:`JobEvent` at each status change.
        raise_on_error: raise ``TaskFailed``/``UnknownOutcome`` for a run that did not
            complete (it is in the ledger either way); False returns the result instead.

    Example:
        >>> res = imgkit.generate("A beautiful colorful sunset over the ocean", size="3:2",
        ...                       quality="low", n=2)
        >>> res.paths, res.cost
    """
    return get_session().generate(
        prompt, size=size, quality=quality, n=n, images=images, model=model, tags=tags,
        on_event=on_event, raise_on_error=raise_on_error,
    )


async def agenerate(
    prompt: str,
    *,
    size: str = "1:1",
    quality: str = "medium",
    n: int = 1,
    images: Iterable[Any] | None = None,
    model: str = DEFAULT_MODEL,
    tags: Iterable[str] = (),
    on_event: EventHandler | None = None,
    raise_on_error: bool = True,
) -> GenerationResult:
    """:func:`generate` without blocking: ``res = await imgkit.agenerate(...)``."""
    return await get_session().agenerate(
        prompt, size=size, quality=quality, n=n, images=images, model=model, tags=tags,
        on_event=on_event, raise_on_error=raise_on_error,
    )


def runs() -> pd.DataFrame:
    """Every run in the ledger, as a typed pandas DataFrame (one row per run)."""
    return get_session().runs()


def resume(*, on_event: EventHandler | None = None) -> list[GenerationResult]:
    """Finish runs left unfinished by a restart or crash: poll their tasks, download results."""
    return get_session().resume(on_event=on_event)


async def aresume(*, on_event: EventHandler | None = None) -> list[GenerationResult]:
    """:func:`resume` without blocking."""
    return await get_session().aresume(on_event=on_event)


def estimate(
    *,
    quality: str = "medium",
    size: str = "1:1",
    n: int = 1,
    model: str = DEFAULT_MODEL,
    sheet: str | None = None,
) -> Estimate:
    """Estimated credits, USD and CNY of a request, naming the price sheet used.

    Example:
        >>> imgkit.estimate(quality="low", size="3:2", n=2)
        Estimate(credits=1.84924, usd=0.0257, cny=0.1823, sheet='evolink-table-2026-11', ...)
    """
    request = ImageRequest.build("estimate", model=model, size=size, quality=quality, n=n)
    chosen = sheet or (_DEFAULT.price_sheet if _DEFAULT is not None else None)
    return _estimate(quality=request.quality, size=request.size, n=request.n, model=model, sheet=chosen)

