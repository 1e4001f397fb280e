"""The balance is the money that can be spent: the smaller of the key's and the account's
remaining credits for a limited key, the account's for an unlimited one, saying which limit
binds; every reading is kept in the ledger as a balance snapshot; the sandbox serves both key
kinds and keeps its account in a state file that survives a restart."""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx
import pytest

import imgkit
from imgkit.ledger import Ledger
from imgkit.providers.base import Balance
from imgkit.providers.gateway import GatewayProvider, parse_balance
from imgkit.request import BalanceSnapshot
from imgkit.sandbox import SandboxConfig, create_app, running_sandbox
from imgkit.widgets import _present as present

from .conftest import FAST_POLL, TEST_KEY

#: The credits endpoint's documented example (spec §5): a limited key far above the account.
DOCUMENTED = {"success": True, "message": "", "data": {
    "token": {"remaining_credits": 99416.4429, "unlimited_credits": False, "used_credits": 583.5571},
    "user": {"remaining_credits": 1095.3996, "used_credits": 135.9048},
}}


def _body(token: dict, user: dict | None) -> dict:
    data: dict = {"token": token}
    if user is not None:
        data["user"] = user
    return {"success": True, "message": "", "data": data}


def test_a_limited_key_above_the_account_spends_the_accounts_money() -> None:
    balance = parse_balance(DOCUMENTED)
    assert balance is not None
    assert balance.remaining_credits == 1095.3996  # not the key's 99,416
    assert (balance.binding, balance.key_remaining, balance.account_remaining) == ("account", 99416.4429, 1095.3996)
    assert balance.used_credits == 135.9048 and not balance.unlimited and not balance.key_unlimited
    assert str(balance) == "1095.3996 credits (the account's balance binds; the key's own limit is 99416.4429)"


def test_a_limited_key_below_the_account_binds() -> None:
    balance = parse_balance(_body({"remaining_credits": 12.5, "unlimited_credits": False, "used_credits": 7.5},
                                  {"remaining_credits": 1095.3996, "used_credits": 135.9}))
    assert balance is not None
    assert (balance.remaining_credits, balance.binding, balance.used_credits) == (12.5, "key", 7.5)
    assert str(balance) == "12.5 credits (the key's limit binds; the account holds 1095.3996)"


def test_an_unlimited_key_spends_the_accounts_money() -> None:
    # Whatever the key's own figure says, an unlimited key is limited by the account.
    balance = parse_balance(_body({"remaining_credits": 99416.4429, "unlimited_credits": True, "used_credits": 3.0},
                                  {"remaining_credits": 12.5, "used_credits": 135.9}))
    assert balance is not None
    assert (balance.remaining_credits, balance.binding, balance.unlimited, balance.key_unlimited) == (
        12.5, "account", False, True)
    assert balance.key_remaining is None
    assert str(balance) == "12.5 credits (the account's balance binds; the key is unlimited)"
    # The studio's "more than the balance" warning fires against the account's 12.5.
    assert "more than the balance" in present.price_warning(13.0, warn_credits=None, balance=balance)


def test_what_the_parser_makes_of_partial_or_odd_bodies() -> None:
    only_key = parse_balance(_body({"remaining_credits": 40, "unlimited_credits": False}, None))
    assert only_key is not None and (only_key.remaining_credits, only_key.binding) == (40.0, "key")
    nothing = parse_balance(_body({"unlimited_credits": True}, None))
    assert nothing is not None and nothing.unlimited and math.isinf(nothing.remaining_credits)
    assert str(nothing) == "unlimited (no limit reported)"
    assert parse_balance({"success": False}) is None
    assert parse_balance(_body({"remaining_credits": "NaN"}, {"remaining_credits": None})) is None
    # A string "true" is not the JSON true the endpoint sends: the key's figure still counts.
    odd = parse_balance(_body({"remaining_credits": 5, "unlimited_credits": "true"}, {"remaining_credits": 9}))
    assert odd is not None and (odd.remaining_credits, odd.binding) == (5.0, "key")


