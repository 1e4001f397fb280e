"""The API key never appears in the ledger file, the DataFrame, reprs, logs, exception texts
or tracebacks, including for HTTP errors whose request carried it."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest

import imgkit
from imgkit.sandbox import SandboxConfig, running_sandbox

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
        imgkit.configure(api_key="sk-evo-WRONGKEY000000000000000000000", base_url=url, data_dir=data_dir, poll=FAST_POLL)
        with pytest.raises(imgkit.TaskFailed) as info:
            imgkit.generate("wrong key")
        texts += [str(info.value), "".join(traceback.format_exception(info.value))]
        imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        df = imgkit.runs()
        texts += [df.to_csv(), df.to_json(date_format="iso"), repr(df)]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert len(df) == 7
    secret_forms = [TEST_KEY, TEST_KEY[7:], "WRONGKEY000000000000000000000"]
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
