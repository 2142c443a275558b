"""Domain adaptation: gradient reversal, DANN, MMD and CORAL as functional cores, the methods
as small modules, and the training-module hook that adds their loss."""

from transferlab.domain.core import (
    DANNAnnealing,
    coral,
    covariance,
    dann_lambda,
    gaussian_mmd,
    grad_reverse,
)
from transferlab.domain.methods import CORAL, DANN, MMD, Alignment
from transferlab.domain.module import (
    DomainAdaptationModule,
    is_domain_pair,
    module_class_for,
    oracle_checkpoint,
    oracle_metrics,
)

__all__ = [
    "CORAL",
    "DANN",
    "DANNAnnealing",
    "MMD",
    "Alignment",
    "DomainAdaptationModule",
    "coral",
    "covariance",
    "dann_lambda",
    "gaussian_mmd",
    "grad_reverse",
    "is_domain_pair",
    "module_class_for",
    "oracle_checkpoint",
    "oracle_metrics",
]
