"""Tests for the synthetic skeleton actions (motion generator) and their datamodule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.skeleton_motion import (
    PARENTS,
    REST_OFFSETS,
    class_motions,
    rotate_clips,
    synthesize_skeleton_actions,
)
from datamodules.skeleton_synthetic import SyntheticSkeletonDataModule


def small(seed: int = 0, noise_std: float = 0.02):
    return synthesize_skeleton_actions(6, 4, 24, seed=seed, noise_std=noise_std)


def test_synthetic_is_deterministic_by_seed() -> None:
    first, again, other = small(0), small(0), small(1)
    assert first.clips.shape == (3, 24, 3, 24, 25, 2) and first.clips.dtype == np.float32
    np.testing.assert_array_equal(first.clips, again.clips)
    assert not np.allclose(first.clips, other.clips)
    assert first.labels.tolist() == np.repeat(np.arange(6), 4).tolist()


def test_synthetic_views_are_rotations_about_the_vertical() -> None:
    clean = small(noise_std=0.0)
    assert clean.azimuths_deg == (-45.0, 0.0, 45.0)
    front = clean.clips[1]
    np.testing.assert_allclose(rotate_clips(front, -45.0), clean.clips[0], atol=1e-5)
    np.testing.assert_allclose(rotate_clips(front, 45.0), clean.clips[2], atol=1e-5)
    assert np.abs(clean.clips[2] - front).max() > 0.1
    noisy = small(noise_std=0.02)
    residual = noisy.clips[2] - rotate_clips(noisy.clips[1], 45.0)
    present = np.abs(clean.clips[1]).sum(axis=(0, 1, 2, 3)) > 0  # (M,) any body anywhere
    assert 0.02 < residual[..., present].std() < 0.04  # two independent N(0, 0.02²) draws


def test_synthetic_bodies_are_rigid_and_second_body_per_class() -> None:
    clean = small(noise_std=0.0)
    clips = clean.clips[1]  # (N, 3, T, 25, 2)
    bones = [j for j, p in enumerate(PARENTS) if p >= 0]
    lengths = np.linalg.norm(
        clips[:, :, :, bones, 0] - clips[:, :, :, [PARENTS[j] for j in bones], 0], axis=1
    )
    assert lengths.std(axis=1).max() < 1e-5  # (N, bones): constant over time
    ratio = lengths[:, 0] / np.linalg.norm(REST_OFFSETS[bones], axis=1)
    assert np.allclose(ratio, ratio[:, :1], atol=1e-4) and ratio.min() > 0.85
    motions = class_motions(6, np.random.default_rng(0))
    has_second = np.abs(clips[..., 1]).sum(axis=(1, 2, 3)) > 0
    assert has_second.tolist() == motions.two_bodies[clean.labels].tolist()
    assert motions.two_bodies.any() and not motions.two_bodies.all()


def test_synthetic_datamodule_splits_and_batches() -> None:
    dm = SyntheticSkeletonDataModule(
        num_classes=4, samples_per_class_per_view=5, num_frames=16, batch_size=8, val_fraction=0.2
    )
    assert dm.model_kwargs() == {
        "in_channels": 3,
        "num_classes": 4,
        "num_nodes": 25,
        "num_frames": 16,
    }
    dm.setup()
    sizes = {s: len(dm.splits[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 2 * 4 * 4, "val": 2 * 4 * 1, "test": 4 * 5}
    for split in ("train", "val", "test"):
        counts = torch.bincount(dm.splits[split].tensors[1], minlength=4)
        assert (counts == counts[0]).all()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 16, 25, 2) and x.dtype == torch.float32 and y.dtype == torch.long
    data = synthesize_skeleton_actions(4, 5, 16, seed=0)
    val_x = dm.splits["val"].tensors[0].numpy()
    np.testing.assert_array_equal(val_x[:4], data.clips[0][::5])  # performance 0 of each class
    np.testing.assert_array_equal(dm.splits["test"].tensors[0].numpy(), data.clips[1])
    with pytest.raises(ValueError, match="val_fraction"):
        SyntheticSkeletonDataModule(samples_per_class_per_view=1)


def invariant_features(x: np.ndarray) -> np.ndarray:
    """Per joint and body: mean/std of height and horizontal distance to the spine base, speed.

    Shapes: x (N, 3, T, 25, 2) → (N, 250)
    """
    rel = x - x[:, :, :, :1]
    height, spread = rel[:, 1], np.sqrt(rel[:, 0] ** 2 + rel[:, 2] ** 2)
    speed = np.linalg.norm(np.diff(x, axis=2), axis=1)
    stats = [height.mean(1), height.std(1), spread.mean(1), spread.std(1), speed.mean(1)]
    return np.concatenate(stats, axis=-1).reshape(len(x), -1)


def test_synthetic_is_learnable_on_the_unseen_view() -> None:
    dm = SyntheticSkeletonDataModule(samples_per_class_per_view=30)
    dm.setup()
    (x_train, y_train), (x_test, y_test) = (
        (t.numpy() for t in dm.splits[s].tensors) for s in ("train", "test")
    )
    f_train, f_test = invariant_features(x_train), invariant_features(x_test)
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    centroids = np.stack([f_train[y_train == k].mean(0) for k in range(dm.num_classes)])
    predicted = ((f_test[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    accuracy = (predicted == y_test).mean()
    assert accuracy > 0.6, accuracy  # chance is 0.1
