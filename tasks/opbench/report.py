"""Report on operator-benchmark results: throughput, rooflines, machines side by side.

The run writes this report into its folder; ``scripts/opbench_report.py RESULT.json
[RESULT2.json ...] [--out DIR]`` draws it for several machines.

Each RESULT is the ``opbench.json`` a run of ``python run.py experiment=opbench`` (or
``opbench_quick``) leaves in its run folder: ``device``, ``peaks`` (``theoretical`` and
``measured``), ``crosscheck`` and ``measurements`` (one row per case: family, op, dtype, params,
flops, bytes, intensity, ``time_s`` quantiles, tflops, gbs, the fractions of the measured and
theoretical peaks, ``skipped``: null or the reason). Written into ``--out`` (default: the folder
of the first RESULT):

- ``throughput_<family>.png``: achieved TFLOP/s against the work (FLOPs) of each case, one
  line per op and precision, one panel per machine (the bandwidth family: GB/s against bytes);
- ``roofline_<machine>.png``: the device's roofline, attainable TFLOP/s = min(peak, intensity ×
  bandwidth), solid from the measured peaks (best GEMM per precision, best triad), dashed from
  the theoretical ones, with every measured operator of nonzero FLOPs placed at its arithmetic
  intensity (FLOPs / minimum bytes moved); a copy has no FLOPs and appears in the table only;
- ``comparison.png`` (two RESULTs or more): the best throughput per family and precision,
  machines side by side (the comparison of arXiv:2311.04417, for the user's own devices);
- ``opbench_report.md``: the machines (peaks, cross-checks), every measurement with its
  fractions of peak, skipped cases with the reason, and with several RESULTs the machines side
  by side per case.

Plots are drawn on explicit Agg canvases, so importing this module never touches pyplot.
"""

from __future__ import annotations

import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tasks.opbench.results import (
    DTYPES,
    REPORT_NAME,
    OpbenchReportError,
    Result,
    case_key,
    fmt,
    measured_ceilings,
    params_text,
    pct,
    table,
    theoretical_ceilings,
    throughput,
)


def markdown(results: list[Result]) -> str:
    """The report: machines, per-machine measurements, and with several results a comparison."""
    out = ["# Operator benchmark report", ""]
    out += ["## Machines", ""]
    header = ["machine", "file", "device", "threads", "theoretical peak (TFLOP/s)"]
    header += ["theoretical GB/s", "measured peak (TFLOP/s)", "measured GB/s", "cross-check"]
    rows = []
    for r in results:
        device = r.data["device"]
        (t_compute, t_bw), (m_compute, m_bw) = theoretical_ceilings(r), measured_ceilings(r)
        cross = r.data.get("crosscheck") or {}
        checks = [f"{k} ×{fmt(v.get('ratio'))}" for k, v in cross.items() if isinstance(v, dict)]
        rows.append(
            [
                r.label,
                r.path.name,
                f"{device.get('type', '?')}: {device.get('name', '?')}",
                fmt(device.get("threads")),
                ", ".join(f"{d} {fmt(v)}" for d, v in t_compute.items()) or "–",
                fmt(t_bw),
                ", ".join(f"{d} {fmt(v)}" for d, v in m_compute.items()) or "–",
                fmt(m_bw),
                ", ".join(checks) or "–",
            ]
        )
    out += table(header, rows) + [""]
    out += [
        "Cross-check: effml's figure over an independent one measured in the same run "
        "(NumPy's BLAS fp32 GEMM, STREAM's C triad; CUDA events on a GPU); 1 means no "
        "hidden overhead.",
        "",
    ]
    for r in results:
        out += [f"## {r.label}", "", f"From `{r.path}`.", ""] + peak_notes(r)
        out += crosscheck_notes(r)
        header = ["family", "op", "dtype", "params", "median ms", "p20–p80 ms", "TFLOP/s"]
        header += ["GB/s", "FLOP/byte", "of measured peak", "of theoretical peak"]
        rows = []
        for row in r.measured:
            times = row["time_s"]
            spread = (
                f"{fmt(1e3 * times['p20'])}–{fmt(1e3 * times['p80'])}" if "p20" in times else "–"
            )
            rows.append(
                [row["family"], row["op"], row["dtype"], params_text(row["params"])]
                + [fmt(1e3 * times["median"]), spread, fmt(row.get("tflops"))]
                + [fmt(row.get("gbs")), fmt(row.get("intensity"))]
                + [pct(row.get("fraction_of_measured_peak"))]
                + [pct(row.get("fraction_of_theoretical_peak"))]
            )
        out += table(header, rows) + [""]
        skipped = [row for row in r.rows if row.get("skipped")]
        if skipped:
            out += ["Skipped:", ""]
            out += table(
                ["family", "op", "dtype", "params", "reason"],
                [
                    [x["family"], x["op"], x["dtype"], params_text(x["params"]), str(x["skipped"])]
                    for x in skipped
                ],
            )
            out += [""]
    if len(results) > 1:
        out += comparison_markdown(results)
    return "\n".join(out).rstrip() + "\n"


