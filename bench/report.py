"""Shared helpers for benchmarks: stats, progress lines, and writing a section of docs/benchmarks.md.

Each benchmark owns one section between `<!-- bench:NAME -->` markers, so benchmarks can be run
one at a time without erasing each other's figures. Each step's headline numbers are also kept in
docs/bench/results.json, from which the summary section (targets, ratios to the raw building
blocks, published anchors: bench/summary.py) is re-rendered after any step, so a single step
never loses what the others measured.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
FIG_DIR = ROOT / "docs" / "bench"
RESULTS = FIG_DIR / "results.json"
HEADER = """# Benchmarks

Written by `.venv/bin/python -m bench` (bench/__main__.py; `--quick` for a smoke run, `--only NAME`
for one step, `--help` for the list). Every step starts its own cluster on this machine and stands
each figure beside the raw building block measured in the same run; figures are PNGs in
docs/bench/, headline numbers in docs/bench/results.json. Each section gives its machine, date and
git commit and the command that re-runs it alone.
"""


def progress(msg: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip() or "uncommitted"
        clean = not subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                   capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit, clean = "unknown", True
    return (f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC · commit {commit}"
            f"{'' if clean else ' + uncommitted changes'} · load average {os.getloadavg()[0]:.1f}")


def write_section(name: str, body: str, first: bool = False) -> None:
    """Replace the section in place, or add it (at the end, or right after the header with `first`)."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else HEADER
    block = f"<!-- bench:{name} -->\n{body.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    elif first and "<!-- bench:" in text:
        i = text.index("<!-- bench:")
        text = text[:i] + block + "\n\n" + text[i:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def set_header() -> None:
    """Everything before the first section is the header: keep it current."""
    text = DOC.read_text() if DOC.exists() else ""
    i = text.find("<!-- bench:")
    DOC.write_text(HEADER + "\n" + (text[i:] if i >= 0 else ""))


def load_results() -> dict[str, dict[str, object]]:
    try:
        data: dict[str, dict[str, object]] = json.loads(RESULTS.read_text())
        return data
    except (OSError, ValueError):
        return {}


def save_result(name: str, metrics: dict[str, object]) -> None:
    """Store one step's headline numbers (merged with the other steps') in docs/bench/results.json."""
    FIG_DIR.mkdir(parents=True, exist_ok=True)
    data = load_results()
    data[name] = {**metrics, "_when": machine()}
    RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True, default=float) + "\n")


def finish(name: str, body: str, metrics: dict[str, object]) -> None:
    """What every step does at its end: its section, its numbers, and the summary re-rendered."""
    write_section(name, body)
    save_result(name, metrics)
    from bench.summary import write_summary  # late: summary imports this module
    write_summary()
