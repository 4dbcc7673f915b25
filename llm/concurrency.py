"""Bounded parallel map over problems, with a progress bar; one failure does not stop the rest."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from tqdm import tqdm

from effml.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Failed:
    """The result of an item whose function raised; ``error`` is the exception."""

    error: BaseException


def map_bounded(
    fn: Callable[[Any], Any], items: Iterable[Any], concurrency: int, desc: str
) -> list:
    """``[fn(item) for item in items]`` with at most ``concurrency`` calls running at once.

    Threads suit the work here (HTTP requests, subprocesses, torch generation that releases
    the GIL). Order is kept; an item whose call raises an ``Exception`` gets ``Failed(error)``
    as its result and the others go on (KeyboardInterrupt still stops the run). With
    ``concurrency=1`` the calls run in the calling thread, one after another.

    Args:
        fn: the function of one item.
        items: the items.
        concurrency: most calls at once (``llm.concurrency``, ``harness.jobs``), >= 1.
        desc: the progress bar's label (a tqdm bar on stderr).

    Returns:
        One result (or ``Failed``) per item, in the items' order.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(
            "concurrency", concurrency, "must be an integer >= 1 (parallel calls)", example=4
        )
    items = list(items)
    results: list[Any] = [None] * len(items)

    def run_one(index: int) -> None:
        try:
            results[index] = fn(items[index])
        except Exception as err:  # recorded against its item; the others go on
            results[index] = Failed(err)

    with tqdm(total=len(items), desc=desc, file=sys.stderr, dynamic_ncols=True) as bar:
        if concurrency == 1:
            for index in range(len(items)):
                run_one(index)
                bar.update(1)
            return results
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=desc[:16]) as pool:
            for future in as_completed([pool.submit(run_one, i) for i in range(len(items))]):
                future.result()
                bar.update(1)
    return results
