"""``python -m benchmarks``: run the scenarios, print the table, keep it in the README."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks._core import PROFILES, Profile, Row, format_table
from benchmarks._sandbox import all_cpus, cpu_split, pinned_client

__all__ = ["SCENARIOS", "main", "run_scenarios"]

#: name -> (module, what it measures). The order is the issue's.
SCENARIOS: dict[str, tuple[str, str]] = {
    "throughput": ("benchmarks.throughput", "1. sweep wall time against the ideal makespan and hand-written clients"),
    "polling": ("benchmarks.polling", "2. status requests per task and detection lag, by task length"),
    "overhead": ("benchmarks.client_overhead", "3. throughput against the official openai SDK (zero latency)"),
    "ledger": ("benchmarks.ledger_scale", "4. ledger insert; runs() and the report at 10k, 100k and 1M runs; plot"),
    "imports": ("benchmarks.import_time", "5. import imgkit against import httpx"),
    "notebook": ("benchmarks.notebook", "6. notebook bytes per image, peak RSS of small and large sweeps"),
    "ledger_pg": ("benchmarks.ledger_pg", "7. the ledger on PostgreSQL against SQLite: runs(), report, writers, admit"),
}
README = Path(__file__).resolve().parent / "README.md"
_START, _END = "<!-- results:start -->", "<!-- results:end -->"


def _cores() -> str:
    logical = os.cpu_count() or 0
    split = cpu_split()
    usable = logical if split is None else len(split[0]) + len(split[1])
    text = f"{usable}" if usable == logical else f"{usable} usable of {logical}"
    if split is not None:
        text += f" (clients on CPU {_cpus(split[0])}, sandbox on CPU {_cpus(split[1])})"
    return text


def _cpus(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def environment(profile: str, repeats: int) -> str:
    """One line: when, where, how big."""
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at the end"
    return (
        f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; `nproc` {_cores()}; Python {platform.python_version()}"
        f" on {platform.system()} {platform.machine()}; profile `{profile}`, {repeats} repeat(s){load}"
    )


def run_scenarios(names: Sequence[str], profile: str, repeats: int | None = None) -> tuple[list[Row], list[str]]:
    """Run the named scenarios; returns their rows and the errors of those that failed."""
    chosen = PROFILES[profile]
    count = repeats or chosen.repeats
    rows: list[Row] = []
    errors: list[str] = []
    with pinned_client():
        for name in names:
            _run_one(name, chosen, count, rows, errors)
    return rows, errors


def _run_one(name: str, profile: Profile, repeats: int, rows: list[Row], errors: list[str]) -> None:
    module_name, _ = SCENARIOS[name]
    started = time.perf_counter()
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        module = importlib.import_module(module_name)
        with all_cpus() if getattr(module, "ALL_CPUS", False) else contextlib.nullcontext():
            rows.extend(module.run(profile, repeats))
    except Exception as exc:  # one broken scenario must not hide the others' numbers
        traceback.print_exc(file=sys.stderr)
        errors.append(f"{name}: {type(exc).__name__}: {exc}")
        rows.append(Row(_label(name), "not measured", note=f"{type(exc).__name__}: {exc}"[:160]))
    print(f"[bench] {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def _label(name: str) -> str:
    number = SCENARIOS[name][1].split(".", 1)[0]
    return f"{number} {name}"


def write_readme(table: str, env: str, path: Path = README) -> None:
    """Replace the results block of the README with this run's table."""
    text = path.read_text(encoding="utf-8")
    block = f"{_START}\nLatest run: {env}.\n\n{table}\n{_END}"
    if _START in text and _END in text:
        text = re.sub(re.escape(_START) + r".*?" + re.escape(_END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="imgkit's benchmarks: medians and min-max over repeats, against baselines from the same run.",
    )
    parser.add_argument("--quick", action="store_const", const="quick", dest="profile",
                        help="small sizes: a few minutes in all")
    parser.add_argument("--smoke", action="store_const", const="smoke", dest="profile",
                        help="tiny sizes, one repeat: proves the harness runs (the test suite uses it)")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios, from: {', '.join(SCENARIOS)}")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per scenario (default: the profile's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON to this file")
    parser.add_argument("--write-readme", action=argparse.BooleanOptionalAction, default=None,
                        help="put the table in benchmarks/README.md (default: only for a full run of every scenario)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, what) in SCENARIOS.items():
            print(f"{name:11s} {what}")
        return 0
    profile = args.profile or "full"
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    rows, errors = run_scenarios(names, profile, args.repeats)
    repeats = args.repeats or PROFILES[profile].repeats
    env = environment(profile, repeats)
    table = format_table(rows)
    print(f"\n{env}\n\n{table}")
    if args.json is not None:
        args.json.write_text(json.dumps({"environment": env, "rows": [r.as_dict() for r in rows],
                                         "errors": errors}, indent=2, allow_nan=True))
    write = args.write_readme if args.write_readme is not None else (profile == "full" and names == list(SCENARIOS))
    if write:
        write_readme(table, env)
    for error in errors:
        print(f"[bench] failed: {error}", file=sys.stderr)
    return 1 if errors else 0
