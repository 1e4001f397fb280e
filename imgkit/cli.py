"""The ``imgkit`` command: ``imgkit sandbox``, ``imgkit demo``, ``imgkit runs``, ``imgkit resume``,
``imgkit report``, ``imgkit ledger backup|import|export`` and ``imgkit app``.

Each subcommand is registered in :data:`COMMANDS` with a function that adds its arguments and
one that runs it; the heavy modules behind them are imported only when they run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, setup: Callable[[argparse.ArgumentParser], None]) -> Callable[
    [Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]
]:
    def register(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = (setup, func)
        return func

    return register


def _sandbox_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback)")
    p.add_argument("--port", type=int, default=8808, help="port (default: 8808)")
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply generation times (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed for latencies and faults")
    p.add_argument("--openai-models", default="all", type=_openai_models, metavar="MODELS",
                   help="comma-separated models the OpenAI side (/openai/v1) serves; others answer "
                        "model_not_found (default: all of gpt-image-1, gpt-image-1.5, gpt-image-2)")


def _openai_models(text: str) -> tuple[str, ...]:
    from imgkit.sandbox import OPENAI_MODELS

    if text.strip().lower() == "all":
        return OPENAI_MODELS
    models = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in models if m not in OPENAI_MODELS]
    if unknown or not models:
        raise argparse.ArgumentTypeError(
            f"{unknown[0] if unknown else text!r} is not a model the sandbox serves; choose among "
            f"{', '.join(OPENAI_MODELS)} (or all)")
    return models


@command("sandbox", _sandbox_args)
def _sandbox(args: argparse.Namespace) -> int:
    """Serve the offline sandbox (the gateway's protocol) on a port."""
    from imgkit.sandbox import SandboxConfig, serve

    print(f"imgkit sandbox on http://{args.host}:{args.port}  (Ctrl-C to stop)", file=sys.stderr)
    serve(host=args.host, port=args.port, config=SandboxConfig(
        seed=args.seed, time_scale=args.time_scale, openai_models=args.openai_models))
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", nargs="?", default="A beautiful colorful sunset over the ocean")
    p.add_argument("--size", default="3:2")
    p.add_argument("--quality", default="low")
    p.add_argument("-n", type=int, default=2)


@command("demo", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    """Generate one run (sandbox when no key is set) and print it and the ledger's tail."""
    import imgkit

    session = imgkit.get_session()
    print(session.describe())
    est = imgkit.estimate(quality=args.quality, size=args.size, n=args.n)
    print(f"estimate: {est}\n  {est.formula}")
    result = imgkit.generate(args.prompt, size=args.size, quality=args.quality, n=args.n)
    print(result)
    for path in result.paths:
        print("  ", path)
    df = imgkit.runs()
    cols = ["run_id", "status", "quality", "size", "n", "est_credits", "credits_reserved", "latency_s"]
    print(df[cols].tail(5).to_string(index=False))
    return 0


def _runs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tail", type=int, default=20, help="how many recent runs (default: 20)")
    p.add_argument("--user", help='"all", "me" or a name (default: every run of a personal ledger, yours on a '
                                  "team's)")
    p.add_argument("--project", help="only the runs of this project")


@command("runs", _runs_args)
def _runs(args: argparse.Namespace) -> int:
    """Print the most recent runs in the ledger."""
    import imgkit

    df = imgkit.runs(user=args.user, project=args.project)
    cols = ["created_at", "run_id", "user", "project", "status", "quality", "size", "n", "est_credits", "latency_s",
            "error_code"]
    print(df[cols].tail(args.tail).to_string(index=False))
    return 0


@command("resume", lambda p: None)
def _resume(args: argparse.Namespace) -> int:
    """Finish runs that an earlier process left unfinished."""
    import imgkit

    results = imgkit.resume()
    for res in results:
        print(res)
    print(f"{len(results)} run(s) resumed")
    return 0


_REPORT_FORMATS = ("csv", "html", "md", "parquet", "pdf", "xlsx")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="first day or time (ISO, UTC unless it says otherwise)")
    p.add_argument("--until", help="last day (included) or time")
    p.add_argument("--tags", help="comma-separated: runs having any of these tags")
    p.add_argument("--quality", help="comma-separated tiers: low,medium,high")
    p.add_argument("--group-by", default="day,quality,size",
                   help="comma-separated tables: day, week, month, quality, size, model, status, provider, tag, "
                        "price_sheet, resolution, user, project; join keys with + for one table of several, "
                        "e.g. user+project+model (default: day,quality,size)")
    p.add_argument("--currency", default="USD", type=_currency_name, choices=["USD", "CNY", "credits"],
                   help="money column of the tables and charts: USD, CNY or credits, in any case (default: USD)")
    p.add_argument("--format", choices=_REPORT_FORMATS, help="default: from -o's extension, else md")
    p.add_argument("-o", "--output", help="file to write (default: print to stdout)")


def _currency_name(text: str) -> str:
    return {"usd": "USD", "cny": "CNY", "credits": "credits"}.get(text.strip().lower(), text)


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


@command("report", _report_args)
def _report(args: argparse.Namespace) -> int:
    """Write a cost report over the ledger ($IMGKIT_HOME): Markdown, CSV, HTML, XLSX or PDF.

    Exit status: 0 written; 1 the report is empty (it says which ledger it read and why) or
    the file could not be written; 2 wrong arguments.
    """
    from pathlib import Path

    from imgkit.reports import EXTENSIONS
    from imgkit.reports import report as build

    kind = args.format
    if args.output:
        implied = EXTENSIONS.get(Path(args.output).suffix.lower())
        if implied is None and kind is None:
            print(f"imgkit report: cannot tell the format of {args.output!r}; add --format", file=sys.stderr)
            return 2
        if implied is not None and kind is not None and implied != kind:
            print(f"imgkit report: --format {kind} does not match {args.output!r}; name the file .{kind} "
                  f"or leave --format out", file=sys.stderr)
            return 2
        kind = kind or implied
    kind = kind or "md"
    if args.output is None and kind in ("xlsx", "pdf", "parquet"):
        print(f"imgkit report: --format {kind} needs -o PATH", file=sys.stderr)
        return 2
    rep = build(
        since=args.since, until=args.until, tags=_split(args.tags), quality=_split(args.quality),
        group_by=_split(args.group_by) or (), currency=args.currency,
    )
    print(f"imgkit report: read {rep.source} ({rep.available:,} runs, {rep.totals.runs:,} in the report)",
          file=sys.stderr)
    if rep.empty_reason:
        print(f"imgkit report: {rep.empty_reason}", file=sys.stderr)
    if args.output is None:
        text = {"md": rep.to_markdown, "html": rep.to_html, "csv": rep.to_csv}[kind]()
        sys.stdout.write(text)
        return 1 if rep.empty_reason else 0
    out = Path(args.output)
    try:
        rep.save(out, format=kind)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"imgkit report: cannot write {out}: {reason} (check that its folder exists and is writable)",
              file=sys.stderr)
        return 1
    print(f"{out}: {rep!r}", file=sys.stderr)
    return 1 if rep.empty_reason else 0


