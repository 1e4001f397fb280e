"""Fallback routing across providers, with two real sandboxes on loopback playing two providers
with different price sheets: the cheaper one serves; outages (503, refused and reset
connections, tasks failed with outage codes, a 5xx of the synchronous OpenAI API) send runs to
the next one and the ledger says why; the user's own errors and unknown outcomes never do; the
circuit breaker skips a failing provider and probes it again after the cool-down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import imgkit
from imgkit.errors import ConfigError
from imgkit.ledger import COLUMNS, Ledger
from imgkit.providers.router import (
    OPENAI_CAPABILITIES,
    BreakerPolicy,
    Capabilities,
    CircuitBreaker,
    Endpoint,
    Failover,
    Outcome,
    Router,
    Served,
    Ticket,
    Unknown,
    failover_reason,
    run_outcome,
    submit_outcome,
)
from imgkit.request import ImageRequest, RunRecord
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox
from imgkit.session import providers as provider_table

from .conftest import TEST_KEY, sandbox_tasks

FAST_POLL = imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.1, deadline=60.0)
ADMIN = {"Authorization": "Bearer x"}

# Client-side price sheets of the two providers (USD per medium square image: 0.0278, 0.0417).
CHEAP = {"name": "test-cheap", "date": "2026-11-24", "source": "test", "base_credits": 2.0, "credits_per_usd": 72}
PRICEY = {"name": "test-pricey", "date": "2026-11-24", "source": "test", "base_credits": 3.0, "credits_per_usd": 72}
DEAR = {"name": "test-dear", "date": "2026-11-24", "source": "test", "base_credits": 4.0, "credits_per_usd": 72}


# --- fault helpers: real servers, no mocks of the client -----------------------------------


class Proxy:
    """A TCP proxy on loopback in front of a sandbox. ``forward`` pipes bytes; ``reset``
    answers every new connection with an RST; ``reset_after_send`` lets the request arrive,
    then resets (the client cannot know whether it was acted on); ``refuse`` stops listening.
    It counts the create requests it forwards."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self._target = (host, int(port))
        self.mode = "forward"
        self.creates = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._close(listen=False))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        self._call(self._set(mode))

    def _call(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _set(self, mode: str) -> None:
        self.mode = mode
        await self._close(listen=mode != "refuse")
        if mode != "refuse" and self._server is None:
            await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self, *, listen: bool) -> None:
        for transport in list(self._transports):
            _rst(transport)
        self._transports.clear()
        if not listen and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "reset_after_send":
            await reader.read(65536)
        if self.mode != "forward":
            _rst(writer.transport)
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._transports.update({writer.transport, up_writer.transport})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await src.read(65536):
                    if count:
                        self.creates += data.count(b"POST /v1/images/generations ")
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._transports.discard(writer.transport)
        self._transports.discard(up_writer.transport)


