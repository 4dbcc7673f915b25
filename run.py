"""effml's one entry point: compose the config, instantiate ``cfg.task`` and run it.

python run.py experiment=sage_cora seed=1
python run.py -m experiment=sage_cora model.optimizer.lr=0.01,0.005
"""

import os
from pathlib import Path

os.environ.setdefault("EFFML_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run the configured task; the returned value is what sweepers optimise."""
    from tasks.core import run_task  # torch and Lightning load only when a task runs

    return run_task(cfg)


if __name__ == "__main__":
    from tasks.boundary import install_cli_report
    from tasks.quiet import silence_known_warnings

    silence_known_warnings()
    install_cli_report()
    main()
