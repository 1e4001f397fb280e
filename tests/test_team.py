"""A team's runs: who ran each and for which project, runs() filtered by them, and budgets
scoped to one person or to the whole team; on real SQLite ledgers and the loopback sandbox."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import imgkit
from imgkit.config import Budget, Identity, current_user
from imgkit.ledger import Ledger
from imgkit.request import RunRecord

from .conftest import FAST_POLL, TEST_KEY

ROOT = Path(__file__).resolve().parents[1]


def _as(user: str, sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch, **settings: object) -> imgkit.Session:
    """The default session of ``user`` (by ``$IMGKIT_USER``) on the shared ``data_dir``."""
    monkeypatch.setenv("IMGKIT_USER", user)
    return imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, poll=FAST_POLL, **settings)


# --- who and what for ---------------------------------------------------------------------


def test_the_user_is_imgkit_user_else_jupyterhub_user_else_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    monkeypatch.delenv("IMGKIT_USER", raising=False)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    assert current_user() == getpass.getuser()
    monkeypatch.setenv("JUPYTERHUB_USER", "hub-ana")
    assert current_user() == "hub-ana"
    monkeypatch.setenv("IMGKIT_USER", "  ana  ")
    assert current_user() == "ana"
    monkeypatch.setenv("IMGKIT_USER", " ")  # blank counts as unset
    assert current_user() == "hub-ana"


def test_a_process_whose_uid_has_no_name_still_gets_a_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """getpass.getuser() raises when no variable names the user and the uid has no passwd
    entry (a container's random uid): imgkit records ``uid-N`` instead of failing."""
    monkeypatch.delenv("IMGKIT_USER", raising=False)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)

    def nameless() -> str:
        raise OSError("No username set in the environment")

    assert current_user(getuser=nameless) == f"uid-{os.getuid()}"


def test_every_run_records_user_project_host_and_image_directory(
    sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _as("ana", sandbox_url, data_dir, monkeypatch, project="posters")
    res = imgkit.generate("a red fox", quality="low")
    assert (res.record.user, res.record.project) == ("ana", "posters")
    assert res.record.host == socket.gethostname()
    assert res.record.data_dir == str(data_dir) == str(session.images_dir)
    row = imgkit.runs().iloc[-1]
    assert (row["user"], row["project"], row["host"], row["data_dir"]) == (
        "ana", "posters", socket.gethostname(), str(data_dir))
    out = imgkit.sweep(["a lighthouse"], quality=["low"], confirm=True, progress=False)
    assert {(r.record.user, r.record.project) for r in out.results} == {("ana", "posters")}


def test_the_project_comes_from_configure_else_imgkit_project(
    sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGKIT_PROJECT", "catalogue")
    assert _as("ana", sandbox_url, data_dir, monkeypatch).identity.project == "catalogue"
    assert _as("ana", sandbox_url, data_dir, monkeypatch, project="posters").identity.project == "posters"
    monkeypatch.delenv("IMGKIT_PROJECT")
    assert _as("ana", sandbox_url, data_dir, monkeypatch).identity.project is None


@pytest.mark.parametrize("bad", ["", "   ", "x" * 65, 42, "tab\there"])
def test_a_bad_project_is_refused_naming_the_field(bad: object, sandbox_url: str, data_dir: Path) -> None:
    with pytest.raises(imgkit.ValidationError, match="project") as info:
        imgkit.configure(api_key=TEST_KEY, base_url=sandbox_url, data_dir=data_dir, project=bad)
    assert "1-64 printable characters" in str(info.value)
    assert not (data_dir / "ledger.sqlite3").exists()  # nothing opened, nothing written


def test_identity_fields_fill_a_record() -> None:
    me = Identity(user="ana", project=None, host="laptop-7", data_dir="/home/ana/.local/share/imgkit")
    record = RunRecord(run_id="r1", provider="sandbox", model="gpt-image-1", prompt="p", size="1024x1024",
                       quality="low", n=1).replace(**me.fields())
    assert (record.user, record.project, record.host, record.data_dir) == (
        "ana", None, "laptop-7", "/home/ana/.local/share/imgkit")


# --- runs(user=..., project=...) --------------------------------------------------------


def test_runs_filters_by_user_and_project(sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _as("ana", sandbox_url, data_dir, monkeypatch, project="posters")
    imgkit.generate("ana's fox", quality="low")
    imgkit.generate("ana's lighthouse", quality="low")
    session = _as("bob", sandbox_url, data_dir, monkeypatch)
    imgkit.generate("bob's fox", quality="low")
    assert not session.team_ledger
    # A personal SQLite ledger shows every run by default, as before.
    assert len(imgkit.runs()) == len(imgkit.runs(user="all")) == 3
    assert list(imgkit.runs(user="me")["prompt"]) == ["bob's fox"]
    assert list(imgkit.runs(user="ana")["prompt"]) == ["ana's fox", "ana's lighthouse"]
    assert list(imgkit.runs(user="all", project="posters")["user"].astype(str)) == ["ana", "ana"]
    assert len(imgkit.runs(user="me", project="posters")) == 0
    assert len(imgkit.runs(user="carol")) == 0
    by_user = imgkit.runs(user="all").groupby("user", observed=True)["est_credits"].count().to_dict()
    assert by_user == {"ana": 2, "bob": 1}
    # The filtered frame is a plain runs frame: the plots take it.
    from imgkit import plots

    assert plots.spend_over_time(imgkit.runs(user="ana")) is not None
    with pytest.raises(imgkit.ValidationError, match="user"):
        imgkit.runs(user="")


# --- budgets: personal and team ------------------------------------------------------------


def _record(run_id: str, user: str, credits: float) -> RunRecord:
    return RunRecord(run_id=run_id, provider="sandbox", model="gpt-image-1", prompt="p", size="1024x1024",
                     quality="low", n=1, est_credits=credits, user=user, status="completed")


def test_admit_counts_one_users_runs_or_everyones(tmp_path: Path) -> None:
    """The ledger contract: admit(user=None) counts every run, admit(user=name) that user's."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        ledger.save_many([_record("a1", "ana", 6.0), _record("b1", "bob", 3.0)])
        # Bob's personal room of 5: his 3 + 1.5 fit, whatever Ana spent.
        assert ledger.admit(_record("b2", "bob", 1.5), limit=5, since=None, user="bob") is None
        # Bob again: 4.5 counted, 1 more would pass 5.
        assert ledger.admit(_record("b3", "bob", 1.0), limit=5, since=None, user="bob") == pytest.approx(4.5)
        # The team's room of 12: everyone's 10.5 counted; 1.5 fits, 2 does not.
        assert ledger.admit(_record("b4", "bob", 2.0), limit=12, since=None) == pytest.approx(10.5)
        assert ledger.admit(_record("a2", "ana", 1.5), limit=12, since=None, user=None) is None
        assert ledger.spent_credits() == pytest.approx(12.0)
        assert ledger.spent_credits(user="bob") == pytest.approx(4.5)
        assert ledger.spent_credits(user="carol") == 0.0
        assert {r.run_id for r in ledger.records()} == {"a1", "b1", "b2", "a2"}  # refused runs never recorded
    finally:
        ledger.close()


def test_budget_scope_is_checked() -> None:
    assert Budget(10).scope == "personal"
    assert str(Budget(5000, "month", "team")) == "5000 credits per month for the team"
    with pytest.raises(imgkit.ValidationError, match="scope") as info:
        imgkit.budget(credits=10, scope="everyone")
    assert '"personal" (default) or "team"' in str(info.value)


def test_team_budget_counts_everyones_runs_and_says_so(
    sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as("ana", sandbox_url, data_dir, monkeypatch)
    one = imgkit.generate("ana's fox", quality="low").record.est_credits
    assert one is not None
    session = _as("bob", sandbox_url, data_dir, monkeypatch)
    imgkit.budget(credits=one * 2.5, per="month", scope="team")
    assert session.remaining_budget() == pytest.approx(one * 1.5)
    imgkit.generate("bob's fox", quality="low")
    with pytest.raises(imgkit.BudgetExceeded) as info:
        imgkit.generate("bob's second fox", quality="low")
    assert "(team budget: everyone's runs in the ledger count;" in str(info.value)
    assert "per month for the team" in str(info.value)
    assert session.remaining_budget() == pytest.approx(one * 0.5)
    assert len(imgkit.runs(user="all")) == 2  # the refused run was never sent nor recorded


def test_personal_budget_on_a_personal_ledger_counts_the_whole_file(
    sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as("ana", sandbox_url, data_dir, monkeypatch)
    one = imgkit.generate("ana's fox", quality="low").record.est_credits
    assert one is not None
    _as("bob", sandbox_url, data_dir, monkeypatch)
    imgkit.budget(credits=one * 1.5)
    with pytest.raises(imgkit.BudgetExceeded) as info:
        imgkit.generate("bob's fox", quality="low")
    assert "(personal budget: every run in this ledger counts;" in str(info.value)


# --- images made elsewhere ------------------------------------------------------------------


def test_images_elsewhere_says_where_a_runs_files_are(tmp_path: Path) -> None:
    from imgkit.store import images_elsewhere

    here = tmp_path / "here.png"
    here.write_bytes(b"x")
    gone = str(tmp_path / "images" / "ab" / "gone.png")
    assert images_elsewhere([str(here)], host="ana-laptop", data_dir="/elsewhere", here="bob-desk") is None
    assert images_elsewhere([], host="ana-laptop", data_dir="/elsewhere", here="bob-desk") is None
    assert images_elsewhere([gone], host="ana-laptop", data_dir="/home/ana/imgkit", here="bob-desk") == (
        "made on host ana-laptop in /home/ana/imgkit; not on this machine (1 of 1 images missing)")
    assert images_elsewhere([gone, str(here)], host="bob-desk", data_dir="/mnt/old-share", here="bob-desk") == (
        "made in /mnt/old-share, which is not on this machine (1 of 2 images missing)")
    assert images_elsewhere([gone], host="bob-desk", data_dir=str(tmp_path), here="bob-desk") == (
        f"1 of 1 images are no longer on disk in {tmp_path} (deleted or moved)")
    assert images_elsewhere([gone], host=None, data_dir=None, here="bob-desk") == (
        "1 of 1 images are no longer on disk (deleted or moved)")


def test_compare_says_when_a_runs_images_were_made_on_another_machine(
    sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a shared ledger a colleague's run is in the rows, its files on their laptop: the
    grid says where they are instead of failing or drawing an empty box."""
    from matplotlib.text import Text

    from imgkit import comparison

    session = _as("ana", sandbox_url, data_dir, monkeypatch)
    res = imgkit.generate("a red fox", quality="low")
    session.ledger.save(res.record.replace(host="ana-laptop", data_dir="/home/ana/.local/share/imgkit"))
    rows = imgkit.runs()
    (files,) = rows["files"]
    assert files[0].startswith("/home/ana/.local/share/imgkit/images/")  # where it was written
    figure = comparison._grid(rows, ("a red fox",), ("gpt-image-1",), ("low",), "1024x1024", False)
    texts = [t.get_text() for t in figure.findobj(Text)]
    assert any("made on host ana-laptop in /home/ana/.local/share/imgkit; not on this machine" in t for t in texts)
    # compare() itself does not reuse a run whose images are not here: it makes the cell again.
    cmp = imgkit.compare("a red fox", qualities=["low"], confirm=True, progress=False)
    assert list(cmp.runs["reused"]) == [False] and cmp.runs["run_id"].iloc[0] != res.run_id


def test_the_studio_shows_what_the_team_has_left_under_a_team_budget(
    sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    from imgkit.widgets import _present as present

    _as("ana", sandbox_url, data_dir, monkeypatch)
    one = imgkit.generate("ana's fox", quality="low").record.est_credits
    assert one is not None
    session = _as("bob", sandbox_url, data_dir, monkeypatch)
    session.set_budget(10, per="month", scope="team")
    banner = re.sub(r"<[^>]+>", "", imgkit.Studio().banner.value)
    assert f"team budget {present.fmt_credits(10 - one)} credits left" in banner
    session.set_budget(10, per="month")  # personal, on a personal ledger: the same file counts
    banner = re.sub(r"<[^>]+>", "", imgkit.Studio().banner.value)
    assert f" budget {present.fmt_credits(10 - one)} credits left" in banner and "team budget" not in banner


def test_with_imgkit_images_the_files_go_to_the_shared_directory_and_the_studio_shows_them(
    sandbox_url: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "team-images"
    monkeypatch.setenv("IMGKIT_IMAGES", str(shared))
    session = _as("ana", sandbox_url, data_dir, monkeypatch)
    assert session.images_dir == shared and session.ledger.path.parent == data_dir
    res = imgkit.generate("a red fox", quality="low")
    (path,) = res.paths
    assert path.is_file() and path.is_relative_to(shared)
    assert not (data_dir / "images").exists()
    assert res.record.data_dir == str(shared)
    assert imgkit.runs()["files"].iloc[0] == [str(path)]
    s = imgkit.Studio(quality="low")
    s.generate()
    shown = s.results[0]
    assert s.preview.gallery.paths == tuple(shown.paths)
    assert s.preview.gallery.image_bytes(0) == shown.paths[0].read_bytes()


def test_the_runs_command_filters_by_user_and_project(
    sandbox_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from imgkit.cli import main

    _as("ana", sandbox_url, data_dir, monkeypatch, project="posters")
    imgkit.generate("ana's fox", quality="low")
    _as("bob", sandbox_url, data_dir, monkeypatch)
    imgkit.generate("bob's fox", quality="low")
    assert main(["runs", "--user", "ana", "--project", "posters"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and " ana " in lines[1] and "posters" in lines[1] and "bob" not in lines[1]
    assert main(["runs"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # a personal ledger: everyone's