def _rst(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Injector:
    """Wraps a sandbox app: while ``directive`` is set, it is appended to the prompt of every
    task created on this sandbox only, so one provider's channel fails its tasks while the
    other provider sees the same clean request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state  # running_sandbox reads state.sandbox
        self.directive = ""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.directive or scope["path"] != "/v1/images/generations":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        data = json.loads(body)
        data["prompt"] += f" {self.directive}"
        new = json.dumps(data).encode()
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(new)).encode()))
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": new, "more_body": False}
            return await receive()

        await self.app({**scope, "headers": headers}, replay, send)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _sheets() -> None:
    for sheet in (CHEAP, PRICEY, DEAR):
        imgkit.register_price_sheet(sheet)


@pytest.fixture(scope="module")
def cheap_app() -> Injector:
    return Injector(create_app(SandboxConfig(seed=21, time_scale=0.005, credits=10_000, credits_per_image=2.0)))


@pytest.fixture(scope="module")
def cheap_url(cheap_app: Injector) -> Iterator[str]:
    with running_sandbox(app=cheap_app) as url:  # type: ignore[arg-type]
        yield url


@pytest.fixture(scope="module")
def pricey_url() -> Iterator[str]:
    with running_sandbox(SandboxConfig(seed=22, time_scale=0.005, credits=10_000, credits_per_image=3.0)) as url:
        yield url


@pytest.fixture(scope="module")
def proxy(cheap_url: str) -> Iterator[Proxy]:
    with Proxy(cheap_url) as p:
        yield p


@pytest.fixture(autouse=True)
def _healthy(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts and ends with both providers healthy."""
    yield
    for name in ("cheap_url", "pricey_url"):
        if name in request.fixturenames:
            httpx.post(f"{request.getfixturevalue(name)}/_sandbox/faults", json={}, headers=ADMIN).raise_for_status()
    if "cheap_app" in request.fixturenames:
        request.getfixturevalue("cheap_app").directive = ""
    if "proxy" in request.fixturenames:
        request.getfixturevalue("proxy").set("forward")




def _faults(url: str, **faults: float) -> None:
    httpx.post(f"{url}/_sandbox/faults", json=faults, headers=ADMIN, timeout=10).raise_for_status()


def _two_gateways(data_dir: Path, cheap: str, pricey: str, **settings: Any) -> imgkit.Session:
    # Listed dearest first: the order of the list is only the tie-break.
    return imgkit.configure(
        data_dir=data_dir,
        poll=FAST_POLL,
        providers=[
            {"name": "pricey", "kind": "gateway", "api_key": TEST_KEY, "base_url": pricey, "price_sheet": "test-pricey"},
            {"name": "cheap", "kind": "gateway", "api_key": TEST_KEY, "base_url": cheap, "price_sheet": "test-cheap"},
        ],
        **settings,
    )


@pytest.fixture
def routed(data_dir: Path, proxy: Proxy, pricey_url: str) -> imgkit.Session:
    """The cheap gateway behind the proxy, the pricey one direct."""
    return _two_gateways(data_dir, proxy.url, pricey_url, failure_threshold=3, cooldown=30)


def _row(run_id: str) -> dict:
    df = imgkit.runs()
    return df[df["run_id"] == run_id].iloc[0].to_dict()


# --- the cheaper provider serves -------------------------------------------------------------


def test_cheaper_provider_is_used(routed: imgkit.Session, proxy: Proxy, pricey_url: str) -> None:
    before = len(sandbox_tasks(pricey_url))
    res = imgkit.generate("a red fox", quality="low")
    assert res.status == "completed" and res.record.provider == "cheap"
    assert res.record.providers_tried == ()
    assert res.record.price_sheet == "test-cheap" and res.record.est_credits == 0.52
    assert res.record.credits_reserved == 0.52  # the sandbox playing "cheap" charges its own sheet
    assert len(sandbox_tasks(pricey_url)) == before
    table = provider_table()
    assert list(table["name"]) == ["pricey", "cheap"]  # configured order
    assert list(table["ref_usd"]) == [0.0417, 0.0278]  # one medium square image on each sheet
    assert list(table["state"]) == ["closed", "closed"]
    assert table.set_index("name").loc["cheap", "latency_s"] > 0
    row = _row(res.run_id)
    assert row["provider"] == "cheap" and row["providers_tried"] == []
    assert "via cheap" in res._repr_html_() and "via cheap" in repr(res)


def test_503_fails_over_and_the_ledger_says_why(routed: imgkit.Session, proxy: Proxy, cheap_url: str,
                                                 pricey_url: str) -> None:
    cheap_before, pricey_before = len(sandbox_tasks(cheap_url)), len(sandbox_tasks(pricey_url))
    _faults(cheap_url, create_503=1.0)
    res = imgkit.generate("a red fox", quality="low")
    assert res.status == "completed" and res.record.provider == "pricey"
    (tried,) = res.record.providers_tried
    assert tried["provider"] == "cheap" and tried["reason"] == "http_503"
    assert "service_unavailable" in tried["detail"]
    assert res.record.attempts == 3  # two tries on the cheap one, one on the next
    assert res.record.price_sheet == "test-pricey" and res.record.est_credits == 0.78
    assert len(sandbox_tasks(cheap_url)) == cheap_before  # a 503 creates nothing
    assert len(sandbox_tasks(pricey_url)) == pricey_before + 1
    assert _row(res.run_id)["providers_tried"] == [tried]


@pytest.mark.parametrize("code", ["service_unavailable", "resource_exhausted", "service_error"])
def test_task_outage_codes_fail_over(routed: imgkit.Session, cheap_app: Injector, cheap_url: str,
                                     pricey_url: str, code: str) -> None:
    cheap_before, pricey_before = len(sandbox_tasks(cheap_url)), len(sandbox_tasks(pricey_url))
    cheap_app.directive = f"[[fail:{code}]]"
    res = imgkit.generate("a lighthouse", quality="low")
    assert res.status == "completed" and res.record.provider == "pricey"
    (tried,) = res.record.providers_tried
    assert (tried["provider"], tried["reason"]) == ("cheap", code)
    cheap_tasks = sandbox_tasks(cheap_url)[cheap_before:]
    assert len(cheap_tasks) == 1 and cheap_tasks[0]["status"] == "failed"  # over before the run moved on
    assert tried["task_id"] == cheap_tasks[0]["id"]
    assert len(sandbox_tasks(pricey_url)) == pricey_before + 1
    assert res.record.task_id != tried["task_id"]


def test_content_policy_does_not_fail_over(routed: imgkit.Session, pricey_url: str) -> None:
    before = len(sandbox_tasks(pricey_url))
    with pytest.raises(imgkit.TaskFailed) as info:
        imgkit.generate("a celebrity [[fail:content_policy_violation]]", quality="low")
    assert info.value.code == "content_policy_violation"
    row = imgkit.runs().iloc[-1]
    assert (row["provider"], row["status"], row["providers_tried"]) == ("cheap", "failed", [])
    assert len(sandbox_tasks(pricey_url)) == before


@pytest.mark.parametrize(
    ("directive", "code"),
    [("[[http:400]]", "invalid_request"), ("[[http:401]]", "unauthorized"), ("[[http:402]]", "insufficient_quota")],
)
def test_users_own_errors_do_not_fail_over(routed: imgkit.Session, pricey_url: str, directive: str, code: str) -> None:
    before = len(sandbox_tasks(pricey_url))
    res = imgkit.generate(f"p {directive}", quality="low", raise_on_error=False)
    assert (res.status, res.record.error_code, res.record.provider, res.record.attempts) == ("failed", code, "cheap", 1)
    assert res.record.providers_tried == ()
    assert len(sandbox_tasks(pricey_url)) == before


def test_500_after_sending_is_unknown_and_never_sent_elsewhere(routed: imgkit.Session, cheap_url: str,
                                                               pricey_url: str) -> None:
    cheap_before, pricey_before = len(sandbox_tasks(cheap_url)), len(sandbox_tasks(pricey_url))
    _faults(cheap_url, create_accept_then_500=1.0)
    with pytest.raises(imgkit.UnknownOutcome):
        imgkit.generate("p", quality="low")
    row = imgkit.runs().iloc[-1]
    assert (row["provider"], row["status"], row["providers_tried"]) == ("cheap", "unknown", [])
    assert len(sandbox_tasks(cheap_url)) == cheap_before + 1  # the task exists and is charged ...
    assert len(sandbox_tasks(pricey_url)) == pricey_before  # ... so the run was not paid for twice


def test_refused_connections_fail_over(routed: imgkit.Session, proxy: Proxy, pricey_url: str) -> None:
    proxy.set("refuse")
    res = imgkit.generate("a fox", quality="low")
    assert res.status == "completed" and res.record.provider == "pricey"
    (tried,) = res.record.providers_tried
    assert (tried["provider"], tried["reason"]) == ("cheap", "connect_error")
    assert tried["detail"].startswith("connection_error")


def test_reset_connections_fail_over_or_stay_unknown_never_both(data_dir: Path, proxy: Proxy,
                                                                pricey_url: str) -> None:
    # An RST right after the connection is accepted races the client's write: when the write
    # lost, nothing was sent and the run fails over; when it won, the request may have been
    # read, so the run is unknown and goes nowhere else. Never both.
    _two_gateways(data_dir, proxy.url, pricey_url, failure_threshold=10)
    proxy.set("reset")
    for i in range(3):
        before = len(sandbox_tasks(pricey_url))
        res = imgkit.generate(f"reset {i}", quality="low", raise_on_error=False)
        if res.status == "unknown":
            assert res.record.provider == "cheap" and res.record.providers_tried == ()
            assert len(sandbox_tasks(pricey_url)) == before
        else:
            assert (res.status, res.record.provider) == ("completed", "pricey")
            assert res.record.providers_tried[0]["reason"] == "connect_error"
            assert len(sandbox_tasks(pricey_url)) == before + 1


def test_reset_after_sending_is_unknown_then_the_breaker_moves_runs(data_dir: Path, proxy: Proxy,
                                                                    pricey_url: str) -> None:
    _two_gateways(data_dir, proxy.url, pricey_url, failure_threshold=2, cooldown=30)
    pricey_before = len(sandbox_tasks(pricey_url))
    proxy.set("reset_after_send")
    first = [imgkit.generate(f"run {i}", quality="low", raise_on_error=False) for i in range(2)]
    # The request may have been acted on: not resent anywhere, and the ledger says so.
    assert [(r.status, r.record.provider, r.record.providers_tried) for r in first] == [("unknown", "cheap", ())] * 2
    assert all("not resent" in (r.record.notes or "") for r in first)
    assert len(sandbox_tasks(pricey_url)) == pricey_before
    # Two unknown outcomes opened the cheap provider's circuit: later runs skip it.
    assert provider_table().set_index("name").loc["cheap", "state"] == "open"
    res = imgkit.generate("after the circuit opened", quality="low")
    assert res.record.provider == "pricey"
    (tried,) = res.record.providers_tried
    assert (tried["provider"], tried["reason"]) == ("cheap", "circuit_open")


def test_breaker_skips_then_probes_after_cooldown(data_dir: Path, proxy: Proxy, cheap_url: str,
                                                  pricey_url: str) -> None:
    _two_gateways(data_dir, proxy.url, pricey_url, failure_threshold=2, cooldown=2.0)
    _faults(cheap_url, create_503=1.0)
    reasons = []
    for i in range(3):
        res = imgkit.generate(f"outage {i}", quality="low")
        assert res.record.provider == "pricey"
        reasons.append(res.record.providers_tried[0]["reason"])
    assert reasons == ["http_503", "http_503", "circuit_open"]
    table = provider_table().set_index("name")
    assert table.loc["cheap", "state"] == "open" and table.loc["cheap", "error_rate"] == 1.0
    assert table.loc["cheap", "last_error"] == "http_503" and 0 < table.loc["cheap", "retry_in_s"] <= 2.0
    assert table.loc["pricey", "state"] == "closed" and table.loc["pricey", "error_rate"] == 0.0
    creates = proxy.creates
    imgkit.generate("still skipped", quality="low")
    assert proxy.creates == creates  # an open circuit is not even asked
    _faults(cheap_url)  # the outage ends
    time.sleep(provider_table().set_index("name").loc["cheap", "retry_in_s"] + 0.05)
    assert provider_table().set_index("name").loc["cheap", "state"] == "half_open"
    res = imgkit.generate("after the cool-down", quality="low")
    assert res.record.provider == "cheap" and res.record.providers_tried == ()
    assert proxy.creates == creates + 1
    assert provider_table().set_index("name").loc["cheap", "state"] == "closed"


def test_sweep_during_an_outage(data_dir: Path, proxy: Proxy, pricey_url: str) -> None:
    _two_gateways(data_dir, proxy.url, pricey_url, failure_threshold=2, cooldown=30)
    proxy.set("refuse")
    out = imgkit.sweep(["a fox", "a lighthouse", "a harbour", "a kite"], quality=["low", "medium"],
                       confirm=True, progress=False, concurrency=2)
    assert len(out.completed) == 8
    df = out.runs()
    assert df["provider"].astype(str).value_counts().to_dict() == {"pricey": 8}
    reasons = [t[0]["reason"] for t in df["providers_tried"]]
    assert set(reasons) == {"connect_error", "circuit_open"} and reasons.count("connect_error") >= 2
    # Reports group by provider like by any other column.
    spent = df.groupby("provider", observed=True)["est_credits"].sum()
    assert list(spent.index) == ["pricey"]
    proxy.set("forward")
    assert "<th>provider</th>" in out._repr_html_()


def test_resume_polls_the_provider_that_accepted(data_dir: Path, proxy: Proxy, pricey_url: str) -> None:
    session = _two_gateways(data_dir, proxy.url, pricey_url)
    body = {"model": "gpt-image-1", "prompt": "accepted by pricey [[seconds:0.3]]", "quality": "low"}
    task = httpx.post(f"{pricey_url}/v1/images/generations", json=body,
                      headers={"Authorization": f"Bearer {TEST_KEY}"}).json()
    record = RunRecord(run_id="run-resume-1", provider="pricey", model="gpt-image-1", prompt=body["prompt"],
                       size="1024x1024", quality="low", n=1, task_id=task["id"], status="pending",
                       submitted_at=time.time(), providers_tried=({"provider": "cheap", "reason": "http_503"},))
    session.ledger.save(record)
    creates = proxy.creates
    (result,) = imgkit.resume()
    assert result.status == "completed" and result.record.provider == "pricey"
    assert result.record.providers_tried == ({"provider": "cheap", "reason": "http_503"},)
    assert proxy.creates == creates  # nothing was resent


# --- the OpenAI-direct provider as one of the two -------------------------------------------


@pytest.fixture
def openai_first(data_dir: Path, cheap_url: str, pricey_url: str) -> imgkit.Session:
    """OpenAI (token sheet, $0.0109 for a low square image) is cheaper than a gateway on the
    dear sheet ($0.0144)."""
    return imgkit.configure(
        data_dir=data_dir,
        poll=FAST_POLL,
        providers=[
            {"name": "gateway", "kind": "gateway", "api_key": TEST_KEY, "base_url": cheap_url, "price_sheet": "test-dear"},
            {"name": "openai", "kind": "openai", "api_key": TEST_KEY, "base_url": f"{pricey_url}/openai/v1",
             "timeout": 1.0},
        ],
    )


def test_openai_provider_serves_and_prices_by_tokens(openai_first: imgkit.Session, tmp_path: Path) -> None:
    res = imgkit.generate("a red fox", quality="low", size="3:2", n=2)
    assert res.status == "completed" and res.record.provider == "openai"
    assert res.record.task_id.startswith("openai-")
    assert [im.size for im in res.images] == [(1536, 1024)] * 2
    assert res.record.result_urls[0].startswith("openai://")  # no base64 in the ledger
    assert res.record.est_usd == 0.032 and res.record.price_sheet == "openai-tokens-2026-11"
    # Charged: 800 output tokens at $40/M plus the prompt's text tokens at $5/M, in credits.
    assert res.record.credits_charged == pytest.approx((800 * 40 + 3 * 5) / 1e6 * 72, abs=1e-5)
    assert res.latency_s is not None and res.latency_s > 0
    local = tmp_path / "ref.png"
    res.images[0].resize((64, 40)).save(local)
    edit = imgkit.generate("make it a watercolor", images=[local, res.images[1].resize((32, 32))], quality="low")
    assert edit.status == "completed" and edit.record.provider == "openai"
    assert edit.record.mode == "image-to-image" and edit.record.reference_images[0].startswith("ref.png sha256:")


def test_openai_500_fails_over_and_content_policy_does_not(openai_first: imgkit.Session, cheap_url: str,
                                                          pricey_url: str) -> None:
    gateway_before = len(sandbox_tasks(cheap_url))
    _faults(pricey_url, create_500=1.0)
    res = imgkit.generate("a fox", quality="low")
    assert res.record.provider == "gateway"
    (tried,) = res.record.providers_tried
    assert (tried["provider"], tried["reason"]) == ("openai", "http_500")
    assert len(sandbox_tasks(cheap_url)) == gateway_before + 1
    _faults(pricey_url)
    res = imgkit.generate("a celebrity [[fail:content_policy_violation]]", raise_on_error=False)
    assert (res.record.provider, res.status, res.record.error_code) == ("openai", "failed", "content_policy_violation")
    assert "moderation_blocked" in res.record.error_message
    res = imgkit.generate("p [[http:402]]", raise_on_error=False)  # OpenAI's 429 insufficient_quota
    assert (res.record.provider, res.record.error_code, res.record.attempts) == ("openai", "insufficient_quota", 1)
    assert len(sandbox_tasks(cheap_url)) == gateway_before + 1


def test_openai_timeout_is_unknown_not_failed_over(openai_first: imgkit.Session, cheap_url: str,
                                                   pricey_url: str) -> None:
    gateway_before = len(sandbox_tasks(cheap_url))
    _faults(pricey_url, create_accept_then_hang=1.0, hang_seconds=5.0)
    res = imgkit.generate("a slow fox", quality="low", raise_on_error=False)
    assert (res.record.provider, res.status, res.record.providers_tried) == ("openai", "unknown", ())
    assert len(sandbox_tasks(cheap_url)) == gateway_before


def test_model_not_served_fails_over(data_dir: Path, cheap_url: str, pricey_url: str) -> None:
    imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=[
        # This OpenAI-compatible endpoint claims gpt-image-2, but answers 404 model_not_found.
        {"name": "openai", "kind": "openai", "api_key": TEST_KEY, "base_url": f"{pricey_url}/openai/v1",
         "models": ["gpt-image-1", "gpt-image-2"]},
        # A sheet that prices gpt-image-1 only: the shipped gateway sheets price gpt-image-2 below
        # OpenAI, and this test needs OpenAI tried first for it (unpriced providers go last).
        {"name": "gateway", "kind": "gateway", "api_key": TEST_KEY, "base_url": cheap_url,
         "price_sheet": "test-cheap"},
    ])
    res = imgkit.generate("a fox", model="gpt-image-2", size="1024x1024", quality="low")
    assert res.record.provider == "gateway"
    (tried,) = res.record.providers_tried
    assert (tried["provider"], tried["reason"]) == ("openai", "model_not_served")
    # When no provider is left, the run ends on the last failure; the others are history.
    res = imgkit.generate("p [[http:403]]", quality="low", raise_on_error=False)
    assert (res.status, res.record.provider, res.record.error_code) == ("failed", "openai", "model_not_found")
    assert [t["reason"] for t in res.record.providers_tried] == ["model_not_served"]
    assert res.record.providers_tried[0]["provider"] == "gateway"


