"""LR per group at given steps, for every schedule, honouring per-group multipliers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferlab.errors import ConfigError
from transferlab.optim import MultiplierLR, build_param_groups, set_group_multiplier
from transferlab.schedules import (
    Constant,
    Cosine,
    CosineWarmRestarts,
    OneCycle,
    SlantedTriangular,
    Step,
)
from transferlab.strategies import Strategy, backbone_multipliers

TOTAL = 100


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (Constant(), {0: 1.0, 50: 1.0, 99: 1.0}),
        (Constant(warmup=10), {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0}),
        (Cosine(), {0: 1.0, 50: 0.5, 100: 0.0}),
        (Cosine(warmup=0.1, min_lr_ratio=0.1), {0: 0.1, 9: 1.0, 10: 1.0, 55: 0.55, 100: 0.1}),
        (CosineWarmRestarts(t0=0.25), {0: 1.0, 12.5: 0.5, 25: 1.0, 50: 1.0, 75: 1.0}),
        (CosineWarmRestarts(t0=20, t_mult=2), {0: 1.0, 20: 1.0, 40: 0.5, 60: 1.0}),
        (OneCycle(pct_start=0.3), {0: 1 / 25, 15: (1 + 1 / 25) / 2, 30: 1.0, 100: 1 / 25e4}),
        (Step(step_size=0.3, gamma=0.1), {0: 1.0, 29: 1.0, 30: 0.1, 60: 0.01, 99: 0.001}),
        (SlantedTriangular(cut_frac=0.1, ratio=32), {0: 1 / 32, 10: 1.0, 100: 1 / 32}),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, dict) else "",
)
def test_schedule_values(schedule, expected):
    for step, value in expected.items():
        if step != int(step):  # mid-cycle of a 25-step cycle: interpolate neighbours
            got = (schedule(int(step), TOTAL) + schedule(int(step) + 1, TOTAL)) / 2
            assert got == pytest.approx(value, abs=0.04), step
        else:
            assert schedule(int(step), TOTAL) == pytest.approx(value, abs=1e-6), step


def make_optimizer(strategy: Strategy, base_lr: float = 1e-2):
    layers = [nn.Linear(3, 3) for _ in range(4)]
    groups = [(f"g{i}", list(layer.named_parameters())) for i, layer in enumerate(layers)]
    mults = backbone_multipliers(strategy, 3) + [1.0]
    return torch.optim.SGD(build_param_groups(groups, mults, base_lr, 0.0), lr=base_lr)


def lrs(optimizer) -> dict[str, float]:
    return {
        g["name"]: g["lr"] for g in optimizer.param_groups if not g["name"].endswith("/no_decay")
    }


@pytest.mark.parametrize(
    "schedule",
    [
        Cosine(),
        OneCycle(),
        CosineWarmRestarts(t0=0.3),
        Step(),
        SlantedTriangular(),
        Constant(warmup=5),
    ],
)
@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_every_group_follows_the_schedule_times_its_multiplier(schedule, decay):
    opt = make_optimizer(Strategy(backbone_lr_mult=0.1, layer_decay=decay))
    sched = MultiplierLR(opt, schedule, TOTAL)
    mults = backbone_multipliers(Strategy(backbone_lr_mult=0.1, layer_decay=decay), 3) + [1.0]
    for step in range(TOTAL):
        factor = schedule(step, TOTAL)
        got = lrs(opt)
        for i, m in enumerate(mults):
            assert got[f"g{i}"] == pytest.approx(1e-2 * m * factor), (step, i)
        opt.step()
        sched.step()


def test_a_group_unfrozen_mid_training_joins_the_schedule():
    opt = make_optimizer(Strategy(trainable_groups=0))
    schedule = OneCycle()
    sched = MultiplierLR(opt, schedule, TOTAL)
    assert lrs(opt)["g2"] == 0.0
    for _ in range(40):
        opt.step()
        sched.step()
    set_group_multiplier(opt, "g2", 0.5)
    opt.step()
    sched.step()
    assert lrs(opt)["g2"] == pytest.approx(1e-2 * 0.5 * schedule(41, TOTAL))
    assert lrs(opt)["g3"] == pytest.approx(1e-2 * schedule(41, TOTAL))


def test_scheduler_state_resumes_without_the_schedule_object():
    opt = make_optimizer(Strategy())
    sched = MultiplierLR(opt, Cosine(), TOTAL)
    for _ in range(10):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert "schedule" not in state
    again = MultiplierLR(make_optimizer(Strategy()), Cosine(), TOTAL)
    again.load_state_dict(state)
    assert again.last_epoch == 10


def test_unknown_length_is_rejected():
    with pytest.raises(ConfigError, match="needs a known, positive number of training steps"):
        MultiplierLR(make_optimizer(Strategy()), OneCycle(), 0)


@pytest.mark.parametrize("bad", [Cosine(warmup=-1), Step(step_size=-2)])
def test_negative_lengths_are_rejected(bad):
    with pytest.raises(ConfigError, match="must be >= 0"):
        bad(0, TOTAL)
