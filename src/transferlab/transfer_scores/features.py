"""Scores over backbone features ``[n, d]`` and integer target labels ``[n]``."""

from __future__ import annotations

import math

import torch

from transferlab.errors import ConfigError


def _checked(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ConfigError(
            f"A transferability score needs features [n, d] and labels [n], got "
            f"{tuple(features.shape)} and {tuple(labels.shape)}."
        )
    if labels.unique().numel() < 2:
        raise ConfigError("A transferability score needs labels of at least 2 classes.")
    return features.double(), labels.long()


def logme(features: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """LogME: the log marginal evidence of a Bayesian linear model from features to each
    one-hot target column, maximised over its prior and noise precisions (α, β), per sample and
    averaged over classes (You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained
    Models for Transfer Learning", ICML 2021, Algorithm 1).

    One SVD of the features serves every class; the fixed-point updates of α and β run in the
    singular basis, so each iteration costs O(min(n, d)).
    """
    f, y = _checked(features, labels)
    n, d = f.shape
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    sigma = s**2  # eigenvalues of FᵀF on its column space (the other d - k are 0)
    k = len(sigma)
    evidences = []
    for c in y.unique():
        target = (y == c).double()
        z = u.T @ target
        z2 = z**2
        outside = max(float(target @ target - z2.sum()), 0.0)  # part of y off F's column space
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t = alpha / beta
            gamma = float((sigma / (sigma + t)).sum())
            m2 = float((sigma * z2 / (sigma + t) ** 2).sum())  # |m|², m the posterior mean
            res2 = float((z2 * (t / (sigma + t)) ** 2).sum()) + outside  # |F m - y|²
            new_alpha, new_beta = gamma / (m2 + 1e-12), (n - gamma) / (res2 + 1e-12)
            done = abs(new_alpha / new_beta - t) / t < 1e-5
            alpha, beta = new_alpha, new_beta
            if done:
                break
        log_det = float(torch.log(alpha + beta * sigma).sum()) + (d - k) * math.log(alpha)
        evidence = (
            d / 2 * math.log(alpha)
            + n / 2 * math.log(beta)
            - n / 2 * math.log(2 * math.pi)
            - beta / 2 * res2
            - alpha / 2 * m2
            - log_det / 2
        )
        evidences.append(evidence / n)
    return sum(evidences) / len(evidences)


def h_score(features: torch.Tensor, labels: torch.Tensor) -> float:
    """H-score: tr(cov(f)⁻¹ cov(E[f | y])), the share of feature variance that the class means
    explain (Bao, Li, Huang, Wang and Lee, "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning", ICIP 2019), with cov(f) shrunk by Ledoit–Wolf.

    Unshrunk, the score saturates at (classes − 1) whenever the feature dimension nears the
    number of images (512-d features of 250 images), since then the class means explain all of
    a near-singular covariance; the shrunk estimate is the remedy of Ibrahim, Ponomareva and
    Mazumder ("Newer is not always better", 2022). Invariant to the units of the features.
    """
    from sklearn.covariance import ledoit_wolf

    f, y = _checked(features, labels)
    f = f - f.mean(0)
    cov = torch.from_numpy(ledoit_wolf(f.numpy(), assume_centered=True)[0])
    means = torch.zeros_like(f)
    for c in y.unique():
        means[y == c] = f[y == c].mean(0)
    between = means.T @ means / len(f)
    return float(torch.trace(torch.linalg.solve(cov, between)))


def _coding_rate(z: torch.Tensor, eps: float) -> float:
    n, d = z.shape
    gram = torch.eye(d, dtype=z.dtype) + (d / (n * eps)) * (z.T @ z)
    return 0.5 * float(torch.logdet(gram))


def transrate(features: torch.Tensor, labels: torch.Tensor, eps: float = 1e-4) -> float:
    """TransRate: the coding rate of all features minus the label-weighted coding rate of each
    class's features, R(Z, ε) − Σ_c (n_c / n) R(Z_c, ε), with R(Z, ε) = ½ log det(I + d/(nε) ZᵀZ)
    on centred features (Huang, Huang, Shao, Wang and Jiang, "Frustratingly Easy
    Transferability Estimation", ICML 2022): high when classes are compact and apart.
    """
    f, y = _checked(features, labels)
    f = f - f.mean(0)
    whole = _coding_rate(f, eps)
    per_class = sum((y == c).double().mean() * _coding_rate(f[y == c], eps) for c in y.unique())
    return whole - float(per_class)


def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy (cosine similarity, majority vote): a
    training-free stand-in for a linear probe."""
    f, y = _checked(features, labels)
    f = torch.nn.functional.normalize(f, dim=1)
    sim = f @ f.T
    sim.fill_diagonal_(-math.inf)  # leave each sample out of its own vote
    k = min(k, len(f) - 1)
    nearest = sim.topk(k, dim=1).indices
    votes = torch.nn.functional.one_hot(y[nearest], int(y.max()) + 1).sum(1)
    return float((votes.argmax(1) == y).double().mean())