def test_requests_no_provider_serves_are_refused_before_sending(data_dir: Path, pricey_url: str) -> None:
    imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=[
        # An OpenAI-compatible endpoint that serves gpt-image-1 alone.
        {"name": "openai", "kind": "openai", "api_key": TEST_KEY, "base_url": f"{pricey_url}/openai/v1",
         "models": ["gpt-image-1"]},
    ])
    with pytest.raises(imgkit.ValidationError, match="openai serves gpt-image-1, not gpt-image-2"):
        imgkit.generate("p", model="gpt-image-2")
    assert len(imgkit.runs()) == 0


# --- configuration ---------------------------------------------------------------------------


def test_providers_file_names_keys_by_variable(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                               cheap_url: str, pricey_url: str, caplog: pytest.LogCaptureFixture) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "providers.toml").write_text(
        f"""
[routing]
failure_threshold = 5
cooldown = 12

[[providers]]
name = "evolink"
kind = "gateway"
base_url = "{cheap_url}"
price_sheet = "test-cheap"

[[providers]]
name = "openai"
kind = "openai"
base_url = "{pricey_url}/openai/v1"
api_key_env = "MY_OPENAI_KEY"
"""
    )
    with pytest.raises(ConfigError, match=r"provider 'evolink' has no API key: set \$EVOLINK_API_KEY"):
        imgkit.Session(data_dir=data_dir)
    monkeypatch.setenv("EVOLINK_API_KEY", TEST_KEY)
    # One key missing: that provider is skipped with a warning naming its variable (issue 11 item 5).
    with caplog.at_level("WARNING", logger="imgkit"):
        assert [c.name for c in imgkit.Session(data_dir=data_dir).provider_configs] == ["evolink"]
    assert "$MY_OPENAI_KEY" in caplog.text
    monkeypatch.setenv("MY_OPENAI_KEY", "sk-openai-SECRET-0123456789")
    session = imgkit.configure(data_dir=data_dir, poll=FAST_POLL)
    assert [c.name for c in session.provider_configs] == ["evolink", "openai"]
    assert (session.policy.failure_threshold, session.policy.cooldown) == (5, 12.0)
    for text in (repr(session), str(vars(session)), repr(session.provider_configs)):
        assert TEST_KEY not in text and "SECRET" not in text
    res = imgkit.generate("from the file", quality="low")
    assert res.record.provider == "evolink"
    # An explicit single gateway still wins over the file.
    assert imgkit.configure(api_key=TEST_KEY, base_url=cheap_url, data_dir=data_dir).provider_configs[0].name == "gateway"
    (data_dir / "providers.toml").write_text('[[providers]]\nname = "x"\nkind = "openai"\napi_key = "sk-oops"\n')
    with pytest.raises(ConfigError, match="must not hold keys"):
        imgkit.Session(data_dir=data_dir)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="kind"):
        imgkit.Session(providers=[{"name": "a", "kind": "ftp", "api_key": "k"}])
    with pytest.raises(ConfigError, match="unknown provider settings"):
        imgkit.Session(providers=[{"name": "a", "api_key": "k", "typo": 1}])
    with pytest.raises(ConfigError, match="unique"):
        imgkit.Session(providers=[{"name": "a", "api_key": "k"}, {"name": "a", "api_key": "k"}]).router  # noqa: B018
    with pytest.raises(ConfigError, match=r"\$OPENAI_API_KEY"):
        imgkit.Session(providers=[{"kind": "openai"}])
    with pytest.raises(ConfigError, match="unknown price sheet"):
        imgkit.Session(providers=[{"name": "a", "api_key": "k", "price_sheet": "nope"}])


