"""Report on a run folder: training curves of a single run, job table and sweep plots of a multirun.

Usage:
    python scripts/report.py outputs/<task_name>/runs/<time> [--out DIR] [--metric NAME]
    python scripts/report.py outputs/<task_name>/multiruns/<time> [--out DIR] [--metric NAME]
    python scripts/report.py outputs/<task_name>/multiruns/<time> --wandb [online]

A multirun whose jobs report ``pi/relu_count`` and ``pi/test_acc`` (the ReLU-budget
pipelines) also gets ``accuracy_vs_relu_count.png``, one line per swept experiment. A multirun
that sweeps ``seed`` (e.g. ``-m experiment=revsnn_cifar10,lif_cifar10 seed=0,1,2``) also gets
``seeds.csv``: mean, std, min, max and count over seeds of the plotted metric and every
``test/`` metric, one row per setting of the other swept parameters (printed as well), and
``seeds.png`` in place of a plot against the seed: each setting on a categorical axis, one
point per seed spread side by side, and the mean ± std over its seeds as an error bar.

``--wandb`` publishes the tables (as W&B tables) and plots (as W&B images) into a W&B run in
the run folder, named and grouped by its ``task_name``: offline (``wandb sync`` it later)
unless ``--wandb online``.

Plots are drawn on explicit Agg canvases (``Figure`` + ``FigureCanvasAgg``) rather than through
pyplot, so importing this module never switches the global backend and no figure stays open.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tasks.publish import WandbTarget, add_wandb_flag, publish_folder
from tasks.run_folders import (
    SEED_PARAM,
    JobTable,
    ReportError,
    collect_jobs,
    configured_metric,
    detect_layout,
    find_metrics_csv,
    folder_config,
    job_dirs,
    load_curves,
    read_metrics,
    read_yaml,
    summarize_seeds,
)

STAGES = ("train", "val", "test")
FALLBACK_METRIC = "val/acc_best"


def metric_family(name: str) -> str:
    """What a metric measures, without stage and summary suffixes: val/acc_best -> acc."""
    return re.sub(r"_(best|median|step|epoch)$", "", name.split("/", 1)[-1])


def _stage_rank(name: str) -> tuple[int, str]:
    stage = name.split("/", 1)[0] if "/" in name else ""
    return (STAGES.index(stage) if stage in STAGES else len(STAGES), name)


def group_families(columns: Iterable[str], monitored: str | None) -> dict[str, list[str]]:
    """Group metric names by family: loss first, then the monitored metric's, then the rest A-Z."""
    families: dict[str, list[str]] = {}
    for column in columns:
        families.setdefault(metric_family(column), []).append(column)
    first = [f for f in dict.fromkeys(["loss", metric_family(monitored or "")]) if f in families]
    order = first + sorted(f for f in families if f not in first)
    return {family: sorted(families[family], key=_stage_rank) for family in order}


