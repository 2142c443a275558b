"""Which recipe to try first: the two facts the classic transfer decision table turns on —
labelled images per class and how far the source domain is from the target — measured, then
turned into a strategy with its reasons. Pure functions over numbers and features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# below this many labelled target images per class, the data count as "small"
SMALL_PER_CLASS = 100
# proxy A-distance below this: the source domain counts as "similar" (PAD runs from 0, the
# same distribution, to 2, perfectly separable)
SIMILAR_PAD = 1.0


def proxy_a_distance(source: torch.Tensor, target: torch.Tensor, seed: int = 0) -> float:
    """Proxy A-distance 2(1 − 2ε), ε the cross-validated error of a linear classifier telling
    source features from target features (Ben-David, Blitzer, Crammer and Pereira, "Analysis
    of Representations for Domain Adaptation", NIPS 2006). Equal-sized samples of both."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(source), len(target))
    picks = [rng.permutation(len(x))[:n] for x in (source, target)]
    x = np.concatenate([source.numpy()[picks[0]], target.numpy()[picks[1]]])
    y = np.concatenate([np.zeros(n), np.ones(n)])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    accuracy = cross_val_score(model, x, y, cv=min(5, n)).mean()
    return float(np.clip(2 * (1 - 2 * (1 - accuracy)), 0.0, 2.0))


@dataclass(frozen=True)
class Advice:
    """A strategy to try first, its settings, why, and the runner-up to confirm it against."""

    strategy: str
    overrides: tuple[str, ...]
    reason: str
    runner_up: str
    runner_up_overrides: tuple[str, ...]


def recommend(per_class: float, pad: float) -> Advice:
    """The decision table: labelled data (small / large) x source domain (similar / different)."""
    small, similar = per_class < SMALL_PER_CLASS, pad < SIMILAR_PAD
    facts = (
        f"{per_class:.0f} labelled images per class ({'small' if small else 'large'}: "
        f"threshold {SMALL_PER_CLASS}), proxy A-distance {pad:.2f} "
        f"({'similar' if similar else 'different'} domains: threshold {SIMILAR_PAD})"
    )
    full = ("strategy=full",)
    if small and similar:
        return Advice(
            "feature_extraction",
            ("strategy=feature_extraction",),
            f"{facts}: the source features should already fit; training more risks overfitting",
            "full",
            full,
        )
    if small:
        return Advice(
            "partial",
            ("strategy=partial", "strategy.trainable_groups=2"),
            f"{facts}: adapt the top layers to the new domain, keep the generic lower ones",
            "full",
            full,
        )
    if similar:
        return Advice(
            "full",
            ("strategy=full", "strategy.backbone_lr_mult=0.1"),
            f"{facts}: enough labels to fine-tune everything, gently, near the source weights",
            "feature_extraction",
            ("strategy=feature_extraction",),
        )
    return Advice(
        "full",
        ("strategy=full", "strategy.backbone_lr_mult=1.0"),
        f"{facts}: enough labels and a distant source: fine-tune everything at the full LR",
        "partial",
        ("strategy=partial", "strategy.trainable_groups=2"),
    )
