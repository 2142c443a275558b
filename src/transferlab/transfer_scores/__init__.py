"""Transferability scores: how well a frozen backbone's features (or a source model's
predictions) suit a target task, from one forward pass and no training.

Each score is a pure function of (features or source predictions, target labels); higher means
the candidate is expected to transfer better. ``transferlab-rank`` computes them for a set of
candidate backbones.
"""

from transferlab.transfer_scores.features import h_score, knn_accuracy, logme, transrate
from transferlab.transfer_scores.predictions import leep, nce

__all__ = ["h_score", "knn_accuracy", "leep", "logme", "nce", "transrate"]
