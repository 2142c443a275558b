"""(d) Data wait: the share of training-step time spent waiting for the next batch, on the
built-in data sets, with the default experiment's model."""

from __future__ import annotations

from benchmarks.common import compose_cfg
from benchmarks.memory import fit
from transferlab.speed import StepTimer

SETS = ("mnist_split", "mnist5k", "digits", "mnist_m")
MODEL = ["backbone=resnet18", "backbone.weights=null"]
QUICK = ["backbone=tiny", "backbone.weights=null"]


def run(work, quick: bool = False) -> dict:
    """Per data set: data-wait share of step time over 2 epochs of 6 batches (first batches
    of each epoch, which also start the loader, reported apart)."""
    out = {}
    for name in SETS[:1] if quick else SETS:
        cfg = compose_cfg([f"data={name}", *(QUICK if quick else MODEL)], work / name)
        timer = StepTimer()
        fit(cfg, batches=6, epochs=2, callbacks=[timer])
        out[name] = timer.summary()
    out["goal"] = "wait_share < 0.05"
    return out
