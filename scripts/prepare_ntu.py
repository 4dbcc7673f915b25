"""Turn raw NTU RGB+D ``.skeleton`` files into ST-GCN's arrays, one benchmark at a time.

Usage:
    python scripts/prepare_ntu.py RAW_DIR OUT_DIR [--benchmark xview|xsub|xset]
        [--dataset ntu60|ntu120] [--ignore-file F] [--pad zero|repeat] [--center]

Writes ``OUT_DIR/{train,val}_data.npy`` (N, 3, 300, 25, 2) float32 through
``np.lib.format.open_memmap`` (one clip in memory at a time) and ``OUT_DIR/{train,val}_label.pkl``
= (sample names, 0-based labels); ``val`` is the benchmark's test split, as ST-GCN names it.
The defaults reproduce ST-GCN's ``tools/ntu_gendata.py``, the data LinGCN trained on: the first
two bodies of each frame, zero padding after the clip, camera coordinates. ``--pad repeat
--center`` applies 2s-AGCN's pre-normalisation instead (loop each body's frames, subtract the
first body's middle-of-spine joint per frame; its rotation alignment is not applied).

Skipped: names in ``--ignore-file`` (e.g. the NTU-60 list ``samples_with_missing_skeletons.txt``
that ST-GCN ships; it is not bundled here) and, always, files with no frame or no body in any
frame. NTU-60 is actions 1-60; for NTU-120 put the s001-s017 and s018-s032 files in one RAW_DIR.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datamodules.ntu_raw import (
    BENCHMARKS,
    MAX_BODIES,
    MAX_FRAMES,
    NTU60_NUM_ACTIONS,
    NTU60_NUM_SETUPS,
    NUM_JOINTS,
    SPINE_JOINT,
    NtuSample,
    check_benchmark,
    is_training_sample,
    parse_ntu_name,
    read_ntu_skeleton,
)

log = logging.getLogger("prepare_ntu")
COPY_CHUNK = 256


def in_dataset(sample: NtuSample, dataset: str) -> bool:
    """NTU-60 is actions 1–60 of setups 1–17; NTU-120 is every sample."""
    if dataset == "ntu120":
        return True
    return sample.setup <= NTU60_NUM_SETUPS and sample.action <= NTU60_NUM_ACTIONS


def read_ignore_file(path: str | os.PathLike) -> set[str]:
    """Sample names to skip, one a line (``.skeleton`` suffix optional; ``#`` starts a comment)."""
    names = set()
    for line in Path(path).read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.add(name.removesuffix(".skeleton"))
    return names


def pad_frames(data: np.ndarray, num_frames: int = MAX_FRAMES, mode: str = "zero") -> np.ndarray:
    """Fit a clip to ``num_frames`` frames, cutting longer ones.

    ``zero``: frames after the clip stay zero (ST-GCN's ``ntu_gendata``). ``repeat``: each
    body's non-empty frames, in order, are looped to fill all frames (2s-AGCN's null-frame
    padding; it also closes a body's gaps).

    Shapes:
        data (3, T, V, M) → (3, num_frames, V, M)
    """
    if mode not in ("zero", "repeat"):
        raise ValueError(f"pad mode={mode!r}: choose 'zero' or 'repeat'")
    c, _, v, m = data.shape
    out = np.zeros((c, num_frames, v, m), dtype=data.dtype)
    if mode == "zero":
        kept = data[:, :num_frames]
        out[:, : kept.shape[1]] = kept
        return out
    for body in range(m):
        valid = np.flatnonzero(np.abs(data[:, :, :, body]).sum(axis=(0, 2)) > 0)
        if valid.size:
            loop = np.arange(num_frames) % valid.size
            out[..., body] = data[..., body][:, valid[loop]]
    return out


def center_on_spine(data: np.ndarray) -> np.ndarray:
    """Subtract, frame by frame, the first body's middle-of-spine joint (2s-AGCN's centring).

    Zero joints (absent bodies, padding) stay zero; frames without a first body are unchanged.

    Shapes:
        data (3, T, V, M) → (3, T, V, M)
    """
    center = data[:, :, SPINE_JOINT : SPINE_JOINT + 1, 0:1]  # (3, T, 1, 1)
    present = np.any(data != 0, axis=0, keepdims=True)  # (1, T, V, M)
    return (data - center) * present


def route_samples(
    raw_dir: Path, benchmark: str, dataset: str, ignored: set[str]
) -> dict[str, list[str]]:
    """Sorted ``.skeleton`` file names of ``raw_dir`` per part (``train``, ``val``)."""
    check_benchmark(dataset, benchmark)
    parts: dict[str, list[str]] = {"train": [], "val": []}
    for filename in sorted(os.listdir(raw_dir)):
        if not filename.endswith(".skeleton") or filename.removesuffix(".skeleton") in ignored:
            continue
        sample = parse_ntu_name(filename)
        if in_dataset(sample, dataset):
            parts["train" if is_training_sample(sample, benchmark, dataset) else "val"].append(
                filename
            )
    return parts


def write_part(
    raw_dir: Path, filenames: list[str], out_dir: Path, part: str, pad: str, center: bool
) -> tuple[list[str], list[int], list[str]]:
    """Write ``{part}_data.npy`` and ``{part}_label.pkl``; return kept names, labels, skipped."""
    shape = (len(filenames), 3, MAX_FRAMES, NUM_JOINTS, MAX_BODIES)
    final = out_dir / f"{part}_data.npy"
    partial = out_dir / f"{part}_data.partial.npy"
    data = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)
    names, labels, skipped = [], [], []
    for filename in tqdm(filenames, desc=f"{out_dir.name}/{part}", unit="clip"):
        clip = read_ntu_skeleton(raw_dir / filename, MAX_BODIES)  # (3, T, 25, 2)
        if clip.shape[1] == 0 or not clip.any():
            skipped.append(filename)
            continue
        clip = pad_frames(clip, MAX_FRAMES, pad)
        data[len(names)] = center_on_spine(clip) if center else clip
        names.append(filename)
        labels.append(parse_ntu_name(filename).label)
    data.flush()
    if len(names) == len(filenames):
        del data
        os.replace(partial, final)
    else:
        kept = np.lib.format.open_memmap(
            final, mode="w+", dtype=np.float32, shape=(len(names), *shape[1:])
        )
        for start in range(0, len(names), COPY_CHUNK):
            stop = min(start + COPY_CHUNK, len(names))
            kept[start:stop] = data[start:stop]
        kept.flush()
        del data, kept
        partial.unlink()
    with open(out_dir / f"{part}_label.pkl", "wb") as f:
        pickle.dump((names, labels), f)
    return names, labels, skipped