def test_in_process_sandbox_plays_both_kinds(data_dir: Path) -> None:
    imgkit.configure(data_dir=data_dir, poll=FAST_POLL, sandbox_config=SandboxConfig(time_scale=0.005),
                     providers=[{"name": "sandbox", "kind": "sandbox"},
                                {"name": "openai-sandbox", "kind": "openai", "sandbox": True}])
    session = imgkit.get_session()
    assert session.sandbox and "openai-sandbox (openai, in-process sandbox)" in session.describe()
    res = imgkit.generate("offline", quality="low")
    assert res.record.provider == "sandbox"  # 0.62899 credits beats 0.78336
    table = provider_table()
    assert list(table["base_url"]) == ["in-process sandbox"] * 2


# --- units: the breaker, the failover rules, the ledger ---------------------------------------


def test_circuit_breaker_states() -> None:
    now = [0.0]
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=2, cooldown=10, window=4), clock=lambda: now[0])
    assert breaker.acquire() == "normal"
    breaker.failure("http_503")
    assert breaker.state == "closed"
    breaker.success(latency=2.0)  # a success resets the count of consecutive failures
    breaker.failure("http_503")
    breaker.failure("connect_error")
    assert breaker.state == "open" and breaker.acquire() is None and not breaker.available()
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.acquire() == "probe" and breaker.acquire() is None  # one probe at a time
    breaker.failure("http_503", ticket=Ticket("x", probe=True))
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.acquire() == "probe"
    breaker.success(Ticket("x", probe=True), latency=4.0)
    stats = breaker.stats()
    assert (stats["state"], stats["error_rate"], stats["latency_s"]) == ("closed", 0.75, 4.0)  # window of 4
    assert breaker.acquire(force=True) == "normal"


