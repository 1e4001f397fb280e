"""Configuration is pure code: providers, keys and URLs are checked without a session or a
connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgkit.config import (
    LOOPBACK_PLACEHOLDER_KEY,
    SANDBOX_URL,
    check_url,
    display_url,
    is_loopback,
    resolve_providers,
)
from imgkit.errors import ConfigError

from .conftest import TEST_KEY


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:8808", True),
    ("http://127.5.0.1:8808", True),
    ("http://localhost:8808/", True),
    ("http://[::1]:8808", True),
    ("https://api.evolink.ai", False),
    ("http://10.0.0.5:8808", False),
    ("http://localhost.example.com", False),
])
def test_loopback_addresses(url: str, loopback: bool) -> None:
    assert is_loopback(check_url(url)) is loopback


@pytest.mark.parametrize(("url", "shown"), [
    ("http://alice:s3cret@127.0.0.1:8808/v1", "http://***@127.0.0.1:8808/v1"),
    ("https://token@images.example.com", "https://***@images.example.com"),
    ("http://127.0.0.1:8808", "http://127.0.0.1:8808"),
])
def test_display_url_hides_userinfo(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_check_url_keeps_a_good_url_and_names_the_setting() -> None:
    assert check_url("http://127.0.0.1:8808/") == "http://127.0.0.1:8808"
    assert check_url(" https://api.evolink.ai ") == "https://api.evolink.ai"
    with pytest.raises(ConfigError, match="files_url"):
        check_url("ftp://files.example.com", name="files_url")


def test_single_gateway_resolution(tmp_path: Path) -> None:
    (sandbox,), routing = resolve_providers(data_dir=tmp_path)
    assert (sandbox.name, sandbox.base_url, sandbox.sandbox, routing) == ("sandbox", SANDBOX_URL, True, {})
    (local,), _ = resolve_providers(base_url="http://localhost:8808/", data_dir=tmp_path)
    assert (local.name, local.base_url, local.sandbox) == ("gateway", "http://localhost:8808", False)
    assert local.api_key.reveal() == LOOPBACK_PLACEHOLDER_KEY
    (keyed,), _ = resolve_providers(base_url="http://localhost:8808", api_key=TEST_KEY, data_dir=tmp_path)
    assert keyed.api_key.reveal() == TEST_KEY  # a given key is sent as given


def test_the_environments_key_wins_over_the_placeholder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOLINK_API_KEY", TEST_KEY)
    (config,), _ = resolve_providers(base_url="http://127.0.0.1:8808", data_dir=tmp_path)
    assert config.api_key.reveal() == TEST_KEY
