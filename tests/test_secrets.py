"""The API keys (gateway and OpenAI) never appear in the ledger file, the DataFrame, exported
reports, saved notebook outputs, reprs, logs, exception texts or tracebacks (with or without
their frames' locals), including for HTTP errors whose request carried a key and answers that
quote the key back."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import traceback
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

import imgkit
from imgkit.providers.gateway import GatewayProvider
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox

from .conftest import FAST_POLL, TEST_KEY


def test_key_never_leaks(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with running_sandbox(SandboxConfig(seed=5, time_scale=0.01, api_key=TEST_KEY)) as url:
        session = imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        texts += [repr(session), session.describe(), str(vars(session))]
        ok = imgkit.generate("fine", n=2)
        texts += [repr(ok), ok._repr_html_(), repr(ok.record), str(ok.cost)]
        for prompt in ("x [[fail:content_policy_violation]]", "x [[http:500]]", "x [[accept_then_500]]",
                       "x [[http:401]]", "x [[http:429]]"):
            try:
                imgkit.generate(prompt)
            except imgkit.ImgkitError as exc:
                texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        # A wrong key: the service answers 401 to a request that carried a key.
        imgkit.configure(api_key="sk-evo-WRONG_KEY_0000000000_0000000000", base_url=url, data_dir=data_dir, poll=FAST_POLL)
        with pytest.raises(imgkit.TaskFailed) as info:
            imgkit.generate("wrong key")
        texts += [str(info.value), "".join(traceback.format_exception(info.value))]
        imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        df = imgkit.runs()
        texts += [df.to_csv(), df.to_json(date_format="iso"), repr(df)]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert len(df) == 7
    secret_forms = [TEST_KEY, TEST_KEY[7:], "WRONG_KEY_0000000000_0000000000"]
    for text in texts:
        for secret in secret_forms:
            assert secret not in text
    for path in data_dir.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for secret in secret_forms:
                assert secret.encode() not in blob, path
    # Only the last four characters may be shown, in the banner.
    assert session.key_hint == TEST_KEY[-4:]


# --- issue 8: both keys, every surface, after a session with failures ---------------------

OPENAI_TEST_KEY = "sk-proj-openai_TEST_0123456789_abcdef_SECRET"
_ECHO = b"{{echo}}"


def _echoing(app: Any) -> Any:
    """The sandbox, except that a create whose prompt has ``{{echo}}`` is answered 401 with the
    Authorization header it carried quoted back (as some services and proxies do)."""

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/images/generations"):
            await app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if _ECHO not in body:
            sent = False

            async def replay() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(scope, replay, send)
            return
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        error = {"code": "invalid_api_key", "message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')}",
                 "type": "invalid_request_error", "param": None, "header": auth}
        payload = json.dumps({"error": error}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    wrapper.state = app.state  # type: ignore[attr-defined]
    return wrapper


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:  # as IPython and pytest do: a broken repr must not hide the rest
        return f"<repr raised {type(exc).__name__}>"


def _with_locals(exc: BaseException) -> str:
    """The traceback with every frame's locals, as IPython's %xmode Verbose and pytest's
    --showlocals show them (including chained exceptions)."""
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            parts.append(f"{frame.f_code.co_filename}:{tb.tb_lineno} in {frame.f_code.co_name}")
            parts += [f"    {name} = {_safe_repr(value)}" for name, value in list(frame.f_locals.items())]
            tb = tb.tb_next
        # Followed the way tracebacks are displayed: ``raise ... from None`` hides the context.
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n".join(parts)


def _texts_of(exc: BaseException) -> list[str]:
    """An exception as a user may see it: str, repr, a plain traceback and one with every
    frame's locals."""
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc)), _with_locals(exc)]


def _failure_texts(call: Any) -> list[str]:
    """Run ``call``; if it raises an imgkit error, that error as a user may see it. Caught in
    this small frame, so a traceback's locals are imgkit's, not the test's growing lists."""
    try:
        call()
    except imgkit.ImgkitError as exc:
        return _texts_of(exc)
    return []


def _document_texts(path: Path) -> list[str]:
    """The text of an exported report, whatever its format (XLSX is a zip of XML, PDF
    streams are usually compressed)."""
    blob = path.read_bytes()
    texts = [blob.decode("latin-1")]
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as zf:
            texts += [zf.read(name).decode("utf-8", "replace") for name in zf.namelist()]
    if path.suffix == ".pdf":
        for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", blob, re.S):
            try:
                texts.append(zlib.decompress(stream).decode("latin-1"))
            except zlib.error:
                texts.append(stream.decode("latin-1"))
    return texts


