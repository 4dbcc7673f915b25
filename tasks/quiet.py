"""Silence the warnings and tips every run prints that say nothing about the run.

Each filter names one message exactly (a regex anchored at the message's start), so any other
warning of the same category, from the same package, still shows. setup.cfg's
``filterwarnings`` holds the same warning filters for the test runs.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category, module regex) for warnings.filterwarnings; "" matches any module.
KNOWN_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # torch_geometric scripts its SelectOutput class with torch.jit.script when it is imported
    # (torch_geometric/nn/pool/select/base.py), and torch deprecates torch.jit.script (it
    # warns on every call). Nothing of ours uses TorchScript.
    (r"`torch\.jit\.script` is deprecated\. Please switch to", FutureWarning, ""),
    # Lightning's CombinedLoader builds a LeafSpec (pytorch_lightning/utilities/_pytree.py),
    # which torch deprecates; raised inside Lightning on every fit, validate and test.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"pytorch_lightning\."),
    # ogb turns the split CSVs into index tensors with torch.from_numpy on a read-only pandas
    # array (ogb/nodeproppred/dataset_pyg.py); the indices are only read, never written.
    (r"The given NumPy array is not writable", UserWarning, r"ogb\."),
    # conf/hydra/launcher/submitit_slurm.yaml replaces the submitit plugin's config of the
    # same name on purpose, so Hydra validates it against the plugin's schema; Hydra 1.1+
    # calls that matching deprecated, and effml pins Hydra 1.3, which keeps it.
    (
        r"\n'hydra/launcher/submitit_slurm' is validated against ConfigStore schema",
        UserWarning,
        "",
    ),
    # scienceplots (imported by torchmetrics when installed) calls two matplotlib style
    # helpers that matplotlib 3.11 deprecates; effml draws with its own styles.
    (r"The read_style_directory function was deprecated", DeprecationWarning, r"scienceplots"),
    (r"The update_nested_dict function was deprecated", DeprecationWarning, r"scienceplots"),
)

# (logger name, message start) of log lines that are tips, not reports on the run.
KNOWN_LOG_LINES: tuple[tuple[str, str], ...] = (
    # Lightning advertises its paid LitLogger whenever a run has no LitLogger
    # (pytorch_lightning/trainer/connectors/logger_connector/logger_connector.py).
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),
    # conf/callbacks/default.yaml always supplies its own ModelSummary, so Lightning says
    # every run that it skips its default one.
    ("pytorch_lightning.utilities.rank_zero", "Trainer already configured with model summary"),
    # torch.utils.cpp_extension looks for CUDA when imported (the MaxK CPU kernels import it to
    # build C++ with g++) and warns when a CUDA toolkit is installed but no GPU is visible;
    # the CPU kernels never use CUDA.
    ("torch.utils.cpp_extension", "No CUDA runtime is found"),
)


class DropLogLines(logging.Filter):
    """Drop the log records whose formatted message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless its message starts with a known prefix."""
        return not record.getMessage().startswith(self.prefixes)


def silence_known_warnings() -> None:
    """Install the filters for ``KNOWN_WARNINGS`` and ``KNOWN_LOG_LINES``; calling it again
    changes nothing.

    Call it once before the run starts. The log filters sit on the named loggers themselves,
    so they hold whenever those packages import or set up their handlers.
    """
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    prefixes: dict[str, tuple[str, ...]] = {}
    for name, start in KNOWN_LOG_LINES:
        prefixes[name] = (*prefixes.get(name, ()), start)
    for name, starts in prefixes.items():
        logger = logging.getLogger(name)
        for existing in [f for f in logger.filters if isinstance(f, DropLogLines)]:
            logger.removeFilter(existing)
        logger.addFilter(DropLogLines(starts))
