"""The study's figure (gold reward against label accuracy, reports/study.png) and its DVC plot rows."""

from __future__ import annotations

import math
from pathlib import Path

from weakalign.config.feedback import is_calibration, on_line, table_order
from weakalign.records.io import atomic_file
from weakalign.study.analysis import noise_line


def kind(source: str) -> str:
    """What an arm is, for the figure's legend: a calibration source, the human labels, the weak teacher or a
    weaker one."""
    return "calibration" if is_calibration(source) else "teacher" if source.startswith("weak@") else \
        "human" if source == "human" else "weak"


def box_gap(box, point) -> float:
    """Pixels from a point to a text box (0 inside it)."""
    return math.hypot(max(box.x0 - point[0], 0, point[0] - box.x1), max(box.y0 - point[1], 0, point[1] - box.y1))


def _label_points(ax, points: list[tuple[str, float, float]]) -> None:
    """Name each point at the first of a few offsets whose text box covers no other label or marker; a label
    set further out gets a thin leader line (arms of close accuracy, the weak teachers at about 0.53, crowd)."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    ax.figure.canvas.draw()  # final limits and layout, so the window extents below are the saved ones
    renderer = ax.figure.canvas.get_renderer()
    pixels = {name: ax.transData.transform((x, y)) for name, x, y in points}
    markers = {name: Bbox.from_extents(px - 5, py - 5, px + 5, py + 5) for name, (px, py) in pixels.items()}
    placed = []

    near = [(5, 5), (5, -11), (-5, 5), (-5, -11)]
    far = [(d * sx, dy) for d in (25, 45) for dy in (22, -26, 0, 40, -44) for sx in (1, -1)]
    for name, x, y in sorted(points, key=lambda p: (p[1], -p[2])):
        obstacles = placed + [m for other, m in markers.items() if other != name]
        for dx, dy in near + far:
            arrow = {"arrowstyle": "-", "color": "#999999", "lw": 0.5} if (dx, dy) in far else None
            a = ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                            ha="left" if dx > 0 else "right", va="center", arrowprops=arrow)
            a.update_positions(renderer)
            box = Text.get_window_extent(a, renderer)  # the text alone: a leader line ends on its own point
            # A label without a leader line must be nearer its own point than any other.
            clear = arrow is not None or all(box_gap(box, pixels[name]) + 3 < box_gap(box, q)
                                             for other, q in pixels.items() if other != name)
            inside = ax.bbox.x0 <= box.x0 and box.x1 <= ax.bbox.x1 and ax.bbox.y0 <= box.y0 and box.y1 <= ax.bbox.y1
            if clear and inside and not any(box.overlaps(b) for b in obstacles):
                break
            a.remove()
        else:  # nowhere free: the first place, overlapping
            a = ax.annotate(name, (x, y), textcoords="offset points", xytext=near[0], fontsize=7, va="center")
            a.update_positions(renderer)
            box = Text.get_window_extent(a, renderer)
        placed.append(box)


def figure(out: dict, path: Path) -> None:
    """Gold reward against label accuracy, one point per arm with its 95% interval over seeds, the base as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    names = [n for n in table_order(list(out["sources"])) if out["sources"][n]["label_accuracy"] is not None]
    colours = {"calibration": "#7f7f7f", "human": "#1f77b4", "weak": "#d62728", "teacher": "#ff7f0e"}
    for n in names:
        s = out["sources"][n]
        g = s["gold_reward"]
        err = None if g["lo"] is None else [[g["mean"] - g["lo"]], [g["hi"] - g["mean"]]]
        k = kind(n)
        ax.errorbar([s["label_accuracy"]], [g["mean"]], yerr=err, fmt="o", capsize=3, color=colours[k], label=k)
    # The line the effective accuracy reads off (effective_accuracies does it per seed; this is its fit through
    # the means): where an arm sits against it says what accuracy of randomly flipped gold labels it is worth.
    cal = [(out["sources"][n]["label_accuracy"], out["sources"][n]["gold_reward"]["mean"]) for n in names
           if on_line(n) and out["sources"][n]["gold_reward"]["mean"] is not None]
    line = noise_line(cal)
    if line is not None:
        ax.plot([0.5, 1.0], [line[0] + line[1] * 0.5, line[0] + line[1]], color="#7f7f7f", lw=0.8, ls="-.",
                label="gold labels with random flips (fit)")
    b = out["base"]["gold_reward"]
    if b["mean"] is not None:
        ax.axhline(b["mean"], color="black", lw=0.8, ls="--", label="base (before DPO)")
    ax.axvline(0.5, color="#bbbbbb", lw=0.8, ls=":", label="chance")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="best")
    ax.set_xlabel("label accuracy against the gold judge (D_u)")
    ax.set_ylabel("target's gold reward on the test prompts")
    ax.set_title(f"Dose-response over {out['n_seeds']} seeds (mean, 95% t-interval)", fontsize=10)
    fig.tight_layout()
    _label_points(ax, [(n, out["sources"][n]["label_accuracy"], out["sources"][n]["gold_reward"]["mean"])
                       for n in names])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def plot_rows(out: dict) -> list[dict]:
    """plots/study.json, in the table's order: one row per arm, each with the base's gold reward (the horizontal line
    of `.dvc/plots/dose_response.json`), since a DVC plot reads one file of rows."""
    rows = []
    for n in table_order(list(out["sources"])):
        s = out["sources"][n]
        if s["label_accuracy"] is None:
            continue
        rows.append({"source": n, "kind": kind(n), "label_accuracy": s["label_accuracy"],
                     "gold_reward": s["gold_reward"]["mean"], "lo": s["gold_reward"]["lo"],
                     "hi": s["gold_reward"]["hi"], "base": out["base"]["gold_reward"]["mean"],
                     "minus_random": (s.get("minus_random") or {}).get("mean")})
    return rows
