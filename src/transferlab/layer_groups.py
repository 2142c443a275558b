"""The module's layer groups: which backbone groups train, at which LR multiplier, how their
BatchNorm layers behave, and the per-group parameter report."""

from __future__ import annotations

from dataclasses import replace

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from transferlab.backbones import HEAD_GROUP
from transferlab.optim import refresh_lrs, set_group_multiplier
from transferlab.strategies import backbone_multipliers


class LayerGroups:
    """Part of :class:`transferlab.module.TransferModule`: its backbone's layer groups and the
    head, bottom to top, each with the LR multiplier in ``self.lr_multipliers`` (0: frozen)."""

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.backbone.groups] + [HEAD_GROUP]

    def named_group_parameters(self) -> list[tuple[str, list[tuple[str, nn.Parameter]]]]:
        """(group, named params) bottom to top, the head last."""
        params = dict(self.backbone.model.named_parameters())
        groups = [(g.name, [(n, params[n]) for n in g.param_names]) for g in self.backbone.groups]
        return groups + [(HEAD_GROUP, list(self.head.named_parameters()))]

    def apply_multipliers(self) -> None:
        """Freeze (``requires_grad=False``) exactly the groups whose multiplier is 0; in the
        others, under a parameter-efficient strategy, only its parameters train (the head's all)."""
        for (group, params), mult in zip(
            self.named_group_parameters(), self.lr_multipliers, strict=True
        ):
            for name, p in params:
                p.requires_grad_(mult > 0 and (group == HEAD_GROUP or self.backbone.trains(name)))

    def set_trainable_top(self, k: int) -> list[str]:
        """Train exactly the top ``k`` backbone groups (and the head); returns newly opened groups.

        Multipliers change in place, in the module and in the optimizer's existing param groups.
        """
        n = len(self.backbone.groups)
        full = backbone_multipliers(replace(self.strategy, trainable_groups="all"), n)
        new = [m if i >= n - k else 0.0 for i, m in enumerate(full)] + [1.0]
        opened = [
            g
            for g, old, m in zip(self.group_names, self.lr_multipliers, new, strict=True)
            if old == 0 < m
        ]
        self.lr_multipliers = new
        self.apply_multipliers()
        if self._trainer is not None and self.trainer.optimizers:
            optimizer = self.trainer.optimizers[0]
            for name, mult in zip(self.group_names, new, strict=True):
                set_group_multiplier(optimizer, name, mult)
            configs = self.trainer.lr_scheduler_configs
            refresh_lrs(optimizer, configs[0].scheduler if configs else None)
        if self.training:
            self.train()  # re-apply the BN policy to the new frozen set
        return opened

    def frozen_batchnorms(self) -> list[_BatchNorm]:
        frozen = {
            n
            for (_, params), m in zip(
                self.named_group_parameters(), self.lr_multipliers, strict=True
            )
            if m == 0
            for n, _ in params
        }
        return [
            mod
            for name, mod in self.backbone.model.named_modules()
            if isinstance(mod, _BatchNorm) and f"{name}.weight" in frozen
        ]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.strategy.bn == "frozen":
            for bn in self.frozen_batchnorms():  # keep frozen groups' running statistics fixed
                bn.eval()
        return self

    def parameter_report(self) -> list[dict]:
        """One row per group: name, parameter count, trainable count, peak LR, the parameters a
        PEFT method added (``adapter``) and the trainable share in percent."""
        rows = []
        added = self.backbone.added
        for (name, params), mult in zip(
            self.named_group_parameters(), self.lr_multipliers, strict=True
        ):
            n = sum(p.numel() for _, p in params)
            trainable = sum(p.numel() for _, p in params if p.requires_grad)
            adapter = sum(p.numel() for pn, p in params if name != HEAD_GROUP and pn in added)
            rows.append(
                {
                    "group": name,
                    "params": n,
                    "trainable": trainable,
                    "lr": self.base_lr * mult,
                    "adapter": adapter,
                    "trainable_pct": 100.0 * trainable / n if n else 0.0,
                }
            )
        return rows
