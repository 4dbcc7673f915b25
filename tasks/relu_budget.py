"""The ``pi`` stage of the ReLU-budget pipelines: the exact ReLU count of the final network,
its exported mask, and the estimated private-inference cost (``tasks.pi_cost``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import DictConfig

from effml.errors import ConfigError
from lightning_modules.checkpoints import load_module
from lightning_modules.relu_budget.module import ReluBudgetModule
from lightning_modules.relu_budget.sites import AutoRepSite, export_mask, relu_count, sites
from tasks.pi_cost import GcCostModel

if TYPE_CHECKING:
    from tasks.pipeline import StageContext

log = logging.getLogger(__name__)


def site_table(model: ReluBudgetModule) -> list[dict]:
    """Per site: name, shape, kept ReLUs, total elements."""
    rows = []
    for name, mask in export_mask(model.net).items():
        rows.append(
            {
                "site": name,
                "shape": list(mask.shape),
                "kept": int(mask.sum()),
                "total": mask.numel(),
            }
        )
    return rows


def plot_sites(rows: list[dict], path: Path, title: str) -> Path:
    """Kept vs total ReLUs per site (log scale): where the budget went."""
    fig = Figure(figsize=(max(6.0, 0.35 * len(rows)), 3.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = range(len(rows))
    ax.bar(xs, [r["total"] for r in rows], color="0.85", label="sites (ReLUs in the original net)")
    ax.bar(xs, [r["kept"] for r in rows], color="C3", label="ReLUs kept (none: no bar)")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)
    ax.set_xticks(
        list(xs),
        [r["site"].removeprefix("layers.").removeprefix("blocks.") for r in rows],
        rotation=90,
        fontsize=6,
    )
    ax.set_ylabel("per image")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=150)
    return path


def private_inference_stage(ctx: StageContext) -> dict[str, float]:
    """Count, export and cost the network of stage ``spec.inputs.model``."""
    spec, done = ctx.spec, ctx.done
    source = spec.inputs.model
    if source not in done or "best_ckpt" not in done[source]:
        raise ValueError(f"the pi stage needs the finished training stage {source!r}")
    # on the CPU, without its teacher: the network alone is counted and exported
    model = load_module(
        ReluBudgetModule, done[source]["best_ckpt"], teacher_ckpt=None, init_ckpt=None
    )
    kept, total = relu_count(model.net)
    polys = sum(int((s.mask == 0).sum()) for s in sites(model.net) if isinstance(s, AutoRepSite))
    layers = sum(1 for _ in sites(model.net))
    cost_model = GcCostModel(**dict(spec.get("cost", {}) or {}))
    cost = cost_model.estimate(kept, polys, layers)
    full = cost_model.estimate(total, 0, layers)
    out = ctx.stage_dir
    out.mkdir(parents=True, exist_ok=True)
    torch.save(export_mask(model.net), out / "relu_mask.pt")
    rows = site_table(model)
    (out / "relu_sites.json").write_text(json.dumps(rows, indent=1) + "\n")
    budget = model.hparams.budget if model.method != "relu" else total
    plot_sites(
        rows,
        out / "relu_sites.png",
        f"{model.hparams.arch} {model.method}: {kept:,} of {total:,} ReLUs",
    )
    stage_metrics = done[source]["metrics"]
    metrics = {
        "pi/test_acc": float(stage_metrics.get(f"{source}/test_acc", float("nan"))),
        "pi/relu_count": float(kept),
        "pi/relu_total": float(total),
        "pi/relu_budget": float(budget),
        "pi/within_budget": float(kept <= budget * (1 + model.hparams.budget_tolerance)),
        "pi/poly_count": float(polys),
        "pi/latency_reduction": full["online_latency_s"] / cost["online_latency_s"],
    }
    metrics.update({f"pi/{k}": v for k, v in cost.items()})
    metrics["pi/all_relu_online_latency_s"] = full["online_latency_s"]
    log.info(
        "%s: %d of %d ReLUs kept (budget %d), %d polynomials; estimated online %.3f s, %.1f MB",
        source,
        kept,
        total,
        budget,
        polys,
        cost["online_latency_s"],
        cost["online_comm_mb"],
    )
    return metrics


def check_private_inference_stage(cfg: DictConfig, spec: DictConfig | None) -> None:
    """The ``pi`` stage reads a training stage (``inputs.model``) and a cost model whose
    fields are :class:`GcCostModel`'s, each > 0."""
    name = next(n for n in cfg.pipeline if cfg.pipeline[n] is spec)
    source = (spec.get("inputs") or {}).get("model")
    if not source:
        raise ConfigError(
            f"pipeline.{name}.inputs.model",
            source,
            "names no training stage to count",
            example="autorep",
        )
    cost = spec.get("cost") or {}
    if not isinstance(cost, Mapping):
        problem = "must be a mapping of cost-model fields"
        raise ConfigError(f"pipeline.{name}.cost", cost, problem, example="{rtt_ms: 20}")
    try:
        GcCostModel.check_config(dict(cost))
    except ConfigError as err:
        raise err.with_prefix(f"pipeline.{name}.cost.") from None


private_inference_stage.check_config = check_private_inference_stage