def test_keys_never_leak_anywhere(data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("EVOLINK_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
    texts: list[str] = []
    failures = 0
    app = _echoing(create_app(SandboxConfig(seed=8, time_scale=0.01)))
    with running_sandbox(app=app) as url:
        providers = [
            {"name": "evolink", "kind": "gateway", "base_url": url},
            {"name": "openai", "kind": "openai", "base_url": f"{url}/openai/v1"},
        ]
        for chosen in (providers, providers[1:]):  # both keys in flight: routed, then OpenAI alone
            session = imgkit.configure(data_dir=data_dir, poll=FAST_POLL, providers=chosen)
            texts += [repr(session), session.describe(), str(vars(session))]
            ok = imgkit.generate("fine", quality="low")
            texts += [repr(ok), ok._repr_html_(), repr(ok.record), str(ok.cost)]
            for prompt in ("x [[fail:content_policy_violation]]", "x [[http:500]]", "x [[accept_then_500]]",
                           "x [[http:401]]", "x [[http:429]]", "x {{echo}}"):
                shown = _failure_texts(lambda p=prompt: imgkit.generate(p, quality="low"))
                failures += bool(shown)
                texts += shown
        # Straight at the provider: the HTTP error of a request that carried the key.
        provider = GatewayProvider(TEST_KEY, base_url=url)

        async def echo() -> None:
            try:
                await provider.submit(imgkit.request.ImageRequest.build("x {{echo}}"), [])
            finally:
                await provider.aclose()

        shown = _failure_texts(lambda: asyncio.run(echo()))
        assert shown and "HTTP 401 invalid_api_key: Incorrect API key provided" in shown[0]
        texts += shown
        df = imgkit.runs()
        texts += [df.to_csv(), df.to_json(date_format="iso"), repr(df), df.to_html()]
        report = imgkit.report()
        texts += [repr(report), report._repr_html_()]
        exports = tmp_path / "exports"
        exports.mkdir()
        for ext in ("csv", "xlsx", "html", "md", "pdf"):
            texts += _document_texts(report.save(exports / f"report.{ext}"))
    assert failures >= 10
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    texts += [str(r.exc_info) for r in caplog.records if r.exc_info]
    secrets = [TEST_KEY, TEST_KEY[7:], OPENAI_TEST_KEY, OPENAI_TEST_KEY[8:]]
    for text in texts:
        for secret in secrets:
            assert secret not in text, text[:2000]
    for path in data_dir.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in blob, path


NOTEBOOK_CELLS = [
    "import os, imgkit\n"
    "s = imgkit.configure(base_url=os.environ['IMGKIT_TEST_URL'], poll=imgkit.engine.PollPolicy(min_interval=0.01, max_interval=0.2))\n"
    "s",
    "res = imgkit.generate('a notebook run', quality='low')\nres",
    "imgkit.generate('rejected [[http:401]]', quality='low')",
    "imgkit.generate('echoed {{echo}}', quality='low')",
    "%xmode Verbose",
    "imgkit.generate('refused again [[http:401]]', quality='low')",
    "imgkit.generate('echoed again {{echo}}', quality='low')",
    "print(s.describe()); vars(s)",
    "imgkit.runs()",
    "imgkit.report()",
]


def test_keys_never_leak_into_saved_notebook_outputs(data_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook run in a real kernel with failing runs (plain and verbose tracebacks with
    locals), saved to disk: the file holds neither key."""
    import nbformat
    from nbclient import NotebookClient

    app = _echoing(create_app(SandboxConfig(seed=9, time_scale=0.01)))
    with running_sandbox(app=app) as url:
        monkeypatch.setenv("EVOLINK_API_KEY", TEST_KEY)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
        monkeypatch.setenv("IMGKIT_TEST_URL", url)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
        NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    saved = tmp_path / "saved.ipynb"
    nbformat.write(nb, saved)
    text = saved.read_text()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert len(errors) == 4, [o.get("ename") for o in errors]
    assert any("TaskFailed" in o.ename for o in errors)
    assert "completed" in text
    for secret in (TEST_KEY, TEST_KEY[7:], OPENAI_TEST_KEY, OPENAI_TEST_KEY[8:]):
        assert secret not in text


def test_key_typed_at_login_stays_out_of_a_failed_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    monkeypatch.setattr(getpass, "getpass", lambda prompt="": TEST_KEY)

    def shown() -> list[str]:
        return _failure_texts(lambda: imgkit.login(price_sheet="no-such-sheet"))

    texts = shown()
    assert texts and "no-such-sheet" in texts[0]
    assert not any(TEST_KEY in text for text in texts)
