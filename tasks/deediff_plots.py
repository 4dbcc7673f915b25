"""DeeDiff's figures: sample grids, the exit layer against the sampling step, and the
threshold sweep (fraction of layers run and sampling wall time against FID, with the full
model and the static-exit baseline on the same axes)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import save_image  # noqa: E402


def save_grid(images: torch.Tensor, path: Path, count: int = 64) -> Path:
    """The first ``count`` images in [-1, 1] as a square PNG grid."""
    nrow = int(np.ceil(np.sqrt(min(count, len(images)))))
    save_image((images[:count] + 1) / 2, path, nrow=nrow, padding=1)
    return path


def plot_exit_layers(
    exit_layers: torch.Tensor, timesteps: torch.Tensor, depth: int, path: Path, title: str
) -> Path:
    """Mean exit layer per sampling step (noisiest first) with the 10-90% band.

    Shapes: exit_layers ``(steps, B)``, timesteps ``(steps,)``.
    """
    e = exit_layers.float().numpy()
    steps = np.arange(len(e))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.fill_between(
        steps, np.percentile(e, 10, 1), np.percentile(e, 90, 1), alpha=0.3, label="10-90%"
    )
    ax.plot(steps, e.mean(1), marker=".", label="mean")
    ax.set_ylim(0, depth + 0.5)
    ax.set_xlabel(f"sampling step (t = {int(timesteps[0])} → {int(timesteps[-1])})")
    ax.set_ylabel("exit layer (blocks run)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sweep(rows: list[dict], path: Path, fid_key: str = "fid_classifier") -> Path:
    """FID against the fraction of layers run and against the wall time: early exit per
    threshold (one line per exit rule), the static baseline at matched cost, the full model."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, x_key, label in (
        (axes[0], "layer_fraction", "fraction of layers executed"),
        (axes[1], "wall_s", "sampling wall time (s)"),
    ):
        for kind, style in (("early_exit", "o-"), ("static", "s--")):
            for rule in sorted({r.get("rule", "") for r in rows if r["kind"] == kind}):
                pts = sorted(
                    (r[x_key], r[fid_key], r.get("threshold"))
                    for r in rows
                    if r["kind"] == kind and r.get("rule", "") == rule
                )
                if not pts:
                    continue
                name = "DeeDiff" if kind == "early_exit" else "static exit"
                name += f" ({rule})" if rule else ""
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name)
                if kind == "early_exit":
                    for x, y, thr in pts:
                        ax.annotate(f"{thr:g}", (x, y), fontsize=7, alpha=0.7)
        for r in rows:
            if r["kind"] == "full":
                ax.scatter([r[x_key]], [r[fid_key]], marker="*", s=150, c="k", label="full model")
            if r["kind"] == "real" and fid_key in r:
                ax.axhline(r[fid_key], color="g", ls=":", label="real training images")
        ax.set_xlabel(label)
        ax.set_ylabel(fid_key.replace("_", "/"))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    axes[0].legend(seen.values(), seen.keys(), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
