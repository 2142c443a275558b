"""LR schedules as pure functions ``schedule(step, total_steps) -> factor`` of the peak LR.

:class:`transferlab.optim.MultiplierLR` multiplies the factor into every param group's
``base_lr * lr_mult``, so all of them honour per-group multipliers, also for groups unfrozen
mid-training. Lengths given as ``x < 1`` are fractions of training, ``x >= 1`` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from transferlab.errors import ConfigError


def steps(total: int, length: float, what: str) -> int:
    """A length in steps: a fraction of ``total`` when < 1, else a step count."""
    if length < 0:
        raise ConfigError(f"scheduler.{what} must be >= 0, got {length}.")
    return int(round(length * total)) if length < 1 else int(length)


def _cosine(progress: float, floor: float) -> float:
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _with_warmup(step: int, total: int, warmup: float, after) -> float:
    w = steps(total, warmup, "warmup")
    if step < w:
        return (step + 1) / w
    return after(step - w, max(1, total - w))


@dataclass
class Constant:
    """A flat LR after an optional linear warm-up."""

    warmup: float = 0.0

    def __call__(self, step: int, total: int) -> float:
        return _with_warmup(step, total, self.warmup, lambda s, t: 1.0)


@dataclass
class Cosine:
    """Cosine decay from the peak to ``min_lr_ratio`` x peak, after an optional linear warm-up."""

    warmup: float = 0.0
    min_lr_ratio: float = 0.0

    def __call__(self, step: int, total: int) -> float:
        return _with_warmup(
            step, total, self.warmup, lambda s, t: _cosine(s / t, self.min_lr_ratio)
        )


@dataclass
class CosineWarmRestarts:
    """SGDR (Loshchilov & Hutter 2017): cosine cycles, the first ``t0`` long, each next one
    ``t_mult`` times longer, restarting at the peak.

    Args:
        t0: first cycle length (fraction of training or steps).
        t_mult: cycle length growth factor (>= 1).
        min_lr_ratio: floor of every cycle, as a fraction of the peak (eta_min).
        warmup: linear warm-up before the first cycle.
    """

    t0: float = 0.25
    t_mult: float = 1.0
    min_lr_ratio: float = 0.0
    warmup: float = 0.0

    def __post_init__(self):
        if self.t_mult < 1:
            raise ConfigError(f"scheduler.t_mult must be >= 1, got {self.t_mult}.")

    def __call__(self, step: int, total: int) -> float:
        def cycles(s: int, t: int) -> float:
            length = max(1, steps(t, self.t0, "t0"))
            while s >= length:
                s -= length
                length = max(1, int(round(length * self.t_mult)))
            return _cosine(s / length, self.min_lr_ratio)

        return _with_warmup(step, total, self.warmup, cycles)


@dataclass
class OneCycle:
    """1cycle (Smith & Topin 2019): cosine rise from peak/div_factor to the peak over
    ``pct_start`` of training, then cosine fall to peak/(div_factor*final_div_factor)."""

    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __call__(self, step: int, total: int) -> float:
        start, end = 1 / self.div_factor, 1 / (self.div_factor * self.final_div_factor)
        up = max(1, int(round(self.pct_start * total)))
        if step < up:
            return start + (1 - start) * (1 - math.cos(math.pi * step / up)) / 2
        return (
            end
            + (1 - end) * (1 + math.cos(math.pi * min(1.0, (step - up) / max(1, total - up)))) / 2
        )


@dataclass
class Step:
    """Multiply the LR by ``gamma`` every ``step_size`` (fraction of training or steps)."""

    step_size: float = 0.3
    gamma: float = 0.1
    warmup: float = 0.0

    def __call__(self, step: int, total: int) -> float:
        size = max(1, steps(total, self.step_size, "step_size"))
        return _with_warmup(step, total, self.warmup, lambda s, t: self.gamma ** (s // size))


@dataclass
class SlantedTriangular:
    """ULMFiT's slanted triangular LR (Howard & Ruder 2018): a short linear rise over
    ``cut_frac`` of training, a long linear fall; ``ratio`` = peak / lowest LR."""

    cut_frac: float = 0.1
    ratio: float = 32.0

    def __call__(self, step: int, total: int) -> float:
        cut = max(1, int(math.floor(total * self.cut_frac)))
        p = step / cut if step < cut else 1 - (step - cut) / max(1, cut * (1 / self.cut_frac - 1))
        return (1 + max(p, 0.0) * (self.ratio - 1)) / self.ratio


@dataclass
class DANNAnnealing:
    """DANN's LR annealing (Ganin & Lempitsky 2015, the ``scheduler=dann_annealing`` choice): ``1 / (1 + alpha * p) ** beta`` over training progress p."""

    alpha: float = 10.0
    beta: float = 0.75

    def __call__(self, step: int, total: int) -> float:
        return 1.0 / (1.0 + self.alpha * min(1.0, step / max(1, total))) ** self.beta