@pytest.mark.anyio
@pytest.mark.parametrize(("config", "want"), [
    (SandboxConfig(credits=1000.0, key_credits=50.0), (50.0, "key", 50.0, 1000.0, False)),
    (SandboxConfig(credits=12.5, key_unlimited=True), (12.5, "account", None, 12.5, True)),
    (SandboxConfig(credits=300.0), (300.0, "account", 300.0, 300.0, False)),
], ids=["limited-key", "unlimited-key", "default"])
async def test_the_sandbox_serves_both_key_kinds(config: SandboxConfig, want: tuple) -> None:
    app = create_app(config)
    provider = GatewayProvider("sk-sandbox", base_url="http://sandbox", transport=httpx.ASGITransport(app=app))
    try:
        balance = await provider.balance()
    finally:
        await provider.aclose()
    assert balance is not None
    got = (balance.remaining_credits, balance.binding, balance.key_remaining, balance.account_remaining,
           balance.key_unlimited)
    assert got == want


def test_the_key_limit_binds_at_the_sandbox_too(data_dir: Path) -> None:
    with running_sandbox(SandboxConfig(seed=3, time_scale=0.005, credits=1000.0, key_credits=1.0)) as url:
        imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        with pytest.raises(imgkit.TaskFailed, match="insufficient_quota"):
            imgkit.generate("a fox", quality="medium")  # 2.4192 credits: more than the key allows
        balance = imgkit.balance()
        assert balance is not None and (balance.remaining_credits, balance.binding) == (1.0, "key")


def test_balance_keeps_a_snapshot_and_describe_and_the_banner_say_which_limit_binds(data_dir: Path) -> None:
    with running_sandbox(SandboxConfig(seed=5, time_scale=0.005, credits=700.0, key_unlimited=True)) as url:
        session = imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        before = time.time()
        balance = imgkit.balance()
        assert balance is not None and balance.remaining_credits == 700.0
        (snapshot,) = session.ledger.balance_snapshots()
        assert snapshot.provider == session.provider_configs[0].name
        assert (snapshot.remaining_credits, snapshot.account_remaining, snapshot.key_remaining) == (700.0, 700.0, None)
        assert (snapshot.binding, snapshot.source) == ("account", "balance")
        assert snapshot.taken_at >= before
        assert "; balance 700 credits (the account's balance binds, at " in str(session.describe())
        banner = present.banner(sandbox=False, base_url=url, key_hint="CRET", model="gpt-image-1", sheet_name="s",
                                sheet_date="d", sheet_source="x", balance=balance)
        assert "700 credits" in banner and "the account&#x27;s balance binds; the key is unlimited" in banner


def test_a_sweep_takes_a_snapshot_before_and_after(data_dir: Path) -> None:
    with running_sandbox(SandboxConfig(seed=6, time_scale=0.005, credits=500.0)) as url:
        session = imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        out = imgkit.sweep(["a fox", "a kite"], quality="low", confirm=True, progress=False)
        snapshots = session.ledger.balance_snapshots()
    assert [s.source for s in snapshots] == ["sweep-start", "sweep-end"]
    spent = sum(r.record.credits_reserved or 0.0 for r in out.results)
    assert snapshots[0].remaining_credits == 500.0
    assert snapshots[1].remaining_credits == pytest.approx(500.0 - spent)


