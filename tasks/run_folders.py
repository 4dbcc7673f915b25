"""Reading run folders back: a single run's metrics and curves, a multirun's jobs as one table,
and seed statistics. Shared by ``scripts/report.py``, ``scripts/lingcn_frontier.py`` and any task
that summarises earlier runs (a run folder's layout is written by ``tasks/core.py``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

EXPECTED_LAYOUTS = (
    "a single run (.hydra/, csv/metrics.csv or metrics.json, as in "
    "outputs/<task_name>/runs/<time>) or a multirun (multirun.yaml or numbered job folders "
    "0/, 1/, ..., as in outputs/<task_name>/multiruns/<time>)"
)


class ReportError(Exception):
    """A run folder that cannot be reported on, with the reason and what was expected."""


@dataclass
class JobTable:
    """One row per multirun job: `job`, the swept parameters, `status`, then every metric."""

    jobs: pd.DataFrame
    params: list[str]
    metrics: list[str]


def read_yaml(path: Path) -> Any:
    """Parsed YAML file, or None when it is absent."""
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """Final metrics of a run from `metrics.json`, or None when missing or unreadable."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return metrics if isinstance(metrics, dict) else None


def is_run(path: Path) -> bool:
    """Whether a folder looks like one run: a Hydra config, a CSV log or final metrics."""
    return (
        (path / ".hydra").is_dir()
        or (path / "metrics.json").is_file()
        or (find_metrics_csv(path) is not None)
    )


def job_dirs(run_dir: Path) -> list[Path]:
    """Numbered job folders of a multirun, in job order."""
    jobs = [p for p in run_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(jobs, key=lambda p: int(p.name))


def detect_layout(run_dir: Path) -> str:
    """Return "single" or "multirun" for a run folder; raise ReportError for anything else."""
    if not run_dir.is_dir():
        raise ReportError(
            f"{run_dir} does not exist or is not a folder; expected {EXPECTED_LAYOUTS}"
        )
    if (run_dir / "multirun.yaml").is_file() or any(is_run(job) for job in job_dirs(run_dir)):
        return "multirun"
    if is_run(run_dir):
        return "single"
    raise ReportError(f"{run_dir} has neither layout; expected {EXPECTED_LAYOUTS}")


def configured_metric(config_paths: Iterable[Path]) -> str | None:
    """The first `optimized_metric` set in the given config files."""
    for path in config_paths:
        config = read_yaml(path)
        if isinstance(config, dict) and config.get("optimized_metric"):
            return str(config["optimized_metric"])
    return None


def find_metrics_csv(run_dir: Path) -> Path | None:
    """The run's CSVLogger file: `csv/metrics.csv`, else the newest `csv/**/metrics.csv`."""
    direct = run_dir / "csv" / "metrics.csv"
    if direct.is_file():
        return direct
    versions = list(run_dir.glob("csv/**/metrics.csv"))
    return max(versions, key=lambda p: p.stat().st_mtime) if versions else None


def load_curves(csv_path: Path) -> pd.DataFrame:
    """Per-epoch series from a CSVLogger file: index epoch (or step), one column per metric.

    The logger's sparse rows (train and val of one epoch on different rows) are merged by
    averaging each metric over the rows of its epoch; all-empty columns are dropped.
    """
    raw = pd.read_csv(csv_path)
    x = "epoch" if "epoch" in raw.columns else "step"
    if x not in raw.columns:
        raise ReportError(f"{csv_path} has neither an 'epoch' nor a 'step' column")
    metrics = [c for c in raw.columns if c not in ("epoch", "step")]
    curves = raw.dropna(subset=[x]).groupby(x)[metrics].mean().dropna(axis=1, how="all")
    curves.index = curves.index.astype(int)
    return curves


def parse_value(text: str) -> int | float | str:
    """An override's value as int or float when numeric (finite), else as an unquoted string."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    for cast in (int, float):
        try:
            value = cast(text)
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return text


def parse_overrides(overrides: Iterable[str]) -> dict[str, int | float | str]:
    """`key=value` overrides as a dict; `+`/`++` prefixes dropped, deletions (`~key`) skipped."""
    params: dict[str, int | float | str] = {}
    for override in overrides:
        key, sep, value = str(override).partition("=")
        if sep and not key.startswith("~"):
            params[key.lstrip("+")] = parse_value(value)
    return params


def collect_jobs(run_dir: Path) -> JobTable:
    """Read every job of a multirun into a JobTable; jobs without metrics.json are `failed`."""
    rows, params, metrics = [], {}, {}
    for job in job_dirs(run_dir):
        overrides = parse_overrides(read_yaml(job / ".hydra" / "overrides.yaml") or [])
        results = read_metrics(job)
        params.update(dict.fromkeys(overrides))
        metrics.update(dict.fromkeys(results or {}))
        status = "ok" if results is not None else "failed"
        rows.append({"job": int(job.name), **overrides, "status": status, **(results or {})})
    if not rows:
        raise ReportError(f"{run_dir} has multirun.yaml but no numbered job folders (0/, 1/, ...)")
    columns = ["job", *params, "status", *metrics]
    return JobTable(pd.DataFrame(rows, columns=columns), list(params), list(metrics))


SEED_PARAM = "seed"


def summarize_seeds(table: JobTable, metric: str | None) -> pd.DataFrame | None:
    """Mean/std/min/max/n over seeds per setting of the other parameters, or None.

    None unless ``seed`` takes more than one value among the finished jobs. Columns are the
    other varying parameters, then ``<metric>/mean``, ``<metric>/std`` (sample std, NaN for one
    seed), ``/min``, ``/max``, ``/n`` for ``metric`` and every ``test/`` metric.
    """
    finished = table.jobs[table.jobs["status"] == "ok"]
    if SEED_PARAM not in table.params or finished[SEED_PARAM].nunique() < 2:
        return None
    keys = [p for p in table.params if p != SEED_PARAM and finished[p].nunique() > 1]
    wanted = [metric] if metric else []
    wanted += [m for m in table.metrics if m.startswith("test/") and m not in wanted]
    wanted = [m for m in wanted if pd.api.types.is_numeric_dtype(finished[m])]
    if not wanted:
        return None
    groups = finished.groupby(keys, sort=True) if keys else [((), finished)]
    rows = []
    for key, data in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key, strict=True))
        for name in wanted:
            values = data[name].dropna()
            row.update(
                {
                    f"{name}/mean": values.mean(),
                    f"{name}/std": values.std(ddof=1) if len(values) > 1 else math.nan,
                    f"{name}/min": values.min(),
                    f"{name}/max": values.max(),
                    f"{name}/n": len(values),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def folder_config(run_dir: Path) -> dict[str, Any]:
    """The config a run or multirun folder was started with (its first job's for a multirun
    without ``multirun.yaml``); empty when none is readable."""
    candidates = [run_dir / "multirun.yaml", run_dir / ".hydra" / "config.yaml"]
    candidates += [job / ".hydra" / "config.yaml" for job in job_dirs(run_dir)]
    for path in candidates:
        config = read_yaml(path)
        if isinstance(config, dict):
            return config
    return {}