def plot_curves(curves: pd.DataFrame, monitored: str | None, path: Path, title: str) -> Path:
    """Draw one subplot per metric family (train/val/test series overlaid) and save it as PNG."""
    families = group_families(curves.columns, monitored)
    ncols = min(3, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig = Figure(figsize=(4.8 * ncols, 3.6 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (family, names) in zip(axes, families.items(), strict=False):
        for name in names:
            series = curves[name].dropna()
            ax.plot(
                series.index,
                series.to_numpy(),
                label=name,
                linestyle="--" if name.endswith(("_best", "_median")) else "-",
                marker="o" if len(series) <= 30 else None,
                markersize=3,
            )
        is_monitored = monitored is not None and family == metric_family(monitored)
        ax.set_title(f"{family} (monitored: {monitored})" if is_monitored else family)
        ax.set_xlabel(str(curves.index.name))
        ax.set_ylabel(family)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(families) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return path


def format_metrics(metrics: dict[str, Any]) -> str:
    """Two-column text table of final metrics."""
    width = max(len("metric"), *(len(k) for k in metrics))
    lines = [f"{'metric':<{width}}  value"]
    for key, value in metrics.items():
        shown = f"{value:.6g}" if isinstance(value, (int, float)) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def report_single(run_dir: Path, out_dir: Path, metric: str | None = None) -> list[Path]:
    """Plot a single run's curves to `out_dir/curves.png` and print its final metrics."""
    config = read_yaml(run_dir / ".hydra" / "config.yaml") or {}
    monitored = metric or configured_metric([run_dir / ".hydra" / "config.yaml"])
    written: list[Path] = []
    csv_path = find_metrics_csv(run_dir)
    if csv_path is None:
        print(f"no csv/metrics.csv in {run_dir}: no curves drawn")
    else:
        curves = load_curves(csv_path)
        if curves.empty:
            print(f"{csv_path} holds no metric values: no curves drawn")
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            title = f"{config.get('task_name', run_dir.parent.parent.name)} / {run_dir.name}"
            written.append(plot_curves(curves, monitored, out_dir / "curves.png", title))
    metrics = read_metrics(run_dir)
    if metrics:
        print(format_metrics(metrics))
    else:
        print(f"no final metrics in {run_dir / 'metrics.json'} (run unfinished or failed)")
    return written


def choose_metric(
    requested: str | None, configured: str | None, available: Sequence[str]
) -> str | None:
    """The metric to plot: --metric (must exist), else the configured one, else val/acc_best."""
    if requested:
        if requested not in available:
            raise ReportError(
                f"--metric {requested} is in no job's metrics.json; have {list(available)}"
            )
        return requested
    return next((m for m in (configured, FALLBACK_METRIC) if m and m in available), None)


def is_log_spaced(values: pd.Series) -> bool:
    """Whether numeric values are all positive and span more than 10x (plot them on log-x)."""
    return bool((values > 0).all() and values.max() > 10 * values.min())


def plot_metric_vs_param(table: JobTable, param: str, metric: str, path: Path) -> Path:
    """Scatter the metric of each finished job against one parameter, with the mean per value."""
    finished = table.jobs[table.jobs["status"] == "ok"]
    data = finished[["job", param, metric]].dropna()
    values = data[param]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    mean_style = {"color": "tab:red", "label": "mean per value", "zorder": 2}
    if numeric:
        x = values.astype(float)
        means = data.groupby(x)[metric].mean().sort_index()
        ax.plot(means.index, means.to_numpy(), marker="_", markersize=14, **mean_style)
        if is_log_spaced(x):
            ax.set_xscale("log")
    else:
        categories = sorted(values.astype(str).unique())
        x = values.astype(str).map({c: i for i, c in enumerate(categories)})
        means = data.groupby(x)[metric].mean()
        ax.hlines(means.to_numpy(), means.index - 0.25, means.index + 0.25, **mean_style)
        ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 4 else 0)
        ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.scatter(x, data[metric], alpha=0.8, label="job", zorder=3)
    if len(data) <= 20:
        for job, xi, yi in zip(data["job"], x, data[metric], strict=True):
            ax.annotate(str(job), (xi, yi), xytext=(4, 4), textcoords="offset points", fontsize=7)
    failed = int((table.jobs["status"] != "ok").sum())
    ax.set_title(f"{metric} vs {param}\n{len(data)} jobs plotted, {failed} failed")
    ax.set_xlabel(f"{param} (log scale)" if ax.get_xscale() == "log" else param)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


STRIP_HALF_WIDTH = 0.2  # how far a setting's seed points spread either side of its tick


def seeds_figure(table: JobTable, metric: str) -> Figure:
    """Each seed's metric per setting (a strip on a categorical axis) with mean ± std per setting.

    The settings are the rows of ``seeds.csv`` (the values of the other parameters that vary
    among finished jobs, joined by ", ", in their sorted order); within a setting the seeds sit
    side by side in seed order. The error bar is the sample std, zero for a setting with one
    seed.
    """
    finished = table.jobs[table.jobs["status"] == "ok"]
    keys = [p for p in table.params if p != SEED_PARAM and finished[p].nunique() > 1]
    data = finished.dropna(subset=[metric]).sort_values(SEED_PARAM, kind="stable")
    groups = list(data.groupby(keys, sort=True)) if keys else [(("all jobs",), data)]
    fig = Figure(figsize=(max(6.4, 1.2 * len(groups) + 2), 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    categories, xs, ys, seeds, means, stds = [], [], [], [], [], []
    for position, (key, group) in enumerate(groups):
        values = group[metric].to_numpy(dtype=float)
        categories.append(", ".join(str(value) for value in key))
        spread = np.linspace(-STRIP_HALF_WIDTH, STRIP_HALF_WIDTH, len(values) + 2)[1:-1]
        xs.extend(position + spread)
        ys.extend(values)
        seeds.extend(group[SEED_PARAM])
        means.append(values.mean())
        stds.append(values.std(ddof=1) if len(values) > 1 else 0.0)
    ax.scatter(xs, ys, alpha=0.8, label="seed", zorder=3)
    if len(xs) <= 30:
        for seed, xi, yi in zip(seeds, xs, ys, strict=True):
            ax.annotate(str(seed), (xi, yi), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.errorbar(
        range(len(categories)),
        means,
        yerr=stds,
        fmt="_",
        markersize=18,
        capsize=6,
        color="tab:red",
        label="mean ± std",
        zorder=2,
    )
    ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 4 else 0)
    ax.set_xlim(-0.5, len(categories) - 0.5)
    failed = int((table.jobs["status"] != "ok").sum())
    ax.set_title(f"{metric} over seeds\n{len(data)} jobs plotted, {failed} failed")
    ax.set_xlabel(", ".join(keys) if keys else "setting")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


FRONTIER_X = "pi/relu_count"
FRONTIER_Y = "pi/test_acc"


def frontier_series(table: JobTable) -> str | None:
    """The parameter that tells the methods apart (``experiment`` in a two-method sweep)."""
    for param in ("experiment", "model.method"):
        if param in table.params and table.jobs[param].nunique() > 1:
            return param
    return None


def plot_frontier(table: JobTable, path: Path) -> Path:
    """Accuracy vs kept ReLUs (log x), one line per method: the AutoReP/SNL frontier."""
    finished = table.jobs[table.jobs["status"] == "ok"].dropna(subset=[FRONTIER_X, FRONTIER_Y])
    series = frontier_series(table)
    groups = finished.groupby(series) if series else [("all jobs", finished)]
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, data in groups:
        data = data.sort_values(FRONTIER_X)
        ax.plot(data[FRONTIER_X], 100 * data[FRONTIER_Y], marker="o", label=str(name))
        if "pi/within_budget" in data:
            missed = data[data["pi/within_budget"] < 1]
            ax.scatter(
                missed[FRONTIER_X], 100 * missed[FRONTIER_Y], marker="x", color="k", zorder=3
            )
    if (finished[FRONTIER_X] > 0).all() and len(finished) > 1:
        ax.set_xscale("log")
    ax.set_xlabel("ReLUs kept per image (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs ReLU count (x: budget missed by more than the tolerance)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


def sanitize(name: str) -> str:
    """A parameter name made safe for a file name: model.optimizer.lr -> model_optimizer_lr."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "param"


def print_optuna(path: Path) -> None:
    """Print the best value and parameters from an Optuna `optimization_results.yaml`."""
    results = read_yaml(path) or {}
    print(f"\n{results.get('name', 'optuna')} best value: {results.get('best_value')}")
    for key, value in (results.get("best_params") or {}).items():
        print(f"  {key}={value}")


def report_multirun(run_dir: Path, out_dir: Path, metric: str | None = None) -> list[Path]:
    """Write `jobs.csv` and one `metric_vs_<param>.png` per varying parameter (`seeds.png` and
    `seeds.csv` for a seed sweep); print the tables."""
    table = collect_jobs(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "jobs.csv"
    table.jobs.to_csv(csv_path, index=False)
    written = [csv_path]
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.jobs.to_string(index=False))
    configs = [
        run_dir / "multirun.yaml",
        *(j / ".hydra" / "config.yaml" for j in job_dirs(run_dir)),
    ]
    chosen = choose_metric(metric, configured_metric(configs), table.metrics)
    seeds = summarize_seeds(table, chosen)
    if chosen is None:
        print(f"\nno optimised metric among {table.metrics}: pass --metric to plot one")
    else:
        plotted = table.jobs[table.jobs["status"] == "ok"].dropna(subset=[chosen])
        for param in table.params:
            if param == SEED_PARAM and seeds is not None:
                seeds_figure(table, chosen).savefig(out_dir / "seeds.png", dpi=120)
                written.append(out_dir / "seeds.png")
            elif plotted[param].nunique() > 1:
                path = out_dir / f"metric_vs_{sanitize(param)}.png"
                written.append(plot_metric_vs_param(table, param, chosen, path))
    if seeds is not None:
        seeds_path = out_dir / "seeds.csv"
        seeds.to_csv(seeds_path, index=False)
        written.append(seeds_path)
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(f"\nover seeds:\n{seeds.to_string(index=False)}")
    if {FRONTIER_X, FRONTIER_Y} <= set(table.metrics):
        written.append(plot_frontier(table, out_dir / "accuracy_vs_relu_count.png"))
    optuna = run_dir / "optimization_results.yaml"
    if optuna.is_file():
        print_optuna(optuna)
    return written


def report(run_dir: Path, out_dir: Path | None = None, metric: str | None = None) -> list[Path]:
    """Report on a single run or a multirun folder; return the paths written."""
    layout = detect_layout(run_dir)
    out_dir = out_dir if out_dir is not None else run_dir / "plots"
    if layout == "multirun":
        return report_multirun(run_dir, out_dir, metric)
    return report_single(run_dir, out_dir, metric)


def publish(run_dir: Path, written: Sequence[Path], online: bool) -> Path:
    """Send the report's tables and plots into a new W&B run in ``run_dir``; its folder."""
    config = folder_config(run_dir)
    target = WandbTarget.for_folder(config, job_type="report", offline=not online)
    return publish_folder(run_dir, written, target, config)


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("run_dir", type=Path, help="a runs/<time> or multiruns/<time> folder")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: RUN_DIR/plots)"
    )
    parser.add_argument("--metric", default=None, help="metric to plot (default: optimized_metric)")
    add_wandb_flag(parser, "the tables and plots into a W&B run in RUN_DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the report; print what was written; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        written = report(args.run_dir, args.out, args.metric)
    except ReportError as error:
        print(f"report.py: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    if args.wandb:
        print(f"published to W&B: {publish(args.run_dir, written, args.wandb == 'online')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