def peak_notes(result: Result) -> list[str]:
    """Where the theoretical peak came from: source, formula, each factor, what is uncertain."""
    theory = (result.data.get("peaks") or {}).get("theoretical") or {}
    lines = []
    for key in ("source", "formula", "reason", "memory_note"):
        if isinstance(theory.get(key), str):
            lines.append(f"- {key}: {theory[key]}")
    for name, factor in (theory.get("factors") or {}).items():
        if isinstance(factor, dict):
            lines.append(f"- {name} = {fmt(factor.get('value'))} ({factor.get('source', '?')})")
    notes = theory.get("uncertain") or []
    lines += [f"- uncertain: {note}" for note in ([notes] if isinstance(notes, str) else notes)]
    return (["Theoretical peak:", ""] + lines + [""]) if lines else []


def comparison_markdown(results: list[Result]) -> list[str]:
    """Machines side by side: headline peaks, then every case (throughput, fraction of peak)."""
    out = ["## Machines side by side", ""]
    header = ["figure"] + [r.label for r in results]
    keys: dict[str, None] = {}
    for r in results:
        keys.update(dict.fromkeys((r.data.get("peaks") or {}).get("measured") or {}))
    rows = []
    for key in keys:
        cells = [fmt((r.data.get("peaks") or {}).get("measured", {}).get(key)) for r in results]
        rows.append([f"measured {key}"] + cells)
    for dtype in DTYPES:
        cells = [theoretical_ceilings(r)[0].get(dtype) for r in results]
        if any(c is not None for c in cells):
            rows.append([f"theoretical {dtype} TFLOP/s"] + [fmt(c) for c in cells])
    cells = [theoretical_ceilings(r)[1] for r in results]
    if any(c is not None for c in cells):
        rows.append(["theoretical GB/s"] + [fmt(c) for c in cells])
    out += table(header, rows) + [""]
    cases: dict[tuple, dict[str, dict]] = {}
    for r in results:
        for row in r.rows:
            cases.setdefault(case_key(row), {})[r.label] = row
    rows = []
    for (family, op, dtype, _), by_machine in cases.items():
        first = next(iter(by_machine.values()))
        cells = []
        for r in results:
            row = by_machine.get(r.label)
            if row is None:
                cells.append("–")
            elif row.get("skipped"):
                cells.append("skipped")
            else:
                value, unit = throughput(row)
                cells.append(
                    f"{fmt(value)} {unit} ({pct(row.get('fraction_of_theoretical_peak'))})"
                )
        rows.append([family, op, dtype, params_text(first["params"])] + cells)
    out += ["Per case: throughput (fraction of the theoretical peak).", ""]
    out += table(["family", "op", "dtype", "params"] + [r.label for r in results], rows)
    return out + [""]


# ----------------------------------------------------------------------------- plots


def _canvas(ncols: int, nrows: int = 1, size=(5.5, 4.2)) -> tuple[Figure, list]:
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for line in axes for ax in line]


CROSSCHECK_RATIOS = {
    "ratio": "effml over the independent measurement",
    "timer_ratio": "the same torch call in a plain loop over the suite's timer",
    "library_ratio": "torch's BLAS over NumPy's",
    "numpy_triad_ratio": "effml's triad over NumPy's two-pass triad",
    "numpy_add_ratio": "effml's triad over NumPy's one-pass STREAM add (the same bytes)",
}


def crosscheck_notes(result: Result) -> list[str]:
    """One line per cross-check: the method and each ratio it has."""
    lines = []
    for key, check in (result.data.get("crosscheck") or {}).items():
        if not isinstance(check, dict):
            continue
        ratios = "; ".join(
            f"{meaning} ×{fmt(check[name])}"
            for name, meaning in CROSSCHECK_RATIOS.items()
            if check.get(name) is not None
        )
        lines.append(f"- cross-check {key} ({check.get('independent', '?')}): {ratios}")
    return lines + [""] if lines else []


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "device"


