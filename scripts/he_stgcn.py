"""Plaintext vs encrypted (CKKS) ST-GCN inference on random clips, with a JSON report.

Builds a small random STGCN with trained-like BatchNorm statistics (or loads a state dict and
an activation spec), folds it into the HE circuit, runs ``--samples`` N(0, 1) clips through
``plain_forward`` and through TenSEAL/SEAL CKKS, and reports parameters, latency, op counts
per layer and the logit error. Several ``--spec`` values are run on the same weights and the
per-sample speedup over the first is printed.

Usage:
    python scripts/he_stgcn.py --spec baseline lingcn --counts 1,1,0 --out he_report.json
    python scripts/he_stgcn.py --channels 3,16,1 16,32,2 32,32,1 --frames 32 --classes 10 \\
        --spec lingcn --counts 1,1,0 --samples 4
    python scripts/he_stgcn.py --state-dict net.pt --spec-file spec.npz --spec file
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from he import (
    HeParameterError,
    HeStgcnInference,
    StgcnCircuit,
    baseline_spec,
    calibrated_stgcn,
    lingcn_spec,
    load_spec,
    spec_act_factory,
)
from lightning_modules.lingcn.stgcn import NUM_JOINTS, STGCN


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--channels",
        nargs="+",
        default=["3,16,1", "16,32,2", "32,32,1"],
        help="blocks as in,out,stride",
    )
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--persons", type=int, default=2)
    p.add_argument(
        "--spec",
        nargs="+",
        default=["baseline", "lingcn"],
        choices=["baseline", "lingcn", "file"],
        help="activation specs to run on the same weights (speedups vs the first)",
    )
    p.add_argument(
        "--counts",
        default="1,1,0",
        help="lingcn: kept nonlinearities per node in each block (0, 1 or 2)",
    )
    p.add_argument("--samples", type=int, default=4, help="random clips to classify")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale-bits", type=int, default=40)
    p.add_argument(
        "--state-dict", type=Path, help="STGCN state dict (.pt) instead of random weights"
    )
    p.add_argument(
        "--spec-file", type=Path, help="activation spec (.npz from he.save_spec) for --spec file"
    )
    p.add_argument("--out", type=Path, help="write the JSON report here")
    return p.parse_args(argv)


def build_spec(name: str, args: argparse.Namespace, num_blocks: int) -> list:
    """The activation spec called ``name``."""
    if name == "baseline":
        return baseline_spec(num_blocks, NUM_JOINTS)
    if name == "lingcn":
        counts = [int(c) for c in args.counts.split(",")]
        if len(counts) != num_blocks:
            raise SystemExit(f"--counts has {len(counts)} entries for {num_blocks} blocks")
        return lingcn_spec(counts, NUM_JOINTS, seed=args.seed)
    if args.spec_file is None:
        raise SystemExit("--spec file needs --spec-file spec.npz")
    return load_spec(args.spec_file)


def build_net(args: argparse.Namespace, channels: list[list[int]], spec: list) -> STGCN:
    """Random calibrated weights, or the state dict's (activation-site entries ignored)."""
    if args.state_dict is None:
        return calibrated_stgcn(
            channels, args.classes, spec, args.frames, args.persons, seed=args.seed
        )
    net = STGCN(
        channels[0][0],
        args.classes,
        variant="custom",
        channels=channels,
        num_persons=args.persons,
        act_factory=spec_act_factory(spec),
    )
    state = torch.load(args.state_dict, map_location="cpu", weights_only=True)
    state = {k.removeprefix("net."): v for k, v in state.get("state_dict", state).items()}
    state = {k: v for k, v in state.items() if ".act1." not in k and ".act2." not in k}
    missing, _ = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if ".act1." not in k and ".act2." not in k]
    if missing:
        raise SystemExit(
            f"{args.state_dict} lacks {missing[:5]}...: is it an STGCN with --channels?"
        )
    return net.eval()


def main(argv: list[str] | None = None) -> dict:
    """Run every requested spec; print a table and return the report."""
    args = parse_args(argv)
    channels = [[int(c) for c in block.split(",")] for block in args.channels]
    x = torch.from_numpy(
        np.random.default_rng(args.seed).standard_normal(
            (args.samples, channels[0][0], args.frames, NUM_JOINTS, args.persons)
        )
    )
    runs = {}
    for name in args.spec:
        spec = build_spec(name, args, len(channels))
        net = build_net(args, channels, spec)
        circuit = StgcnCircuit.from_module(net, spec)
        torch_logits = net.double()(x).detach().numpy()
        plain = circuit.plain_forward(x)
        start = time.perf_counter()
        try:
            _, report = HeStgcnInference(circuit, scale_bits=args.scale_bits).run(x)
        except HeParameterError as err:
            runs[name] = {"error": str(err), "levels": circuit.depth().total}
            print(f"{name}: {err}")
            continue
        report["wall_s"] = time.perf_counter() - start
        report["plain_vs_torch_max_abs"] = float(np.abs(plain - torch_logits).max())
        runs[name] = report
        print(
            f"\n{name}: N={report['n']} levels={report['levels']} "
            f"clips/ciphertext={report['samples_per_ciphertext']} setup={report['setup_s']:.1f}s "
            f"latency={report['latency_s']:.1f}s ({report['latency_s_per_sample']:.2f}s/clip) "
            f"max|Δlogit|={report['max_abs_diff_vs_plain']:.2e} "
            f"(max|logit|={report['max_abs_logit']:.2e}) "
            f"argmax_agree={report['argmax_agree']}"
        )
        print(f"  ops: {report['ops']}")
        for layer in report["layers"]:
            name, levels, latency = layer["name"], layer["levels"], layer["latency_s"]
            print(f"  {name:<20} {levels} lvl {latency:8.2f}s  {layer['ops']}")
    done = [n for n in args.spec if "latency_s" in runs[n]]
    result = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runs": runs,
    }
    if len(done) > 1:
        ref = runs[done[0]]["latency_s_per_sample"]
        result["speedup_per_sample"] = {n: ref / runs[n]["latency_s_per_sample"] for n in done[1:]}
        print(f"\nper-clip speedup vs {done[0]}: {result['speedup_per_sample']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
        print(f"report: {args.out}")
    return result


if __name__ == "__main__":
    main()
