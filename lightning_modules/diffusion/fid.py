"""Fréchet distance between feature statistics (arXiv:1706.08500 eq. 6), in the feature space
of effml's own classifier (``fid/classifier``) or of Inception-v3 when the user gives its
weights file (``fid/inception``); reference statistics cached once per dataset and extractor.
Beside it, two cheap analogues in the same classifier's space: the Inception Score computed
from the classifier's class probabilities, and k-NN precision and recall of the features.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from effml.errors import ConfigError, MissingToolError

log = logging.getLogger(__name__)
Extractor = Callable[[torch.Tensor], torch.Tensor]


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and covariance ``(F, F)`` (float64) of features ``(N, F)``."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """``‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)``, with pytorch-fid's jitter on a singular
    product."""
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def inception_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """``exp(E_x KL(p(y|x) ‖ p(y)))`` (arXiv:1606.03498 §4) of class probabilities ``(N, K)``:
    1 when every sample gets the same class distribution, K when each is sure of one class and
    the classes are used evenly."""
    p = np.asarray(probs, dtype=np.float64)
    marginal = p.mean(0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(marginal + eps))).sum(1)
    return float(np.exp(kl.mean()))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (arXiv:1904.06991 eqs. 1-2): the fraction of generated
    features inside some real feature's k-NN ball, and of real features inside some generated
    one's; features ``(N, F)`` and ``(M, F)``, k < min(N, M)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if not 0 < k < min(len(real), len(fake)):
        raise ValueError(f"k={k} needs 0 < k < the smaller feature set ({len(real)}, {len(fake)})")

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
        return np.sqrt(np.maximum(sq, 0))

    def radii(x: np.ndarray) -> np.ndarray:
        return np.sort(dist(x, x), axis=1)[:, k]  # column 0 is the point itself

    cross = dist(fake, real)  # (M, N)
    precision = (cross <= radii(real)[None]).any(1).mean()
    recall = (radii(fake)[None] >= cross.T).any(1).mean()
    return float(precision), float(recall)


@torch.no_grad()
def extract(extractor: Extractor, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Features ``(N, F)`` of images in [-1, 1] ``(N, C, H, W)``, in batches."""
    out = [
        extractor(images[i : i + batch_size]).double().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy()


def inception_extractor(weights: str, device: torch.device | str = "cpu") -> Extractor:
    """Inception-v3 pool features (2048) from the pytorch-fid / torchmetrics weights file
    ``weights``; never downloads. Gray images are repeated to three channels."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            "metric.inception_weights",
            weights,
            "no such file",
            fix="Give torch-fidelity's Inception weights (what torchmetrics loads: "
            "weights-inception-2015-12-05-6726825d.pth) or leave it null for fid/classifier",
        )
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(path),
        )
    except ModuleNotFoundError as err:
        raise MissingToolError(
            f"Inception FID needs torch-fidelity ({err}): pip install torch-fidelity"
        ) from None
    net = net.to(device).eval()

    def features(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return net(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)).reshape(len(x), -1)

    return features


def file_key(path: str | Path) -> str:
    """A short key of a file's path, size and modification time (a changed file re-keys)."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]


def reference_stats(
    cache_dir: str | Path,
    name: str,
    extractor: Extractor,
    images: Callable[[], torch.Tensor],
) -> tuple[np.ndarray, np.ndarray]:
    """The real images' statistics, computed once and read from ``cache_dir/fid_ref/name.npz``
    afterwards (``name`` carries the dataset, the extractor's key and the image count)."""
    path = Path(cache_dir) / "fid_ref" / f"{name}.npz"
    if path.is_file():
        with np.load(path) as cached:
            log.info("FID reference statistics read from %s", path)
            return cached["mu"], cached["sigma"]
    mu, sigma = feature_stats(extract(extractor, images()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, mu=mu, sigma=sigma)
    tmp.replace(path)
    log.info("FID reference statistics written to %s", path)
    return mu, sigma
