"""The build layer: the one place that turns a resolved config into parts.

Entry points (train, eval, preview), the benchmarks and the tests build through it; nothing
below it reads a DictConfig.

- :func:`build_experiment` — a whole training run (:class:`Experiment`), checked, nothing written.
- :func:`build_datamodule`, :func:`build_module`, :func:`build_augmentation` — single parts.
- :func:`load_module` — a model rebuilt from a checkpoint's stored config.
"""

from transferlab.build.checkpoint import (
    check_data_fits,
    load_module,
    read_checkpoint,
    require_image_model,
    source_fisher,
)
from transferlab.build.experiment import Experiment, build_experiment, build_trainer, cpu_fallbacks
from transferlab.build.parts import (
    build_augmentation,
    build_datamodule,
    build_domain,
    build_module,
    is_domain_pair,
)

__all__ = [
    "Experiment",
    "build_augmentation",
    "build_datamodule",
    "build_domain",
    "build_experiment",
    "build_module",
    "build_trainer",
    "check_data_fits",
    "cpu_fallbacks",
    "is_domain_pair",
    "load_module",
    "read_checkpoint",
    "require_image_model",
    "source_fisher",
]
