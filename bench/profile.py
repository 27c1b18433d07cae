"""Sampling profiles of running kubenats processes with py-spy, summarised for docs/benchmarks.md.

Why this exists: when the scale run is slower than its targets, the question is where the CPU of
the apiserver, scheduler and controllers goes. `py-spy record --nonblocking --format raw` samples a
live process without stopping it (we run as root, so ptrace is allowed) and writes collapsed stacks
(`frame;frame;... count`), which flamegraph.pl and speedscope.app open directly. The raw files go
to docs/bench/profiles/ (git-ignored there); the doc gets, per process, the top functions by own
time (the leaf frame of each sample) and the project's own functions by inclusive time.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.report import FIG_DIR, ROOT, progress

PROFILES = FIG_DIR / "profiles"
ENTRY = re.compile(r"\((services/cli\.py|services/\w+/main\.py|shared/runner\.py)\)$")  # process entry points
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def pyspy() -> str:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else (shutil.which("py-spy") or "py-spy")


def short(frame: str) -> str:
    """`func (…/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`."""
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for cut in ("site-packages/", str(ROOT) + "/", "lib/python3.11/"):
        if cut in path:
            path = path.split(cut, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def summarize(path: Path, top: int = 10) -> dict[str, object]:
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [short(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            if ("(services/" in f or "(shared/" in f) and not ENTRY.search(f):
                incl[f] += count
    return {"samples": total, "own": own.most_common(top),
            "incl": incl.most_common(top)}


class Profiler:
    """One `py-spy record` per process, stopped with SIGINT (py-spy then writes its file)."""

    def __init__(self, pids: dict[str, int], rate: int = 20, tag: str = "scale") -> None:
        self.pids, self.rate, self.tag = pids, rate, tag
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.files = {k: PROFILES / f"{tag}-{k}.txt" for k in pids}
        self.t0 = self.elapsed = 0.0

    def start(self) -> None:
        PROFILES.mkdir(parents=True, exist_ok=True)
        (PROFILES / ".gitignore").write_text("*.txt\n*.svg\n*.json\n*.log\n")
        for k, pid in self.pids.items():
            log = open(PROFILES / f"{self.tag}-{k}.log", "wb")
            self.procs[k] = subprocess.Popen([pyspy(), "record", "--pid", str(pid), "--rate", str(self.rate),
                                              "--nonblocking", "--subprocesses",  # an apiserver --workers N: its workers
                                              "--format", "raw", "-o", str(self.files[k])],
                                             stdout=log, stderr=subprocess.STDOUT)
            log.close()
        self.t0 = time.perf_counter()
        progress(f"py-spy recording {', '.join(self.pids)} at {self.rate} Hz")

    def stop(self) -> None:
        self.elapsed = time.perf_counter() - self.t0
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()

    def render(self) -> list[str]:
        lines = [f"### Profiles (py-spy, {self.rate} Hz, {self.elapsed:.0f} s, `--nonblocking`)\n",
                 "Samples are taken only while a thread is running Python or native code (idle waits are not "
                 "counted), so *busy* is roughly the process's CPU share of one core. Own time is where the "
                 "sampled thread was at that moment; inclusive time counts the project's own functions "
                 "anywhere on the stack (entry points left out). A leaf of `Runner.run` or `Thread.run` is time in "
                 "native code under them (the apiserver runs on uvloop, whose C event loop does the socket reads, "
                 "writes and callbacks; gRPC's C core polls on its own thread). Raw stacks (open in speedscope.app "
                 "or flamegraph.pl): "
                 "`docs/bench/profiles/scale-<process>.txt` (git-ignored).\n"]
        for k, f in self.files.items():
            if not f.exists():
                lines.append(f"{k}: no profile written (see docs/bench/profiles/{self.tag}-{k}.log)\n")
                continue
            s = summarize(f)
            n = int(s["samples"]) or 1  # type: ignore[call-overload]
            busy = 100 * n / max(1.0, self.rate * self.elapsed)
            lines += [f"**{k}** — {n:,} samples, busy ≈ {busy:.0f}% of one core\n",
                      "| # | own time: function (module) | % of samples |", "|---:|---|---:|"]
            lines += [f"| {i} | `{fn}` | {100 * c / n:.1f} |" for i, (fn, c) in enumerate(s["own"], 1)]  # type: ignore[arg-type]
            lines += ["", "| project function, inclusive | % of samples |", "|---|---:|"]
            lines += [f"| `{fn}` | {100 * c / n:.1f} |" for fn, c in s["incl"]]  # type: ignore[attr-defined]
            lines.append("")
        return lines