def _ledger_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="ledger_command", required=True)
    backup = sub.add_parser("backup", help="copy the ledger, safely while imgkit runs, into one new file")
    backup.add_argument("path", help="the file to create (an existing file is refused)")
    merge = sub.add_parser("import", help="merge a SQLite ledger into the current one, by run id (never overwrites)")
    merge.add_argument("path", help="an imgkit ledger.sqlite3 (or a backup of one), opened read-only")
    merge.add_argument("--user", help="who runs recorded without a user are attributed to (default: you)")
    export = sub.add_parser("export", help="write the runs to a Parquet or CSV file")
    export.add_argument("--since", help="first day or time (ISO, UTC unless it says otherwise)")
    export.add_argument("--until", help="last day (included) or time")
    export.add_argument("-o", "--output", required=True, help="FILE.parquet or FILE.csv (replaced atomically)")


@command("ledger", _ledger_args)
def _ledger(args: argparse.Namespace) -> int:
    """Look after the ledger: ``imgkit ledger backup PATH``, ``import PATH``, ``export -o FILE``.

    ``backup`` copies $IMGKIT_HOME/ledger.sqlite3; ``import`` and ``export`` work on the
    current ledger (the personal file, or the team's database with ``IMGKIT_LEDGER``).

    Exit status: 0 done; 1 there is no ledger yet (backup), or the import left conflicting
    runs as they were (listed); 2 refused (the backup file exists, its folder is missing, a
    file that is not an imgkit ledger, a bad date or file type).
    """
    if args.ledger_command in ("import", "export"):
        return _ledger_io(args)
    from imgkit.ledger import Ledger
    from imgkit.store import default_data_dir

    source = default_data_dir() / "ledger.sqlite3"
    if not source.is_file():
        print(f"imgkit ledger: no ledger at {source} (set IMGKIT_HOME to the data directory)", file=sys.stderr)
        return 1
    ledger = Ledger(source)
    try:
        target = ledger.backup(args.path)
        runs = ledger.count()
    finally:
        ledger.close()
    print(f"imgkit ledger: backed up {source} ({runs:,} runs) to {target}", file=sys.stderr)
    return 0


