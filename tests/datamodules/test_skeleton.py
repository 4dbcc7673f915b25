"""Tests for the NTU reader, names, splits, scripts/prepare_ntu.py and the NTU datamodule."""

from __future__ import annotations

import pickle
import runpy
import shutil
import sys
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from conftest import ROOT, require_data
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException

from datamodules.ntu_raw import (
    NTU60_XSUB_TRAIN_SUBJECTS,
    NTU120_XSUB_TRAIN_SUBJECTS,
    NtuSample,
    is_training_sample,
    parse_ntu_name,
    read_ntu_skeleton,
)
from datamodules.skeleton import NTUSkeletonDataModule, random_move, random_shift
from datamodules.skeleton_synthetic import SyntheticSkeletonDataModule
from effml.errors import MissingDataError
from scripts.prepare_ntu import center_on_spine, pad_frames
from scripts.prepare_ntu import main as prepare_main

SAMPLE = "ntu60-sample/S001C001P001R001A001.skeleton"


def sample_path() -> Path:
    return require_data(SAMPLE) / SAMPLE


def write_skeleton(path: Path, frames: list[list[np.ndarray]]) -> Path:
    """A raw ``.skeleton`` file: per frame a list of (25, 3) bodies (other columns filler)."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body in bodies:
            lines += ["72057594037931101 0 1 1 1 1 0 0.02 0.05 2", "25"]
            lines += [f"{x} {y} {z} 1 2 3 4 0 0 0 0 2" for x, y, z in body]
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


# ---------------------------------------------------------------- reader, names, preprocessing


def test_reader_matches_the_sample_npy() -> None:
    path = sample_path()
    data = read_ntu_skeleton(path)
    assert data.shape == (3, 103, 25, 2) and data.dtype == np.float32
    # the .npy is NTU's own txt2npy output: {"skel_body0": (T, 25, 3) float64, ...}
    reference = np.load(f"{path}.npy", allow_pickle=True).item()
    assert reference["nbodys"] == [1] * 103
    expected = reference["skel_body0"].transpose(2, 0, 1).astype(np.float32)  # (3, T, 25)
    np.testing.assert_array_equal(data[..., 0], expected)
    assert not data[..., 1].any()
    assert read_ntu_skeleton(path, max_bodies=1).shape == (3, 103, 25, 1)


def test_reader_zero_fills_missing_bodies(tmp_path: Path) -> None:
    a, b, c = (np.full((25, 3), v) for v in (0.5, -1.25, 2.0))
    path = write_skeleton(tmp_path / "S001C001P001R001A001.skeleton", [[a, b, c], [], [b]])
    data = read_ntu_skeleton(path)
    assert data.shape == (3, 3, 25, 2)
    assert (data[:, 0, :, 0] == 0.5).all() and (data[:, 0, :, 1] == -1.25).all()  # c dropped
    assert not data[:, 1].any()
    assert (data[:, 2, :, 0] == -1.25).all() and not data[:, 2, :, 1].any()
    assert read_ntu_skeleton(write_skeleton(tmp_path / "empty.skeleton", [])).shape[1] == 0


def test_parse_ntu_name() -> None:
    sample = parse_ntu_name("/raw/S017C003P020R002A060.skeleton")
    assert sample == NtuSample(setup=17, camera=3, subject=20, replication=2, action=60)
    assert sample.label == 59
    assert parse_ntu_name("S001C001P001R001A001").label == 0
    with pytest.raises(ValueError, match="SsssCcccPpppRrrrAaaa"):
        parse_ntu_name("S01C001P001R001A001.skeleton")


@pytest.mark.parametrize(
    ("name", "benchmark", "dataset", "training"),
    [
        ("S001C001P001R001A001", "xview", "ntu60", False),
        ("S001C002P003R001A001", "xview", "ntu60", True),
        ("S001C003P003R001A001", "xview", "ntu60", True),
        ("S001C001P001R001A001", "xsub", "ntu60", True),
        ("S001C001P003R001A001", "xsub", "ntu60", False),
        ("S001C001P045R001A001", "xsub", "ntu60", False),
        ("S018C001P045R001A061", "xsub", "ntu120", True),
        ("S018C001P003R001A061", "xsub", "ntu120", False),
        ("S018C001P003R001A061", "xset", "ntu120", True),
        ("S017C002P001R001A001", "xset", "ntu120", False),
    ],
)
def test_split_routing(name: str, benchmark: str, dataset: str, training: bool) -> None:
    assert is_training_sample(parse_ntu_name(name), benchmark, dataset) is training


def test_split_constants_and_bad_benchmarks() -> None:
    assert len(NTU60_XSUB_TRAIN_SUBJECTS) == 20 and len(NTU120_XSUB_TRAIN_SUBJECTS) == 53
    assert NTU60_XSUB_TRAIN_SUBJECTS < NTU120_XSUB_TRAIN_SUBJECTS
    sample = parse_ntu_name("S001C001P001R001A001")
    with pytest.raises(ValueError, match="xset"):
        is_training_sample(sample, "xset", "ntu60")
    with pytest.raises(ValueError, match="ntu60"):
        is_training_sample(sample, "xview", "ntu61")


def test_pad_frames_and_center_on_spine() -> None:
    rng = np.random.default_rng(0)
    clip = rng.normal(size=(3, 4, 25, 2)).astype(np.float32)
    clip[:, 1, :, 1] = 0.0  # body 1 missing in frame 1, absent after frame 2
    clip[:, 3:, :, 1] = 0.0
    zero = pad_frames(clip, 7, "zero")
    np.testing.assert_array_equal(zero[:, :4], clip)
    assert not zero[:, 4:].any()
    repeat = pad_frames(clip, 7, "repeat")
    np.testing.assert_array_equal(repeat[..., 0], clip[..., 0][:, [0, 1, 2, 3, 0, 1, 2]])
    np.testing.assert_array_equal(repeat[..., 1], clip[..., 1][:, [0, 2, 0, 2, 0, 2, 0]])
    assert pad_frames(clip, 2).shape == (3, 2, 25, 2)
    centred = center_on_spine(zero)
    assert not centred[:, :, 1, 0].any()
    present = [0, 2]  # body 1's frames
    np.testing.assert_allclose(
        centred[:, present, 5, 1], (zero[..., 5, 1] - zero[..., 1, 0])[:, present]
    )
    assert not centred[:, 4:].any() and not centred[:, 1, :, 1].any()


def test_augmentations_keep_shape_and_content() -> None:
    torch.manual_seed(0)
    x = torch.zeros(3, 20, 25, 2)
    x[:, 3:9] = torch.randn(3, 6, 25, 2)
    shifted = random_shift(x)
    start = int(torch.nonzero(shifted.abs().sum(dim=(0, 2, 3))).min())
    assert torch.equal(shifted[:, start : start + 6], x[:, 3:9])
    moved = random_move(x)
    assert moved.shape == x.shape and torch.equal(moved[2], x[2])


# ------------------------------------------------------------------------------ prepare script


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    """Copies of the real sample under several names, an empty clip, an ignored one, noise."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in (
        "S001C001P001R001A001",  # xview test camera; xsub training subject
        "S001C002P001R001A001",
        "S001C003P003R001A005",  # xsub test subject
        "S001C003P005R001A003",  # listed in the ignore file
        "S018C002P045R001A061",  # NTU-120 only
        "S018C001P008R001A001",  # NTU-120 only (setup 18)
    ):
        shutil.copy(sample_path(), raw / f"{name}.skeleton")
    write_skeleton(raw / "S001C002P004R001A002.skeleton", [[], []])  # no body: skipped
    (raw / "notes.txt").write_text("not a skeleton")
    (tmp_path / "ignore.txt").write_text("# missing skeletons\nS001C003P005R001A003\n\n")
    return raw


