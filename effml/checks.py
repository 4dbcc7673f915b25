"""The checks a model or datamodule declares once, in its ``check_config`` classmethod.

Every configurable class states the constraints that its config alone decides::

    class NodeClassifier(EffmlModule):
        @classmethod
        def check_config(cls, cfg: Mapping[str, Any]) -> None:
            cfg = with_defaults(cls, cfg)
            check_int(cfg, "hidden_channels", minimum=1, example=256)
            check_range(cfg, "dropout", 0.0, 1.0, high_open=True, example=0.5)

The run calls it on the config group (``model``, ``datamodule``, a pipeline stage's patched
model) before any data is read, and prefixes the group to the key in the error
(``model.dropout=1.5: must be in [0, 1); e.g. model.dropout=0.5``); the constructor calls it
too, so Python users get the same errors. Keys the config leaves out take the constructor's
default; a check on a key whose value is ``None`` passes (None means "not used").
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from effml.errors import ConfigError


def with_defaults(cls: type, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` completed with the defaults of ``cls.__init__`` for the keys it leaves out."""
    values = {
        name: param.default
        for name, param in inspect.signature(cls.__init__).parameters.items()
        if param.default is not inspect.Parameter.empty
    }
    values.update(cfg)
    return values


def check_int(
    cfg: Mapping[str, Any],
    key: str,
    minimum: int | None = None,
    maximum: int | None = None,
    example: Any = None,
) -> None:
    """``cfg[key]`` is an integer in ``[minimum, maximum]`` (either bound optional)."""
    value = cfg.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, value, "must be an integer", example)
    if minimum is not None and value < minimum:
        raise ConfigError(key, value, f"must be >= {minimum}", example)
    if maximum is not None and value > maximum:
        raise ConfigError(key, value, f"must be <= {maximum}", example)


def check_range(
    cfg: Mapping[str, Any],
    key: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    example: Any = None,
) -> None:
    """``cfg[key]`` is a number in the interval from ``low`` to ``high`` (open ends as told)."""
    value = cfg.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, value, "must be a number", example)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above or value != value:  # value != value: NaN
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(key, value, f"must be in {left}{lo}, {hi}{right}", example)


def check_choice(cfg: Mapping[str, Any], key: str, choices: Iterable[Any]) -> None:
    """``cfg[key]`` is one of ``choices``."""
    value = cfg.get(key)
    options = list(choices)
    if value is not None and value not in options:
        raise ConfigError(key, value, f"choose one of {options}", example=options[0])
