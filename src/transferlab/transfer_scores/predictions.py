"""Scores over a source model's class predictions on the target images and the target labels:
how well the source classes explain the target classes."""

from __future__ import annotations

import torch

from transferlab.errors import ConfigError


def _joint(source_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Empirical joint P(target y, source z) = (1/n) Σ_i θ(x_i)_z 1[y_i = y], ``[Y, Z]``."""
    if source_probs.ndim != 2 or len(source_probs) != len(labels):
        raise ConfigError(
            f"Source predictions must be [n, source classes] for n labels, got "
            f"{tuple(source_probs.shape)} for {len(labels)}."
        )
    onehot = torch.nn.functional.one_hot(labels.long(), int(labels.max()) + 1).double()
    return onehot.T @ source_probs.double() / len(labels)


def leep(source_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """LEEP: the mean log-likelihood of the target labels under the "expected empirical
    predictor" P(y | x) = Σ_z P(y | z) θ(x)_z (Nguyen, Hassner, Seeger and Archambeau, "LEEP: A
    New Measure to Evaluate Transferability of Learned Representations", ICML 2020).

    ``source_probs`` are the source model's softmax outputs on the target images. At most 0;
    0 when the source classes predict the target labels with certainty.
    """
    joint = _joint(source_probs, labels)
    conditional = joint / joint.sum(0, keepdim=True).clamp_min(1e-12)  # P(y | z)
    predicted = source_probs.double() @ conditional.T  # [n, Y]
    return float(predicted[torch.arange(len(labels)), labels.long()].clamp_min(1e-12).log().mean())


def nce(source_labels: torch.Tensor, labels: torch.Tensor) -> float:
    """NCE: −H(Y | Z), the negative conditional entropy of the target labels given the source
    model's predicted labels (Tran, Nguyen and Hassner, "Transferability and Hardness of
    Supervised Classification Tasks", ICCV 2019). 0 when Z determines Y; −H(Y) when they are
    independent."""
    z = torch.nn.functional.one_hot(source_labels.long(), int(source_labels.max()) + 1)
    joint = _joint(z, labels)
    conditional = joint / joint.sum(0, keepdim=True).clamp_min(1e-12)
    terms = joint * conditional.clamp_min(1e-12).log()
    return float(terms.sum())
