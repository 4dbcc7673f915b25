"""Reading the raw NTU RGB+D ``.skeleton`` files and their benchmark splits: the reader, the
sample names (``SsssCcccPpppRrrrAaaa``) and which samples each benchmark trains on.

Joints are 0-based here (the dataset's joint k is index k - 1); index 1 is "middle of the spine".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUM_JOINTS = 25
MAX_BODIES = 2
MAX_FRAMES = 300
SPINE_JOINT = 1
NTU60_XSUB_TRAIN_SUBJECTS = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
)
# NTU RGB+D 120 (Liu et al., TPAMI 2019), cross-subject: the 53 training subjects
NTU120_XSUB_TRAIN_SUBJECTS = NTU60_XSUB_TRAIN_SUBJECTS | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85)
    + (86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103)
)
XVIEW_TRAIN_CAMERAS = frozenset((2, 3))
NTU60_NUM_ACTIONS = 60
NTU60_NUM_SETUPS = 17
BENCHMARKS = {"ntu60": ("xview", "xsub"), "ntu120": ("xsub", "xset")}
_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


def read_ntu_skeleton(path: str | os.PathLike, max_bodies: int = MAX_BODIES) -> np.ndarray:
    """Joint x, y, z (metres, camera frame) of the first ``max_bodies`` bodies of each frame.

    The text format: the frame count; per frame a body count; per body one line of 10 body
    values, the joint count (25), then one line of 12 values per joint, x y z first. Bodies a
    frame lacks stay zero, as in ST-GCN's ``read_xyz``.

    Shapes:
        returns (3, T, 25, max_bodies) float32
    """
    lines = Path(path).read_text().split("\n")
    num_frames = int(lines[0])
    data = np.zeros((3, num_frames, NUM_JOINTS, max_bodies), dtype=np.float32)
    row = 1
    for frame in range(num_frames):
        num_bodies = int(lines[row])
        row += 1
        for body in range(num_bodies):
            num_joints = int(lines[row + 1])
            if body < max_bodies:
                joints = lines[row + 2 : row + 2 + min(num_joints, NUM_JOINTS)]
                xyz = np.array([line.split()[:3] for line in joints], dtype=np.float64)
                data[:, frame, : len(joints), body] = xyz.T  # (3, V)
            row += 2 + num_joints
    return data


@dataclass(frozen=True)
class NtuSample:
    """The fields of an NTU sample name ``SsssCcccPpppRrrrAaaa`` (all 1-based)."""

    setup: int
    camera: int
    subject: int
    replication: int
    action: int

    @property
    def label(self) -> int:
        """The 0-based class index."""
        return self.action - 1


def parse_ntu_name(name: str | os.PathLike) -> NtuSample:
    """Parse ``S001C002P003R002A013`` (a bare name, a ``.skeleton`` file name or a path)."""
    match = _NAME.search(Path(name).name)
    if match is None:
        raise ValueError(
            f"{str(name)!r} is not an NTU RGB+D sample name: expected SsssCcccPpppRrrrAaaa, "
            f"e.g. S001C002P003R002A013.skeleton"
        )
    return NtuSample(*(int(group) for group in match.groups()))


def check_benchmark(dataset: str, benchmark: str) -> None:
    """Raise unless ``benchmark`` belongs to ``dataset`` (ntu60: xview/xsub; ntu120: xsub/xset)."""
    if dataset not in BENCHMARKS:
        raise ValueError(f"dataset={dataset!r}: choose one of {sorted(BENCHMARKS)}")
    if benchmark not in BENCHMARKS[dataset]:
        raise ValueError(
            f"benchmark={benchmark!r} is not a {dataset} benchmark: choose one of "
            f"{list(BENCHMARKS[dataset])}"
        )


def is_training_sample(sample: NtuSample, benchmark: str, dataset: str = "ntu60") -> bool:
    """Benchmark split: xview trains on cameras 2, 3; xsub on the paper's training subjects
    (20 for NTU-60, 53 for NTU-120); xset (NTU-120) on even setup ids."""
    check_benchmark(dataset, benchmark)
    if benchmark == "xview":
        return sample.camera in XVIEW_TRAIN_CAMERAS
    if benchmark == "xset":
        return sample.setup % 2 == 0
    subjects = NTU60_XSUB_TRAIN_SUBJECTS if dataset == "ntu60" else NTU120_XSUB_TRAIN_SUBJECTS
    return sample.subject in subjects
