"""PNG figures for docs/benchmarks.md: latency CDFs, throughput against concurrency, timelines.

Why this exists: a p50/p99 pair hides the shape of a distribution and a table hides how a rate
bends with load; each step draws its figures from the samples it just measured (beside the raw
building block's samples from the same run), saves them under docs/bench/ and links them from its
section. Uses matplotlib's non-interactive Agg backend (`pip install -e .[bench]`).
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.report import FIG_DIR


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, name: str, title: str) -> str:  # type: ignore[no-untyped-def]
    FIG_DIR.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(FIG_DIR / name, dpi=90)
    _plt().close(fig)
    return f"![{title}](bench/{name})"


def cdf(name: str, title: str, series: dict[str, Sequence[float]], xlabel: str = "latency, ms",
        scale: float = 1000.0, logx: bool = True, paired: bool = False) -> str:
    """Cumulative distribution of each series (values in seconds, plotted times `scale`); `paired`: series come
    as (measured, raw building block) pairs that share a colour."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, values) in enumerate(series.items()):
        xs = sorted(v * scale for v in values)
        if not xs:
            continue
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        raw = "raw" in label or "docker run" in label  # the building block: dashed
        ax.step(xs, ys, where="post", label=f"{label} (n={len(xs)})", ls="--" if raw else "-",
                color=colors[(i // 2 if paired else i) % len(colors)])
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.axhline(0.99, color="grey", lw=0.6, ls=":")
    ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of requests ≤ x")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, name, title)


def lines(name: str, title: str, x: Sequence[float], series: dict[str, Sequence[float]], xlabel: str,
          ylabel: str, logx: bool = False, markers: bool = True) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, ys in series.items():
        ax.plot(list(x)[:len(ys)], list(ys), marker="o" if markers else None, label=label)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, name, title)


def timeline(name: str, title: str, series: dict[str, tuple[Sequence[float], Sequence[float]]],
             ylabel: str, right: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
             right_label: str = "", xlabel: str = "seconds since the first create") -> str:
    """Series against seconds since the start; optional second y axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    handles, labels = ax.get_legend_handles_labels()
    if right:
        ax2 = ax.twinx()
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (label, (xs, ys)) in enumerate(right.items(), len(series)):  # colours the left axis did not use
            ax2.plot(list(xs), list(ys), ls="--", label=label, color=colors[i % len(colors)])
        ax2.set_ylabel(right_label)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(handles, labels, fontsize=8, loc="upper left")
    return _save(fig, name, title)
