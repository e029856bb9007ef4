#!/usr/bin/env python3
"""bench/growth.sh's plot: GET /auth/me req/s and p99 against the number of sessions in the
store (log x axis), one line per backend and store, as a hand-written SVG (standard library
only, so the bench needs nothing from PyPI).

    python3 bench/growth_plot.py bench/results/growth.tsv bench/results/growth.svg

Input rows (tab-separated, from growth.sh): what backend store sessions rps rps-spread p50 p99
p99-spread; only `me` rows are drawn.
"""

import math
import sys
from xml.sax.saxutils import escape

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
W, H = 900, 380
PANEL_W, PANEL_H = 340, 250
LEFT = [80, 530]
TOP = 60


def read(path):
    series = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 8 or cols[0] != "me":
                continue
            try:
                n, rps, p99 = int(cols[3]), float(cols[4]), float(cols[7])
            except ValueError:
                continue  # a "?" from a failed run: leave the point out
            series.setdefault(f"{cols[1]} / {cols[2]}", []).append((n, rps, p99))
    for points in series.values():
        points.sort()
    return series


def nice_max(v):
    """A round axis top above v (1, 2, 5 × 10^k)."""
    if v <= 0:
        return 1.0
    k = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 5, 10):
        if v <= m * k:
            return m * k
    return 10 * k


def panel(out, x0, title, unit, series, idx, xmin, xmax):
    ymax = nice_max(max((p[idx] for pts in series.values() for p in pts), default=1) * 1.1)
    lx0, lx1 = math.log10(xmin), math.log10(xmax)
    if lx1 == lx0:
        lx0, lx1 = lx0 - 1, lx1 + 1

    def px(n):
        return x0 + (math.log10(n) - lx0) / (lx1 - lx0) * PANEL_W

    def py(v):
        return TOP + PANEL_H - v / ymax * PANEL_H

    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{TOP - 12}" text-anchor="middle" '
               f'font-weight="bold">{escape(title)}</text>')
    out.append(f'<rect x="{x0}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" '
               'fill="none" stroke="#444"/>')
    for i in range(6):
        v = ymax * i / 5
        y = py(v)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + PANEL_W}" y2="{y:.1f}" stroke="#ddd"/>')
        label = f"{v:,.0f}" if ymax >= 10 else f"{v:.2f}"
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{label}</text>')
    decade = 10 ** math.floor(lx0)
    while decade <= xmax * 1.0001:
        if decade >= xmin / 1.0001:
            x = px(decade)
            out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + PANEL_H}" stroke="#eee"/>')
            label = f"{decade:,.0f}" if decade < 1000 else (
                f"{decade / 1000:,.0f}k" if decade < 1_000_000 else f"{decade / 1_000_000:,.0f}M")
            out.append(f'<text x="{x:.1f}" y="{TOP + PANEL_H + 16}" text-anchor="middle" '
                       f'font-size="11">{label}</text>')
        decade *= 10
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{TOP + PANEL_H + 34}" text-anchor="middle" '
               'font-size="12">sessions (and users) in the store, log scale</text>')
    out.append(f'<text x="{x0 - 58}" y="{TOP + PANEL_H / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 {x0 - 58} {TOP + PANEL_H / 2})">{escape(unit)}</text>')
    for k, (name, pts) in enumerate(sorted(series.items())):
        colour = COLOURS[k % len(COLOURS)]
        path = " ".join(f"{px(p[0]):.1f},{py(p[idx]):.1f}" for p in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in pts:
            out.append(f'<circle cx="{px(p[0]):.1f}" cy="{py(p[idx]):.1f}" r="3.5" fill="{colour}">'
                       f'<title>{escape(name)}: {p[0]:,} sessions, {p[idx]:,.3f} {escape(unit)}'
                       '</title></circle>')


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: growth_plot.py GROWTH_TSV OUT_SVG")
    series = read(sys.argv[1])
    if not series:
        sys.exit(f"no /auth/me rows in {sys.argv[1]}")
    ns = [p[0] for pts in series.values() for p in pts]
    xmin, xmax = min(ns), max(ns)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">GET /auth/me as the '
           'store grows (bench/growth.sh)</text>']
    panel(out, LEFT[0], "throughput", "req/s (median of rounds)", series, 1, xmin, xmax)
    panel(out, LEFT[1], "tail latency", "p99 ms (median of rounds)", series, 2, xmin, xmax)
    y = H - 12
    x = 80
    for k, name in enumerate(sorted(series)):
        colour = COLOURS[k % len(COLOURS)]
        out.append(f'<rect x="{x}" y="{y - 10}" width="14" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 18}" y="{y}" font-size="12">{escape(name)}</text>')
        x += 30 + 8 * len(name)
    out.append("</svg>")
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