@pytest.mark.parametrize(
    ("exc", "synchronous", "reason"),
    [
        (imgkit.RequestError("refused", sent=False), False, "connect_error"),
        (imgkit.RequestError("reset", sent=True), False, None),
        (imgkit.RequestError("timeout", sent=True), True, None),
        (imgkit.APIError(503, "service_unavailable", "no channel"), False, "http_503"),
        (imgkit.APIError(500, "internal_error", "boom"), False, None),
        (imgkit.APIError(502, "upstream_error", "boom"), False, None),
        (imgkit.APIError(500, "internal_error", "boom"), True, "http_500"),
        (imgkit.APIError(429, "rate_limit_exceeded", "slow down"), False, "rate_limited"),
        (imgkit.APIError(429, "insufficient_quota", "billing"), True, None),
        (imgkit.APIError(402, "insufficient_quota", "top up"), False, None),
        (imgkit.APIError(401, "unauthorized", "bad key"), False, None),
        (imgkit.APIError(400, "invalid_request", "No available channel for the requested model"), False,
         "model_not_served"),
        (imgkit.APIError(400, "invalid_request", "prompt: too long"), False, None),
        (imgkit.APIError(403, "model_access_denied", "no access"), False, "model_not_served"),
        (imgkit.APIError(404, "model_not_found", "gone"), True, "model_not_served"),
        (imgkit.APIError(400, "content_policy_violation", "blocked"), True, None),
    ],
)
def test_failover_rules(exc: Exception, synchronous: bool, reason: str | None) -> None:
    assert failover_reason(exc, synchronous=synchronous) == reason


