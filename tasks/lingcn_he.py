"""LinGCN's last stage: CKKS-encrypted inference of the trained networks (he/).

Encrypts ``num_samples`` test clips (``baseline_samples`` of them for the slower baseline
circuit), runs the poly stage's linearized ST-GCN under CKKS and
compares it with plaintext inference; runs the CryptoGCN-style baseline circuit (x² at every
site) the same way — on the ``cryptogcn`` stage's network when that stage ran (matched
training), else on the poly network's weights (its latency and depth only). Writes the gate
map and the accuracy–latency points as PNG into the run folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import DictConfig

from effml.checks import check_int
from effml.errors import ConfigError
from he import HeStgcnInference, SiteSpec, StgcnCircuit, baseline_spec
from lightning_modules.checkpoints import load_weights
from lightning_modules.lingcn.module import LinGCNModule, site_coefficients

if TYPE_CHECKING:
    from tasks.pipeline import StageContext

log = logging.getLogger(__name__)
# the sizes of one CKKS prime SEAL can generate (its 60-bit limit; 2^20 > 2N for every N used)
MIN_PRIME_BITS, MAX_PRIME_BITS = 20, 60
# the LinGCN stages whose every site is a polynomial (``site_coefficients``)
ENCRYPTABLE_STAGES = ("poly", "cryptogcn")


def load_stage_model(ctx: StageContext, name: str) -> LinGCNModule:
    """Training stage ``name``'s network as that stage built it, with its best weights."""
    return load_weights(ctx.build_model(name), ctx.done[name]["best_ckpt"])


def activation_spec(model: LinGCNModule) -> list[tuple[SiteSpec, SiteSpec]]:
    """The trained network's per-node activations as an HE activation spec."""
    nodes = model.hparams.num_nodes
    spec = []
    for block in model.net.blocks:
        pair = [site_coefficients(site, nodes) for site in (block.act1, block.act2)]
        spec.append(tuple(SiteSpec(c.numpy(), k.numpy()) for c, k in pair))
    return spec


