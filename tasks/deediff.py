"""DeeDiff's evaluation stage: sample from the fine-tuned model in full, with early exit at
each threshold of a sweep, and with the static-exit baseline at the same cost; FID in the
classifier's feature space (``fid/classifier``) and, given the weights, Inception's
(``fid/inception``); in the classifier's space also an Inception-Score analogue from its class
probabilities (``is/classifier``) and k-NN precision/recall (``precision/classifier``,
``recall/classifier``, k = 3); Spearman of the estimated uncertainty against the true
per-layer error; grids and plots in the stage folder, every row in ``sweep.json``.

A pipeline stage (``kind: evaluate``) after ``classifier`` and ``deediff``; a sweep reuses the
trained stages (``reuse_from=<run> reuse_stages=[classifier,backbone,deediff]``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from effml.checks import check_choice, check_int, check_range
from effml.errors import ConfigError
from lightning_modules.checkpoints import load_module
from lightning_modules.diffusion.classifier import FeatureClassifier
from lightning_modules.diffusion.deediff import (
    EXIT_RULES,
    DeeDiffModule,
    StaticExitDenoiser,
    static_plan,
)
from lightning_modules.diffusion.fid import (
    extract,
    feature_stats,
    file_key,
    frechet_distance,
    inception_extractor,
    inception_score,
    precision_recall,
    reference_stats,
)
from lightning_modules.diffusion.samplers import SampleResult, sample
from tasks.deediff_plots import plot_exit_layers, plot_sweep, save_grid

log = logging.getLogger(__name__)


def check_evaluate(cfg: DictConfig, spec: DictConfig | None) -> None:
    """The sweep's thresholds in [0, 1], the exit rules, sample counts; before any work."""
    if spec is None:
        return
    thresholds = list(spec.get("thresholds") or [])
    if not thresholds:
        raise ConfigError("thresholds", thresholds, "lists no threshold", example=[0.05, 0.1])
    for thr in thresholds:
        check_range({"thresholds": thr}, "thresholds", 0.0, 1.0, example=0.1)
    for rule in spec.get("rules") or ["sample"]:
        check_choice({"rules": rule}, "rules", EXIT_RULES)
    check_int(spec, "num_samples", minimum=2, example=1000)
    check_int(spec, "batch_size", minimum=1, example=250)
    check_int(spec, "static_depth", minimum=1, example=3)
    check_int(spec, "spearman_samples", minimum=3, example=512)
    check_int(spec, "timing_rounds", minimum=0, example=5)


def _images(test_set: Any, count: int) -> torch.Tensor:
    """The first ``count`` test images in [-1, 1] ``(N, C, H, W)``."""
    return test_set.images[:count].float() / 127.5 - 1


def sample_many(module: DeeDiffModule, denoiser: Any, spec: DictConfig, desc: str) -> SampleResult:
    """``spec.num_samples`` samples in batches (batch k seeded ``seed + k``)."""
    hp, parts = module.hparams, []
    for k, start in enumerate(
        tqdm(range(0, spec.num_samples, spec.batch_size), desc=desc, leave=False)
    ):
        n = min(spec.batch_size, spec.num_samples - start)
        parts.append(
            sample(
                denoiser,
                module.schedule,
                (n, hp.in_channels, hp.image_size, hp.image_size),
                steps=spec.get("steps") or hp.sample_steps,
                method=spec.get("sampler") or hp.sampler,
                seed=spec.seed + k,
                device=module.device,
            )
        )
    return SampleResult(
        torch.cat([p.images for p in parts]).cpu(),
        parts[0].timesteps,
        torch.cat([p.exit_layers for p in parts], dim=1),
        sum(p.wall_s for p in parts),
    )