def test_the_ledger_keeps_snapshots_oldest_first_and_filters_them(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        for at, provider in ((30.0, "b"), (10.0, "a"), (20.0, "a"), (40.0, "a")):
            ledger.add_balance_snapshot(BalanceSnapshot(taken_at=at, provider=provider, remaining_credits=at,
                                                        account_remaining=at, binding="account", source="t"))
        assert [s.taken_at for s in ledger.balance_snapshots()] == [10.0, 20.0, 30.0, 40.0]
        assert [s.taken_at for s in ledger.balance_snapshots(provider="a")] == [10.0, 20.0, 40.0]
        assert [s.taken_at for s in ledger.balance_snapshots(since=20.0, until=30.0)] == [20.0, 30.0]
        assert ledger.balance_snapshots(provider="a", since=41.0) == []
        assert ledger.balance_snapshots(provider="b")[0] == BalanceSnapshot(
            taken_at=30.0, provider="b", remaining_credits=30.0, account_remaining=30.0, binding="account", source="t")
    finally:
        ledger.close()


def test_the_sandbox_account_survives_a_restart_and_failed_tasks_give_credits_back(tmp_path: Path) -> None:
    state = tmp_path / "data" / "sandbox-state.json"
    config = SandboxConfig(seed=8, time_scale=0.005, credits=100.0, state_path=str(state))
    auth = {"Authorization": "Bearer x"}
    body = {"model": "gpt-image-1", "prompt": "a fox", "size": "1:1", "quality": "medium", "n": 1}
    with running_sandbox(config) as url, httpx.Client(base_url=url, headers=auth, timeout=30) as client:
        assert client.post("/v1/images/generations", json=body).status_code == 200
        # Long enough (in real seconds) that the task is still held when the balance is read
        # on a loaded machine.
        failing = client.post("/v1/images/generations", json={**body, "prompt": "[[fail:service_error]] [[seconds:3]]"})
        assert failing.status_code == 200
        held = client.get("/v1/credits").json()["data"]["user"]["remaining_credits"]
        assert held == pytest.approx(100.0 - 2 * 2.4192)  # both reserved at acceptance
        deadline = time.monotonic() + 30
        while client.get(f"/v1/tasks/{failing.json()['id']}").json()["status"] != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        after = client.get("/v1/credits").json()["data"]
        assert after["user"]["remaining_credits"] == pytest.approx(100.0 - 2.4192)  # the failed one released
        assert after["token"]["used_credits"] == pytest.approx(2.4192)
    assert state.is_file()
    # A new sandbox on the same state file starts where the old one stopped.
    with running_sandbox(config) as url:
        again = httpx.get(f"{url}/v1/credits", headers=auth, timeout=30).json()["data"]
    assert again["user"]["remaining_credits"] == pytest.approx(100.0 - 2.4192)
    assert again["user"]["used_credits"] == pytest.approx(2.4192)


def test_the_in_process_sandbox_keeps_its_account_beside_the_ledger(data_dir: Path) -> None:
    imgkit.configure(sandbox=True, data_dir=data_dir, poll=FAST_POLL)
    first = imgkit.balance()
    imgkit.generate("a fox", quality="low")
    spent = imgkit.runs()["credits_reserved"].sum()
    imgkit.get_session().close()
    imgkit.configure(sandbox=True, data_dir=data_dir, poll=FAST_POLL)  # a new process, in effect
    second = imgkit.balance()
    assert first is not None and second is not None
    assert second.remaining_credits == pytest.approx(first.remaining_credits - spent)
    assert (data_dir / "sandbox-state.json").is_file()


def test_balance_str_for_the_studio_warning() -> None:
    poor = Balance(remaining_credits=1.5, account_remaining=1.5, binding="account")
    assert "more than the balance" in present.price_warning(4.8384, warn_credits=None, balance=poor)


def test_opening_the_studio_keeps_a_snapshot_and_its_banner_says_which_limit_binds(data_dir: Path) -> None:
    from imgkit.widgets import Studio

    with running_sandbox(SandboxConfig(seed=9, time_scale=0.005, credits=900.0, key_credits=40.0)) as url:
        session = imgkit.configure(api_key=TEST_KEY, base_url=url, data_dir=data_dir, poll=FAST_POLL)
        banner = Studio().banner.value  # no running loop here: the balance is read at once
        (snapshot,) = session.ledger.balance_snapshots()
    assert (snapshot.source, snapshot.remaining_credits, snapshot.binding) == ("studio", 40.0, "key")
    assert (snapshot.key_remaining, snapshot.account_remaining) == (40.0, 900.0)
    assert "40 credits" in banner and "the key&#x27;s limit binds; the account holds 900" in banner


def test_two_sandboxes_on_one_state_file_share_one_account(tmp_path: Path) -> None:
    # Two kernels on one data directory each run an in-process sandbox: one account.
    config = SandboxConfig(seed=10, time_scale=0.005, credits=50.0, state_path=str(tmp_path / "state.json"))
    auth = {"Authorization": "Bearer x"}
    body = {"model": "gpt-image-1", "prompt": "a fox", "size": "1:1", "quality": "medium", "n": 1}
    with running_sandbox(config) as first, running_sandbox(config) as second:
        assert httpx.post(f"{first}/v1/images/generations", json=body, headers=auth, timeout=30).status_code == 200
        assert httpx.post(f"{second}/v1/images/generations", json=body, headers=auth, timeout=30).status_code == 200
        for url in (first, second):
            user = httpx.get(f"{url}/v1/credits", headers=auth, timeout=30).json()["data"]["user"]
            assert user["remaining_credits"] == pytest.approx(50.0 - 2 * 2.4192)
