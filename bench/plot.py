#!/usr/bin/env python3
"""Plot p50/p99 round-trip latency per client and payload from bench/results.json.

Usage: plot.py results.json latency.png   (needs matplotlib; bench/run calls it)"""

import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

PANELS = [
    ("small-split-ws", "small, ws, split CPUs"),
    ("small-split-wss", "small, wss, split CPUs"),
    ("small-one-ws", "small, ws, one CPU"),
    ("large-split-ws", "256 KiB, ws, split CPUs"),
    ("large-split-wss", "256 KiB, wss, split CPUs"),
    ("emu-small-split-wss", "small, wss, via emulator"),
]
OURS = ("rust", "c-", "py-")


def main(src, dst):
    data = json.load(open(src))
    by = {}
    for r in data["runs"]:
        res = r["result"]
        if "error" in res or r["section"] == "fanout":
            continue
        by.setdefault((r["section"], r["client"]), []).append(res["latency_us"])
    panels = [(k, t) for k, t in PANELS if any(s == k for s, _ in by)]
    if not panels:
        raise SystemExit("nothing to plot")
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (key, title) in zip(axes.flat, panels):
        clients = [c for (s, c) in by if s == key]
        p50 = [statistics.median(x["p50"] for x in by[(key, c)]) for c in clients]
        p99 = [statistics.median(x["p99"] for x in by[(key, c)]) for c in clients]
        ys = range(len(clients))
        colors = ["#2b7bba" if c.startswith(OURS) else ("#555555" if c == "bare" else "#d9822b") for c in clients]
        ax.barh([y + 0.2 for y in ys], p99, height=0.4, color=colors, alpha=0.35, label="p99")
        ax.barh([y - 0.2 for y in ys], p50, height=0.4, color=colors, label="p50")
        for y, a, b in zip(ys, p50, p99):
            ax.text(a, y - 0.2, f" {a:.0f}", va="center", fontsize=7)
            ax.text(b, y + 0.2, f" {b:.0f}", va="center", fontsize=7, alpha=0.7)
        ax.set_yticks(list(ys))
        ax.set_yticklabels(clients, fontsize=8)
        ax.invert_yaxis()
        if max(p99) / max(min(p50), 1e-9) > 30:  # wide range: log scale
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel("µs (log); solid p50, light p99")
        else:
            ax.set_xlim(0, max(p99) * 1.12)
            ax.set_xlabel("µs; solid p50, light p99")
        ax.set_title(title, fontsize=10)
    m = data.get("machine", {})
    fig.suptitle(f"fal-realtime round trips ({m.get('date', '')}, {m.get('nproc', '?')} CPUs): "
                 "grey = bare floor, blue = ours, orange = fal_client / @fal-ai/client", fontsize=10)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