@torch.no_grad()
def uncertainty_spearman(module: DeeDiffModule, images: torch.Tensor, seed: int) -> list[float]:
    """Per block: Spearman's ρ between u_i and the true error ``mean(g_i(h_i) − ε)²`` of the
    held-out ``images`` noised at uniform random timesteps."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.randint(0, module.schedule.num_steps, (len(images),), generator=gen)
    noise = torch.randn(images.shape, generator=gen)
    x0, t, noise = images.to(module.device), t.to(module.device), noise.to(module.device)
    xt = module.schedule.add_noise(x0, noise, t)
    preds, u = module.layer_outputs(module.ema, module.ema_heads, xt, t)
    err = (torch.stack(preds[:-1]) - noise).pow(2).flatten(2).mean(-1)  # (depth-1, B)
    return [
        float(spearmanr(u[i].cpu().numpy(), err[i].cpu().numpy()).statistic) for i in range(len(u))
    ]


def evaluate_stage(ctx: Any) -> dict[str, float]:
    """The full model, the early-exit sweep and the static baseline; see the module doc."""
    spec, out = ctx.spec, ctx.stage_dir
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module = load_module(DeeDiffModule, ctx.done["deediff"]["best_ckpt"], backbone_ckpt=None)
    module = module.to(device)
    depth = module.ema.depth
    classifier_ckpt = ctx.done["classifier"]["best_ckpt"]
    classifier = load_module(FeatureClassifier, classifier_ckpt).to(device)
    dm = ctx.datamodule
    dm.setup("test")
    name = dm.hparams.name
    real = _images(dm.test_set, spec.num_samples)
    cache = ctx.cfg.paths.cache_dir
    extractors = {"classifier": classifier.features}
    refs = {
        "classifier": reference_stats(
            cache,
            f"{name}_classifier_{file_key(classifier_ckpt)}_{len(real)}",
            classifier.features,
            lambda: real.to(device),
        )
    }
    real_features = extract(classifier.features, real.to(device))
    weights = (ctx.cfg.get("metric") or {}).get("inception_weights")
    if weights:
        extractors["inception"] = inception_extractor(weights, device)
        refs["inception"] = reference_stats(
            cache,
            f"{name}_inception_{file_key(weights)}_{len(real)}",
            extractors["inception"],
            lambda: real.to(device),
        )

    def score(result: SampleResult, kind: str, **extra: Any) -> dict:
        row = {
            "kind": kind,
            **extra,
            "layer_fraction": float(result.exit_layers.float().mean()) / depth,
            "wall_s": result.wall_s,
        }
        for key, extractor in extractors.items():
            features = extract(extractor, result.images.to(device))
            row[f"fid_{key}"] = frechet_distance(*feature_stats(features), *refs[key])
            if key == "classifier":
                row |= classifier_metrics(classifier, features, real_features)
        log.info("%s", row)
        return row

    full = sample_many(module, module.full_denoiser(), spec, "full model")
    rows = [score(full, "full")]
    save_grid(full.images, out / "samples_full.png")
    steps = len(full.timesteps)
    for rule in spec.get("rules") or ["sample"]:
        for thr in spec.thresholds:
            denoiser = module.early_exit_denoiser(thr, rule, spec.get("patience"))
            result = sample_many(module, denoiser, spec, f"early exit {rule} {thr:g}")
            row = score(result, "early_exit", threshold=float(thr), rule=rule)
            rows.append(row)
            tag = f"{rule}_{thr:g}"
            save_grid(result.images, out / f"samples_exit_{tag}.png")
            plot_exit_layers(
                result.exit_layers,
                result.timesteps,
                depth,
                out / f"exit_layer_vs_step_{tag}.png",
                f"DeeDiff exit layer, rule={rule}, threshold={thr:g}",
            )
            torch.save(result.exit_layers, out / f"exit_layers_{tag}.pt")
            if row["layer_fraction"] < 1:
                shallow, k = static_plan(
                    row["layer_fraction"], depth, steps, spec.get("static_depth") or depth // 3
                )
                t_split = int(full.timesteps[k - 1]) if k else module.schedule.num_steps
                static = sample_many(
                    module, StaticExitDenoiser(module.ema, shallow, t_split), spec, "static"
                )
                rows.append(
                    score(
                        static,
                        "static",
                        threshold=float(thr),
                        rule=rule,
                        shallow_depth=shallow,
                        shallow_steps=k,
                    )
                )
                save_grid(static.images, out / f"samples_static_{tag}.png")
    rows.append(real_row(classifier, _images(dm.train_set, spec.num_samples), real_features,
                         refs["classifier"], device))  # fmt: skip
    held_out = _images(dm.test_set, spec.spearman_samples)
    rho = uncertainty_spearman(module, held_out, spec.seed)
    # the headline threshold: the run's pipeline.deediff.model.threshold (a sweep over a
    # finished run may set it), else the one the checkpoint was trained with
    headline = float(
        OmegaConf.select(
            ctx.cfg, "pipeline.deediff.model.threshold", default=module.hparams.threshold
        )
    )
    timing = interleaved_timing(module, rows, headline, full.timesteps, spec)
    (out / "sweep.json").write_text(
        json.dumps(
            {"depth": depth, "steps": steps, "rows": rows, "spearman": rho, "timing": timing},
            indent=2,
        )
    )
    plot_sweep(rows, out / "sweep.png")
    metrics = summary(rows, rho, headline, list(extractors))
    for kind, seconds in (timing or {}).get("median_s", {}).items():
        metrics[f"eval/timed_{kind}_s"] = seconds
    return metrics


def interleaved_timing(module: DeeDiffModule, rows: list[dict], threshold: float,
                       timesteps: torch.Tensor, spec: DictConfig) -> dict | None:  # fmt: skip
    """Side-by-side wall time of one ``batch_size`` batch: the full model, early exit at
    ``threshold`` (the first rule) and its static twin, interleaved for
    ``spec.timing_rounds`` rounds (the sweep's single timings share the machine with whatever
    else runs); medians in seconds. None when ``timing_rounds`` is 0 or the threshold was not
    swept."""
    rounds = int(spec.get("timing_rounds") or 0)
    rule = (spec.get("rules") or ["sample"])[0]
    static = [r for r in rows if r["kind"] == "static" and r["rule"] == rule
              and r["threshold"] == threshold]  # fmt: skip
    if not rounds or not static:
        return None
    k = static[0]["shallow_steps"]
    t_split = int(timesteps[k - 1]) if k else module.schedule.num_steps
    denoisers = {
        "full": module.full_denoiser(),
        "early_exit": module.early_exit_denoiser(threshold, rule, spec.get("patience")),
        "static": StaticExitDenoiser(module.ema, static[0]["shallow_depth"], t_split),
    }
    hp = module.hparams
    shape = (spec.batch_size, hp.in_channels, hp.image_size, hp.image_size)
    times: dict[str, list[float]] = {name: [] for name in denoisers}
    for _ in tqdm(range(rounds), desc="interleaved timing", leave=False):
        for name, denoiser in denoisers.items():
            result = sample(denoiser, module.schedule, shape,
                            steps=spec.get("steps") or hp.sample_steps,
                            method=spec.get("sampler") or hp.sampler, seed=spec.seed,
                            device=module.device)  # fmt: skip
            times[name].append(result.wall_s)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    log.info("interleaved timing (median of %d, batch %d): %s", rounds, spec.batch_size, medians)
    return {"rounds": rounds, "batch": spec.batch_size, "threshold": threshold, "rule": rule,
            "seconds": times, "median_s": medians}  # fmt: skip


@torch.no_grad()
def classifier_metrics(classifier: FeatureClassifier, features: np.ndarray,
                       real_features: np.ndarray) -> dict[str, float]:  # fmt: skip
    """The Inception-Score analogue (the classifier's class probabilities) and k-NN
    precision/recall (k = 3) of sample ``features`` against the real test features."""
    logits = classifier.fc(torch.from_numpy(features).float().to(classifier.device))
    k = min(3, len(features) - 1, len(real_features) - 1)
    precision, recall = precision_recall(real_features, features, k)
    return {"is_classifier": inception_score(logits.softmax(-1).cpu().numpy()),
            "precision_classifier": precision, "recall_classifier": recall}  # fmt: skip


def real_row(classifier: FeatureClassifier, images: torch.Tensor, real_features: np.ndarray,
             ref: tuple[np.ndarray, np.ndarray], device: str) -> dict:  # fmt: skip
    """The same metrics for real training images against the test reference: the floor of
    ``fid/classifier`` (and the top of precision/recall) at this sample count."""
    features = extract(classifier.features, images.to(device))
    row = {"kind": "real", "fid_classifier": frechet_distance(*feature_stats(features), *ref),
           **classifier_metrics(classifier, features, real_features)}  # fmt: skip
    log.info("%s", row)
    return row


def summary(rows: list[dict], rho: list[float], threshold: float, fids: list[str]) -> dict:
    """metrics.json's numbers: the full model, and early exit (the first rule's row at the
    model's threshold, else its first threshold) with its static baseline."""
    rule = next(r["rule"] for r in rows if r["kind"] == "early_exit")

    def pick(kind: str) -> dict | None:
        found = [r for r in rows if r["kind"] == kind and r["rule"] == rule]
        return ([r for r in found if r["threshold"] == threshold] or found or [None])[0]

    full, exit_row, static = rows[0], pick("early_exit"), pick("static")
    metrics = {
        "eval/layer_fraction": exit_row["layer_fraction"],
        "eval/wall_s_full": full["wall_s"],
        "eval/wall_s": exit_row["wall_s"],
        "eval/spearman_mean": float(np.nanmean(rho)),
    }
    for key in ("is_classifier", "precision_classifier", "recall_classifier"):
        if key not in full or key not in exit_row:
            continue
        name = key.removesuffix("_classifier")
        metrics[f"{name}/classifier_full"] = full[key]
        metrics[f"{name}/classifier"] = exit_row[key]
    for key in fids:
        metrics[f"fid/{key}_full"] = full[f"fid_{key}"]
        metrics[f"fid/{key}"] = exit_row[f"fid_{key}"]
        if static is not None and static["threshold"] == exit_row["threshold"]:
            metrics[f"fid/{key}_static"] = static[f"fid_{key}"]
    if static is not None and static["threshold"] == exit_row["threshold"]:
        metrics["eval/wall_s_static"] = static["wall_s"]
    for row in rows:
        if row["kind"] == "real":
            metrics["fid/classifier_real"] = row["fid_classifier"]
    return metrics


evaluate_stage.check_config = check_evaluate
