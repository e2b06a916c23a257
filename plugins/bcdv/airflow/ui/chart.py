"""An inline SVG chart of records per run over time (no JavaScript, nothing fetched)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from markupsafe import Markup, escape

SERIES = (("inserted", "#2e7d32"), ("modified", "#1565c0"), ("skipped", "#f9a825"),
          ("failed", "#c62828"))
WIDTH, HEIGHT, PAD_L, PAD_B, PAD_T = 760, 220, 44, 36, 12


def runs_per_time(jobs: list[dict[str, Any]], limit: int = 40) -> list[dict[str, Any]]:
    """Synchronisation passes summed per run (oldest first), the last ``limit`` runs."""
    runs: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for job in sorted(jobs, key=lambda j: j["started_at"]):
        if job["type"] != "synchronization" or job["dry_run"]:
            continue
        key = job["run_id"] or job["id"]
        run = runs.setdefault(key, {"run_id": key, "started_at": job["started_at"],
                                    **{name: 0 for name, _ in SERIES}})
        for name, _ in SERIES:
            run[name] += int(job[name] or 0)
    return list(runs.values())[-limit:]


def records_chart(jobs: list[dict[str, Any]]) -> Markup:
    """Stacked bars: inserted, modified, skipped and failed records of each run."""
    runs = runs_per_time(jobs)
    if not runs:
        return Markup('<p class="muted">No synchronisation runs yet.</p>')
    top = max(max(sum(r[n] for n, _ in SERIES) for r in runs), 1)
    plot_w, plot_h = WIDTH - PAD_L - 8, HEIGHT - PAD_B - PAD_T
    step = plot_w / len(runs)
    bar = max(min(step * 0.7, 40), 2)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" aria-label="records per run over time">',
             f'<line x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{WIDTH - 8}" y2="{PAD_T + plot_h}" '
             'stroke="#888"/>',
             f'<text x="{PAD_L - 6}" y="{PAD_T + 4}" text-anchor="end" class="axis">{top}</text>',
             f'<text x="{PAD_L - 6}" y="{PAD_T + plot_h}" text-anchor="end" class="axis">0</text>']
    for i, run in enumerate(runs):
        x = PAD_L + i * step + (step - bar) / 2
        y = PAD_T + plot_h
        title = escape(f"{run['started_at']:%Y-%m-%d %H:%M:%S} {run['run_id']}: " + ", ".join(
            f"{n} {run[n]}" for n, _ in SERIES))
        parts.append(f'<g class="run"><title>{title}</title>')
        for name, color in SERIES:
            h = run[name] / top * plot_h
            if h <= 0:
                continue
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{color}" data-series="{name}"/>')
        parts.append("</g>")
    for i in sorted({0, len(runs) - 1}):
        x = PAD_L + i * step + step / 2
        label = f"{runs[i]['started_at']:%m-%d %H:%M}"
        parts.append(f'<text x="{x:.1f}" y="{PAD_T + plot_h + 14}" text-anchor="middle" '
                     f'class="axis">{label}</text>')
    legend_x = PAD_L
    for name, color in SERIES:
        parts.append(f'<rect x="{legend_x}" y="{HEIGHT - 10}" width="10" height="8" '
                     f'fill="{color}"/><text x="{legend_x + 14}" y="{HEIGHT - 2}" '
                     f'class="axis">{name}</text>')
        legend_x += 90
    parts.append("</svg>")
    return Markup("".join(parts))
