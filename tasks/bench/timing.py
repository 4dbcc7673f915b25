"""The one benchmark timer: interleaved rounds over a dict of callables, medians in ms.

CPU: ``torch.utils.benchmark.Timer.blocked_autorange`` per callable per round, every callable
once per round, so load from other processes on shared cores hits the baseline and the
candidates alike; the clock is wall time (``time.perf_counter``) or process CPU time
(``time.process_time``, robust on shared cores with one thread). CUDA:
``triton.testing.do_bench`` (its own warm-up, CUDA synchronisation and median).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch.utils import benchmark

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Timer:
    """Milliseconds per call of each callable in ``{name: fn}``, measured in interleaved rounds.

    Args:
        device: "cpu" (``torch.utils.benchmark``) or "cuda" (``triton.testing.do_bench``).
        rounds: interleaved rounds; every callable is measured once per round.
        round_time: CPU only: ``min_run_time`` seconds of each ``blocked_autorange``.
        clock: CPU only: "wall" or "cpu" (process CPU time).
        num_threads: CPU only: torch threads while measuring (``torch.utils.benchmark``'s
            own default is 1).
        progress: called with a line before each round (e.g. a logger), or None.

    Every callable runs once untimed before the first round (first-call set-up such as MKL
    plans, allocations, kernel compilation is not measured).
    """

    device: str = "cpu"
    rounds: int = 5
    round_time: float = 0.4
    clock: str = "wall"
    num_threads: int = 1
    progress: Callable[[str], object] | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}: choose one of {DEVICES}")
        if self.clock not in CLOCKS:
            raise ValueError(f"clock={self.clock!r}: choose one of {tuple(CLOCKS)}")
        if self.rounds < 1:
            raise ValueError(f"rounds={self.rounds}: need at least one round")
        if self.round_time <= 0:
            raise ValueError(f"round_time={self.round_time}: pass seconds > 0")
        if self.num_threads < 1:
            raise ValueError(f"num_threads={self.num_threads}: pass a positive thread count")

    def samples(self, fns: Mapping[str, Callable[[], object]]) -> dict[str, list[float]]:
        """``{name: [ms of round 1, ms of round 2, ...]}``, each the median of its round."""
        out: dict[str, list[float]] = {name: [] for name in fns}
        for fn in fns.values():
            fn()
        for r in range(self.rounds):
            if self.progress:
                self.progress(f"    round {r + 1}/{self.rounds}: {', '.join(fns)}")
            for name, fn in fns.items():
                out[name].append(self._measure(fn))
        return out

    def __call__(self, fns: Mapping[str, Callable[[], object]]) -> dict[str, float]:
        """``{name: median over rounds of the per-round median ms}``."""
        return {name: statistics.median(ms) for name, ms in self.samples(fns).items()}

    def _measure(self, fn: Callable[[], object]) -> float:
        """Median milliseconds of one call of ``fn`` on this timer's device."""
        if self.device == "cuda":
            import triton.testing

            return float(triton.testing.do_bench(fn, return_mode="median"))
        timer = benchmark.Timer(
            stmt="fn()", globals={"fn": fn}, timer=CLOCKS[self.clock], num_threads=self.num_threads
        )
        return timer.blocked_autorange(min_run_time=self.round_time).median * 1e3


def cuda_sync(device: torch.device | str) -> Callable[[], None]:
    """A function that waits for ``device`` to finish its queued work (no-op off CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None
