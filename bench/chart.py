"""The chart of ``make bench``: ``python bench/chart.py latest.json latest.png``.

Left: records per second of each scenario for bcdv, the floor and one request per record
(log scale). Right: peak RSS of the sync process against the number of records (the memory
curve of the full sync Business Central -> Dataverse). Needs matplotlib (in
requirements.lock); exits 2 without it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def rate(row: dict[str, Any], key: str) -> float:
    """Records per second of a scenario's reference (``floor``/``per_record``)."""
    ref = row.get(key) or {}
    return float(row["records"] / ref["seconds"]) if ref.get("seconds") else 0.0


def draw(doc: dict[str, Any], png: Path) -> None:
    """Write the chart of a bench report."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["results"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6), width_ratios=[3, 1])
    ys = list(range(len(rows)))
    bars = (("bcdv", lambda r: r["records_per_s"] or 0.0, -0.27),
            ("floor", lambda r: rate(r, "floor"), 0.0),
            ("one request per record", lambda r: rate(r, "per_record"), 0.27))
    for label, value, offset in bars:
        ax1.barh([y + offset for y in ys], [value(r) for r in rows], 0.27, label=label)
    ax1.set_yticks(ys, [r["title"] for r in rows], fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xscale("log")
    ax1.set_xlabel("records per second (log scale)")
    ax1.legend(fontsize=8)
    curve = sorted((r["records"], r["rss_mb"]) for r in rows if r["name"] == "full_bc_to_dv")
    ax2.plot([c[0] for c in curve], [c[1] for c in curve], marker="o")
    ax2.set_xscale("log")
    ax2.set_xlabel("records (full sync BC -> Dataverse)")
    ax2.set_ylabel("peak RSS of the sync process (MB)")
    ax2.set_ylim(bottom=0)
    fig.suptitle(f"bcdv bench, {doc['date']}, engine {doc.get('engine') or '?'}")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    """Entry point."""
    if len(argv) != 2:
        print(__doc__.split("\n")[0], file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed (make venv installs it)", file=sys.stderr)
        return 2
    draw(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