def _ledger_io(args: argparse.Namespace) -> int:
    import imgkit
    from imgkit import teamio

    ledger = imgkit.get_session().ledger
    if args.ledger_command == "export":
        done = teamio.export_ledger(args.output, ledger, since=args.since, until=args.until)
        print(f"imgkit ledger: {done}", file=sys.stderr)
        return 0
    merged = teamio.import_ledger(args.path, ledger, user=args.user)
    print(f"imgkit ledger: imported {merged.imported}, identical {merged.identical}, "
          f"conflicting {len(merged.conflicting)} (from {merged.source})", file=sys.stderr)
    for run_id in merged.conflicting:
        print(f"imgkit ledger: conflict: run {run_id} differs from the current ledger's; kept as it was",
              file=sys.stderr)
    return 1 if merged.conflicting else 0


def _app_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback)")
    p.add_argument("--port", type=int, default=8866, help="port (default: 8866)")
    p.add_argument("--token", default=None, help="the token a browser must bring (default: a random one)")
    p.add_argument("--open", action="store_true", help="open the page in a browser")
    p.add_argument("--budget-credits", type=float, default=None, metavar="N",
                   help="the most one page (one browser session) may spend, in credits "
                        "(default: $IMGKIT_APP_BUDGET, else no cap)")


@command("app", _app_args)
def _app(args: argparse.Namespace) -> int:
    """Serve the studio as a web page of its own, through Voilà (loopback and a token by default)."""
    import importlib.util
    import os
    import subprocess

    from imgkit.app import voila_command

    if importlib.util.find_spec("voila") is None:
        print("imgkit app needs Voilà: pip install 'imgkit[app]'", file=sys.stderr)
        return 2
    from imgkit.app import BUDGET_ENV, page_budget

    env = os.environ.copy()
    budget = page_budget(args.budget_credits) if args.budget_credits is not None else page_budget()
    if budget is not None:
        env[BUDGET_ENV] = repr(budget)  # the page's kernels read it
    command, token = voila_command(host=args.host, port=args.port, token=args.token, open_browser=args.open)
    query = f"?token={token}" if token else ""
    cap = f"; each page may spend up to {budget:g} credits" if budget is not None else ""
    print(f"imgkit app on http://{args.host}:{args.port}/{query}  (Ctrl-C to stop){cap}", file=sys.stderr)
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except FileNotFoundError:  # pragma: no cover - sys.executable always exists
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``imgkit`` command."""
    from imgkit.errors import ImgkitError

    parser = argparse.ArgumentParser(prog="imgkit", description="GPT Image 1 from notebooks and the shell.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (setup, func) in sorted(COMMANDS.items()):
        p = sub.add_parser(name, help=(func.__doc__ or "").strip().splitlines()[0])
        setup(p)
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ImgkitError as exc:
        print(f"imgkit: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
