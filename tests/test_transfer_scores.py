"""Transferability scores on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from transferlab.errors import ConfigError
from transferlab.transfer_scores import h_score, knn_accuracy, leep, logme, nce, transrate


def clusters(n_per_class: int = 40, d: int = 8, spread: float = 0.3, seed: int = 0):
    """Three well-separated Gaussian clusters and their labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, d, generator=g) * 3
    labels = torch.arange(3).repeat_interleave(n_per_class)
    features = centres[labels] + spread * torch.randn(len(labels), d, generator=g)
    return features, labels


def shuffled(labels: torch.Tensor) -> torch.Tensor:
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]


@pytest.mark.parametrize(
    "score", [logme, h_score, transrate, knn_accuracy], ids=lambda f: f.__name__
)
def test_separable_classes_score_above_shuffled_labels(score):
    features, labels = clusters()
    assert score(features, labels) > score(features, shuffled(labels)) + 0.1


def direct_log_evidence(f: torch.Tensor, y: torch.Tensor, alpha: float, beta: float) -> float:
    """log N(y | 0, FFᵀ/α + I/β) / n, straight from the definition."""
    cov = f @ f.T / alpha + torch.eye(len(f), dtype=f.dtype) / beta
    dist = torch.distributions.MultivariateNormal(torch.zeros(len(f), dtype=f.dtype), cov)
    return float(dist.log_prob(y)) / len(f)


def test_logme_is_the_maximised_evidence_of_the_linear_model():
    features, labels = clusters(n_per_class=10, d=4, spread=1.0)
    f = features.double()
    best = []
    for c in range(3):
        y = (labels == c).double()
        centre, width = (0.0, 0.0), 3.0  # log10 alpha, log10 beta; a coarse grid, then finer
        for _ in range(4):
            steps = torch.linspace(-width, width, 13).tolist()
            found = max(
                (direct_log_evidence(f, y, 10 ** (centre[0] + a), 10 ** (centre[1] + b)), a, b)
                for a in steps
                for b in steps
            )
            centre, width = (centre[0] + found[1], centre[1] + found[2]), width / 4
        best.append(found[0])
    expected = sum(best) / 3
    # the fixed point is the maximum of the evidence over (alpha, beta)
    assert logme(features, labels) == pytest.approx(expected, abs=1e-4)


def test_h_score_ignores_the_units_of_the_features():
    features, labels = clusters()
    assert h_score(features * 1000, labels) == pytest.approx(h_score(features, labels), rel=1e-6)


def test_h_score_tells_classes_from_shuffled_labels_with_more_dimensions_than_images():
    # 3 classes, 30 images, 200-d features of which only the first 8 carry the classes:
    # unshrunk, both labelings would score (classes - 1) = 2
    features, labels = clusters(n_per_class=10)
    noise = torch.randn(30, 192, generator=torch.Generator().manual_seed(3))
    wide = torch.cat([features, noise], 1)
    assert h_score(wide, labels) > h_score(wide, shuffled(labels)) + 0.5


def test_knn_accuracy_is_one_on_separate_clusters():
    features, labels = clusters()
    assert knn_accuracy(features, labels) == 1.0


def test_leep_and_nce_are_zero_when_the_source_classes_give_the_target_labels():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    certain = torch.nn.functional.one_hot(labels, 3).double()
    assert leep(certain, labels) == pytest.approx(0.0, abs=1e-9)
    assert nce(labels, labels) == pytest.approx(0.0, abs=1e-9)
    # a relabelling of the source classes explains the target just as well
    assert nce((labels + 1) % 3, labels) == pytest.approx(0.0, abs=1e-9)


def test_leep_and_nce_fall_to_the_label_entropy_when_the_source_says_nothing():
    labels = torch.tensor([0, 1, 0, 1])
    uniform = torch.full((4, 3), 1 / 3)
    assert leep(uniform, labels) == pytest.approx(math.log(0.5))
    unrelated = torch.tensor([0, 0, 1, 1])  # each source class holds both targets equally
    assert nce(unrelated, labels) == pytest.approx(-math.log(2))


def test_bad_shapes_and_one_class_are_one_sentence():
    features, labels = clusters()
    with pytest.raises(ConfigError, match=r"needs features \[n, d\] and labels \[n\]"):
        logme(features, labels[:-1])
    with pytest.raises(ConfigError, match="at least 2 classes"):
        h_score(features, torch.zeros(len(labels), dtype=torch.long))