def test_clips(datamodule: pl.LightningDataModule, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` test clips evenly spaced over the test split (so every class can appear)."""
    batches = list(datamodule.test_dataloader())
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    index = torch.linspace(0, len(x) - 1, min(count, len(x))).round().long()
    return x[index], y[index]


def encrypt_and_compare(
    model: LinGCNModule,
    spec: list,
    x: torch.Tensor,
    y: torch.Tensor,
    scale_bits: int,
    edge_bits: int,
    prefix: str,
) -> tuple[dict[str, float], dict]:
    """Encrypted vs plaintext inference of ``model.net`` with ``spec``: metrics and report."""
    circuit = StgcnCircuit.from_module(model.net, spec)
    he = HeStgcnInference(circuit, scale_bits=scale_bits, edge_bits=edge_bits)
    log.info("%s: depth %d levels, encrypting %d clips", prefix, he.depth.total, len(x))
    logits, report = he.run(x)
    with torch.no_grad():
        plain = model.net(x).double().numpy()
    metrics = {
        f"{prefix}/acc": float((logits.argmax(1) == y.numpy()).mean()),
        f"{prefix}/plain_acc": float((plain.argmax(1) == y.numpy()).mean()),
        f"{prefix}/agreement": float((logits.argmax(1) == plain.argmax(1)).mean()),
        f"{prefix}/max_abs_logit_err": float(np.abs(logits - plain).max()),
        f"{prefix}/latency_s_per_sample": report["latency_s_per_sample"],
        f"{prefix}/cpu_s_per_sample": report["cpu_s_per_sample"],
        f"{prefix}/levels": float(report["levels"]),
        f"{prefix}/poly_modulus_n": float(report["n"]),
        f"{prefix}/setup_s": report["setup_s"],
    }
    metrics.update({f"{prefix}/ops/{k}": float(v) for k, v in report["ops"].items()})
    return metrics, report


def encrypted_inference_stage(ctx: StageContext) -> dict[str, float]:
    """The ``he`` stage of ``experiment=lingcn_ntu``: LinGCN and baseline circuits under CKKS."""
    spec, done = ctx.spec, ctx.done
    ctx.datamodule.setup("test")
    x, y = test_clips(ctx.datamodule, int(spec.num_samples))
    poly_stage = spec.inputs.poly_ckpt
    poly = load_stage_model(ctx, poly_stage)
    bits = (int(spec.scale_bits), int(spec.edge_bits))
    metrics, report = encrypt_and_compare(poly, activation_spec(poly), x, y, *bits, "he")
    base_report = None
    if spec.get("baseline", True):
        count = int(spec.get("baseline_samples") or len(x))
        x, y = x[:count], y[:count]
        if "cryptogcn" in done:
            base = load_stage_model(ctx, "cryptogcn")
            base_spec = activation_spec(base)
        else:
            log.info(
                "No cryptogcn stage: the baseline circuit runs on the poly network's weights "
                "(its latency and depth are comparable, its accuracy is not)"
            )
            base, base_spec = poly, baseline_spec(len(poly.net.blocks), poly.hparams.num_nodes)
        base_metrics, base_report = encrypt_and_compare(base, base_spec, x, y, *bits, "he_baseline")
        metrics.update(base_metrics)
        metrics["he/speedup_vs_baseline"] = (
            base_report["latency_s_per_sample"] / report["latency_s_per_sample"]
        )
    (ctx.stage_dir / "he_report.json").write_text(
        json.dumps({"lingcn": report, "baseline": base_report}, indent=2, default=float) + "\n"
    )
    plot_gate_map(poly.gates().detach().cpu().numpy(), ctx.stage_dir / "gate_map.png")
    points = {
        "LinGCN": (
            metrics["he/latency_s_per_sample"],
            done[poly_stage]["metrics"].get(f"{poly_stage}/test_acc", metrics["he/plain_acc"]),
        )
    }
    if base_report is not None and "cryptogcn" in done:
        points["CryptoGCN-style (x²)"] = (
            metrics["he_baseline/latency_s_per_sample"],
            done["cryptogcn"]["metrics"]["cryptogcn/test_acc"],
        )
    plot_frontier(points, ctx.stage_dir / "accuracy_latency.png")
    return metrics


def check_encrypted_inference_stage(cfg: DictConfig, spec: DictConfig | None) -> None:
    """The ``he`` stage's settings (:func:`check_he_settings`), keys under its name."""
    name = next(n for n in cfg.pipeline if cfg.pipeline[n] is spec)
    try:
        check_he_settings(spec)
    except ConfigError as err:
        raise err.with_prefix(f"pipeline.{name}.") from None
    source = spec.inputs.poly_ckpt
    patch = (cfg.pipeline.get(source) or {}).get("model") or {}
    stage = patch.get("stage", (cfg.get("model") or {}).get("stage"))
    if stage is not None and stage not in ENCRYPTABLE_STAGES:
        raise ConfigError(
            f"pipeline.{name}.inputs.poly_ckpt",
            source,
            f"trains model.stage={stage}, which has no polynomial form; only "
            f"{list(ENCRYPTABLE_STAGES)} stages can be encrypted",
            example="poly",
        )


def check_he_settings(spec: Mapping[str, Any]) -> None:
    """A poly stage to encrypt (``inputs.poly_ckpt``), clip counts >= 1, ``baseline`` true or
    false, and CKKS prime sizes SEAL can make: 20 to 60 bits, the first and special primes
    (``edge_bits``) above the scale (``scale_bits``), so that a decrypted value keeps its
    integer part."""
    if not (spec.get("inputs") or {}).get("poly_ckpt"):
        problem = "names no training stage whose network is encrypted"
        raise ConfigError("inputs.poly_ckpt", None, problem, example="poly")
    for key, example in (("num_samples", 20), ("scale_bits", 40), ("edge_bits", 59)):
        if spec.get(key) is None:
            raise ConfigError(key, None, "must be set", example=example)
    check_int(spec, "num_samples", minimum=1, example=20)
    check_int(spec, "baseline_samples", minimum=1, example=8)
    if not isinstance(spec.get("baseline", True), bool):
        raise ConfigError("baseline", spec.get("baseline"), "must be true or false", True)
    for bits, example in (("scale_bits", 40), ("edge_bits", 59)):
        check_int(spec, bits, minimum=MIN_PRIME_BITS, maximum=MAX_PRIME_BITS, example=example)
    scale_bits, edge_bits = spec["scale_bits"], spec["edge_bits"]
    if edge_bits <= scale_bits:
        raise ConfigError(
            "edge_bits",
            edge_bits,
            f"must exceed scale_bits={scale_bits}: the first prime holds the decrypted value "
            "times the scale",
            example=min(scale_bits + 19, MAX_PRIME_BITS),
        )


encrypted_inference_stage.check_config = check_encrypted_inference_stage


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure drawn off-screen (Agg) and its one axes."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def plot_gate_map(gates: np.ndarray, path: Path) -> None:
    """Which node keeps which nonlinearity: rows (block, site), columns the 25 joints."""
    blocks, sites, nodes = gates.shape
    fig, ax = _figure(8, 0.5 * blocks * sites + 1.2)
    ax.imshow(gates.reshape(blocks * sites, nodes), cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(
        range(blocks * sites),
        [f"block {b + 1} act{s + 1}" for b in range(blocks) for s in range(sites)],
    )
    ax.set_xticks(range(nodes), [str(v + 1) for v in range(nodes)], fontsize=7)
    ax.set_xlabel("joint (NTU numbering)")
    kept = gates.reshape(blocks, -1).sum(axis=1).astype(int).tolist()
    ax.set_title(f"kept nonlinearities (black) per block: {kept} of {sites * nodes}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_frontier(points: dict[str, tuple[float, float]], path: Path) -> None:
    """Test accuracy against encrypted latency per sample, one point per circuit."""
    fig, ax = _figure(6, 4)
    for name, (latency, acc) in points.items():
        ax.scatter(latency, acc, s=60, label=name)
        ax.annotate(
            f"{acc:.3f} @ {latency:.2f} s",
            (latency, acc),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("encrypted latency per sample (s, log)")
    ax.set_ylabel("test accuracy (plaintext)")
    ax.set_title("accuracy vs CKKS latency")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
