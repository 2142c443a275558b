"""What every benchmark shares: composing a run's config, a plain PyTorch training loop, and
timing helpers. Figures are ratios of medians taken in one process, A and B interleaved."""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig

from transferlab import compose
from transferlab.speed import read_clock

ROOT = Path(__file__).resolve().parents[1]
# every benchmark run: random-init backbone (no stage-1 file needed on a fresh clone), no
# console noise, CSV logs off; each override is what a user would type
QUIET = ["print_config=false", "trainer.enable_progress_bar=false", "logger=none"]


def compose_cfg(overrides: list[str], run_dir: Path) -> DictConfig:
    """The train config for ``overrides``, as ``transferlab-train`` would see it, run in run_dir."""
    return compose([*QUIET, *overrides], run_dir=run_dir, root_dir=ROOT)


@contextlib.contextmanager
def quiet():
    """Silence Lightning's and transferlab's info lines and warnings while benchmarking."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "transferlab")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)


def timed(args: list[str]) -> float:
    """Wall-clock seconds of ``python <args> <QUIET>`` run from the repository root; a failing
    run raises with the end of its error output (a benchmark of a failed run times nothing)."""
    cmd = [sys.executable, *args, *QUIET]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(
    model: torch.nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    mean: torch.Tensor,
    std: torch.Tensor,
    epochs: int,
    scheduler=None,
    clip: float = 1.0,
    label_smoothing: float = 0.0,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    clock: str = "wall",
) -> list[float]:
    """Train the way a hand-written fine-tuning loop does; returns each iteration's seconds.

    One iteration is the wait for the batch plus zero_grad, forward, loss, backward, clip and
    step; the first batch of each epoch is left out, as :class:`transferlab.speed.StepTimer`
    does. uint8 images are normalised on the device, as transferlab does. ``clock``: ``wall``
    or ``cpu`` (:func:`transferlab.speed.read_clock`).
    """
    step = PlainStep(
        model, optimizer, mean, std, scheduler, clip, label_smoothing, autocast_dtype, channels_last
    )
    times = []
    model.train()
    for _ in range(epochs):
        sync(step.device)
        start, first = read_clock(clock), True
        for x, y in loader:
            step(x, y)
            sync(step.device)
            now = read_clock(clock)
            if not first:
                times.append(now - start)
            start, first = now, False
    return times


class PlainStep:
    """One update of the plain loop on a batch: to the device, normalise, zero_grad, forward,
    loss, backward, clip, step, schedule."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mean: torch.Tensor,
        std: torch.Tensor,
        scheduler=None,
        clip: float = 1.0,
        label_smoothing: float = 0.0,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
    ):
        self.model, self.optimizer, self.scheduler, self.clip = model, optimizer, scheduler, clip
        self.mean, self.std, self.device, self.autocast_dtype = (
            mean,
            std,
            mean.device,
            autocast_dtype,
        )
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        x = ((x.float() / 255 - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.autocast_dtype):
            loss = self.criterion(self.model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision in ``dtype`` on ``device``, or nothing when dtype is None."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan
