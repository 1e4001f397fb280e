"""Input rules: every value a user can get wrong is refused before any request, with an
imgkit error naming the field, the value and what is allowed (issue 14, item 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import imgkit
from imgkit.errors import ConfigError, ValidationError
from imgkit.request import MAX_TAG_CHARS, MAX_TAGS, ImageRequest, check_tags
from tests.conftest import sandbox_tasks

# --- prompts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    ["\x00", "\x00\x00 \x00", "\u200b", "\u200b\u200b\u200b", "\ufeff", "\ufeff \u200b\n\t"],
    ids=["nul", "nuls-and-space", "zwsp", "zwsps", "bom", "bom-zwsp-space"],
)
def test_prompt_without_visible_characters_is_refused(prompt: str) -> None:
    with pytest.raises(ValidationError, match="visible characters") as info:
        ImageRequest.build(prompt)
    assert info.value.field == "prompt"
    assert info.value.value == prompt


@pytest.mark.parametrize("prompt", ["a cat\u200b", "\ufeffa lighthouse", "\u732b", "\U0001f98a", "e\u0301"])
def test_prompt_with_visible_characters_is_accepted(prompt: str) -> None:
    assert ImageRequest.build(prompt).prompt == prompt


@pytest.mark.parametrize("prompt", ["\ud800", "a fox \udfff in snow"])
def test_prompt_that_is_not_utf8_is_a_validation_error(prompt: str) -> None:
    with pytest.raises(ValidationError, match="UTF-8") as info:
        ImageRequest.build(prompt)
    assert info.value.field == "prompt"
    assert "lone surrogate" in str(info.value)


def test_prompt_rules_hold_before_any_request(session: imgkit.Session, sandbox_url: str) -> None:
    before = len(sandbox_tasks(sandbox_url))
    for prompt in ("\x00", "\u200b\u200b", "\ufeff", "a fox \ud800"):
        with pytest.raises(ValidationError):
            imgkit.generate(prompt)
        with pytest.raises(ValidationError):
            imgkit.sweep([prompt], quality="low", confirm=False, progress=False)
    assert len(sandbox_tasks(sandbox_url)) == before
    assert session.ledger.count() == 0


# --- tags ----------------------------------------------------------------------------------


def test_a_string_is_one_tag() -> None:
    assert check_tags("abc") == ("abc",)
    assert check_tags(["abc", "de"]) == ("abc", "de")
    assert check_tags(None) == ()


def test_a_string_tag_is_stored_as_one_tag(session: imgkit.Session) -> None:
    result = imgkit.generate("a lighthouse", quality="low", tags="abc")
    assert result.record.tags == ("abc",)


@pytest.mark.parametrize(
    ("tags", "field", "allowed"),
    [
        ([1], "tags[0]", "a text"),
        (["ok", None], "tags[1]", "a text"),
        ([b"raw"], "tags[0]", "a text"),
        (b"raw", "tags", "a text or a list of texts"),
        ({"a": 1}, "tags", "a text or a list of texts"),
        (7, "tags", "a text or a list of texts"),
        ([""], "tags[0]", "a non-empty text"),
        (["x" * (MAX_TAG_CHARS + 1)], "tags[0]", f"at most {MAX_TAG_CHARS} characters"),
        (["x" * 1_000_000], "tags[0]", f"at most {MAX_TAG_CHARS} characters"),
        ([f"t{i}" for i in range(MAX_TAGS + 1)], "tags", f"at most {MAX_TAGS} tags"),
        ([f"t{i}" for i in range(10_000)], "tags", f"at most {MAX_TAGS} tags"),
        (["a\ud800"], "tags[0]", "UTF-8"),
    ],
    ids=["int", "none", "bytes-item", "bytes", "mapping", "number", "empty", "long", "megabyte",
         "too-many", "ten-thousand", "surrogate"],
)
def test_bad_tags_are_refused(tags: object, field: str, allowed: str) -> None:
    with pytest.raises(ValidationError, match=allowed) as info:
        check_tags(tags)
    assert info.value.field == field


def test_the_limits_themselves_are_allowed() -> None:
    tags = ["x" * MAX_TAG_CHARS] * MAX_TAGS
    assert check_tags(tags) == tuple(tags)


def test_bad_tags_are_refused_before_any_request(session: imgkit.Session, sandbox_url: str) -> None:
    before = len(sandbox_tasks(sandbox_url))
    with pytest.raises(ValidationError, match="at most 64 characters"):
        imgkit.generate("a fox", tags=["x" * 65])
    with pytest.raises(ValidationError, match="a text"):
        imgkit.sweep(["a fox"], quality="low", tags=[1], confirm=False, progress=False)  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="at most 32 tags"):
        imgkit.sweep(["a fox"], quality="low", tags=[str(i) for i in range(33)], confirm=False, progress=False)
    assert len(sandbox_tasks(sandbox_url)) == before
    assert session.ledger.count() == 0


# --- sweep limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("per_minute", 0),
        ("per_minute", -1),
        ("per_minute", 0.0),
        ("per_minute", float("nan")),
        ("per_minute", float("inf")),
        ("per_minute", "5"),
        ("per_minute", True),
        ("concurrency", 0),
        ("concurrency", -2),
        ("concurrency", 1.5),
        ("concurrency", True),
    ],
)
def test_sweep_limits_must_be_positive(
    session: imgkit.Session, sandbox_url: str, option: str, value: object
) -> None:
    before = len(sandbox_tasks(sandbox_url))
    with pytest.raises(ValidationError) as info:
        imgkit.sweep(["a fox"], quality="low", confirm=False, progress=False, **{option: value})  # type: ignore[arg-type]
    assert info.value.field == option
    assert repr(value) in str(info.value)
    assert len(sandbox_tasks(sandbox_url)) == before


def test_positive_sweep_limits_are_accepted(session: imgkit.Session) -> None:
    result = imgkit.sweep(["a fox"], quality="low", concurrency=1, per_minute=600, confirm=False, progress=False)
    assert [r.status for r in result.results] == ["completed"]


@pytest.mark.parametrize("value", [0, -1, 2.0, None])
def test_session_concurrency_must_be_positive(data_dir: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        imgkit.configure(sandbox=True, data_dir=data_dir, concurrency=value)


# --- price sheets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sheet", "missing"),
    [
        ({}, "name, date, source, base_credits"),
        ({"name": "mine", "date": "2026-11-01", "source": "contract"}, "base_credits"),
        ({"kind": "tokens"}, "name, date, source"),
        ({"kind": "table", "name": "t"}, "date, source"),
    ],
    ids=["empty", "no-base", "tokens", "table"],
)
def test_price_sheet_dict_names_the_required_fields(sheet: dict[str, object], missing: str) -> None:
    with pytest.raises(ConfigError, match="required fields") as info:
        imgkit.register_price_sheet(sheet)
    assert f"missing {missing}" in str(info.value)
    assert "__init__" not in str(info.value)


def test_price_sheet_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ConfigError, match="a mapping of its fields"):
        imgkit.register_price_sheet([("name", "x")])  # type: ignore[arg-type]


def test_price_sheet_file_missing_fields_names_them(tmp_path: Path) -> None:
    path = tmp_path / "sheet.json"
    path.write_text('{"name": "from-file"}', "utf-8")
    with pytest.raises(ConfigError, match="'from-file' is missing date, source, base_credits"):
        imgkit.register_price_sheet(path)


# --- configure() and login() ---------------------------------------------------------------


def test_unknown_configure_keyword_names_the_allowed_ones(data_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        imgkit.configure(sandbox=True, data_dir=data_dir, bogus=1)
    text = str(info.value)
    assert "'bogus'" in text
    assert "Session.__init__" not in text
    for name in ("api_key", "base_url", "concurrency", "data_dir", "price_sheet", "sandbox"):
        assert name in text


def test_misspelt_configure_keyword_suggests_the_setting(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'concurrency'"):
        imgkit.configure(sandbox=True, data_dir=data_dir, concurency=2)


def test_login_reports_a_missing_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    def no_terminal(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", no_terminal)
    with pytest.raises(ConfigError, match=r"set \$EVOLINK_API_KEY") as info:
        imgkit.login()
    assert isinstance(info.value.__cause__, EOFError)


def test_login_refuses_an_unknown_setting_before_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    asked: list[str] = []

    def ask(prompt: str = "") -> str:
        asked.append(prompt)
        return "k"

    monkeypatch.setattr(getpass, "getpass", ask)
    with pytest.raises(ConfigError, match="'bogus'"):
        imgkit.login(bogus=1)
    assert asked == []


def test_login_without_a_terminal_says_to_set_the_variable(tmp_path: Path) -> None:
    """A process with no controlling terminal and stdin from /dev/null: getpass would warn
    and read stdin in the clear, or raise EOFError."""
    env = {k: v for k, v in os.environ.items() if k not in ("EVOLINK_API_KEY", "OPENAI_API_KEY")}
    env["IMGKIT_HOME"] = str(tmp_path)
    code = (
        "import imgkit\n"
        "try:\n"
        "    imgkit.login()\n"
        "except imgkit.ConfigError as exc:\n"
        "    print('ConfigError:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        env=env, timeout=120, start_new_session=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ConfigError:" in done.stdout
    assert "$EVOLINK_API_KEY" in done.stdout
    assert "EOFError" not in done.stderr
    assert "GetPassWarning" not in done.stderr
