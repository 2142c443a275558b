"""Regularised fine-tuning: penalties that pull the backbone towards its starting point.

- :class:`L2SP` — α/2‖θ−θpre‖² on the backbone plus β/2‖θ_head‖² (Li, Grandvalet and Davoine,
  "Explicit inductive bias for transfer learning with convolutional networks", ICML 2018).
- :class:`EWC` — λ/2 Σ F_i(θ_i−θ*_i)² with a diagonal Fisher F (Kirkpatrick et al., PNAS 2017).

Both anchor θpre / θ* to the backbone weights as built (the pretrained or source weights), keep
them in non-persistent buffers (they follow the module's device, stay out of checkpoints) and
skip frozen parameters, which cannot have moved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from transferlab.errors import ConfigError

# (source checkpoint, samples) -> the backbone's diagonal Fisher on that run's training data
FisherProvider = Callable[[str, int], dict[str, torch.Tensor]]


def _buffer_name(param_name: str) -> str:
    return param_name.replace(".", "__")


class _Anchored(nn.Module):
    """Holds one anchor tensor per backbone parameter, named after it."""

    def __init__(self, backbone: nn.Module, anchors: dict[str, torch.Tensor]):
        super().__init__()
        self.names = [n for n, _ in backbone.named_parameters()]
        for name in self.names:
            self.register_buffer(
                _buffer_name(name), anchors[name].detach().clone(), persistent=False
            )

    def anchored(self, backbone: nn.Module) -> Iterable[tuple[str, nn.Parameter, torch.Tensor]]:
        for name, p in backbone.named_parameters():
            if p.requires_grad:
                yield name, p, getattr(self, _buffer_name(name))


class L2SP(_Anchored):
    """α/2‖θ−θpre‖² over the backbone + β/2‖θ_head‖²; call with the module."""

    def __init__(
        self, backbone: nn.Module, head: nn.Module, alpha: float = 0.01, beta: float = 0.01
    ):
        if alpha < 0 or beta < 0:
            raise ConfigError(
                f"regularization.alpha and regularization.beta must be >= 0, got {alpha} and {beta}."
            )
        super().__init__(backbone, dict(backbone.named_parameters()))
        self.alpha, self.beta = alpha, beta

    def forward(self, module) -> torch.Tensor:
        backbone = module.backbone.model
        dist = sum(((p - a) ** 2).sum() for _, p, a in self.anchored(backbone))
        head = sum((p**2).sum() for p in module.head.parameters() if p.requires_grad)
        return self.alpha / 2 * torch.as_tensor(dist) + self.beta / 2 * torch.as_tensor(head)


class EWC(_Anchored):
    """λ/2 Σ F_i(θ_i−θ*_i)² over the backbone, F the diagonal Fisher on the source task.

    Args:
        backbone, head: the module's backbone model and head (head unused: a new task's head has
            no source Fisher).
        strength: λ.
        fisher: a safetensors file of per-parameter Fisher diagonals (``make pretrain`` writes
            one next to the exported backbone), or None.
        source_ckpt: a checkpoint of the source run; its Fisher is estimated on the source
            training data it records and saved to ``fisher`` (when given) for later runs.
        num_samples: source images the estimate averages over.
        fisher_provider: ``(source_ckpt, num_samples) -> {param name: Fisher diagonal}``, which
            estimates the Fisher of a saved run (the build layer passes one).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        strength: float = 100.0,
        fisher: str | None = None,
        source_ckpt: str | None = None,
        num_samples: int = 256,
        fisher_provider: FisherProvider | None = None,
    ):
        if strength < 0:
            raise ConfigError(f"regularization.strength must be >= 0, got {strength}.")
        super().__init__(backbone, dict(backbone.named_parameters()))
        self.strength = strength
        values = load_or_estimate_fisher(fisher, source_ckpt, num_samples, fisher_provider)
        missing = [n for n in self.names if n not in values]
        if missing:
            raise ConfigError(
                f"The Fisher file {fisher} has no entry for {missing[0]} (and {len(missing) - 1} "
                "more): it was made for another backbone; estimate it for this one with "
                "regularization.source_ckpt=<source run checkpoint>."
            )
        for name in self.names:
            self.register_buffer(
                f"fisher_{_buffer_name(name)}", values[name].float().clone(), persistent=False
            )

    def forward(self, module) -> torch.Tensor:
        total = sum(
            (getattr(self, f"fisher_{_buffer_name(n)}") * (p - a) ** 2).sum()
            for n, p, a in self.anchored(module.backbone.model)
        )
        return self.strength / 2 * torch.as_tensor(total)


def load_or_estimate_fisher(
    fisher: str | None,
    source_ckpt: str | None,
    num_samples: int,
    provider: FisherProvider | None = None,
) -> dict[str, torch.Tensor]:
    """The Fisher file's values, or the provider's estimate for ``source_ckpt`` (then saved)."""
    from safetensors.torch import load_file, save_file

    if fisher and Path(fisher).is_file():
        return load_file(fisher)
    if not source_ckpt or provider is None:
        where = f"{fisher} does not exist" if fisher else "no Fisher file is set"
        raise ConfigError(
            f"EWC needs a source-task Fisher but {where}: run `make pretrain` (it writes one), or "
            "set regularization.fisher=<file> or regularization.source_ckpt=<source checkpoint>."
        )
    values = provider(source_ckpt, num_samples)
    if fisher:
        Path(fisher).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in values.items()}, fisher)
    return values


def diagonal_fisher(
    module, images: torch.Tensor, labels: torch.Tensor, num_samples: int = 256
) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher of the backbone: mean over samples of (∂ log p(y|x) / ∂θ)².

    One backward pass per sample (a batch gradient squared would not be the Fisher). The model
    is in eval mode, so BatchNorm uses its running statistics and stays unchanged.
    """
    module.eval()
    params = dict(module.backbone.model.named_parameters())
    was = {n: p.requires_grad for n, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    count = min(num_samples, len(labels))
    picks = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:count]
    for i in picks.tolist():
        module.zero_grad(set_to_none=True)
        logp = torch.log_softmax(module(images[i : i + 1].to(module.device)), -1)
        (-logp[0, int(labels[i])]).backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach() ** 2 / count
    module.zero_grad(set_to_none=True)
    for n, p in params.items():
        p.requires_grad_(was[n])
    return fisher
