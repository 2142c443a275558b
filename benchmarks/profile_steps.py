"""Where the framework's own time per training step goes: the small-model run of
:mod:`benchmarks.overhead` (``NOOP``) under cProfile, training steps only, listed per step.

    python -m benchmarks.profile_steps                  # the parts of a step, ms per step
    python -m benchmarks.profile_steps --top 25         # and the 25 costliest functions
    python -m benchmarks.profile_steps --hooks          # CPU time of each per-step method

Each epoch after the first is profiled from its start to its validation (so every training step
with its hooks, the result collection, the schedule step and the next batch's fetch, but no
validation or checkpoint). cProfile adds a few microseconds per Python call, so Lightning's many
small calls look dearer than they are: read the rows as shares, and measure a change with
``python -m benchmarks.run --parts own_time``. The same profile of the plain loop (same model,
data, optimizer) gives the shared part of a step.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import pstats
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from benchmarks.common import compose_cfg, plain_loop, quiet
from benchmarks.overhead import NOOP, plain_parts
from transferlab.build import build_experiment
from transferlab.fit import fit_and_evaluate

# (label, file suffix, function name): the parts of a training step worth naming
PARTS = [
    ("Lightning's automatic optimization (closure and hooks)", "automatic.py", "run"),
    ("  training_step (forward, loss, metrics, log)", "transferlab/module.py", "training_step"),
    ("    forward (normalise, backbone, head)", "transferlab/module.py", "features"),
    ("    loss module", "torch/nn/modules/loss.py", "forward"),
    ("    training-metric update (BufferedMetrics)", "transferlab/metrics.py", "update"),
    (
        "self.log, every call (the training loss: loss_log)",
        "pytorch_lightning/core/module.py",
        "log",
    ),
    ("  backward", "torch/_tensor.py", "backward"),
    ("  gradient clipping", "pytorch_lightning/core/module.py", "clip_gradients"),
    ("  optimizer step (the update itself)", "torch/optim/adamw.py", "adamw"),
    ("  zero_grad", "torch/optim/optimizer.py", "zero_grad"),
    ("LR scheduler step", "training_epoch_loop.py", "update_lr_schedulers"),
    ("batch fetch (loader)", "loops/fetchers.py", "__next__"),
    ("batch to device", "pytorch_lightning/strategies/strategy.py", "batch_to_device"),
    ("callback hooks, all", "pytorch_lightning/trainer/call.py", "_call_callback_hooks"),
    ("  LRHistory.on_train_batch_start", "transferlab/callbacks.py", "on_train_batch_start"),
    ("  DivergenceGuard.on_train_batch_end", "transferlab/callbacks.py", "on_train_batch_end"),
    ("  StepTimer (the benchmark's clock)", "transferlab/speed.py", "_now"),
    (
        "  TransferModule.on_train_batch_end (loss sums, step log)",
        "transferlab/module.py",
        "on_train_batch_end",
    ),
    ("module hooks, all", "pytorch_lightning/trainer/call.py", "_call_lightning_module_hook"),
    ("result collection, per batch", "logger_connector.py", "on_batch_end"),
    ("logging step metrics", "logger_connector.py", "update_train_step_metrics"),
]


# the framework's own per-step methods, timed one by one with --hooks
HOOKS = [
    ("transferlab.module", "TransferModule", "total_loss"),
    ("transferlab.module", "TransferModule", "on_train_batch_end"),
    ("transferlab.loss_log", "EpochMeans", "end_step"),
    ("transferlab.metrics", "BufferedMetrics", "update"),
    ("transferlab.callbacks", "DivergenceGuard", "on_train_batch_end"),
    ("transferlab.callbacks", "LRHistory", "on_train_batch_start"),
]


class ProfileEpochs(pl.Callback):
    """Profiles each training epoch after the first, from its start to its validation (with
    ``profile=None`` it only marks that window in ``on``)."""

    def __init__(self, profile: cProfile.Profile | None):
        self.profile, self.on, self.steps = profile, False, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= 1:
            self.on = True
            if self.profile is not None:
                self.profile.enable()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += self.on

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.on and self.profile is not None:
            self.profile.disable()
        self.on = False


def timed_hooks(window: ProfileEpochs, totals: dict[str, list]) -> list[tuple]:
    """Wrap each of HOOKS the class defines itself so that its CPU time (``time.thread_time``)
    and calls add up in ``totals`` inside the window; returns what to put back."""
    restore = []
    for module_name, class_name, name in HOOKS:
        try:
            owner = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):  # an older version without it: nothing to time
            continue
        method = owner.__dict__.get(name)
        if method is None:
            continue

        def timed(*args, _method=method, _key=f"{class_name}.{name}", **kwargs):
            start = time.thread_time()
            try:
                return _method(*args, **kwargs)
            finally:
                if window.on:
                    total = totals.setdefault(_key, [0.0, 0])
                    total[0] += time.thread_time() - start
                    total[1] += 1

        setattr(owner, name, timed)
        restore.append((owner, name, method))
    return restore


def hook_costs(run_dir: Path, epochs: int) -> tuple[dict[str, list], int]:
    """CPU seconds and calls of each of HOOKS over the run's training steps (the first epoch
    left out), no profiler running: ({"Class.method": [seconds, calls]}, steps)."""
    window, totals = ProfileEpochs(None), {}
    restore = timed_hooks(window, totals)
    try:
        cfg = compose_cfg([*NOOP, f"trainer.max_epochs={epochs}"], run_dir)
        with quiet():
            run = build_experiment(cfg)
            run.trainer.callbacks.insert(0, window)  # first: its window opens before the others
            fit_and_evaluate(run.trainer, run.module, run.fit_data, None)
    finally:
        for owner, name, method in restore:
            setattr(owner, name, method)
    return totals, window.steps


def per_step(stats: pstats.Stats, steps: int) -> tuple[float, list[tuple[str, float, float]]]:
    """(profiled ms per step, [(label, cumulative ms per step, calls per step)] for PARTS)."""
    total = sum(tt for _, _, tt, _, _ in stats.stats.values())
    rows = []
    for label, suffix, name in PARTS:
        ms, calls = 0.0, 0
        for (file, _, func), (_, nc, _, ct, _) in stats.stats.items():
            if func == name and file.endswith(suffix):
                ms, calls = ms + ct, calls + nc
        rows.append((label, 1000 * ms / steps, calls / steps))
    return 1000 * total / steps, rows


def profile_transferlab(run_dir: Path, epochs: int) -> tuple[pstats.Stats, int]:
    profile = cProfile.Profile()
    cfg = compose_cfg([*NOOP, f"trainer.max_epochs={epochs}"], run_dir)
    callback = ProfileEpochs(profile)
    with quiet():
        run = build_experiment(cfg)
        run.trainer.callbacks.append(callback)
        fit_and_evaluate(run.trainer, run.module, run.fit_data, None)
    return pstats.Stats(profile), callback.steps


def profile_plain(run_dir: Path, epochs: int) -> tuple[pstats.Stats, int]:
    cfg = compose_cfg([*NOOP, f"trainer.max_epochs={epochs}"], run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    loop = plain_parts(cfg)
    plain_loop(**loop, epochs=1)  # warm-up, as in the run
    profile = cProfile.Profile()
    profile.enable()
    times = plain_loop(**loop, epochs=epochs - 1)
    profile.disable()
    steps = len(times) + (epochs - 1)  # plain_loop leaves each epoch's first step out
    return pstats.Stats(profile), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs; the first is warm-up")
    parser.add_argument("--top", type=int, default=0, help="also list the N costliest functions")
    parser.add_argument("--save", help="write the profiles here (pstats format; PATH.plain too)")
    parser.add_argument(
        "--hooks", action="store_true", help="only time the framework's own per-step methods"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.hooks:
        with tempfile.TemporaryDirectory() as tmp:
            totals, steps = hook_costs(Path(tmp) / "run", args.epochs)
        print(f"{'method (CPU time, no profiler)':44s} {'us/call':>8s} {'calls/step':>10s}")
        for key, (seconds, calls) in totals.items():
            print(f"{key:44s} {1e6 * seconds / calls:8.1f} {calls / steps:10.2f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        stats, steps = profile_transferlab(Path(tmp) / "run", args.epochs)
        plain, plain_n = profile_plain(Path(tmp) / "plain", args.epochs)
    if args.save:
        stats.dump_stats(args.save)
        plain.dump_stats(f"{args.save}.plain")
    total, rows = per_step(stats, steps)
    plain_total, _ = per_step(plain, plain_n)
    print(f"transferlab: {total:.2f} ms/step profiled over {steps} steps")
    print(f"plain loop:  {plain_total:.2f} ms/step profiled over {plain_n} steps")
    print(f"{'part of a transferlab step':58s} {'ms/step':>8s} {'calls/step':>10s}")
    for label, ms, calls in rows:
        print(f"{label:58s} {ms:8.3f} {calls:10.1f}")
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
