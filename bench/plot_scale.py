"""Draw ``make bench-scale``'s curve from its RESULT lines: ``python bench/plot_scale.py OUT.svg LOG...``.

Each LOG is the output of one ``bench/scale_bench.py`` run (its ``RESULT``
line is read). The picture: seconds against objects — until every create
was answered, until every object was Ready, and the time beyond creation
next to twice the ideal. Plain SVG, no plotting library needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

WIDTH, HEIGHT, MARGIN = 640, 400, 60
SERIES = (
    ("ready_s", "Ready (s)", "#1f77b4"),
    ("create_s", "creates answered (s)", "#7f7f7f"),
    ("beyond_s", "beyond creation (s)", "#d62728"),
    ("twice_ideal_s", "2 x ideal (s)", "#2ca02c"),
)


def result(log: Path) -> dict[str, float]:
    line = next(line for line in log.read_text().splitlines() if line.startswith("RESULT "))
    figures = {key: float(value) for key, value in (pair.split("=") for pair in line.split()[1:])}
    figures["beyond_s"] = figures["ready_s"] - figures["create_s"]
    figures["twice_ideal_s"] = 2 * figures["ideal_s"]
    return figures


def svg(runs: list[dict[str, float]]) -> str:
    runs = sorted(runs, key=lambda r: r["objects"])
    x_max = max(r["objects"] for r in runs) * 1.05
    y_max = max(r[key] for r in runs for key, _, _ in SERIES) * 1.1 or 1.0

    def x(value: float) -> float:
        return MARGIN + value / x_max * (WIDTH - 2 * MARGIN)

    def y(value: float) -> float:
        return HEIGHT - MARGIN - value / y_max * (HEIGHT - 2 * MARGIN)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<line x1="{MARGIN}" y1="{y(0)}" x2="{WIDTH - MARGIN}" y2="{y(0)}" stroke="black"/>',
        f'<line x1="{MARGIN}" y1="{y(0)}" x2="{MARGIN}" y2="{MARGIN}" stroke="black"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 15}" text-anchor="middle">objects</text>',
        f'<text x="15" y="{HEIGHT / 2}" transform="rotate(-90 15 {HEIGHT / 2})" text-anchor="middle">'
        "seconds</text>",
    ]
    for run in runs:
        parts.append(
            f'<text x="{x(run["objects"])}" y="{y(0) + 15}" text-anchor="middle">{run["objects"]:.0f}</text>'
        )
    for tick in range(5):
        value = y_max * tick / 4
        parts.append(f'<text x="{MARGIN - 5}" y="{y(value) + 4}" text-anchor="end">{value:.0f}</text>')
    for n, (key, label, colour) in enumerate(SERIES):
        points = " ".join(f"{x(r['objects']):.1f},{y(r[key]):.1f}" for r in runs)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for r in runs:
            parts.append(f'<circle cx="{x(r["objects"]):.1f}" cy="{y(r[key]):.1f}" r="3" fill="{colour}"/>')
        parts.append(f'<text x="{MARGIN + 10}" y="{MARGIN + 15 * n}" fill="{colour}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    Path(sys.argv[1]).write_text(svg([result(Path(log)) for log in sys.argv[2:]]))


if __name__ == "__main__":
    main()