def prepare_ntu(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    benchmark: str = "xview",
    dataset: str = "ntu60",
    ignore_file: str | os.PathLike | None = None,
    pad: str = "zero",
    center: bool = False,
) -> dict[str, dict[str, int]]:
    """Route, read, preprocess and write both parts; return kept/skipped counts per part."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"RAW_DIR={raw_dir} is not a folder of NTU .skeleton files")
    ignored = read_ignore_file(ignore_file) if ignore_file else set()
    parts = route_samples(raw_dir, benchmark, dataset, ignored)
    if not any(parts.values()):
        raise FileNotFoundError(f"no {dataset} .skeleton files in {raw_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for part, filenames in parts.items():
        names, _, skipped = write_part(raw_dir, filenames, out_dir, part, pad, center)
        for filename in skipped:
            log.warning("skipped %s: no body in any frame", filename)
        summary[part] = {"kept": len(names), "skipped": len(skipped)}
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw_dir", help="folder of raw NTU RGB+D .skeleton files")
    parser.add_argument("out_dir", help="output folder, e.g. $DATA_DIR/NTU-RGB-D/xview")
    parser.add_argument("--benchmark", default="xview", choices=("xview", "xsub", "xset"))
    parser.add_argument("--dataset", default="ntu60", choices=sorted(BENCHMARKS))
    parser.add_argument("--ignore-file", help="text file of sample names to skip, one a line")
    parser.add_argument("--pad", default="zero", choices=("zero", "repeat"))
    parser.add_argument("--center", action="store_true", help="subtract the spine per frame")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = prepare_ntu(
            args.raw_dir,
            args.out_dir,
            args.benchmark,
            args.dataset,
            args.ignore_file,
            args.pad,
            args.center,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for part, counts in summary.items():
        print(f"{part}: {counts['kept']} clips written, {counts['skipped']} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
