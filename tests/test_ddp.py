"""Gradual unfreezing under Lightning DDP on CPU: 2 gloo processes launched the way a user
launches them (``transferlab-train trainer=ddp``), checked from inside by a probe callback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HELPERS = Path(__file__).parent / "helpers"


@pytest.mark.slow
def test_gradual_unfreezing_under_ddp_keeps_ranks_in_step(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "transferlab.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        "backbone=tiny",
        "backbone.weights=null",
        "data=synthetic",
        "data.batch_size=16",
        "strategy=gradual_unfreeze",
        "logger=none",
        "print_config=false",
        f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={run}",
        "+callbacks.probe._target_=ddp_probe.MaskProbe",
        f"+callbacks.probe.out={run}",
    ]
    env = {**os.environ, "PYTHONPATH": f"{HELPERS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    probes = [json.loads((run / f"probe_rank{r}.json").read_text()) for r in (0, 1)]
    assert [p["world_size"] for p in probes] == [2, 2]
    assert probes[0]["masks"] == probes[1]["masks"]  # same schedule on both ranks
    assert all(p["disagreements"] == 0 and p["frozen_changed"] == 0 for p in probes)
    # groups opened mid-training are averaged across ranks too: both ranks end on one model
    w0, w1 = probes[0]["weights"], probes[1]["weights"]
    differ = [n for n in w0 if max(abs(a - b) for a, b in zip(w0[n], w1[n], strict=True)) > 1e-6]
    assert differ == []
    masks = probes[0]["masks"]
    # synthetic: 128 train images, 16 per batch over 2 ranks = 4 steps per epoch
    per_epoch = len(masks) // 3
    assert [sum(masks[e * per_epoch]) for e in range(3)] == [1, 2, 3]  # head, +layer4, +layer3
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0
