"""The training plumbing that the recipes in ``recipes/`` share; the recipes themselves stay plain,
self-contained scripts (torchtune style) that build ordinary modules and loop.

- :mod:`.config`: a YAML config over a recipe's defaults (unknown keys refused).
- :mod:`.runtime`: DDP, device, CPU threads (``ThreadTuner``), seed, ``Logger``, ``lr_at``.
- :mod:`.state`: optimizer state in safetensors, checkpoints swapped in atomically, resume.
- :mod:`.pixels`: the optimisation step and log window of pixel tokenizers (image, video).
- :mod:`.cli`: the recipes' shared command line, ``run_recipe`` and ``export_checkpoint``.
"""

from .cli import EXPORT_DTYPES, cli_overrides, export_checkpoint, recipe_parser, run_recipe, save_final
from .config import read_config
from .pixels import StepWindow, tokenizer_step
from .runtime import SCHEDULES, Logger, ThreadTuner, ddp_env, ddp_shutdown, lr_at, setup_runtime
from .state import load_optimizer, load_training_state, optimizer_tensors, save_training_state, warm_start

__all__ = [
    "read_config", "Logger", "ThreadTuner", "ddp_env", "lr_at", "SCHEDULES", "setup_runtime", "optimizer_tensors",
    "load_optimizer", "save_training_state", "load_training_state", "tokenizer_step", "StepWindow",
    "recipe_parser", "cli_overrides", "run_recipe", "export_checkpoint", "EXPORT_DTYPES", "save_final", "ddp_shutdown",
    "warm_start",
]
