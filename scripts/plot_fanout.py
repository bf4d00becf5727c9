#!/usr/bin/env python3
"""Plot the fan-out benchmark: deliveries/s against subscribers, one line per system.

Reads the CSV that `cargo bench --bench fanout` writes (target/fanout/flood.csv by
default) and writes a PNG with one panel per message size.

    python3 scripts/plot_fanout.py [--csv target/fanout/flood.csv] [--out docs/fanout.png]
    python3 scripts/plot_fanout.py --csv target/fanout/relay.csv --out docs/fanout-relay.png
    python3 scripts/plot_fanout.py --csv target/fanout/ws-flood.csv --out docs/fanout-ws.png

Needs matplotlib (`pip install matplotlib`). Rows that did not complete (timeout,
stalled, error, skipped) are left out; rows that completed with lost messages ("lossy")
are circled; rows in which every subscriber was disconnected have no rate and are drawn
as an X at the bottom of their panel.
"""

import argparse
import csv
import os
import sys
from collections import defaultdict

ORDER = [
    "hubcast",
    "hubcast-default",
    "ceiling",
    "thread",
    "hubcast-relay",
    "hubcast-hostrelay",
    "ceiling-relay",
    "thread-relay",
    "hubcast-ws",
    "ceiling-ws",
    "node-ws",
    "tokio-ws",
    "hubcast-topics",
    "nats",
    "redis",
]
LABELS = {
    "hubcast": "hubcast",
    "hubcast-default": "hubcast, flow control off",
    "ceiling": "ceiling (one event loop, no hub logic)",
    "thread": "thread per client (tutorial)",
    "hubcast-relay": "hubcast relay (chat_server)",
    "hubcast-hostrelay": "hubcast, host relays (README loop)",
    "ceiling-relay": "ceiling relay (one event loop, no hub logic)",
    "thread-relay": "thread per client relay (tutorial)",
    "hubcast-ws": "hubcast, WebSocket",
    "ceiling-ws": "WebSocket ceiling (one event loop, no hub logic)",
    "node-ws": "Node.js ws",
    "tokio-ws": "tokio-tungstenite + tokio::sync::broadcast",
    "hubcast-topics": "hubcast, topics of 10",
    "nats": "nats-server",
    "redis": "redis-server",
}
STYLE = {
    "hubcast": dict(color="#d62728", marker="o", linewidth=2.4),
    "hubcast-default": dict(color="#ff9896", marker="o", linestyle=":", linewidth=2),
    "ceiling": dict(color="#7f7f7f", marker="^", linestyle="--"),
    "thread": dict(color="#9467bd", marker="v"),
    "nats": dict(color="#1f77b4", marker="s"),
    "redis": dict(color="#2ca02c", marker="D"),
    "hubcast-relay": dict(color="#d62728", marker="o", linewidth=2.4),
    "hubcast-hostrelay": dict(color="#ff7f0e", marker="o", linestyle=":", linewidth=2),
    "ceiling-relay": dict(color="#7f7f7f", marker="^", linestyle="--"),
    "thread-relay": dict(color="#9467bd", marker="v"),
    "hubcast-ws": dict(color="#d62728", marker="o", linewidth=2.4),
    "ceiling-ws": dict(color="#7f7f7f", marker="^", linestyle="--"),
    "node-ws": dict(color="#8c564b", marker="s"),
    "tokio-ws": dict(color="#17becf", marker="D"),
    "hubcast-topics": dict(color="#ff7f0e", marker="o", linestyle=":", linewidth=2),
}


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=os.path.join(root, "target", "fanout", "flood.csv"))
    ap.add_argument("--out", default=os.path.join(root, "docs", "fanout.png"))
    ap.add_argument("--title", default="")
    args = ap.parse_args()

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("plot_fanout: needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 1

    # data[s][system] = [(n, deliveries/s, lossy)]
    data = defaultdict(lambda: defaultdict(list))
    with open(args.csv, newline="") as f:
        for row in csv.DictReader(f):
            if row["status"] not in ("ok", "lossy") or int(row["k"]) != 0:
                continue
            data[int(row["s"])][row["system"]].append(
                (int(row["n"]), float(row["deliveries_per_s"]), row["status"] == "lossy")
            )
    if not data:
        print(f"plot_fanout: no completed rows in {args.csv}", file=sys.stderr)
        return 1

    sizes = sorted(data)
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 4.6), squeeze=False)
    si = FuncFormatter(lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k" if v >= 1e3 else f"{v:g}")
    for ax, s in zip(axes[0], sizes):
        systems = [x for x in ORDER if x in data[s]] + sorted(set(data[s]) - set(ORDER))
        for system in systems:
            points = sorted(p for p in data[s][system] if p[1] > 0)
            ns = [p[0] for p in points]
            dps = [p[1] for p in points]
            style = STYLE.get(system, {})
            ax.plot(ns, dps, label=LABELS.get(system, system), **style)
            lossy = [p for p in points if p[2]]
            if lossy:
                ax.scatter([p[0] for p in lossy], [p[1] for p in lossy], s=140, facecolors="none",
                           edgecolors="black", zorder=5, label="completed, but lost messages")
        # Completed rounds in which every subscriber was cut: no rate, an x at the bottom.
        wiped = [(n, system) for system in systems for (n, dps, _) in data[s][system] if dps <= 0]
        if wiped:
            ax.set_yscale("log")
            low = ax.get_ylim()[0]
            for n, system in wiped:
                ax.scatter([n], [low * 1.15], marker="X", s=120, color=STYLE.get(system, {}).get("color", "black"),
                           zorder=6, label=f"{system}: every subscriber disconnected")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{s:,}-byte messages")
        ax.set_xlabel("subscribers (N)")
        ax.set_ylabel("deliveries / s")
        ax.yaxis.set_major_formatter(si)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.grid(True, which="both", alpha=0.3)
    legend = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend.keys()), loc="lower center", ncol=min(4, len(legend)), frameon=False)
    fig.suptitle(args.title or "Fan-out flood: deliveries/s (N × M ÷ time until every subscriber has the last message)")
    fig.tight_layout(rect=(0, 0.11, 1, 0.95))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"plot_fanout: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
