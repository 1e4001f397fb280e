"""Bad input, fuzzed: the request builder, ``generate``, the studio's handlers and the CLI.

Every invalid combination must raise an imgkit error naming the field (or, for the CLI, exit
with status 2 and name it) before any request: a counting proxy between the client and the
sandbox must see nothing. Every valid combination must be accepted, and what the client sends
must pass the sandbox's own, independently written validator.

The oracle below is written from the spec's tables (provider-apis.md, README), not from
imgkit.request, so a misreading on one side shows up as a failure.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import imgkit
from imgkit.cli import main as cli_main
from imgkit.sandbox import SandboxConfig, running_sandbox
from imgkit.sandbox._wire import InvalidRequest, parse_generation

from .conftest import FAST_POLL, TEST_KEY
from .faultproxy import FaultProxy

# --- the spec, as data -------------------------------------------------------------------

RATIOS_1 = {"1:1": (1024, 1024), "2:3": (1024, 1536), "3:2": (1536, 1024)}
PIXELS_1 = {"1024x1024": (1024, 1024), "1024x1536": (1024, 1536), "1536x1024": (1536, 1024)}
RATIOS_2 = ["1:1", "1:2", "2:1", "1:3", "3:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "9:21", "21:9"]


@dataclass(frozen=True)
class Spec:
    prompt_max: int
    max_n: int
    gpt2_sizes: bool


SPEC = {
    "gpt-image-1": Spec(2000, 10, False),
    "gpt-image-1.5": Spec(2000, 1, False),
    "gpt-image-2": Spec(32000, 10, True),
}
QUALITIES = ("low", "medium", "high")


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (30, 60, 90)).save(buf, format=fmt)
    return buf.getvalue()


PNG, JPEG, WEBP, GIF = (_image_bytes(f) for f in ("PNG", "JPEG", "WEBP", "GIF"))

# --- strategies: each draws (value, valid?) ----------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


def prompts(spec: Spec, only_valid: bool = False) -> st.SearchStrategy[tuple[Any, bool]]:
    valid = st.one_of(
        st.tuples(_text, st.sampled_from("abcXYZ漢字🙂")).map(lambda t: (t[0] + t[1], True)),
        st.just(("p" * spec.prompt_max, True)),
    )
    invalid = st.sampled_from(["", " ", "\n\t ", "p" * (spec.prompt_max + 1), None, 42, b"bytes"]).map(lambda v: (v, False))
    return valid if only_valid else valid | invalid


@st.composite
def _good_wxh(draw: st.DrawFn) -> str:
    """A gpt-image-2 WxH inside every documented limit, built rather than filtered."""
    w = draw(st.integers(30, 240)) * 16  # below 480 no height meets both the pixel and aspect limits
    low = max(655_360 / w, w / 3, 16)
    high = min(3840, 8_294_400 / w, 3 * w)
    h = draw(st.integers(int(-(-low // 16)), int(high // 16))) * 16
    return f"{w}x{h}"


_BAD_WXH = ["512x512", "3840x3840", "3840x1024", "4096x1024", "1024x4096", "16x16", "1000x1000", "1030x1024"]


@st.composite
def sizes(draw: st.DrawFn, spec: Spec, only_valid: bool = False) -> tuple[Any, bool]:
    if spec.gpt2_sizes:
        kind = draw(st.sampled_from(["auto", "ratio", "wxh"] + ([] if only_valid else ["bad_wxh", "junk"])))
        if kind == "auto":
            return "auto", True
        if kind == "ratio":
            return draw(st.sampled_from(RATIOS_2)), True
        if kind == "wxh":
            return draw(_good_wxh()), True
        if kind == "bad_wxh":
            return draw(st.sampled_from(_BAD_WXH)), False
        return draw(st.sampled_from(["5:7", "", "1024", "big", None, 1024, (1024, 1024)])), False
    kind = draw(st.sampled_from(["canonical", "variant"] + ([] if only_valid else ["junk"])))
    if kind == "canonical":
        return draw(st.sampled_from([*RATIOS_1, *PIXELS_1])), True
    if kind == "variant":  # the documented leniency: case and spaces
        w, h = draw(st.sampled_from(list(PIXELS_1.values())))
        sep = draw(st.sampled_from(["x", "X", " x "]))
        return f"{draw(st.sampled_from(['', ' ']))}{w}{sep}{h}{draw(st.sampled_from(['', ' ']))}", True
    bad = ["4:3", "16:9", "512x512", "1024x1025", "auto", "", "1:1:1", "x", None, 1024, (1024, 1024), "1536x1536"]
    return draw(st.sampled_from(bad)), False


def qualities(only_valid: bool = False) -> st.SearchStrategy[tuple[Any, bool]]:
    valid = st.tuples(st.sampled_from(QUALITIES), st.sampled_from([str.lower, str.upper, str.title]),
                      st.sampled_from(["", " "])).map(lambda t: (t[2] + t[1](t[0]) + t[2], True))
    invalid = st.sampled_from(["auto", "standard", "ultra", "", "hd", None, 1, "low,high"]).map(lambda v: (v, False))
    return valid if only_valid else valid | invalid


def counts(spec: Spec, only_valid: bool = False) -> st.SearchStrategy[tuple[Any, bool]]:
    valid = st.integers(1, spec.max_n).map(lambda n: (n, True))
    invalid = st.one_of(
        st.integers(max_value=0), st.integers(min_value=spec.max_n + 1, max_value=10**6),
        st.sampled_from([True, False, 1.0, "2", None]),
    ).map(lambda v: (v, False))
    return valid if only_valid else valid | invalid


@st.composite
def references(draw: st.DrawFn, tmp: Path, only_valid: bool = False) -> tuple[list[Any], bool]:
    good = st.sampled_from(
        ["https://example.com/ref.png", "http://example.org/a/b.jpg?x=1", PNG, JPEG, WEBP, str(tmp / "ref.png"),
         "pil"]
    )
    bad = st.sampled_from(
        ["ftp://example.com/x.png", "file:///etc/passwd", "data:image/png;base64,AAAA", b"not an image", GIF,
         "/nonexistent/ref.png", "example.com/no-scheme.png", 7, str(tmp / "not-an-image.png")]
    )
    items = draw(st.lists(good, max_size=3))
    valid = True
    if only_valid:
        pass
    elif draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), draw(bad))
        valid = False
    elif draw(st.integers(0, 9)) == 0:
        items = ["https://example.com/many.png"] * 17
        valid = False
    return [Image.new("RGB", (8, 8)) if i == "pil" else i for i in items], valid


@st.composite
def combos(draw: st.DrawFn, tmp: Path, only_valid: bool = False) -> tuple[dict[str, Any], set[str]]:
    """Keyword arguments for ``ImageRequest.build`` and the set of fields that are invalid
    (``only_valid``: draw valid values only)."""
    model_valid = only_valid or draw(st.integers(0, 9)) > 0
    model = draw(st.sampled_from(list(SPEC))) if model_valid else draw(
        # (None is not here: the verbs read it as the session's default model.)
        st.sampled_from(["gpt-image-3", "GPT-IMAGE-1", "", "dall-e-3", 1])
    )
    spec = SPEC[model] if model_valid else SPEC["gpt-image-1"]
    (prompt, p_ok), (size, s_ok), (quality, q_ok), (n, n_ok) = (
        draw(prompts(spec, only_valid)), draw(sizes(spec, only_valid)), draw(qualities(only_valid)),
        draw(counts(spec, only_valid)),
    )
    images, i_ok = draw(references(tmp, only_valid))
    kwargs = {"prompt": prompt, "model": model, "size": size, "quality": quality, "n": n, "images": images}
    if not model_valid:
        return kwargs, {"model"}  # the other fields' limits depend on the model
    bad = {f for f, ok in (("prompt", p_ok), ("size", s_ok), ("quality", q_ok), ("n", n_ok), ("images", i_ok)) if not ok}
    return kwargs, bad


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("refs")
    (tmp / "ref.png").write_bytes(PNG)
    (tmp / "not-an-image.png").write_bytes(b"%PDF-1.4 pretending")
    return tmp


def _field(exc: imgkit.ValidationError) -> str:
    return exc.field.split("[", 1)[0]


# --- the request builder -----------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_request_builder_accepts_exactly_the_valid_combinations(data: st.DataObject, ref_dir: Path) -> None:
    kwargs, bad = data.draw(combos(ref_dir))
    prompt = kwargs.pop("prompt")
    if bad:
        with pytest.raises(imgkit.ValidationError) as info:
            imgkit.request.ImageRequest.build(prompt, **kwargs)
        assert _field(info.value) in bad, (info.value, bad)
        assert info.value.field in str(info.value)
        assert isinstance(info.value, imgkit.ImgkitError) and isinstance(info.value, ValueError)
        return
    request = imgkit.request.ImageRequest.build(prompt, **kwargs)
    # What the client would send passes the sandbox's own reading of the spec, unchanged.
    urls = [f"https://files.example/{i}.png" for i in range(len(request.images))]
    try:
        parsed = parse_generation(request.payload(urls))
    except InvalidRequest as exc:  # pragma: no cover - the failure message is the point
        raise AssertionError(f"the client accepted what the service refuses: {exc}") from None
    assert parsed.quality == kwargs["quality"].strip().lower()
    assert parsed.n == kwargs["n"] and parsed.model == kwargs["model"]
    if not SPEC[kwargs["model"]].gpt2_sizes:
        raw = kwargs["size"].strip().lower().replace(" ", "")
        assert (parsed.width, parsed.height) == (RATIOS_1 | PIXELS_1)[raw]


# --- generate(): nothing reaches the service ---------------------------------------------


@pytest.fixture(scope="module")
def proxied() -> Iterator[tuple[FaultProxy, str]]:
    with running_sandbox(SandboxConfig(seed=21, time_scale=0.01)) as url, FaultProxy(url) as proxy:
        yield proxy, url


@pytest.fixture
def fuzz_session(proxied: tuple[FaultProxy, str], data_dir: Path) -> imgkit.Session:
    proxy, _ = proxied
    return imgkit.configure(api_key=TEST_KEY, base_url=proxy.url, data_dir=data_dir, poll=FAST_POLL)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_invalid_generate_sends_nothing(data: st.DataObject, ref_dir: Path, fuzz_session: imgkit.Session,
                                        proxied: tuple[FaultProxy, str]) -> None:
    proxy, _ = proxied
    kwargs, bad = data.draw(combos(ref_dir))
    assume(bad)
    before, rows = proxy.requests_of(), fuzz_session.ledger.count()
    prompt = kwargs.pop("prompt")
    with pytest.raises(imgkit.ValidationError) as info:
        fuzz_session.generate(prompt, **kwargs)
    assert _field(info.value) in bad
    assert proxy.requests_of() == before, "an invalid request reached the service"
    assert fuzz_session.ledger.count() == rows, "an invalid request was recorded"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_valid_generate_is_accepted(data: st.DataObject, ref_dir: Path, fuzz_session: imgkit.Session,
                                    proxied: tuple[FaultProxy, str]) -> None:
    proxy, _ = proxied
    kwargs, bad = data.draw(combos(ref_dir, only_valid=True))
    assert not bad
    kwargs["n"] = min(kwargs["n"], 2)  # accepted either way; fewer images keep the test quick
    before = proxy.requests_of("create")
    prompt = kwargs.pop("prompt")
    res = fuzz_session.generate(prompt, raise_on_error=False, **kwargs)
    assert proxy.requests_of("create") == before + 1
    assert res.status == "completed", (res.record.error_code, res.record.error_message)


# --- the studio's handlers ---------------------------------------------------------------


@pytest.fixture
def studio(fuzz_session: imgkit.Session) -> Any:
    pytest.importorskip("ipywidgets")
    from imgkit.widgets import Studio

    return Studio(fuzz_session, prompt="a studio run", quality="low")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_studio_handlers_never_send_an_invalid_form(data: st.DataObject, studio: Any, ref_dir: Path,
                                                     proxied: tuple[FaultProxy, str]) -> None:
    proxy, _ = proxied
    studio.clear_references()
    studio.model.value = data.draw(st.sampled_from(list(SPEC)))
    spec = SPEC[studio.model.value]
    # (Not "custom": its empty WxH field holds Generate back until a size is typed.)
    studio.size.value = data.draw(st.sampled_from([v for _, v in studio.size.options if v != "custom"]))
    studio.quality.value = data.draw(st.sampled_from(QUALITIES))
    n = data.draw(st.integers(-5, 15))
    studio.n.value = n  # kept as typed; out of range it is refused out loud, not clamped
    if not 1 <= n <= spec.max_n:
        assert studio.generate_button.disabled and "image" in studio.n_note.value
        studio.n.value = 1
    images, images_ok = data.draw(references(ref_dir))
    refused = studio.add_references(*images)
    # Each refused image is named and left out; the rest are in the form.
    assert len(studio.reference_images) + len(refused) == len(images)
    assert bool(refused) == (not images_ok)
    if refused:
        assert "was not added" in studio.reference_message.value
    field_text = data.draw(st.sampled_from(["", "ftp://x/y.png", "https://example.com/typed.png, /nonexistent.png"]))
    studio.reference_field.value = field_text  # the text field's handler adds on change
    prompt, prompt_ok = data.draw(prompts(spec).filter(lambda v: isinstance(v[0], str)))
    studio.prompt.value = prompt
    before, rows = proxy.requests_of(), studio.session.ledger.count()
    if prompt_ok:
        assert not studio.generate_button.disabled
        return  # valid forms are sent in test_studio_sends_a_valid_form
    assert studio.generate_button.disabled
    assert "prompt" in studio.message.value
    assert studio.generate() is None
    assert proxy.requests_of() == before and studio.session.ledger.count() == rows


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_studio_sends_a_valid_form(data: st.DataObject, studio: Any, ref_dir: Path,
                                   proxied: tuple[FaultProxy, str]) -> None:
    proxy, _ = proxied
    studio.clear_references()
    studio.model.value = data.draw(st.sampled_from(list(SPEC)))
    # (Not "custom": its empty WxH field holds Generate back until a size is typed.)
    studio.size.value = data.draw(st.sampled_from([v for _, v in studio.size.options if v != "custom"]))
    studio.quality.value = data.draw(st.sampled_from(QUALITIES))
    studio.n.value = 1
    images, _ = data.draw(references(ref_dir, only_valid=True))
    studio.add_references(*images)
    studio.prompt.value = data.draw(prompts(SPEC[studio.model.value], only_valid=True))[0]
    before = proxy.requests_of("create")
    assert studio.generate() is None  # no running loop: the run completes before it returns
    assert proxy.requests_of("create") == before + 1
    assert studio.results[-1].status == "completed"


# --- the CLI -----------------------------------------------------------------------------


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(argv)
        except SystemExit as exc:  # argparse's own errors and --help
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


_cli_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


@st.composite
def demo_args(draw: st.DrawFn, only_valid: bool = False) -> tuple[list[str], set[str]]:
    spec = SPEC["gpt-image-1"]
    prompt, p_ok = draw(prompts(spec, only_valid).filter(lambda v: isinstance(v[0], str) and "\x00" not in v[0]))
    size, s_ok = draw(sizes(spec, only_valid).filter(lambda v: isinstance(v[0], str)))
    quality, q_ok = draw(qualities(only_valid).filter(lambda v: isinstance(v[0], str)))
    n_kind = draw(st.sampled_from(["ok"] if only_valid else ["ok", "range", "word"]))
    n = {"ok": str(draw(st.integers(1, 10))), "range": str(draw(st.sampled_from([0, -1, 11, 99]))),
         "word": draw(st.sampled_from(["two", "1.5", ""]))}[n_kind]
    bad = {f for f, ok in (("prompt", p_ok), ("size", s_ok), ("quality", q_ok), ("n", n_kind == "ok")) if not ok}
    return ["demo", "--size", size, "--quality", quality, "-n", n, "--", prompt], bad


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=demo_args())
def test_cli_demo_refuses_bad_arguments_before_sending(case: tuple[list[str], set[str]], fuzz_session: imgkit.Session,
                                                        proxied: tuple[FaultProxy, str]) -> None:
    argv, bad = case
    assume(bad)
    proxy, _ = proxied
    before = proxy.requests_of()
    code, _, err = _cli(argv)
    assert code == 2, err
    # argparse names the option (-n); imgkit names the field (quality='ultra' is not allowed).
    assert any(re.search(rf"\b{f}\b", err) for f in bad) or ("argument -n" in err and "n" in bad), err
    assert "Traceback" not in err
    assert proxy.requests_of() == before


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=demo_args(only_valid=True))
def test_cli_demo_accepts_good_arguments(case: tuple[list[str], set[str]], fuzz_session: imgkit.Session,
                                         proxied: tuple[FaultProxy, str]) -> None:
    argv, bad = case
    assert not bad
    argv[6] = "1"  # -n: any valid count is accepted; one image keeps it quick
    proxy, _ = proxied
    before = proxy.requests_of("create")
    code, out, err = _cli(argv)
    assert code == 0, err
    assert "completed" in out
    assert proxy.requests_of("create") == before + 1


_GROUPS = ["day", "week", "month", "quality", "size", "model", "status", "provider", "tag", "price_sheet", "user",
           "project", "resolution"]


@st.composite
def report_args(draw: st.DrawFn, out_dir: Path) -> tuple[list[str], set[str]]:
    argv, bad = ["report"], set()
    if draw(st.booleans()):
        if draw(st.booleans()):
            argv += ["--since", draw(st.dates()).isoformat()]
        else:
            argv += ["--since", draw(st.sampled_from(["yesterday", "2026-13-01", "2026/11/01", "soon"]))]
            bad.add("since")
    if draw(st.booleans()):
        # Unknown tiers are not refused yet: see test_cli_report_refuses_an_unknown_tier.
        tiers = draw(st.lists(st.sampled_from(QUALITIES), min_size=1, max_size=3))
        argv += ["--quality", ",".join(tiers)]
    if draw(st.booleans()):
        groups = draw(st.lists(st.sampled_from(_GROUPS), min_size=1, max_size=3))
        if draw(st.booleans()):
            groups.append(draw(st.sampled_from(["colour", "hour", "person"])))
            bad.add("group_by")
        argv += ["--group-by", ",".join(groups)]
    if draw(st.booleans()):
        argv += ["--tags", ",".join(draw(st.lists(_cli_text.filter(lambda t: "," not in t and not t.startswith("-")),
                                                  max_size=3)))]
    argv += ["--currency", draw(st.sampled_from(["USD", "CNY", "credits"]))]
    ext = draw(st.sampled_from(["csv", "html", "md", "xlsx", "pdf", "docx"]))
    if ext == "docx":
        bad.add("output")
    argv += ["-o", str(out_dir / f"report-{draw(st.integers(0, 10**6))}.{ext}")]
    return argv, bad


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cli_report_arguments(data: st.DataObject, fuzz_session: imgkit.Session, tmp_path: Path) -> None:
    pytest.importorskip("imgkit.reports")
    out_dir = tmp_path / "reports"
    out_dir.mkdir(exist_ok=True)
    argv, bad = data.draw(report_args(out_dir))
    code, _, err = _cli(argv)
    assert "Traceback" not in err
    if bad:
        assert code == 2, (argv, err)
        named = {"since": "since", "quality": "quality", "group_by": "group_by", "output": "format"}
        assert any(named[f] in err for f in bad), (argv, err)
    else:
        # An empty slice is written too, and exits 1 saying which ledger it read and why.
        assert code == 0 or (code == 1 and "No runs" in err), (argv, err)
        assert Path(argv[-1]).is_file()


def test_cli_report_refuses_an_unknown_tier(fuzz_session: imgkit.Session, tmp_path: Path) -> None:
    code, _, err = _cli(["report", "--quality", "low,ultra", "-o", str(tmp_path / "r.csv")])
    assert code == 2 and "quality" in err