def load_part(folder: Path, part: str) -> tuple[np.ndarray, list[str], list[int]]:
    with open(folder / f"{part}_label.pkl", "rb") as f:
        names, labels = pickle.load(f)
    return np.load(folder / f"{part}_data.npy", mmap_mode="r"), names, labels


def test_prepare_xview_routes_reads_and_skips(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "NTU-RGB-D" / "xview"
    argv = [str(raw_dir), str(out), "--ignore-file", str(tmp_path / "ignore.txt")]
    assert prepare_main(argv) == 0
    train, train_names, train_labels = load_part(out, "train")
    val, val_names, val_labels = load_part(out, "val")
    assert train_names == ["S001C002P001R001A001.skeleton", "S001C003P003R001A005.skeleton"]
    assert train_labels == [0, 4]
    assert val_names == ["S001C001P001R001A001.skeleton"] and val_labels == [0]
    assert isinstance(train, np.memmap) and train.dtype == np.float32
    assert train.shape == (2, 3, 300, 25, 2) and val.shape == (1, 3, 300, 25, 2)
    expected = pad_frames(read_ntu_skeleton(sample_path()), 300, "zero")
    np.testing.assert_array_equal(val[0], expected)
    np.testing.assert_array_equal(train[1], expected)
    assert sorted(p.name for p in out.iterdir()) == [
        "train_data.npy",
        "train_label.pkl",
        "val_data.npy",
        "val_label.pkl",
    ]


def test_prepare_other_benchmarks(raw_dir: Path, tmp_path: Path) -> None:
    assert prepare_main([str(raw_dir), str(tmp_path / "xsub"), "--benchmark", "xsub"]) == 0
    _, train_names, _ = load_part(tmp_path / "xsub", "train")
    _, val_names, _ = load_part(tmp_path / "xsub", "val")
    assert [n[:12] for n in train_names] == ["S001C001P001", "S001C002P001", "S001C003P005"]
    assert val_names == ["S001C003P003R001A005.skeleton"]
    argv = [str(raw_dir), str(tmp_path / "xset"), "--dataset", "ntu120", "--benchmark", "xset"]
    assert prepare_main(argv) == 0
    _, train_names, train_labels = load_part(tmp_path / "xset", "train")
    assert [n[:20] for n in train_names] == ["S018C001P008R001A001", "S018C002P045R001A061"]
    assert train_labels == [0, 60]
    assert prepare_main([str(raw_dir), str(tmp_path / "bad"), "--benchmark", "xset"]) == 2


def test_prepare_repeat_and_center(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "norm"
    assert prepare_main([str(raw_dir), str(out), "--pad", "repeat", "--center"]) == 0
    val, _, _ = load_part(out, "val")
    assert not val[0, :, :, 1, 0].any()  # the first body's spine is the origin in every frame
    np.testing.assert_array_equal(val[0, :, 103:206], val[0, :, :103])
    assert not val[0, ..., 1].any()


def test_prepare_runs_as_a_script(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    argv = ["scripts/prepare_ntu.py", str(raw_dir), str(tmp_path / "cli")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(ROOT / "scripts" / "prepare_ntu.py"), run_name="__main__")
    assert info.value.code == 0
    assert "train: 3 clips written, 1 skipped" in capsys.readouterr().out


# ---------------------------------------------------------------------------- NTU datamodule


@pytest.fixture
def prepared(raw_dir: Path, tmp_path: Path) -> Path:
    """A data root holding NTU-RGB-D/xview prepared from the raw copies."""
    root = tmp_path / "data"
    assert prepare_main([str(raw_dir), str(root / "NTU-RGB-D" / "xview")]) == 0
    return root


def test_datamodule_window_and_val_fraction(prepared: Path) -> None:
    dm = NTUSkeletonDataModule(str(prepared), batch_size=2, val_fraction=0.3, seed=1)
    assert dm.model_kwargs() == {
        "in_channels": 3,
        "num_classes": 60,
        "num_nodes": 25,
        "num_frames": 256,
    }
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert sorted(dm.splits["train"].indices.tolist() + dm.splits["val"].indices.tolist()) == [
        0,
        1,
        2,
    ]
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (1, 3, 256, 25, 2) and x.dtype == torch.float32 and y.dtype == torch.long
    assert isinstance(dm.splits["test"]._data, np.memmap)
    source = np.load(prepared / "NTU-RGB-D" / "xview" / "val_data.npy")
    np.testing.assert_array_equal(x[0].numpy(), source[0, :, 22:278])
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 256, 25, 2)


def test_datamodule_full_clips_augmented_and_test_as_val(prepared: Path) -> None:
    dm = NTUSkeletonDataModule(
        str(prepared), window=None, val_fraction=0.0, random_shift=True, random_move=True
    )
    assert dm.model_kwargs()["num_frames"] == 300
    dm.setup()
    assert dm.splits["val"] is dm.splits["test"] and len(dm.splits["train"]) == 3
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (3, 3, 300, 25, 2)
    with pytest.raises(ValueError, match="window"):
        NTUSkeletonDataModule(str(prepared), window=[22, 22])


def test_missing_data_error_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError) as info:
        NTUSkeletonDataModule(str(tmp_path), subdir="NTU-RGB-D/xsub")
    message = str(info.value)
    for part in (
        str(tmp_path / "NTU-RGB-D" / "xsub"),
        "DATA_DIR",
        "paths.data_dir",
        "ROSE Lab",
        f"python scripts/prepare_ntu.py <unzipped nturgb+d_skeletons folder> "
        f"{tmp_path / 'NTU-RGB-D' / 'xsub'} --benchmark xsub --dataset ntu60",
        "datamodule=ntu_synthetic",
    ):
        assert part in message


def test_missing_data_error_in_setup(prepared: Path) -> None:
    dm = NTUSkeletonDataModule(str(prepared))
    (prepared / "NTU-RGB-D" / "xview" / "val_label.pkl").unlink()
    with pytest.raises(MissingDataError, match="val_label.pkl"):
        dm.setup()


def test_configs_compose(tmp_path: Path) -> None:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        for name in ("ntu60_xview", "ntu60_xsub"):
            cfg = compose("config", overrides=[f"datamodule={name}", f"paths.data_dir={tmp_path}"])
            assert cfg.datamodule.window == [22, 278] and cfg.datamodule.batch_size == 64
            with pytest.raises(InstantiationException) as info:
                hydra.utils.instantiate(cfg.datamodule)
            assert isinstance(info.value.__cause__, MissingDataError)
            assert name.removeprefix("ntu60_") in str(info.value.__cause__)
        cfg = compose("config", overrides=["datamodule=ntu_synthetic", "seed=7"])
    dm = hydra.utils.instantiate(cfg.datamodule)
    assert isinstance(dm, SyntheticSkeletonDataModule) and dm.seed == 0
    assert dm.model_kwargs()["num_frames"] == cfg.datamodule.num_frames