def test_ledger_migration_adds_providers_tried(tmp_path: Path) -> None:
    from imgkit.ledger import _MIGRATIONS

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(_MIGRATIONS[0])
        conn.execute(
            "INSERT INTO runs (run_id, provider, model, prompt, size, quality, n, mode, status, created_at) "
            "VALUES ('run-old', 'gateway', 'gpt-image-1', 'p', '1024x1024', 'low', 1, 'text-to-image', 'completed', 1)"
        )
        conn.execute("PRAGMA user_version = 1")
    ledger = Ledger(path)
    try:
        assert ledger.get("run-old").providers_tried == ()  # type: ignore[union-attr]
        ledger.save(ledger.get("run-old").replace(providers_tried=({"provider": "a", "reason": "http_503"},)))  # type: ignore[union-attr]
        assert ledger.get("run-old").providers_tried == ({"provider": "a", "reason": "http_503"},)  # type: ignore[union-attr]
        df = ledger.to_dataframe()
        assert tuple(df.columns) == COLUMNS and df.iloc[0]["providers_tried"] == [{"provider": "a", "reason": "http_503"}]
    finally:
        ledger.close()


# --- one plan per run: the price shown is the price recorded -------------------------------


def test_the_estimate_shown_is_the_one_recorded_with_openai_first(data_dir: Path, pricey_url: str) -> None:
    # Before, Session.estimate priced on the session's sheet (the evolink table) while the run
    # was recorded on the OpenAI token sheet.
    session = imgkit.configure(
        data_dir=data_dir,
        poll=FAST_POLL,
        providers=[{"name": "openai", "kind": "openai", "api_key": TEST_KEY, "base_url": f"{pricey_url}/openai/v1"}],
    )
    shown = session.estimate(quality="low", size="1:1")
    assert shown.sheet == "openai-tokens-2026-11"
    assert shown == session.quote(ImageRequest.build("a fox", quality="low", size="1:1"))
    res = imgkit.generate("a fox", quality="low", size="1:1")
    assert (res.record.est_credits, res.record.est_usd, res.record.price_sheet) == (
        shown.credits, shown.usd, shown.sheet,
    )


