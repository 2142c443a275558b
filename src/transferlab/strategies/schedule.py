"""When frozen backbone groups start training: the unfreezing schedule as plain data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transferlab.errors import ConfigError


@dataclass(frozen=True)
class UnfreezeSchedule:
    """When frozen backbone groups start training, top group first.

    Exactly one trigger: ``every`` N epochs one more group, explicit epoch ``milestones`` (one
    more group at each), or ``monitor`` on plateau (one more group after ``patience`` epochs
    without improvement).

    Args:
        every: unfreeze one more group every N epochs.
        milestones: epochs at which one more group is unfrozen.
        monitor: validation metric for plateau unfreezing (e.g. ``val/loss``).
        mode: ``min`` or ``max`` for ``monitor``.
        patience: epochs without improvement before the next group is unfrozen.
        min_delta: the relative change that counts as an improvement (0.02 = 2% better than
            the best so far); 0 counts any change. Under a decaying LR a head-only phase keeps
            improving by tiny steps, so 0 may never see a plateau.
        groups_per_step: groups unfrozen at each event (``all`` = the whole backbone at once).
        rewarm: linear LR warm-up (steps) restarted at each event; 0 disables it.
    """

    every: int | None = None
    milestones: Sequence[int] | None = None
    monitor: str | None = None
    mode: str = "min"
    patience: int = 1
    min_delta: float = 0.0
    groups_per_step: int | str = 1
    rewarm: int = 0

    def __post_init__(self):
        chosen = [x is not None for x in (self.every, self.milestones, self.monitor)]
        if sum(chosen) != 1:
            raise ConfigError(
                "strategy.unfreeze needs exactly one of every, milestones or monitor; "
                "set the others to null."
            )
        if self.every is not None and self.every < 1:
            raise ConfigError(f"strategy.unfreeze.every must be >= 1, got {self.every}.")
        if self.mode not in ("min", "max"):
            raise ConfigError(f"strategy.unfreeze.mode must be min or max, got '{self.mode}'.")
        if not 0 <= self.min_delta < 1:
            raise ConfigError(
                f"strategy.unfreeze.min_delta must be in [0, 1) (a relative change), "
                f"got {self.min_delta}."
            )

    def improves(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta`` (relative)."""
        if best is None:
            return True
        margin = self.min_delta * abs(best)
        return value < best - margin if self.mode == "min" else value > best + margin

    def events_by(self, epoch: int) -> int:
        """Unfreeze events that happened by the start of ``epoch`` (epoch-triggered schedules)."""
        if self.every is not None:
            return epoch // self.every
        if self.milestones is not None:
            return sum(1 for m in self.milestones if m <= epoch)
        return 0

    def groups_after(self, events: int, num_groups: int) -> int:
        """How many top groups train after ``events`` events, capped at ``num_groups``."""
        per = num_groups if self.groups_per_step == "all" else int(self.groups_per_step)
        return min(num_groups, events * per)

    def check(self, num_groups: int, has_val: bool) -> None:
        """Reject schedules that cannot happen on this backbone and trainer."""
        if self.monitor is not None and not has_val:
            raise ConfigError(
                f"Plateau unfreezing monitors '{self.monitor}' but there is no validation set; "
                "use unfreeze.every or unfreeze.milestones, or enable validation."
            )
        if self.milestones is not None and self.groups_per_step != "all":
            needed = len(self.milestones) * int(self.groups_per_step)
            if needed > num_groups:
                raise ConfigError(
                    f"The unfreeze schedule asks for {needed} layer groups but the backbone has "
                    f"only {num_groups}; give at most {num_groups} milestones."
                )
