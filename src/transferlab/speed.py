"""Speed switches (channels_last, torch.compile, keeping freed host memory, a cheaper
``self.log``) and the measurements that check them: per-step timing with the data wait apart,
and peak training memory on CPU or GPU.

The measured effect of each switch is in benchmarks/README.md.
"""

from __future__ import annotations

import ctypes
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from transferlab.errors import ConfigError

log = logging.getLogger("transferlab")

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
NHWC = torch.channels_last


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed host memory for reuse instead of handing it back to the
    operating system; returns whether it applied (Linux with glibc only).

    By default glibc serves blocks above a threshold with their own ``mmap`` and returns them
    (and the top of the heap) to the system when freed, so every training step's activations
    arrive in fresh pages that the kernel must fault in and zero: about 4,600 to 9,200 minor
    page faults a step for a ResNet-18 at batch 64 on CPU, 5-10% of the step
    (benchmarks/README.md). Raising both thresholds lets the freed blocks be reused; the
    process's resident memory then stays at its peak until it exits. Applies to allocations
    made from now on, so it runs before the data and model are built.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:  # the process's own symbols: libc is already loaded, no library search needed
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    )


def skip_needless_log_moves() -> bool:
    """Make Lightning's ``self.log`` skip moving its stored entry to the value's device when the
    entry is there already; returns whether it applied (a Lightning version without the hook
    point is left alone).

    At every ``self.log`` call Lightning moves the entry it keeps for that name to the logged
    value's device, walking the entry's whole attribute dict (and copying its dataclasses) even
    when nothing moves. Skipping it cut a call from 0.93-1.02 ms to 0.09-0.12 ms on this
    project's CPUs (1,000 calls, three times each); a cached epoch logs about 16 values. The
    entry's tensors (its states and their defaults) all
    move together, so when every one of them is on the device the move changes nothing and is
    skipped; a move to another device, or with a dtype, runs as before. Idempotent.
    """
    try:
        from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultMetric
    except ImportError:
        return False
    move = _ResultMetric.to
    if getattr(move, "skips_needless_moves", False):
        return True

    def to(self, *args, **kwargs):
        device, dtype, *_ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None and dtype is None and _all_on(self, device):
            return self
        return move(self, *args, **kwargs)

    to.skips_needless_moves = True
    to.__doc__ = move.__doc__
    _ResultMetric.to = to
    return True


def _all_on(entry, device: torch.device) -> bool:
    """Whether every state of a Lightning result entry, and every state's default, is a tensor
    on ``device`` (an entry that holds a Metric object is never skipped)."""
    defaults = getattr(entry, "_defaults", None)
    if not defaults:
        return False
    for name, default in defaults.items():
        state = getattr(entry, name, None)
        if not isinstance(state, torch.Tensor) or not isinstance(default, torch.Tensor):
            return False
        if state.device != device or default.device != device:
            return False
    return True


def apply_speed_settings(speed, module: nn.Module, datamodule=None) -> None:
    """Apply the ``speed`` config block to a built module (and its datamodule) before fitting.

    Args:
        speed: mapping with ``channels_last`` (bool), ``compile`` (bool) and ``compile_mode``
            (``keep_freed_memory`` is applied earlier, by :func:`keep_freed_memory`).
        module: a TransferModule (anything with a ``backbone``).
        datamodule: its datamodule; compiling makes it drop the last partial training batch.
    """
    if not speed:
        return
    if speed.get("channels_last"):
        use_channels_last(module.backbone)
    if speed.get("compile"):
        mode = speed.get("compile_mode") or "default"
        if mode not in COMPILE_MODES:
            raise ConfigError(
                f"speed.compile_mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}."
            )
        # a compiled graph is specialised to the batch shape; a short last batch would recompile
        module.backbone.compile(mode=mode, dynamic=False)
        if datamodule is not None and not datamodule.drop_last:
            datamodule.drop_last = True
            log.info("speed.compile: the training loader drops its last partial batch")


def use_channels_last(backbone: nn.Module) -> None:
    """Keep the backbone's 4-D weights and its image inputs in NHWC (channels-last) layout.

    cuDNN's convolutions run faster in NHWC, especially under bf16; on this project's CPUs a
    frozen backbone's inference runs 1.6-2.8x faster (benchmarks/README.md), training there is
    not measured.
    """
    if not any(isinstance(m, nn.Conv2d) for m in backbone.modules()):
        log.info("speed.channels_last: this backbone has no 2-D convolution to speed up")
    backbone.to(memory_format=torch.channels_last)
    backbone.register_forward_pre_hook(_channels_last_input)


@contextmanager
def channels_last_inference(backbone: nn.Module) -> Iterator[None]:
    """NHWC weights for the length of an inference pass, then the layout they had.

    On this project's CPUs oneDNN's NHWC convolutions run a frozen ResNet-18 at 32 px about
    1.6-2.5x faster, an EfficientNet-B0 2.8x (outputs equal within 1e-6); the feature cache's
    one-off pass uses it. Only the convolution weights not yet in NHWC are converted, and only
    they are converted back: a backbone kept in NHWC (``speed.channels_last``), wholly or in
    part, comes out as it went in.
    """
    convs = [m.weight for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    nchw = [w for w in convs if not w.is_contiguous(memory_format=NHWC)]
    _set_layout(nchw, NHWC)
    try:
        yield
    finally:
        _set_layout(nchw, torch.contiguous_format)


def _set_layout(weights: list[torch.Tensor], layout: torch.memory_format) -> None:
    """Each weight's data in ``layout``, the Parameter objects kept; as normal tensors even
    inside ``torch.inference_mode`` (a weight made there could not be used in training)."""
    with torch.inference_mode(False), torch.no_grad():
        for w in weights:
            w.data = w.data.contiguous(memory_format=layout)


def _channels_last_input(module: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x, *rest)


def read_clock(clock: str) -> float:
    """Seconds on ``clock``: ``wall`` (``time.perf_counter``) or ``cpu`` (``time.process_time``,
    the process's own CPU time: on a shared CPU machine it leaves out the time other processes
    hold the cores; it does not count a GPU's work)."""
    if clock == "wall":
        return time.perf_counter()
    if clock == "cpu":
        return time.process_time()
    raise ConfigError(f"clock must be 'wall' or 'cpu', got {clock!r}.")


class StepTimer(pl.Callback):
    """Per training step: time waiting for the batch and time computing on it.

    The wait is the time from the end of one step (its ``on_train_batch_end``) to the start of
    the next within an epoch. The first batch of each epoch is kept apart, because its wait
    also covers starting the loader and the epoch-start hooks. On a GPU the clock is
    synchronised at both ends of a step, so the compute time includes the device's work.

    Args:
        path: where to write the records and :meth:`summary` as JSON when fitting ends, e.g.
            ``+callbacks.step_timer._target_=transferlab.speed.StepTimer
            +callbacks.step_timer.path=\${paths.output_dir}/step_times.json``.
        clock: ``wall`` or ``cpu`` (:func:`read_clock`).
    """

    def __init__(self, path: str | None = None, clock: str = "wall"):
        read_clock(clock)  # an unknown clock fails here, not at the first step
        self.path, self.clock = path, clock
        self.records: list[tuple[bool, float, float]] = []  # (first of epoch, wait, compute)
        self.fit_s = 0.0
        self._mark = 0.0
        self._first = True
        self._wait = 0.0

    def _now(self, module) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return read_clock(self.clock)

    def on_fit_start(self, trainer, module) -> None:
        self.fit_s = -self._now(module)

    def on_fit_end(self, trainer, module) -> None:
        self.fit_s += self._now(module)
        if self.path and trainer.is_global_zero:
            out = {**self.summary(), "fit_s": self.fit_s, "records": self.records}
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).write_text(json.dumps(out) + "\n")

    def on_train_epoch_start(self, trainer, module) -> None:
        self._mark, self._first = self._now(module), True

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        now = self._now(module)
        self._wait, self._mark = now - self._mark, now

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = self._now(module)
        self.records.append((self._first, self._wait, now - self._mark))
        self._mark, self._first = now, False

    def step_times(self) -> list[float]:
        """Whole-iteration times (wait + compute), leaving out each epoch's first batch."""
        return [w + c for first, w, c in self.records if not first]

    def summary(self) -> dict[str, float]:
        """Steps counted, median step time (s), data-wait share, median first-batch wait (s)."""
        later = [(w, c) for first, w, c in self.records if not first]
        firsts = [w for first, w, _ in self.records if first]
        total = sum(w + c for w, c in later)
        return {
            "steps": len(later),
            "median_step_s": statistics.median(self.step_times()) if later else float("nan"),
            "wait_share": sum(w for w, _ in later) / total if total else float("nan"),
            "first_wait_s": statistics.median(firsts) if firsts else 0.0,
        }


def peak_training_memory(run: Callable[[], None], device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated while ``run()`` trains, above what was allocated before it.

    That is activations, gradients, optimizer state and temporaries, without the weights, the
    data or the rest of the process. On a GPU: ``torch.cuda.max_memory_allocated``. On a CPU:
    the PyTorch profiler's memory accounting, each allocation and free taken in time order.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    # the raw allocation records (bytes > 0) and frees (< 0); summing each op's "self" memory
    # instead would move frees to the start of the enclosing step and hide the peak
    records = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    total = peak = 0
    for record in sorted(records, key=lambda e: e.start_ns()):
        total += record.nbytes()
        peak = max(peak, total)
    return peak
