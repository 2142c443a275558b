"""Bottleneck adapters (Houlsby et al., "Parameter-efficient transfer learning for NLP", ICML
2019) inserted after chosen modules of a timm model: after each block's MLP in a transformer or
ConvNeXt (on the channel axis of ``[..., C]`` features), after each residual block in a CNN (a
1x1-conv adapter on ``[N, C, H, W]`` maps)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from transferlab.errors import ConfigError


class Bottleneck(nn.Module):
    """x + up(gelu(down(x))); ``up`` starts at zero, so the adapted model starts as the base."""

    def __init__(self, dim: int, hidden: int, conv: bool):
        super().__init__()
        make = (lambda i, o: nn.Conv2d(i, o, 1)) if conv else nn.Linear
        self.down, self.act, self.up = make(dim, hidden), nn.GELU(), make(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class AdapterAfter(nn.Module):
    """``adapter(base_layer(...))``: the base module keeps its weights under ``base_layer``."""

    def __init__(self, base_layer: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.base_layer, self.adapter = base_layer, adapter

    def forward(self, *args, **kwargs):
        return self.adapter(self.base_layer(*args, **kwargs))


def output_width(module: nn.Module) -> tuple[int, bool]:
    """(channels, is a conv map) of what ``module`` returns: those of its last Linear or Conv2d
    (timm registers a block's output projection last)."""
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            last = m
    if last is None:
        raise ConfigError(
            f"A bottleneck adapter needs a module ending in a Linear or Conv2d layer, but "
            f"{type(module).__name__} has none; choose other strategy.peft.target_modules."
        )
    if isinstance(last, nn.Linear):
        return last.out_features, False
    return last.out_channels, True


def inject_adapters(model: nn.Module, targets: Sequence[str], hidden: int) -> None:
    """Wrap each named module of ``model`` in place with a bottleneck adapter after it."""
    for name in reversed(targets):  # inner modules first: wrapping renames what lies below
        module = model.get_submodule(name)
        width, conv = output_width(module)
        parent, _, child = name.rpartition(".")
        wrapped = AdapterAfter(module, Bottleneck(width, hidden, conv))
        setattr(model.get_submodule(parent), child, wrapped)