def test_quote_follows_the_plan_and_the_breakers(openai_first: imgkit.Session) -> None:
    request = ImageRequest.build("a fox", quality="low")
    plan = openai_first.router.plan(request)
    assert [c.name for c in plan.candidates] == ["openai", "gateway"]  # cheapest first
    assert plan.chosen is not None and plan.chosen.endpoint.provider is openai_first.router.get("openai").provider
    assert openai_first.quote(request) == plan.estimate == plan.candidates[0].estimate
    # An open circuit moves the first candidate, and with it the price shown and recorded.
    breaker = openai_first.router.breaker("openai")
    for _ in range(openai_first.policy.failure_threshold):
        breaker.failure("http_503")
    plan = openai_first.router.plan(request)
    assert (plan.forced, plan.chosen.name) == (False, "gateway")  # type: ignore[union-attr]
    assert openai_first.quote(request) == plan.candidates[1].estimate
    assert openai_first.quote(request).sheet == "test-dear"  # type: ignore[union-attr]


def test_a_plan_with_every_circuit_open_is_forced() -> None:
    router = Router(
        [Endpoint.of(_Named("a"), sheet="evolink-table-2026-11"), Endpoint.of(_Named("b"), sheet="test-dear")],
        policy=BreakerPolicy(failure_threshold=1),
    )
    request = ImageRequest.build("a fox", quality="low")
    for name in ("a", "b"):
        router.breaker(name).failure("connect_error")
    plan = router.plan(request)
    assert plan.forced and plan.chosen is not None and plan.chosen.name == plan.candidates[0].name
    none = Router([Endpoint.of(_Named("o"), kind="openai", capabilities=Capabilities(models=("gpt-image-1",)))])
    empty = none.plan(ImageRequest.build("a fox", model="gpt-image-2", size="1024x1024"))
    # An OpenAI-kind provider serves today's models unless its settings narrow it.
    assert set(OPENAI_CAPABILITIES.models or ()) == {"gpt-image-1", "gpt-image-1.5", "gpt-image-2"}
    assert (empty.candidates, empty.chosen, empty.estimate) == ((), None, None)


