"""Domain adaptation: gradient reversal, DANN, MMD and CORAL as functional cores, the methods
as small modules, and the training-module hook that adds their loss. (DANN's LR annealing is a
schedule like any other: :class:`transferlab.schedules.DANNAnnealing`.)"""

from transferlab.domain.core import (
    coral,
    covariance,
    dann_lambda,
    gaussian_mmd,
    grad_reverse,
)
from transferlab.domain.methods import CORAL, DANN, MMD, Alignment
from transferlab.domain.module import ORACLE_MONITOR, DomainAdaptationModule

__all__ = [
    "CORAL",
    "DANN",
    "MMD",
    "ORACLE_MONITOR",
    "Alignment",
    "DomainAdaptationModule",
    "coral",
    "covariance",
    "dann_lambda",
    "gaussian_mmd",
    "grad_reverse",
]
