"""Builds the configured client from the ``llm:`` config block."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from effml.errors import ConfigError
from llm.base import LLMClient
from llm.cache import CachedClient

# Keys of the ``llm:`` block that configure the run around the client, not the client.
RUN_KEYS = ("concurrency", "cache_dir")


def client_config(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """The ``llm:`` block resolved to a plain dict (``???`` values raise a ConfigError)."""
    if isinstance(cfg, DictConfig):
        missing = [k for k in cfg if OmegaConf.is_missing(cfg, k)]
        if missing:
            key = missing[0]
            example = "/models/SmolLM2-360M-Instruct" if key == "path" else None
            raise ConfigError(f"llm.{key}", "???", "must be set", example=example)
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except MissingMandatoryValue as err:
            raise ConfigError(f"llm.{err.full_key}", "???", "must be set") from None
    return dict(cfg)


def check_llm_config(cfg: Mapping[str, Any] | DictConfig) -> type:
    """Checks the ``llm:`` block (keys prefixed ``llm.`` in errors); returns the client class."""
    values = client_config(cfg)
    target = values.get("_target_")
    if not isinstance(target, str):
        raise ConfigError(
            "llm._target_",
            target,
            "must name a client class",
            example="llm.local.LocalHFClient",
            fix="choose llm=local_smollm2",
        )
    try:
        cls = hydra.utils.get_object(target)
    except Exception as err:  # ImportError, AttributeError, hydra's wrapper of them
        raise ConfigError(
            "llm._target_",
            target,
            f"cannot be imported ({type(err).__name__})",
            example="llm.local.LocalHFClient",
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, LLMClient)):
        raise ConfigError("llm._target_", target, "is not an LLMClient subclass")
    concurrency = values.get("concurrency", 1)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError("llm.concurrency", concurrency, "must be an integer >= 1", example=4)
    cache_dir = values.get("cache_dir")
    if cache_dir is not None and not isinstance(cache_dir, (str, Path)):
        raise ConfigError("llm.cache_dir", cache_dir, "must be a folder or null (no cache)")
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = [name for name in params if name != "self"]
        for name in values:
            if not name.startswith("_") and name not in RUN_KEYS and name not in known:
                raise ConfigError(
                    f"llm.{name}",
                    values[name],
                    f"is not a setting of {cls.__name__}",
                    fix=f"its settings: {', '.join(known + list(RUN_KEYS))}",
                )
    check = getattr(cls, "check_config", None)
    if check is not None:
        try:
            check({k: v for k, v in values.items() if not k.startswith("_") and k not in RUN_KEYS})
        except ConfigError as err:
            raise err.with_prefix("llm.") from None
    return cls


def build_client(cfg: Mapping[str, Any] | DictConfig) -> LLMClient:
    """The client the ``llm:`` block describes, in a CachedClient when ``cache_dir`` is set.

    The block's ``_target_`` is instantiated with its other keys except the run keys
    ``concurrency`` and ``cache_dir``.
    """
    check_llm_config(cfg)
    values = client_config(cfg)
    cache_dir = values.get("cache_dir")
    for name in RUN_KEYS:
        values.pop(name, None)
    client = hydra.utils.instantiate(values, _convert_="all")
    if cache_dir is not None:
        return CachedClient(client, Path(cache_dir))
    return client