class _Named:
    """Enough of a provider for the router (it never sends)."""

    def __init__(self, name: str) -> None:
        self.name = name


# --- outcomes: one value per attempt, reported once ----------------------------------------


@pytest.mark.parametrize(
    ("exc", "synchronous", "outcome"),
    [
        (imgkit.RequestError("refused", sent=False), False, Failover("connect_error")),
        (imgkit.RequestError("reset", sent=True), False, Unknown("unknown_outcome")),
        (imgkit.RequestError("timeout", sent=True), True, Unknown("unknown_outcome")),
        (imgkit.APIError(503, "service_unavailable", "busy"), False, Failover("http_503")),
        (imgkit.APIError(500, "internal_error", "oops"), False, Unknown("unknown_outcome")),
        (imgkit.APIError(500, "internal_error", "oops"), True, Failover("http_500")),
        (imgkit.APIError(429, "rate_limit_exceeded", "slow"), False, Failover("rate_limited")),
        (imgkit.APIError(429, "insufficient_quota", "no money"), True, Served()),
        (imgkit.APIError(400, "invalid_request", "bad size"), False, Served()),
    ],
)
def test_submit_outcome(exc: Exception, synchronous: bool, outcome: Outcome) -> None:
    assert submit_outcome(exc, synchronous=synchronous) == outcome


@pytest.mark.parametrize(
    ("changes", "outcome"),
    [
        ({"status": "completed", "submitted_at": 100.0, "completed_at": 103.5}, Served(3.5)),
        ({"status": "unknown"}, Unknown("unknown_outcome")),
        ({"status": "unknown", "error_code": "internal_error"}, Unknown("internal_error")),
        ({"status": "failed", "error_code": "service_unavailable"}, Failover("service_unavailable")),
        ({"status": "failed", "error_code": "generation_timeout"}, Failover("generation_timeout")),
        ({"status": "failed", "error_code": "content_policy_violation"}, Served()),
        ({"status": "failed", "error_code": "quota_exceeded"}, Served()),
    ],
)
def test_run_outcome(changes: dict[str, Any], outcome: Outcome) -> None:
    record = RunRecord(run_id="r", provider="p", model="gpt-image-1", prompt="x", size="1024x1024",
                       quality="low", n=1, **changes)
    assert run_outcome(record) == outcome


def test_report_feeds_the_breaker_one_outcome() -> None:
    router = Router([Endpoint.of(_Named("a"))], policy=BreakerPolicy(failure_threshold=2))
    breaker = router.breaker("a")
    ticket = router.acquire("a")
    assert ticket is not None
    router.report(ticket, Served(2.0))
    router.report(ticket, Unknown("unknown_outcome"))
    assert breaker.state == "closed"
    router.report(ticket, Failover("http_503"))
    assert breaker.state == "open" and breaker.last_error == "http_503"
    assert breaker.stats()["latency_s"] == 2.0
