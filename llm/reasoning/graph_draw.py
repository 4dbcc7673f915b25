"""Drawings of a thought graph (the ``graph`` of a problem record): Graphviz DOT, rendered to
PNG or SVG by ``dot`` where it is installed, else a matplotlib drawing (layers by depth)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLORS = {
    "root": "#dddddd",
    "thought": "#cfe2f3",
    "answer": "#fff2cc",
    "condition": "#d9ead3",
    "crossroad": "#f4cccc",
}
SHAPES = {"crossroad": "diamond", "answer": "doubleoctagon", "root": "box"}


def label(thought: dict) -> str:
    """The node's text with its score, validity and verdict."""
    text = thought["text"] if len(thought["text"]) <= 40 else thought["text"][:37] + "..."
    notes = []
    if thought.get("score") is not None:
        notes.append(f"v={thought['score']:g}")
    if thought.get("valid") is not None:
        notes.append("valid" if thought["valid"] else "rejected")
    if thought.get("solved") is not None:
        notes.append("correct" if thought["solved"] else "wrong")
    return f"#{thought['id']} {text}" + (f"\n{', '.join(notes)}" if notes else "")


def to_dot(graph: dict, title: str = "") -> str:
    """The graph as Graphviz DOT (nodes coloured by kind, edges parent -> child)."""
    lines = ["digraph thoughts {", "  rankdir=TB;", "  node [style=filled, fontsize=10];"]
    if title:
        lines.append(f"  labelloc=t; label={json.dumps(title)};")
    for t in graph["thoughts"]:
        lines.append(
            f"  n{t['id']} [label={json.dumps(label(t))}, shape={SHAPES.get(t['kind'], 'box')}, "
            f'fillcolor="{COLORS.get(t["kind"], "#ffffff")}"'
            + (", penwidth=3" if t.get("solved") else "")
            + "];"
        )
    for t in graph["thoughts"]:
        for parent in t["parents"]:
            lines.append(f"  n{parent} -> n{t['id']};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(graph: dict, stem: Path, title: str = "", fmt: str = "png") -> Path:
    """Writes ``stem.dot`` and the drawing ``stem.<fmt>``; returns the drawing's path.

    Uses ``dot -T<fmt>`` when Graphviz is installed, else matplotlib (``png`` or ``svg``).
    """
    stem.parent.mkdir(parents=True, exist_ok=True)
    dot_text = to_dot(graph, title)
    stem.with_suffix(".dot").write_text(dot_text)
    out = stem.with_suffix(f".{fmt}")
    dot = shutil.which("dot")
    if dot:
        subprocess.run(
            [dot, f"-T{fmt}", "-o", str(out)], input=dot_text, text=True, check=True, timeout=60
        )
        return out
    draw_matplotlib(graph, out, title)
    return out


def depths(graph: dict) -> dict[int, int]:
    """Each thought's depth: 0 for those without parents, else 1 + its deepest parent's."""
    depth: dict[int, int] = {}
    for t in graph["thoughts"]:  # parents always come before their children
        depth[t["id"]] = 1 + max((depth[p] for p in t["parents"]), default=-1)
    return depth


def draw_matplotlib(graph: dict, out: Path, title: str = "") -> None:
    """A layered drawing: one row per depth, nodes coloured by kind."""
    depth = depths(graph)
    rows: dict[int, list[dict]] = {}
    for t in graph["thoughts"]:
        rows.setdefault(depth[t["id"]], []).append(t)
    width = max((len(r) for r in rows.values()), default=1)
    fig = Figure(figsize=(max(6, 2.2 * width), max(3, 1.4 * len(rows))))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    place = {}
    for level, row in rows.items():
        for i, t in enumerate(row):
            place[t["id"]] = ((i + 0.5) / len(row), -level)
    for t in graph["thoughts"]:
        for parent in t["parents"]:
            (x0, y0), (x1, y1) = place[parent], place[t["id"]]
            ax.plot([x0, x1], [y0, y1], color="grey", linewidth=0.7, zorder=1)
    for t in graph["thoughts"]:
        x, y = place[t["id"]]
        ax.text(
            x,
            y,
            label(t),
            ha="center",
            va="center",
            fontsize=6,
            zorder=2,
            bbox={"facecolor": COLORS.get(t["kind"], "white"), "edgecolor": "black"},
        )
    ax.set(xlim=(0, 1), ylim=(-len(rows), 0.5), title=title)
    ax.axis("off")
    fig.savefig(out, dpi=110)