def plot_throughput(results: list[Result], family: str, path: Path) -> None:
    """Throughput against work per (op, dtype, library or backend), one panel per machine."""
    fig, axes = _canvas(len(results))
    for ax, r in zip(axes, results, strict=False):
        rows = [row for row in r.measured if row["family"] == family]
        groups: dict[tuple, list] = {}
        for row in rows:
            value, unit = throughput(row)
            if value:
                work = row["flops"] if unit == "TFLOP/s" else row["bytes"]
                params = row["params"]
                variant = params.get("library") or params.get("backend") or ""
                key = (f"{row['op']} {variant}".strip(), row["dtype"], unit)
                groups.setdefault(key, []).append((work, value))
        units = sorted({unit for _, _, unit in groups})
        for i, ((op, dtype, unit), points) in enumerate(groups.items()):
            xs, ys = zip(*sorted(points), strict=True)
            style = "-" if unit == units[0] else "--"
            ax.plot(xs, ys, style, marker="o", markersize=3, color=f"C{i % 10}")
            ax.lines[-1].set_label(f"{op} {dtype}" + (f" ({unit})" if len(units) > 1 else ""))
        work = "bytes" if units == ["GB/s"] else "FLOPs"
        ax.set(xscale="log", yscale="log", xlabel=f"work ({work})", ylabel=" / ".join(units))
        ax.set_title(r.label, fontsize=9)
        if groups:
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, "no measurements", ha="center", transform=ax.transAxes)
    fig.suptitle(f"opbench: {family}, achieved throughput against size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_roofline(result: Result, path: Path) -> None:
    """Measured (solid) and theoretical (dashed) ceilings, every operator placed on them."""
    fig, (ax,) = _canvas(1, size=(8, 5.5))
    points = [row for row in result.measured if row.get("flops") and row.get("tflops")]
    intensities = [row["intensity"] for row in points if row.get("intensity")]
    lo = min(intensities + [0.1]) / 4
    hi = max(intensities + [100.0]) * 4
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    for style, (compute, bandwidth), name in (
        ("-", measured_ceilings(result), "measured"),
        ("--", theoretical_ceilings(result), "theoretical"),
    ):
        for i, dtype in enumerate(DTYPES):
            if dtype in compute:
                peak = compute[dtype]
                ys = [min(peak, x * bandwidth / 1e3) if bandwidth else peak for x in xs]
                ax.plot(xs, ys, style, color=f"C{i}", linewidth=1.2, label=f"{name} {dtype}")
        if bandwidth and not compute:
            ax.plot(xs, [x * bandwidth / 1e3 for x in xs], style, color="grey", label=name)
        if bandwidth:
            ax.plot([], [], style, color="grey", label=f"{name} {fmt(bandwidth)} GB/s")
    families = list(dict.fromkeys(row["family"] for row in points))
    markers = dict(zip(DTYPES, "os^Dvx+", strict=True))
    for j, family in enumerate(families):
        for row in (row for row in points if row["family"] == family):
            ax.scatter(
                row["intensity"],
                row["tflops"],
                marker=markers.get(row["dtype"], "o"),
                color=f"C{(j + 3) % 10}",
                s=16,
                alpha=0.75,
            )
        ax.scatter([], [], color=f"C{(j + 3) % 10}", s=16, label=f"{family} (ops)")
    for dtype, marker in markers.items():
        if any(row["dtype"] == dtype for row in points):
            ax.scatter([], [], marker=marker, color="black", s=16, label=f"marker: {dtype}")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi))
    ax.set(xlabel="arithmetic intensity (FLOP/byte)", ylabel="TFLOP/s")
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    ax.set_title(f"roofline: {result.label}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_comparison(results: list[Result], path: Path) -> None:
    """Best throughput per family and precision, machines as side-by-side bars."""
    families = list(dict.fromkeys(row["family"] for r in results for row in r.measured))
    fig, axes = _canvas(max(len(families), 1), size=(4.5, 4.2))
    width = 0.8 / len(results)
    for ax, family in zip(axes, families, strict=False):
        present = {row["dtype"] for r in results for row in r.measured if row["family"] == family}
        dtypes = [d for d in DTYPES if d in present] + sorted(present - set(DTYPES))
        unit = "TFLOP/s"
        for i, r in enumerate(results):
            best = []
            for dtype in dtypes:
                values = []
                for row in r.measured:
                    if row["family"] == family and row["dtype"] == dtype:
                        value, unit = throughput(row)
                        values.append(value or 0.0)
                best.append(max(values, default=0.0))
            xs = [k + (i - (len(results) - 1) / 2) * width for k in range(len(dtypes))]
            ax.bar(xs, best, width, color=f"C{i}", label=r.label)
        ax.set_xticks(range(len(dtypes)), dtypes)
        ax.set_yscale("log")
        ax.set(title=family, ylabel=f"best {unit}")
    axes[0].legend(fontsize=7)
    fig.suptitle("opbench: machines side by side (best case per family and precision)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------- main


def report(results: list[Result], out: Path) -> list[Path]:
    """Write the PNGs and the Markdown into ``out``; return their paths."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OpbenchReportError(
            f"{out}: cannot create the output folder ({err}); pass --out DIR"
        ) from None
    written = []
    families = dict.fromkeys(row["family"] for r in results for row in r.measured)
    for family in families:
        written.append(out / f"throughput_{slug(family)}.png")
        plot_throughput(results, family, written[-1])
    for r in results:
        written.append(out / f"roofline_{slug(r.label)}.png")
        plot_roofline(r, written[-1])
    if len(results) > 1:
        written.append(out / "comparison.png")
        plot_comparison(results, written[-1])
    written.append(out / REPORT_NAME)
    written[-1].write_text(markdown(results))
    return written
